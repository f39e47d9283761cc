"""Lab 05's harness: the student's server in a child, on a listener it did not make.

Wraps socket(2), bind(2), listen(2), socketpair(2), fork(2) (through
:class:`ipclab.proc.Family`), pidfd_open(2) and kill(2), and reads /proc/PID/fd.

:class:`ServerRun` makes a listening socket on 127.0.0.1 (port 0, so never a
fixed port) and a stop socketpair, and runs ``serve_board(listener, stop)`` in a
forked child that stays in the caller's process group, so a check the
scorecard kills takes its server along.  Its clients
(:class:`ipclab.labs.lab05_clients.Client`) share one deadline.
:meth:`ServerRun.stop` sends the stop byte, gives the server ``GRACE`` seconds
to return, kills it if it does not, reaps it and closes every client; the
child reports what ``serve_board`` returned and which sockets it left open.
:func:`judge` is that for a check, :func:`serving` for the lab's demo (it
prints what happened and never raises for a server that is missing or broken).

Not handled: grandchildren forked by a student's server outlive a server killed
for not stopping, until the check's process group goes.  In the checks the
server's output goes to /dev/null; in the demo it is shown once the server has
stopped, so more than a pipe holds (64 KiB) would block it until then.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time

from .. import diagnose, leaks, proc
from .._check import check_callable, check_timeout
from .lab05_clients import HOST, Client

GRACE = 2.0  # seconds serve_board has to return once the stop byte is sent
LIMIT = 10.0  # seconds all the clients of one run may take together


class _Listener(socket.socket):
    """A listening socket that keeps every connection it accepts: so a connection the
    server forgets is still open when the check looks, not closed by the garbage collector."""

    def accept(self):
        conn, address = super().accept()
        self.accepted.append(conn)
        return conn, address


def _listen() -> _Listener:
    """A TCP listener on 127.0.0.1, port 0 (socket(2), bind(2), listen(2))."""
    sock = _Listener(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.accepted = []
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve(serve_board, listener, stop, caller_end, quiet: bool):
    """The server's child: run ``serve_board`` and report what it left open."""
    caller_end.close()
    if quiet:  # output nobody reads would fill the pipe and block the server
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
    mine = leaks.open_sockets()
    listener_at = mine[listener.fileno()]
    board = serve_board(listener, stop)
    now = leaks.open_sockets().values()
    return {"board": board, "listener_open": listener_at in now,
            "left_open": sum(t not in mine.values() for t in now)}


def _sockets(pid: int) -> set[str]:
    """The "socket:[inode]" links in /proc/PID/fd (empty once the process has exited)."""
    found = set()
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{name}")
                if target.startswith("socket:"):
                    found.add(target)
    return found


class ServerRun:
    """``serve_board(listener, stop)`` running in a child; see the module docstring.

    Raises:
        TypeError: ``serve_board`` is not callable; TypeError, ValueError: a bad ``limit``.
        OSError: the listening socket or the socketpair cannot be made.
    """

    def __init__(self, serve_board, *, limit: float = LIMIT, quiet: bool = True):
        check_callable(serve_board, "serve_board")
        limit = check_timeout(limit, "limit", allow_none=False)
        self.deadline = time.monotonic() + limit
        self.clients: list[Client] = []
        self.result, self.returned = None, None
        listener = _listen()
        try:
            self.port = listener.getsockname()[1]
            self._stop, theirs = socket.socketpair()
            try:
                self._inherited = _sockets(os.getpid())
                self._family = proc.Family(limit + GRACE + 5, show=False)
                self.pid = self._family.fork(_serve, serve_board, listener, theirs, self._stop,
                                             quiet, label="serve_board")
            except BaseException:
                self._stop.close()
                raise
            finally:
                theirs.close()
        finally:
            listener.close()  # the child's copy is the only one left: its close is final
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # before Linux 5.3: poll /proc instead
            self._pidfd = None

    def client(self, name: str, *, show: bool = False) -> Client:
        c = Client(self.port, name, deadline=self.deadline, show=show)
        self.clients.append(c)
        return c

    def held(self) -> int:
        """How many sockets the server holds that it did not inherit: its connections."""
        return len(_sockets(self.pid) - self._inherited)

    def settle(self, want: int, what: str) -> None:
        """Wait up to GRACE s for the server to hold ``want`` connections; fail naming ``what``."""
        deadline = time.monotonic() + GRACE
        while (extra := self.held() - want) > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"after {GRACE:g} s the server still holds {extra} {what}")
            time.sleep(0.01)

    def _ended(self, wait: float) -> bool:
        """Wait up to ``wait`` s for the server's process to end (not reaped yet)."""
        if self._pidfd is not None:  # readable once it has ended: no polling
            return bool(select.select([self._pidfd], [], [], wait)[0])
        deadline = time.monotonic() + wait
        while (stat := diagnose.proc_stat(self.pid)) and stat[0] not in "ZX":
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Send the stop byte, give the server GRACE s, kill it if needed, reap, close all."""
        if self.result is not None:
            return
        try:
            with contextlib.suppress(OSError):  # a server that has ended closed its end
                self._stop.send(b"!")
            self.returned = self._ended(GRACE)
            if not self.returned:  # not reaped yet, so the pid is still this child's
                os.kill(self.pid, signal.SIGKILL)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
            self._family.wait()
            self.result = self._family.results[0]
            self._stop.close()
            for c in self.clients:
                c.close()

    def report(self):
        """What the child reported (None if it was killed for not stopping).

        Raises:
            NotImplementedError: serve_board raised it.
            AssertionError: serve_board raised, exited or was killed otherwise.
        """
        r = self.result
        if r.error and r.error["type"] == "NotImplementedError":
            raise NotImplementedError()
        if not self.returned:
            return None
        if not r.ok:
            raise AssertionError(f"the server {r.outcome()}")
        return r.value


def judge(serve_board, body):
    """Run ``body(run)`` against a :class:`ServerRun`; return the run, stopped.

    A failure of the server is reported before a failure of the clients (it explains them).
    """
    run = ServerRun(serve_board)
    try:
        body(run)
    except BaseException:
        run.stop()
        run.report()
        raise
    run.stop()
    run.report()
    return run


@contextlib.contextmanager
def serving(serve_board, *, limit: float = LIMIT):
    """Run ``serve_board`` in a child for the ``with`` block (at most ``limit`` s); then stop
    it and print what it printed and returned.  A client's or the server's failure is
    printed, not raised.  Yields the :class:`ServerRun` (``run.client(name, show=True)``).

    Raises:
        as :class:`ServerRun`, before anything starts.
    """
    run = ServerRun(serve_board, limit=limit, quiet=False)
    trouble = None
    try:
        yield run
    except (AssertionError, OSError) as exc:
        trouble = str(exc)
    finally:
        run.stop()
    for line in run.result.stdout.splitlines():
        print(f"[serve_board] {line}")
    try:
        report = run.report()
    except NotImplementedError:
        print("serve_board is not written yet (it raised NotImplementedError)")
        return
    except AssertionError as exc:
        print(f"serve_board failed: {exc}")
        return
    if trouble:
        print(f"the demo stopped early: {trouble}")
    if report is None:
        print(f"serve_board did not return within {GRACE:g} s of the stop byte and was killed")
    else:
        print(f"serve_board stopped and returned the board {report['board']!r:.300}")
