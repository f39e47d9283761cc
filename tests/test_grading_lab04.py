"""The grader's parts of lab 04: full marks for the solution, zero for the untouched lab and
for missing names, and for each part a wrong implementation that passes every visible check
and fails a hidden one.

The solution is taken from solutions/lab04_message_queues.ipynb itself; each wrong
implementation is the solution's function with one thing changed.  Every check makes and
removes its own queue; the leak check of conftest.py fails a test that leaves a queue or a
process behind.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from _helpers import failed, load_solution, missing_fails_every_check, run_code_cells

from ipclab import proc
from ipclab.grading import parts
from ipclab.labs import generate, lab04
from ipclab.labs.hidden import lab04 as hidden
from ipclab.labs.lab04 import REQUEST, RESULTS, SHUTDOWN, STOP
from ipclab.labs.scorecard import run_checks

pytestmark = pytest.mark.timeout(240)
SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "lab04_message_queues.ipynb"
WORKER, RUN_JOBS, SERVE, ASK = hidden.PARTS
VISIBLE = {"worker": lab04.worker_checks, "run_jobs": lab04.run_jobs_checks,
           "serve": lab04.serve_checks, "ask": lab04.ask_checks}
HIDDEN = {"worker": hidden.hidden_worker_checks, "run_jobs": hidden.hidden_run_jobs_checks,
          "serve": hidden.hidden_serve_checks, "ask": hidden.hidden_ask_checks}
LATE = "hidden: jobs sent while the worker waits (1.5 s apart) are done"
SLOW_JOBS = "hidden: jobs that take 1.2 s each are waited for"
IDLE = "hidden: a server idle for 1.5 s still answers"
SLOW_SERVER = "hidden: a slow server (1.5 s): ask(timeout=4) waits for it"
NEIGHBOURS = "hidden: replies for the PIDs next to the client's are left alone"


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab04_message_queues.ipynb")


def names(part, fn=print):
    return [c.name for c in VISIBLE[part.title](fn) + parts.hide(HIDDEN[part.title](fn))]


def test_one_part_per_check_cell_with_stable_unique_names(solution):
    assert [(p.title, p.needs) for p in hidden.PARTS] == [
        ("worker", ("worker",)), ("run_jobs", ("run_jobs",)), ("serve", ("serve",)),
        ("ask", ("ask",))]
    assert parts.parts("lab04_message_queues") == hidden.PARTS
    for part in hidden.PARTS:
        first = names(part, solution[part.title])
        assert first == names(part) and len(set(first)) == len(first)
        visible = [n for n in first if not n.startswith(parts.HIDDEN)]
        assert visible == [c.name for c in VISIBLE[part.title](print)]
        assert first[len(visible):] == [n for n in first if n.startswith(parts.HIDDEN)]
    assert LATE in names(WORKER) and SLOW_JOBS in names(RUN_JOBS)
    assert IDLE in names(SERVE) and {SLOW_SERVER, NEIGHBOURS} <= set(names(ASK))


def test_solution_gets_full_marks_on_every_part(solution, capsys):
    for part, total in ((WORKER, 8), (RUN_JOBS, 8), (SERVE, 6), (ASK, 8)):
        score = part.run(solution[part.title])
        assert (score.passed, score.total) == (total, total), failed(score)
        assert [line[0] for line in score.lines] == names(part)
    assert capsys.readouterr().out == ""  # show=False: the grader prints nothing


def test_untouched_lab_scores_zero_without_raising():
    lab = run_code_cells(generate.make_lab(nbformat.read(SOLUTION, as_version=4)), SOLUTION)
    for part in hidden.PARTS:
        score = part.run(*(lab[name] for name in part.needs))
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total > 0
        assert all("not implemented yet" in d for d in details), details


def test_missing_names_score_zero_and_say_so():
    for part in hidden.PARTS:
        missing_fails_every_check(part)


def only_hidden_fail(details, *expected):
    """Every visible check passed, and the ``expected`` hidden ones failed."""
    assert all(name.startswith(parts.HIDDEN) for name in details), details
    assert set(expected) <= set(details), details


def test_a_worker_that_stops_when_no_job_waits_fails_the_late_jobs(solution):
    def quits_early(queue, handler):
        done = 0
        while True:
            try:
                message, kind = queue.receive_json(type=-STOP, block=False)
            except BlockingIOError:
                return done  # "no more jobs": but more may come
            if kind == STOP:
                return done
            queue.send_json({"id": message["id"], "result": handler(message["data"])},
                            type=RESULTS)
            done += 1

    details = failed(WORKER.run(quits_early))
    only_hidden_fail(details, LATE)
    assert details[LATE].startswith("worker returned 0, expected 3: jobs sent after it started")


def test_run_jobs_that_waits_1_s_for_a_result_fails_the_slow_jobs(solution):
    worker = solution["worker"]

    def impatient(queue, jobs, handler, workers=3):
        results = {}

        def collect():
            message, _ = queue.receive_json(type=RESULTS, timeout=1)  # too short for slow jobs
            results[message["id"]] = message["result"]

        with proc.Family(timeout=60, show=False) as family:
            for i in range(1, workers + 1):
                family.fork(worker, queue, handler, label=f"worker {i}")
            for sent, (priority, ident, data) in enumerate(jobs):
                if sent - len(results) >= 2 * workers:
                    collect()
                queue.send_json({"id": ident, "data": data}, type=priority)
            while len(results) < len(jobs):
                collect()
            for _ in range(workers):
                queue.send_json(None, type=STOP)
        return results

    details = failed(RUN_JOBS.run(impatient))
    assert list(details) == [SLOW_JOBS]
    assert details[SLOW_JOBS].startswith("run_jobs: raised IPCTimeoutError")


def test_a_server_that_stops_after_1_s_without_requests_fails_the_idle_check():
    def impatient(queue, handler):
        served = 0
        while True:
            try:
                request, kind = queue.receive_json(type=-SHUTDOWN, timeout=1)
            except TimeoutError:
                return served  # nobody asked for a second: "they are all done"
            if kind == SHUTDOWN:
                return served
            queue.send_json({"text": handler(request["text"])}, type=request["reply_to"])
            served += 1

    details = failed(SERVE.run(impatient))
    assert list(details) == [IDLE]
    assert details[IDLE].startswith("serve returned 0 after 1.5 s without requests")


def test_a_client_that_waits_1_s_whatever_its_timeout_fails_the_slow_server():
    def impatient(queue, text, timeout=5.0):
        me = os.getpid()
        queue.send_json({"reply_to": me, "text": text}, type=REQUEST)
        return queue.receive_json(type=me, timeout=1)[0]["text"]  # not the caller's timeout

    details = failed(ASK.run(impatient))
    assert list(details) == [SLOW_SERVER]
    assert details[SLOW_SERVER].startswith("ask: raised IPCTimeoutError")
    assert "hint: pass ask's timeout to receive" in details[SLOW_SERVER]


def test_a_client_reading_a_negative_type_takes_a_neighbours_reply():
    def lowest(queue, text, timeout=5.0):
        me = os.getpid()
        queue.send_json({"reply_to": me, "text": text}, type=REQUEST)
        return queue.receive_json(type=-me, timeout=timeout)[0]["text"]  # any type up to me

    checks = [c for c in parts.hide(hidden.hidden_ask_checks(lowest)) if c.name == NEIGHBOURS]
    detail = failed(run_checks("t", checks, show=False))[NEIGHBOURS]
    # the lowest type waiting is its own request (1), or, once served, the reply for type 3
    assert re.match(r"ask: ask returned '(mine|NOT YOURS)', expected 'MINE' \(replies for "
                    r"types \[3, ", detail), detail
