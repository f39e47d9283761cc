"""Lab 04's checks: full marks for the solution, lost marks for the classic mistakes.

The solution is taken from solutions/lab04_message_queues.ipynb itself (its code
cells, run in a fresh namespace), so what the course ships is what is tested.
Every check makes and removes its own queue; the leak check of conftest.py
fails a test that leaves a queue or a process behind, including after a hang.
"""

import os
import time

import pytest
from _helpers import failed, load_solution

from ipclab import proc
from ipclab.labs import lab04
from ipclab.labs.lab04 import REQUEST, RESULTS, STOP
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab04_message_queues.ipynb")


def names(checks, *words):
    """The names of the checks whose name contains one of ``words``."""
    return {c.name for c in checks if any(w in c.name for w in words)}


def test_solution_gets_full_marks(solution, capsys):
    scores = [lab04.check_worker(solution["worker"]), lab04.check_run_jobs(solution["run_jobs"]),
              lab04.check_serve(solution["serve"]), lab04.check_ask(solution["ask"])]
    assert [(s.passed, s.total) for s in scores] == [(4, 4), (4, 4), (3, 3), (4, 4)]
    out = capsys.readouterr().out
    assert "worker: 4/4 checks passed" in out and "ask: 4/4 checks passed" in out


def test_untouched_lab_scores_zero_without_raising():
    def stub(*args, **kwargs):
        raise NotImplementedError()
    for check in (lab04.check_worker, lab04.check_run_jobs, lab04.check_serve, lab04.check_ask):
        score = check(stub)
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total
        assert all(detail.startswith("not implemented yet") for detail in details), details


def test_a_fifo_worker_loses_the_priority_marks():
    def fifo_worker(queue, handler):
        done = 0
        while True:
            message, kind = queue.receive_json()  # type=0: whatever is oldest
            if kind == STOP:
                return done
            queue.send_json({"id": message["id"], "result": handler(message["data"])}, RESULTS)
            done += 1
    checks = lab04.worker_checks(fifo_worker)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == names(checks, "urgent", "STOP sent before", "other types")
    assert "expected [2, 4, 7, 5, 1, 6, 3, 8] (most urgent first" in lost[
        "urgent jobs first, in the order sent within a priority"]
    assert "worker: raised KeyError" in lost["messages of other types are left in the queue"]


def test_a_worker_that_never_stops_is_killed_and_leaves_nothing(solution):
    def endless(queue, handler):
        while True:
            try:
                queue.receive_json(-(STOP - 1), block=False)  # never takes the STOP
            except BlockingIOError:
                time.sleep(0.01)
    check = lab04.worker_checks(endless)[0]
    start = time.monotonic()
    detail = failed(run_checks("t", [check], show=False))[check.name]
    assert detail.startswith("worker: timed out after 8 s")  # the guard, not the scorecard
    assert time.monotonic() - start < check.timeout


def test_sending_every_job_before_collecting_deadlocks_on_a_small_queue(solution):
    worker = solution["worker"]

    def send_all_first(queue, jobs, handler, workers=3):
        results = {}
        with proc.Family(timeout=60, show=False) as family:
            for _ in range(workers):
                family.fork(worker, queue, handler)
            for priority, ident, data in jobs:
                queue.send_json({"id": ident, "data": data}, priority)
            for _ in jobs:
                message, _ = queue.receive_json(RESULTS)
                results[message["id"]] = message["result"]
            for _ in range(workers):
                queue.send_json(None, STOP)
        return results
    checks = lab04.run_jobs_checks(send_all_first)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == names(checks, "2000 jobs")
    detail = lost.pop(next(iter(names(checks, "2000 jobs"))))
    assert "raised IPCTimeoutError" in detail and "the queue is full" in detail
    assert "hint: jobs and results share the queue" in detail


def test_doing_every_job_in_one_process_loses_the_sharing_mark(solution):
    worker = solution["worker"]

    def alone(queue, jobs, handler, workers=3):
        results = {}
        for priority, ident, data in jobs:
            queue.send_json({"id": ident, "data": data}, priority)
            queue.send_json(None, STOP)
            worker(queue, handler)
            message, _ = queue.receive_json(RESULTS)
            results[message["id"]] = message["result"]
        return results
    checks = lab04.run_jobs_checks(alone)
    lost = failed(run_checks("t", checks, show=False))
    assert list(lost) == ["the jobs are shared among the workers"]
    assert "one process did every job" in lost["the jobs are shared among the workers"]


def test_workers_never_waited_for_lose_every_mark(solution):
    worker = solution["worker"]

    def no_wait(queue, jobs, handler, workers=3):
        for _ in range(workers):
            with proc.quiet_fork_warning():
                if os.fork() == 0:
                    try:
                        worker(queue, handler)
                    finally:
                        os._exit(0)
        results = {}
        for priority, ident, data in jobs:  # one job in flight at a time
            queue.send_json({"id": ident, "data": data}, priority)
            message, _ = queue.receive_json(RESULTS)
            results[message["id"]] = message["result"]
        for _ in range(workers):
            queue.send_json(None, STOP)
        return results  # without os.waitpid: the workers stay as zombies
    checks = lab04.run_jobs_checks(no_wait)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == {c.name for c in checks}
    assert all("child process(es) left running or unreaped" in d for d in lost.values()), lost


def test_a_server_that_stops_at_once_loses_the_shutdown_mark():
    def hasty(queue, handler):
        served = 0
        while True:
            request, kind = queue.receive_json()  # type=0: a SHUTDOWN sent first ends it
            if kind != REQUEST:
                return served
            queue.send_json({"text": handler(request["text"])}, request["reply_to"])
            served += 1
    checks = lab04.serve_checks(hasty)
    lost = failed(run_checks("t", checks, show=False))
    assert names(checks, "SHUTDOWN sent first") <= set(lost)  # (the crowd may take a reply too)
    assert not names(checks, "returns the count") & set(lost)
    assert "serve returned 0, expected 5" in lost[next(iter(names(checks, "SHUTDOWN")))]


def test_a_server_replying_on_the_request_type_loses_every_mark():
    def misrouted(queue, handler):
        served = 0
        while True:
            request, kind = queue.receive_json(-2)
            if kind != REQUEST:
                return served
            queue.send_json({"text": handler(request["text"])}, 3)  # not on reply_to
            served += 1
    checks = lab04.serve_checks(misrouted)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == {c.name for c in checks}
    assert "on its own type" in lost[checks[0].name]


def test_a_client_reading_type_zero_takes_someone_elses_reply():
    def greedy(queue, text, timeout=5.0):
        queue.send_json({"reply_to": os.getpid(), "text": text}, REQUEST)
        return queue.receive_json(timeout=timeout)[0]["text"]  # type=0: whatever is oldest
    checks = lab04.ask_checks(greedy)
    lost = failed(run_checks("t", checks, show=False))
    assert "only a reply of the client's own type is taken" in lost
    assert "ask returned 'NOT YOURS'" in lost["only a reply of the client's own type is taken"]


def test_a_client_ignoring_its_timeout_is_stopped_and_told():
    def patient(queue, text, timeout=5.0):
        queue.send_json({"reply_to": os.getpid(), "text": text}, REQUEST)
        return queue.receive_json(os.getpid(), timeout=30)[0]["text"]
    check = [c for c in lab04.ask_checks(patient) if "no server" in c.name]
    detail = failed(run_checks("t", check, show=False))[check[0].name]
    assert detail.startswith("ask: timed out after 4 s")
    assert "hint: pass timeout to receive" in detail


def test_checks_are_wellformed():
    every = (lab04.worker_checks(print) + lab04.run_jobs_checks(print)
             + lab04.serve_checks(print) + lab04.ask_checks(print))
    assert all(isinstance(c, Check) for c in every)
    assert len({c.name for c in every}) == len(every) == 15
