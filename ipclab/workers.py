"""A pool of forked workers, each holding one end of its own socketpair.

Wraps ``fork(2)`` (through :mod:`ipclab.proc`), ``socketpair(2)`` (through
:mod:`ipclab.sockpair`, ``SOCK_SEQPACKET`` so each job and each result arrives
whole) and ``epoll(7)`` (through :mod:`selectors`).  The parent closes the
workers' ends and each worker closes the parent's ends it inherited, so a
worker's death is end of file for the parent and the pool's close is end of
file for every worker.  Jobs and results cross as JSON, never as pickles.

Not handled: jobs or results over 64 KiB as JSON, sharing a worker between pools.
"""

from __future__ import annotations

import collections
import contextlib
import json
import selectors
import socket
import time

from . import diagnose, proc
from ._check import check_callable, check_int, check_timeout
from ._child import _error_info
from .errors import ChildError, IPCTimeoutError, ObjectGoneError
from .sockpair import Socket, pair

__all__ = ["MAX_MESSAGE", "WorkerPool"]

MAX_MESSAGE = 65536  # a pool message; well inside a seqpacket send buffer (~208 KiB)


def _serve(fn, end, others) -> int:
    """A worker: answer each job on ``end`` until end of file; return how many it did."""
    for sock in others:  # the parent's ends: while a copy stays open here, no end of file
        sock.close()
    done = 0
    while message := end.recv(MAX_MESSAGE):  # one whole job (seqpacket); b"": pool closed
        try:
            data = json.dumps({"value": fn(json.loads(message))}).encode()
        except Exception as e:  # noqa: BLE001 - reported to the parent; the worker goes on
            data = json.dumps({"error": _error_info(e)}).encode()
        if len(data) > MAX_MESSAGE:
            data = json.dumps({"error": {"type": "ValueError", "message": f"the result is "
                               f"{len(data)} bytes as JSON, over {MAX_MESSAGE}"}}).encode()
        try:
            end.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # the pool closed while we worked
            break
        done += 1
    return done


class WorkerPool:
    """``workers`` forked children, each holding one end of its own seqpacket socketpair.

    :meth:`map` hands each worker one job at a time and returns ``fn(job)`` for
    every job, in order.  Jobs and results cross as JSON (never pickle), so a
    tuple comes back as a list.  ``timeout`` bounds the pool's whole life, as in
    :class:`ipclab.proc.Family`.  Leaving ``with`` (or :meth:`close`) closes the
    parent's ends: each worker reads end of file, returns, and is reaped; its
    output is printed labelled "[worker N]" when ``show``.

    Raises:
        TypeError, ValueError: ``fn`` not callable, ``workers`` not in 1..32, bad ``timeout``.
    """

    def __init__(self, fn, workers: int = 2, *, timeout: float = proc.DEFAULT_TIMEOUT,
                 show: bool = True):
        check_callable(fn)
        check_int(workers, "workers", low=1, high=32)
        self.timeout = check_timeout(timeout, allow_none=False)
        self._deadline = time.monotonic() + self.timeout
        self._family = proc.Family(self.timeout, show=show)
        self._ends: dict[str, Socket] | None = {}  # "worker N" -> the parent's end
        self.pids: dict[str, int] = {}
        try:
            for label in (f"worker {i}" for i in range(1, workers + 1)):
                mine, theirs = pair("seqpacket", timeout=self.timeout)
                others = [*self._ends.values(), mine]
                self.pids[label] = self._family.fork(_serve, fn, theirs, others, label=label)
                theirs.close()  # only the worker holds its end: its death is our end of file
                self._ends[label] = mine
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def results(self) -> list:
        """The workers' :class:`~ipclab.proc.ChildResult` (value: jobs done), once closed."""
        return list(self._family.results)

    def map(self, jobs) -> list:
        """Run ``fn(job)`` for every job on the workers; return the results in job order.

        Raises:
            ChildError: a job raised (the first is named; the pool stays open), or a worker
                died (how it ended is said; the pool is closed).
            IPCTimeoutError: the pool's time ran out; says where each busy worker waits.
            ObjectGoneError: the pool is closed.
            TypeError, ValueError: ``jobs`` not an iterable, a job not JSON or too big.
        """
        if self._ends is None:
            raise ObjectGoneError("this WorkerPool is closed")
        if isinstance(jobs, (str, bytes)) or not hasattr(jobs, "__iter__"):
            raise TypeError(f"jobs must be an iterable of JSON values, got {jobs!r:.60}")
        jobs = list(jobs)
        payloads = [self._encode(i, job) for i, job in enumerate(jobs)]
        results, errors = [None] * len(jobs), {}
        todo, idle, busy = collections.deque(range(len(jobs))), list(self._ends), {}
        with selectors.DefaultSelector() as sel:
            for label, end in self._ends.items():
                sel.register(end, selectors.EVENT_READ, label)
            while todo or busy:
                while todo and idle:
                    label, i = idle.pop(0), todo.popleft()
                    busy[label] = i
                    try:
                        self._ends[label].settimeout(max(self._deadline - time.monotonic(), 1e-3))
                        self._ends[label].sendall(payloads[i])
                    except (BrokenPipeError, ConnectionResetError):
                        self._died(label, f"before it got jobs[{i}] = {jobs[i]!r:.60}")
                ready = sel.select(max(self._deadline - time.monotonic(), 0))
                if not ready and time.monotonic() >= self._deadline:
                    self._timed_out(busy, len(todo) + len(busy), len(jobs))
                for key, _ in ready:
                    label, i, reply = key.data, busy.pop(key.data, None), b""
                    with contextlib.suppress(ConnectionResetError):
                        reply = socket.socket.recv(key.fileobj, MAX_MESSAGE)  # ready: no wait
                    if not reply:  # end of file: the worker's only copy of its end is gone
                        self._died(label, "while idle" if i is None else
                                   f"during jobs[{i}] = {jobs[i]!r:.60}")
                    idle.append(label)
                    answer = json.loads(reply)
                    if "error" in answer:
                        errors[i] = (label, answer["error"])
                    else:
                        results[i] = answer["value"]
        if errors:
            i = min(errors)
            label, err = errors[i]
            where = f" (in {err['where']})" if err.get("where") else ""
            more = f"; {len(errors) - 1} other job(s) failed too" if len(errors) > 1 else ""
            raise ChildError(f"{label} raised {err['type']}: {err['message']}{where}, on "
                             f"jobs[{i}] = {jobs[i]!r:.60}{more}")
        return results

    @staticmethod
    def _encode(i: int, job) -> bytes:
        try:
            data = json.dumps(job).encode()
        except (TypeError, ValueError) as e:
            raise TypeError(f"jobs[{i}] = {job!r:.60} cannot be sent as JSON: {e}") from None
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"jobs[{i}] is {len(data)} bytes as JSON, over {MAX_MESSAGE}")
        return data

    def _died(self, label: str, when: str):
        self.close()  # reaps every worker: now we know how this one ended
        result = next(r for r in self._family.results if r.label == label)
        raise ChildError(f"{label} died {when} ({result.outcome()}); the pool is closed",
                         self._family.results)

    def _timed_out(self, busy: dict, left: int, total: int):
        labels = {self.pids[label]: label for label in busy}
        diagnosis = diagnose.report(list(labels), labels=labels)
        self.close()
        raise IPCTimeoutError(f"WorkerPool.map: {left} of {total} jobs not done when the "
                              f"pool's {self.timeout:g} s ran out; the pool is closed", diagnosis)

    def close(self) -> None:
        """Close the parent's ends and wait for every worker (at most until the timeout)."""
        if self._ends is None:
            return
        ends, self._ends = self._ends, None
        for end in ends.values():
            end.close()  # each worker's recv returns b"" (end of file) and it returns
        self._family.wait()

    def __repr__(self) -> str:
        state = "closed" if self._ends is None else f"{len(self.pids)} workers"
        return f"<WorkerPool {state}>"
