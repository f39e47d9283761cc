"""Checks for lab 04 (message queues): a priority job dispatcher, and replies routed by type.

The student writes ``worker(queue, handler)`` and ``run_jobs(queue, jobs,
handler, workers=3)`` (a pool of processes fed by priority: receive with a
negative type) and ``serve(queue, handler)`` and ``ask(queue, text,
timeout=5.0)`` (each client reads replies of its own type, its PID).  Messages
are JSON (:meth:`ipclab.mq.Queue.send_json`); the constants below name the types.

Cleanup: each check makes the queue the student's code gets (msgget(2)) and
removes it (msgctl(2) ``IPC_RMID``) in a ``finally``
(:func:`ipclab.labs.support.fresh_queue`), and runs that code in a child of its
own process group (fork(2), setpgid(2); :func:`ipclab.labs.support.guarded`)
with a timeout shorter than the check's, so a hang kills the student's
processes and never the check.  The ipclab.keys registry would not clean up: it
acts only at a normal exit.  Checks judge behaviour only: results, replies,
what is left in the queue (lost or duplicated work), and child processes left
behind.
"""

from __future__ import annotations

import os
import random
import time

from .. import mq, proc
from .scorecard import Check, run_checks
from .support import drain, fresh_queue, guarded, outcome, tidy

LOWEST, STOP, RESULTS = 8, 9, 10  # job priorities are 1 (most urgent) .. LOWEST
REQUEST, SHUTDOWN = 1, 2  # replies go on the client's PID
WAIT = 5.0  # the default timeout of every queue handed to the student's code


def _send_jobs(q, jobs) -> None:
    for priority, ident, data in jobs:
        q.send_json({"id": ident, "data": data}, priority)


def _results(found) -> list:
    assert all(kind == RESULTS for _, kind in found), \
        f"only results (type RESULTS) should be left, found types {[k for _, k in found]}"
    return [(m.get("id"), m.get("result")) if isinstance(m, dict) else m for m, _ in found]


def worker_checks(worker):
    """Return the checks of ``worker(queue, handler) -> int``."""
    def one_job():
        with fresh_queue(WAIT) as q:
            _send_jobs(q, [(3, 7, "abc")])
            q.send_json(None, STOP)
            done = guarded(8, worker, q, str.upper, label="worker")
            assert _results(drain(q)) == [(7, "ABC")], "expected one result {id: 7, result: 'ABC'}"
            assert done == 1, f"worker returned {done!r}, expected 1 (the jobs it did)"

    def by_priority(stop_first: bool):
        jobs = [(5, 1, "e"), (1, 2, "a"), (LOWEST, 3, "h"), (1, 4, "b"), (3, 5, "c"),
                (5, 6, "f"), (2, 7, "x"), (LOWEST, 8, "i")]
        want = [(i, d * 2) for _, i, d in sorted(jobs, key=lambda j: j[0])]
        with fresh_queue(WAIT) as q:
            if stop_first:
                q.send_json(None, STOP)
            _send_jobs(q, jobs)
            if not stop_first:
                q.send_json(None, STOP)
            done = guarded(8, worker, q, lambda s: s * 2, label="worker")
            found = drain(q)
        assert done == len(jobs), f"worker did {done!r} of the {len(jobs)} jobs before it stopped"
        got = _results(found)
        assert got == want, f"results in the order {[i for i, _ in got]}, expected " \
                            f"{[i for i, _ in want]} (most urgent first, then in order sent)"

    def others_left_alone():
        with fresh_queue(WAIT) as q:
            q.send_json({"id": 0, "result": "not yours"}, RESULTS)
            q.send_json("a reply for a client", 4242)
            _send_jobs(q, [(2, 1, "j")])
            q.send_json(None, STOP)
            guarded(8, worker, q, str.upper, label="worker")
            left = sorted(drain(q), key=lambda m: m[1])
            assert left == [({"id": 0, "result": "not yours"}, RESULTS), ({"id": 1, "result": "J"},
                            RESULTS), ("a reply for a client", 4242)], \
                f"the queue should still hold the two other messages, holds {left!r:.160}"

    return [
        Check("one job: one result on RESULTS, then it stops and returns 1", one_job,
              "receive a job, send {'id': ..., 'result': handler(data)} on type RESULTS; "
              "stop at a message of type STOP"),
        Check("urgent jobs first, in the order sent within a priority",
              lambda: by_priority(False), "receive(type=-n) takes the lowest type up to n"),
        Check("a STOP sent before the jobs is taken after them", lambda: by_priority(True),
              "STOP is a higher type than any job: with type=-STOP it comes last"),
        Check("messages of other types are left in the queue", others_left_alone,
              "type=0 takes anything, even the results another process is waiting for"),
    ]


def run_jobs_checks(run_jobs):
    """Return the checks of ``run_jobs(queue, jobs, handler, workers=3) -> dict``."""
    def expect(jobs, handler, workers, max_bytes=None, timeout=8.0, compare=True):
        with fresh_queue(WAIT, max_bytes) as q:
            got = guarded(timeout, run_jobs, q, jobs, handler, workers, label="run_jobs")
            left = q.count
        assert isinstance(got, dict), f"expected a dict {{id: result}}, got {got!r:.80}"
        want = {ident: handler(data) if compare else None for _, ident, data in jobs}
        missing = sorted(set(want) - set(got))
        assert not missing, f"{len(missing)} job(s) without a result, such as id {missing[0]}"
        wrong = [i for i in want if compare and got[i] != want[i]]
        assert not wrong, f"job {wrong[0]}: result {got[wrong[0]]!r}, expected {want[wrong[0]]!r}"
        assert len(got) == len(want), f"{len(got) - len(want)} result(s) for unknown job ids"
        assert not left, f"{left} message(s) left in the queue (one STOP per worker; collect " \
                         f"every result)"
        return got

    rng = random.Random(4)
    many = [(rng.randint(1, LOWEST), i, f"job {i}") for i in range(2000)]

    def shared():
        got = expect([(1, i, str(i)) for i in range(30)], _slow_pid, 3, compare=False)
        assert len(set(got.values())) >= 2, "one process did every job: start the workers " \
                                            "as children, and let them all receive"

    return [
        Check("10 jobs, 3 workers: every result, once",
              lambda: expect([(i % LOWEST + 1, i, f"job {i}") for i in range(10)],
                             str.upper, 3),
              "send the jobs, collect a result per job, then send one STOP per worker"),
        Check("the jobs are shared among the workers", shared,
              "fork the workers before you wait for results", timeout=20),
        Check("500 jobs, 4 workers: nothing lost, nothing done twice",
              lambda: expect(many[:500], str.upper, 4), timeout=20),
        Check("2000 jobs through a queue of 4096 bytes, without a deadlock",
              lambda: expect(many, lambda s: s[::-1], 4, max_bytes=4096, timeout=15),
              "jobs and results share the queue: keep only a few jobs in flight (collect a "
              "result before sending more), or everybody waits for room", timeout=25),
    ]


def _slow_pid(data: str) -> str:
    time.sleep(0.02)
    return str(os.getpid())


def _server(q, handler=str.upper):
    """A reference server, for the checks of ``ask``."""
    while True:
        request, kind = q.receive_json(-SHUTDOWN, timeout=20)
        if kind == SHUTDOWN:
            return
        q.send_json({"text": handler(request["text"])}, request["reply_to"])


def _client(q, texts, ask=None):
    """A reference client (or, with ``ask``, the student's); return the replies."""
    if ask is not None:
        return [ask(q, text) for text in texts]
    me, replies = os.getpid(), []
    for text in texts:
        q.send_json({"reply_to": me, "text": text}, REQUEST)
        replies.append(q.receive_json(me, timeout=WAIT)[0]["text"])
    return replies


def _crowd(q, ask, clients: int, each: int, timeout: float) -> list:
    """Run ``clients`` clients at once, each asking ``each`` questions; return their results."""
    with proc.Family(timeout, show=False, new_group=True) as crowd:
        for c in range(clients):
            texts = [f"client {c} question {n}" for n in range(each)]
            crowd.fork(tidy, _client, q, texts, ask, label=f"client {c + 1}")
    return crowd.results


def _answered(results, each: int) -> None:
    """Check that client c got the answers to its own questions, in order."""
    for c, result in enumerate(results):
        got = outcome(result)
        want = [f"CLIENT {c} QUESTION {n}" for n in range(each)]
        assert got == want, f"client {c + 1} got {got!r:.100}, expected {want!r:.100}"


def serve_checks(serve):
    """Return the checks of ``serve(queue, handler) -> int``."""
    def requests(shutdown_first: bool):
        me = os.getpid()
        texts = ["ping", "pong", "hello", "queue", "bye"]
        with fresh_queue(WAIT) as q:
            if shutdown_first:
                q.send_json(None, SHUTDOWN)
            for text in texts:
                q.send_json({"reply_to": me, "text": text}, REQUEST)
            if not shutdown_first:
                q.send_json(None, SHUTDOWN)
            served = guarded(8, serve, q, str.upper, label="serve")
            found = drain(q)
        mine = [m for m, kind in found if kind == me]
        want = [{"text": t.upper()} for t in texts]
        assert served == len(texts), f"serve returned {served!r}, expected {len(texts)}"
        assert mine == want, f"the client found {mine!r:.100} on its own type (its PID), " \
                             f"expected {want!r:.100}"
        assert len(found) == len(mine), f"{len(found) - len(mine)} other message(s) were " \
                                        f"left in the queue: {found!r:.100}"

    def crowd():
        with fresh_queue(WAIT) as q, proc.Family(15, show=False, new_group=True) as server:
            server.fork(tidy, serve, q, str.upper, label="serve")
            try:
                clients = _crowd(q, None, 6, 40, 10)
            finally:
                q.send_json(None, SHUTDOWN)
        served = outcome(server.results[0])  # a failed server explains the clients' failures
        _answered(clients, 40)
        assert served == 240, f"serve returned {served!r}, expected 240 (6 x 40 requests)"

    return [
        Check("requests answered on each client's type; returns the count",
              lambda: requests(False), "reply with send_json({'text': ...}, type=reply_to)"),
        Check("a SHUTDOWN sent first still lets every waiting request be answered",
              lambda: requests(True), "receive(type=-SHUTDOWN): requests (type 1) come first"),
        Check("6 clients at once, 40 requests each: every reply reaches its asker", crowd,
              timeout=25),
    ]


def ask_checks(ask):
    """Return the checks of ``ask(queue, text, timeout=5.0) -> str``."""
    def with_server(body):
        with fresh_queue(WAIT) as q, proc.Family(15, show=False, new_group=True) as server:
            server.fork(_server, q, label="server")
            try:
                body(q)
            finally:
                q.send_json(None, SHUTDOWN)

    def one(q):
        got = guarded(8, ask, q, "hello", label="ask")
        assert got == "HELLO", f"ask returned {got!r}, expected 'HELLO'"

    def own_type(q):
        q.send_json({"text": "NOT YOURS"}, mq.MAX_TYPE)  # no process has this PID
        one(q)
        assert q.receive_json(mq.MAX_TYPE, block=False) == ({"text": "NOT YOURS"}, mq.MAX_TYPE)

    def no_server():
        with fresh_queue(WAIT) as q:
            guarded(4, _times_out, ask, q, label="ask")

    return [
        Check("a question gets the server's answer", lambda: with_server(one),
              "send {'reply_to': os.getpid(), 'text': text} on REQUEST, then receive on your "
              "PID", timeout=20),
        Check("only a reply of the client's own type is taken", lambda: with_server(own_type),
              "receive(type=os.getpid()): type=0 takes whatever is oldest", timeout=20),
        Check("8 clients at once, 30 questions each: every answer is the asker's own",
              lambda: with_server(lambda q: _answered(_crowd(q, ask, 8, 30, 12), 30)),
              timeout=25),
        Check("no server: a timeout, not a hang", no_server,
              "pass timeout to receive (IPCTimeoutError is a TimeoutError)", timeout=10),
    ]


def _times_out(ask, q):
    start = time.monotonic()
    try:
        got = ask(q, "anyone there?", timeout=0.5)
    except TimeoutError:
        elapsed = time.monotonic() - start
        assert elapsed < 3, f"ask(timeout=0.5) gave up after {elapsed:.1f} s"
        return
    raise AssertionError(f"ask returned {got!r} although no server is running")


def check_worker(worker):
    """Print the scorecard of ``worker`` and return it."""
    return run_checks("worker", worker_checks(worker))


def check_run_jobs(run_jobs):
    """Print the scorecard of ``run_jobs`` and return it."""
    return run_checks("run_jobs", run_jobs_checks(run_jobs))


def check_serve(serve):
    """Print the scorecard of ``serve`` and return it."""
    return run_checks("serve", serve_checks(serve))


def check_ask(ask):
    """Print the scorecard of ``ask`` and return it."""
    return run_checks("ask", ask_checks(ask))
