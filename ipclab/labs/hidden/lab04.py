"""The grader's parts of lab 04 (message queues): the visible checks plus hidden ones.

The visible checks (:mod:`ipclab.labs.lab04`) put every job or request in the
queue before the student's code starts, use short ASCII texts and small int ids,
at most 8 clients or 4 workers, and a handler that answers at once.  The hidden
ones add what the lab's text promises beyond that:

- waiting: a worker and a server wait for work that comes later (1.5 s of
  nothing), not only for what is already queued; ``run_jobs`` and ``ask``
  wait as long as a slow handler (1.2 or 1.5 s) needs, within their timeout;
- size: a job, request or question of non-ASCII text (1 to 4 UTF-8 bytes a
  character) that nearly fills a message (MSGMAX, or half the queue), and
  empty texts;
- load: 100 jobs of every priority in one queue, three of the student's
  workers sharing 300 jobs, 8 workers for 400 jobs, 16 clients at once;
- routing: job ids of any JSON kind (strings, negative, above 2**32); replies
  on any type a client may have (3, 2**31-1), and a client that takes only
  its own type when replies for the PIDs next to its own wait in the queue.

System calls: msgget(2)/msgsnd(2)/msgrcv(2) (through the student's code and
:class:`ipclab.mq.Queue`), fork(2) and setpgid(2) (each piece of the student's
code runs in a process group of its own, killed if it hangs), waitid(2)
``WNOWAIT`` (to see a server end without reaping it), and msgctl(2)
``IPC_RMID``: every queue is made and removed by the grading process
(:func:`ipclab.labs.support.fresh_queue`), whatever the student's code does.
"""

from __future__ import annotations

import os
import random
import time

from ... import mq, proc
from ...grading.parts import Part, hide
from ..lab04 import (
    LOWEST,
    REQUEST,
    RESULTS,
    SHUTDOWN,
    STOP,
    WAIT,
    _answered,
    _client,
    _crowd,
    _results,
    _send_jobs,
    _server,
    ask_checks,
    run_jobs_checks,
    serve_checks,
    worker_checks,
)
from ..scorecard import Check, run_checks
from ..support import drain, fresh_queue, guarded, outcome, tidy


def _big(q) -> str:
    """Text of 1- to 4-byte UTF-8 characters whose message nearly fills MSGMAX (or half of
    ``q``); ``str.upper`` keeps its size."""
    room = min(mq.max_message(), q.max_bytes // 2) - 64
    return "aé€🙂" * (room // 10)


def _slow_upper(text: str) -> str:
    time.sleep(1.5)
    return text.upper()


def _sleepy(text: str) -> str:
    time.sleep(1.2)
    return text.upper()


def _ended(pid: int) -> bool:
    """Whether child ``pid`` has ended, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _feed(q, jobs, window: int, pids) -> dict:
    """Send ``jobs``, at most ``window`` without a result; return ``{id: result}``.

    Waits at most WAIT s for a result, less once every process of ``pids`` has ended.
    """
    results = {}

    def collect():
        deadline = time.monotonic() + WAIT
        while True:
            try:
                message, _ = q.receive_json(RESULTS, timeout=0.25)
                break
            except TimeoutError:
                if all(map(_ended, pids)) or time.monotonic() > deadline:
                    raise AssertionError(f"no result came for the job(s) sent, after "
                                         f"{len(results)} of {len(jobs)}") from None
        results[message["id"]] = message["result"]

    for sent, (priority, ident, data) in enumerate(jobs):
        if sent - len(results) >= window:
            collect()
        q.send_json({"id": ident, "data": data}, priority)
    while len(results) < len(jobs):
        collect()
    return results


def hidden_worker_checks(worker) -> list[Check]:
    """The hidden checks of ``worker(queue, handler) -> int``."""
    def late_jobs():
        with fresh_queue(WAIT) as q:
            with proc.Family(15, show=False, new_group=True) as family:
                family.fork(tidy, worker, q, str.upper, label="worker")
                for gap, job in ((0.3, (4, 1, "a")), (1.5, (2, 2, "b")), (0.2, (LOWEST, 3, "c"))):
                    time.sleep(gap)
                    _send_jobs(q, [job])
                time.sleep(0.2)
                q.send_json(None, STOP)
            done = outcome(family.results[0])
            assert done == 3, f"worker returned {done!r}, expected 3: jobs sent after it " \
                              f"started (one 1.5 s later) must be done too"
            got = _results(drain(q))
        assert got == [(1, "A"), (2, "B"), (3, "C")], f"results {got!r:.100}, expected " \
                                                      f"[(1, 'A'), (2, 'B'), (3, 'C')]"

    def every_priority():
        rng = random.Random(5)
        jobs = [(rng.randint(1, LOWEST), i, f"jöb {i}") for i in range(100)]
        want = [(i, d.upper()) for _, i, d in sorted(jobs, key=lambda j: j[0])]
        with fresh_queue(WAIT) as q:
            _send_jobs(q, jobs)
            q.send_json(None, STOP)
            done = guarded(10, worker, q, str.upper, label="worker")
            got = _results(drain(q))
        assert done == len(jobs), f"worker did {done!r} of the {len(jobs)} jobs"
        first = next((k for k, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
                     len(got))
        assert got == want, f"result {first + 1} of {len(want)}: job id " \
                            f"{got[first][0] if first < len(got) else None}, expected " \
                            f"{want[first][0]} (most urgent first, then in order sent)"

    def near_msgmax():
        with fresh_queue(WAIT) as q:
            text = _big(q)
            _send_jobs(q, [(1, 1, text), (2, 2, "")])
            q.send_json(None, STOP)
            done = guarded(8, worker, q, str.upper, label="worker")
            got = _results(drain(q))
        assert done == 2 and got == [(1, text.upper()), (2, "")], \
            f"worker returned {done!r} and sent {[(i, len(r or '')) for i, r in got]} " \
            f"(id, characters), expected 2 and [(1, {len(text)}), (2, 0)]"

    def three_share():
        jobs = [(i % LOWEST + 1, i, f"job {i}") for i in range(300)]
        with fresh_queue(WAIT) as q:
            with proc.Family(20, show=False, new_group=True) as family:
                pids = [family.fork(tidy, worker, q, str.upper, label=f"worker {k}")
                        for k in (1, 2, 3)]
                try:
                    results, error = _feed(q, jobs, 6, pids), None
                except AssertionError as e:
                    results, error = {}, e
                for _ in range(3):
                    q.send_json(None, STOP)
            done = [outcome(r) for r in family.results]  # a failed worker explains the rest
            left = q.count
        if error:
            raise error
        assert results == {i: d.upper() for _, i, d in jobs}, "a result is missing or wrong"
        assert sum(done) == len(jobs), f"the workers returned {done}, which add up to " \
                                       f"{sum(done)}, not the {len(jobs)} jobs done"
        assert not left, f"{left} message(s) left in the queue"

    return [
        Check("jobs sent while the worker waits (1.5 s apart) are done", late_jobs,
              "wait for the next message (a blocking receive); stop only at STOP", timeout=20),
        Check("100 jobs of every priority: most urgent first", every_priority,
              "receive(type=-STOP) takes the lowest type first, oldest first", timeout=15),
        Check("a job of non-ASCII text nearly as long as MSGMAX, and an empty one", near_msgmax,
              "send_json writes UTF-8; send the result as it is", timeout=10),
        Check("3 workers share 300 jobs: each done once, counts add up", three_share,
              timeout=25),
    ]


def _expect(run_jobs, jobs, handler, workers, timeout=10.0, same=None) -> None:
    """Run ``run_jobs`` on ``jobs``; fail unless it returns every right result, once.

    ``same`` computes what ``handler`` does, faster (default: ``handler``).
    """
    with fresh_queue(WAIT) as q:
        got = guarded(timeout, run_jobs, q, jobs, handler, workers, label="run_jobs")
        left = q.count
    assert isinstance(got, dict), f"expected a dict {{id: result}}, got {got!r:.80}"
    want = {ident: (same or handler)(data) for _, ident, data in jobs}
    missing = [i for i in want if i not in got]
    assert not missing, f"{len(missing)} job(s) without a result, such as id {missing[0]!r}"
    wrong = [i for i in want if got[i] != want[i]]
    assert not wrong, f"job {wrong[0]!r}: result {got[wrong[0]]!r:.60}, expected " \
                      f"{want[wrong[0]]!r:.60}"
    assert len(got) == len(want), f"{len(got) - len(want)} result(s) for unknown job ids"
    assert not left, f"{left} message(s) left in the queue (one STOP per worker; collect " \
                     f"every result)"


def hidden_run_jobs_checks(run_jobs) -> list[Check]:
    """The hidden checks of ``run_jobs(queue, jobs, handler, workers=3) -> dict``."""
    odd_ids = [(1, "x", "a"), (LOWEST, "job 2", "b"), (3, 2**40, "c"), (2, -5, "d"),
               (5, 0, ""), (1, "", "f"), (4, 7, "g"), (4, "7", "h")]
    many = [(i % LOWEST + 1, f"j{i}", f"jöb {i} ✓") for i in range(400)]
    return [
        Check("no jobs: an empty dict, every worker stopped",
              lambda: _expect(run_jobs, [], str.upper, 3),
              "send one STOP per worker even when there was nothing to do"),
        Check("job ids of any JSON kind, with 1 worker", lambda: _expect(run_jobs, odd_ids,
                                                                          str.upper, 1),
              "key the results by the id each result carries, whatever it is"),
        Check("jobs that take 1.2 s each are waited for", lambda: _expect(run_jobs, [
              (1, i, f"slow {i}") for i in range(6)], _sleepy, 3, 15, str.upper),
              "wait for a result as long as the queue's timeout allows", timeout=20),
        Check("400 jobs of non-ASCII text, 8 workers",
              lambda: _expect(run_jobs, many, str.upper, 8, timeout=20), timeout=25),
    ]


def _serving(serve, q, body, timeout=20.0):
    """Run the student's ``serve`` while ``body(q, pid)`` runs here; return what it returned."""
    with proc.Family(timeout, show=False, new_group=True) as server:
        pid = server.fork(tidy, serve, q, str.upper, label="serve")
        try:
            error, value = None, body(q, pid)
        except (AssertionError, TimeoutError) as e:
            error, value = e, None
        finally:
            q.send_json(None, SHUTDOWN)
    served = outcome(server.results[0])  # a failed server explains the clients' failures
    if error:
        raise AssertionError(str(error).splitlines()[0]) from None
    return served, value


def hidden_serve_checks(serve) -> list[Check]:
    """The hidden checks of ``serve(queue, handler) -> int``."""
    def idle():
        def later(q, pid):
            time.sleep(1.5)
            if _ended(pid):
                return None
            return _client(q, ["late", "later"])
        with fresh_queue(WAIT) as q:
            served, replies = _serving(serve, q, later)
        assert replies is not None, f"serve returned {served!r} after 1.5 s without " \
                                    f"requests; it must wait for them until SHUTDOWN"
        assert replies == ["LATE", "LATER"] and served == 2, \
            f"serve answered {replies!r} and returned {served!r}, expected ['LATE', 'LATER'] " \
            f"and 2"

    def crowd():
        def clients(q, pid):
            time.sleep(0.1)  # a server that fails at once: no need to wait for replies
            return None if _ended(pid) else _crowd(q, None, 16, 15, 15)
        with fresh_queue(WAIT) as q:
            served, results = _serving(serve, q, clients, timeout=25)
        assert results is not None, f"serve returned {served!r} before any request came"
        _answered(results, 15)
        assert served == 240, f"serve returned {served!r}, expected 240 (16 x 15 requests)"

    def unusual():
        me = os.getpid()
        low = 3 if me != 3 else 4
        with fresh_queue(WAIT) as q:
            big = _big(q)
            for to, text in ((me, big), (me, ""), (low, "low"), (mq.MAX_TYPE, "max")):
                q.send_json({"reply_to": to, "text": text}, REQUEST)
            q.send_json(None, SHUTDOWN)
            served = guarded(8, serve, q, str.upper, label="serve")
            found = sorted(((kind, m.get("text") if isinstance(m, dict) else m)
                            for m, kind in drain(q)), key=lambda m: m[0])
        want = [(low, "LOW"), (me, big.upper()), (me, ""), (mq.MAX_TYPE, "MAX")]
        assert found == want, f"found replies (type, characters) " \
            f"{[(k, len(t) if isinstance(t, str) else t) for k, t in found]}, expected " \
            f"{[(k, len(t)) for k, t in want]}"
        assert served == 4, f"serve returned {served!r}, expected 4"

    return [
        Check("a server idle for 1.5 s still answers", idle,
              "wait for the next request (a blocking receive); stop only at SHUTDOWN",
              timeout=20),
        Check("16 clients at once, 15 requests each: every reply reaches its asker", crowd,
              timeout=30),
        Check("requests near MSGMAX, empty, and for reply types 3 and 2**31-1", unusual,
              "reply with send_json({'text': ...}, type=reply_to), whatever the sizes",
              timeout=10),
    ]


def _with_server(body, handler=str.upper):
    with fresh_queue(WAIT) as q, proc.Family(20, show=False, new_group=True) as server:
        server.fork(_server, q, handler, label="server")
        try:
            body(q)
        finally:
            q.send_json(None, SHUTDOWN)


def hidden_ask_checks(ask) -> list[Check]:
    """The hidden checks of ``ask(queue, text, timeout=5.0) -> str``."""
    def slow(q):
        got = guarded(8, lambda: ask(q, "take your time", timeout=4.0), label="ask")
        assert got == "TAKE YOUR TIME", f"ask returned {got!r}, expected 'TAKE YOUR TIME'"

    def neighbours(q):
        def asked():
            me = os.getpid()
            types = sorted({t for t in (3, me - 1, me + 1, mq.MAX_TYPE)
                            if SHUTDOWN < t <= mq.MAX_TYPE and t != me})
            for t in types:
                q.send_json({"text": "NOT YOURS"}, t)
            got = ask(q, "mine")
            assert got == "MINE", f"ask returned {got!r}, expected 'MINE' (replies for " \
                                  f"types {types} were waiting; its own type is {me})"
            left = sorted(kind for _, kind in drain(q))
            assert left == types, f"the replies of types {types} should be left, found {left}"
        guarded(8, asked, label="ask")

    def big(q):
        text = _big(q)
        got = guarded(8, ask, q, text, label="ask")
        assert got == text.upper(), f"ask returned {len(got)!r:.20} characters, expected " \
                                    f"{len(text)}"

    return [
        Check("a slow server (1.5 s): ask(timeout=4) waits for it",
              lambda: _with_server(slow, _slow_upper),
              "pass ask's timeout to receive, and nothing shorter", timeout=20),
        Check("16 clients at once, 20 questions each: every answer is the asker's own",
              lambda: _with_server(lambda q: _answered(_crowd(q, ask, 16, 20, 15), 20)),
              timeout=25),
        Check("replies for the PIDs next to the client's are left alone",
              lambda: _with_server(neighbours), "receive(type=os.getpid()): exactly yours; "
              "a negative type takes any lower one", timeout=15),
        Check("a question of non-ASCII text near MSGMAX", lambda: _with_server(big),
              "send_json writes UTF-8", timeout=15),
    ]


def _part(title, visible, hidden):
    def run(fn):
        return run_checks(title, visible(fn) + hide(hidden(fn)), show=False)
    return Part(title, (title,), run)


PARTS = [
    _part("worker", worker_checks, hidden_worker_checks),
    _part("run_jobs", run_jobs_checks, hidden_run_jobs_checks),
    _part("serve", serve_checks, hidden_serve_checks),
    _part("ask", ask_checks, hidden_ask_checks),
]
