"""Fork children safely, from a plain script or from a Jupyter notebook.

Wraps ``fork(2)``, ``pipe(2)``, ``dup2(2)``, ``waitpid(2)``, ``kill(2)`` and
``_exit(2)``.  Forking a Jupyter kernel by hand goes wrong in four ways: the
child's prints reach the cell in fragments and in random order; anything the
parent had not flushed is printed twice; a child that returns (or calls
``sys.exit``) runs the kernel's own loop as a second kernel; and a child that
nobody waits for stays a zombie.  Here every child:

- writes its stdout and stderr (Python's and the file descriptors 1 and 2, so
  an ``exec``'d program's too) into pipes the parent reads, and the parent
  prints them after the children end, labelled and in child order;
- sends back its return value or exception through a third pipe;
- ends with ``os._exit`` whatever happens, and is always reaped; one that
  outlives its timeout is killed, and the report says where it was blocked
  (see :mod:`ipclab.diagnose`).

Python >= 3.12 warns (DeprecationWarning) when a multi-threaded process forks,
and a Jupyter kernel always has threads.  :func:`quiet_fork_warning` silences
exactly that warning, around our own forks only, for a documented reason: the
child runs nothing but the given function and ends with ``os._exit``; it never
touches the kernel's threads, sockets or output streams (it gets new ones), so
no lock those threads held can be needed in the child.  Code that takes a lock
shared with other threads (``logging``, say) in the child can still deadlock:
that is the warning's point, and a timeout here turns it into a report.

Not handled: children that detach themselves (``setsid`` + double fork) are
not killed by a timeout unless they stay in the child's process group.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import signal
import sys
import time
import warnings

from . import diagnose
from ._check import check_callable, check_int, check_timeout
from ._child import ChildResult, child_main, decode_payload, describe_status

__all__ = ["ChildResult", "Family", "describe_status", "fork_context", "quiet_fork_warning",
           "run", "run_many"]

DEFAULT_TIMEOUT = 10.0
_MAX_KEEP = 16 << 20  # bytes kept per stream when draining after a kill
_FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"
_labels: dict[int, str] = {}  # pid -> label of this process's living children


@contextlib.contextmanager
def quiet_fork_warning():
    """Silence Python 3.12+'s multi-threaded fork() DeprecationWarning, and only that one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
        yield


def fork_context():
    """Return ``multiprocessing.get_context("fork")``: the one start method that can run
    functions defined in a notebook (Python 3.14 defaults to forkserver, which cannot).
    Start its processes inside :func:`quiet_fork_warning`."""
    return multiprocessing.get_context("fork")


class Family:
    """A group of forked children that are waited for together.

    Use as a context manager: fork children with :meth:`fork`, do the parent's
    part, and on leaving the block every child is waited for (at most
    ``timeout`` seconds from the start of the block), killed if still running,
    reaped, and reported in child order.  ``results`` then holds one
    :class:`ChildResult` per child.

    Raises:
        TypeError, ValueError: a bad timeout.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, *, show: bool = True,
                 new_group: bool = False):
        self.timeout = check_timeout(timeout, allow_none=False)
        self.show = show
        self.new_group = new_group
        self.results: list[ChildResult] = []
        self._kids: list[dict] = []
        self._deadline = time.monotonic() + self.timeout

    def __enter__(self):
        self._deadline = time.monotonic() + self.timeout
        return self

    def __exit__(self, *exc):
        self.wait()
        return False

    def fork(self, fn, *args, label: str | None = None, **kwargs) -> int:
        """Run ``fn(*args, **kwargs)`` in a new child; return its pid.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        check_callable(fn)
        label = label or f"child {len(self._kids) + 1}"
        for stream in (sys.stdout, sys.stderr):  # nothing unflushed is duplicated
            with contextlib.suppress(Exception):
                stream.flush()
        pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, result (all close-on-exec)
        with quiet_fork_warning():
            pid = os.fork()
        if pid == 0:  # the child: never returns
            ours = [k["fds"] for k in self._kids if k["fds"]]
            for fd in [r for r, _ in pipes] + [fd for fds in ours for fd in fds]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _labels.clear()
            diagnose.name_self(label)
            child_main(fn, args, kwargs, [w for _, w in pipes], self.new_group)
        for _, w in pipes:
            os.close(w)
        _labels[pid] = label
        diagnose.remember(pid, label)
        self._kids.append({"pid": pid, "label": label, "fds": [r for r, _ in pipes],
                           "data": [bytearray(), bytearray(), bytearray()], "status": None})
        return pid

    def wait(self) -> list[ChildResult]:
        """Wait for every child (see the class); return and, if ``show``, print the results."""
        try:
            timed_out = self._collect()
        finally:
            self._kill_and_reap()  # also after KeyboardInterrupt: no child survives the cell
        new = [self._result(k, k["pid"] in timed_out, timed_out.get(k["pid"], ""))
               for k in self._kids if not k.get("done")]
        for k in self._kids:
            k["done"] = True
        self.results.extend(new)
        if self.show:
            for r in new:
                r.show()
        return new

    def _collect(self) -> dict[int, str]:
        sel = selectors.DefaultSelector()
        for k in self._kids:
            for i, fd in enumerate(k["fds"]):
                sel.register(fd, selectors.EVENT_READ, (k, i))
        grace = None
        try:
            while True:
                self._reap(block=False)
                running = [k for k in self._kids if k["status"] is None]
                if not running and not sel.get_map():
                    return {}
                now = time.monotonic()
                if not running:  # a grandchild may hold a pipe open: do not wait for it long
                    grace = grace or now + 0.5
                if now >= self._deadline or (grace and now >= grace):
                    pids = [k["pid"] for k in running]
                    lines = diagnose.report(pids, labels=dict(_labels)) if pids else []
                    return dict(zip(pids, lines, strict=True))
                wait = min(self._deadline, grace or self._deadline) - now
                # With no pipe left open, select() only paces the reaping poll above.
                for key, _ in sel.select(min(wait, 0.05 if sel.get_map() else 0.005)):
                    k, i = key.data
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        if len(k["data"][i]) < _MAX_KEEP:  # endless output stays bounded
                            k["data"][i] += chunk
                    else:
                        sel.unregister(key.fd)
        finally:
            sel.close()

    def _reap(self, block: bool) -> None:
        for k in self._kids:
            if k["status"] is None:
                pid, status = os.waitpid(k["pid"], 0 if block else os.WNOHANG)
                if pid:
                    k["status"] = status
                    _labels.pop(k["pid"], None)

    def _kill_and_reap(self) -> None:
        for k in self._kids:
            if k["status"] is None:
                with contextlib.suppress(ProcessLookupError):
                    if self.new_group:
                        os.killpg(k["pid"], signal.SIGKILL)
                    else:
                        os.kill(k["pid"], signal.SIGKILL)
        self._reap(block=True)
        for k in self._kids:  # keep what is left in the pipes, then close them
            for i, fd in enumerate(k["fds"]):
                with contextlib.suppress(OSError):  # BlockingIOError: nothing more now
                    os.set_blocking(fd, False)
                    while len(k["data"][i]) < _MAX_KEEP and (chunk := os.read(fd, 65536)):
                        k["data"][i] += chunk
                os.close(fd)
            k["fds"] = []

    def _result(self, k, timed_out: bool, where: str) -> ChildResult:
        out, err, payload = (bytes(d) for d in k["data"])
        kind, value, error = decode_payload(payload)
        return ChildResult(
            label=k["label"], pid=k["pid"], status=k["status"],
            stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"),
            value=value, error=error, exited_via=kind,
            timed_out=timed_out, timeout=self.timeout, diagnosis=where,
        )


def run(fn, *args, timeout: float = DEFAULT_TIMEOUT, show: bool = True, **kwargs) -> ChildResult:
    """Run ``fn(*args, **kwargs)`` in one forked child and wait for it.

    Its output is printed in the cell, labelled "child 1"; a failure (an
    exception, an exit code, a signal, a timeout) is printed on stderr.

    Raises:
        TypeError, ValueError: ``fn`` not callable, or a bad timeout.
    """
    with Family(timeout, show=show) as family:
        family.fork(fn, *args, **kwargs)
    return family.results[0]


def run_many(fn, n: int, *args, timeout: float = DEFAULT_TIMEOUT, show: bool = True,
             **kwargs) -> list[ChildResult]:
    """Run ``fn(i, *args, **kwargs)`` in ``n`` children at once, i = 1..n ("child i").

    Raises:
        TypeError, ValueError: ``fn`` not callable, ``n`` not in 1..256, or a bad timeout.
    """
    check_callable(fn)
    check_int(n, "n", low=1, high=256)
    with Family(timeout, show=show) as family:
        for i in range(1, n + 1):
            family.fork(fn, i, *args, **kwargs)
    return family.results
