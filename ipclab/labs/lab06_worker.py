"""Lab 06 checks of ``start_worker``: replies, errors, end of file, which ends are closed."""

from __future__ import annotations

import functools
import os
import socket
import time

from .. import diagnose, leaks, proc
from .lab06_base import RETURNED, WAIT, _check, _frame, _unframe

# -- start_worker ---------------------------------------------------------------------------

def _how(status: int) -> str:
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == RETURNED:
        return "came back out of start_worker into the caller's code (end it with os._exit)"
    return proc.describe_status(status)


class _Workers:
    """The workers a check starts with the student's ``start_worker``, ended at exit."""

    def __init__(self, start_worker):
        self.start_worker, self.started, self.reaped = start_worker, [], {}
        self.me = os.getpid()
        self.labels = {self.me: "the caller"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for _, sock in self.started:
            sock.close()
        deadline = time.monotonic() + 0.5  # the supervisor kills what is still running
        for pid, _ in self.started:
            self.ended(pid, max(0.0, deadline - time.monotonic()))

    def start(self, fn, siblings=()):
        got = self.start_worker(fn, siblings)
        if os.getpid() != self.me:  # a child came back out of start_worker
            os._exit(RETURNED)
        assert isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], int) and \
            isinstance(got[1], socket.socket), f"start_worker returned {got!r:.80}, " \
                                               f"expected (pid, socket)"
        assert got[0] in dict(leaks.children()), "the pid returned is not a child of the caller"
        got[1].settimeout(WAIT)
        self.started.append(got)
        self.labels[got[0]] = f"worker {len(self.started)}"
        return got

    def ended(self, pid: int, within: float = WAIT) -> int | None:
        """The wait status of ``pid`` once it ended (waiting up to ``within`` s), or None."""
        deadline = time.monotonic() + within
        while pid not in self.reaped:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.reaped[pid] = status
            elif time.monotonic() >= deadline:
                return None
            else:
                time.sleep(0.002)
        return self.reaped[pid]

    def ask(self, pid: int, sock, request):
        try:
            sock.sendall(_frame(request))
            return _unframe(sock)
        except TimeoutError:
            raise AssertionError(f"no reply within {WAIT:g} s: "
                                 f"{diagnose.where(pid, self.labels)}") from None
        except (EOFError, ConnectionError):
            status = self.ended(pid)
            fate = "is still running" if status is None else _how(status)
            raise AssertionError(f"the worker closed its socket instead of replying; "
                                 f"it {fate}") from None

    def still_open(self, sock) -> list[str]:
        """Who, besides the caller, holds ``sock`` open: ["worker 2 (fd 5)"]."""
        found = diagnose.holders(self.me, sock.fileno(), writers=True, labels=self.labels)
        return [h for h in found if not h.startswith("the caller ")]

    def must_end(self, pid: int, copies: list[str]):
        who, status = self.labels[pid], self.ended(pid)
        assert status is not None, \
            f"{who} still runs {WAIT:g} s after the caller closed its socket: it never saw " \
            f"end of file" + (f", because its parent end is still open in: {', '.join(copies)}"
                              if copies else f" ({diagnose.where(pid, self.labels)})")
        assert os.waitstatus_to_exitcode(status) == 0, \
            f"at end of file {who} {_how(status)}; it should end with os._exit(0)"


def _pid(_):
    return os.getpid()


def _twelve_over(x):
    return 12 // x


def _set_for(x):
    return {x} if x == "set" else x


def worker_checks(start_worker):
    """Return the checks of ``start_worker(fn, siblings=()) -> (pid, socket)``."""
    def answers():
        with _Workers(start_worker) as w:
            pid, sock = w.start(str.upper)
            for text in ["hello", "héllo ✓", ""]:
                want = {"ok": True, "result": text.upper()}
                reply = w.ask(pid, sock, text)
                assert reply == want, f"request {text!r}: reply {reply!r:.80}, expected {want!r}"

    def in_child():
        with _Workers(start_worker) as w:
            pid, sock = w.start(_pid)
            got = w.ask(pid, sock, None)
            assert isinstance(got, dict) and got.get("result") != os.getpid(), \
                "fn ran in the caller: call it in the child"
            assert got == {"ok": True, "result": pid}, f"the reply {got!r:.60} does not come " \
                                                       f"from the worker whose pid was returned"

    def errors(fn, bad, kind):
        with _Workers(start_worker) as w:
            pid, sock = w.start(fn)
            reply = w.ask(pid, sock, bad)
            assert isinstance(reply, dict) and reply.get("ok") is False and \
                str(reply.get("error", "")).startswith(f"{kind}: "), \
                f"request {bad!r}: reply {reply!r:.80}, expected " \
                f"{{'ok': False, 'error': '{kind}: ...'}}"
            assert w.ask(pid, sock, 6) == {"ok": True, "result": fn(6)}, \
                "after an error reply the worker must go on answering"

    def eof_ends():
        with _Workers(start_worker) as w:
            pid, sock = w.start(str.upper)
            w.ask(pid, sock, "one")
            copies = w.still_open(sock)
            sock.close()
            w.must_end(pid, copies)

    def own_end():
        with _Workers(start_worker) as w:
            before = leaks.open_sockets()
            _, sock = w.start(str.upper)
            extra = set(leaks.new_sockets(before)) - {sock.fileno()}
            assert not extra, f"{len(extra)} socket(s) open in the caller besides the one " \
                              f"returned: close child_end in the parent after fork"

    def siblings():
        with _Workers(start_worker) as w:
            pid1, sock1 = w.start(str.upper)
            pid2, sock2 = w.start(str.upper, [sock1])
            assert sock1.fileno() != -1, "start_worker closed a sibling's socket in the " \
                                         "caller: close the copies in the child only"
            assert w.ask(pid1, sock1, "a") == {"ok": True, "result": "A"}, "worker 1 broke"
            copies = w.still_open(sock1)
            sock1.close()
            w.must_end(pid1, copies)
            assert w.ask(pid2, sock2, "b") == {"ok": True, "result": "B"}, "worker 2 broke"

    def c(name, body, hint=""):
        return _check(name, body, hint, label="start_worker")
    return [
        c("the worker answers {'ok': true, 'result': fn(request)}", answers,
          "in the child: recv_msg, fn, send_msg, in a loop"),
        c("fn runs in the child whose pid is returned", in_child,
          "fork, then call fn only where fork returned 0; return (pid, parent_end)"),
        c("fn raising gives {'ok': false, 'error': 'ZeroDivisionError: ...'}",
          functools.partial(errors, _twelve_over, 0, "ZeroDivisionError"),
          "catch Exception around fn; error = f'{type(e).__name__}: {e}'"),
        c("a result JSON cannot carry (a set) gives an error reply too",
          functools.partial(errors, _set_for, "set", "TypeError"),
          "json.dumps raises TypeError on a set: build and send the reply inside the try"),
        c("closing the parent's end ends the worker, with exit status 0", eof_ends,
          "the child must close parent_end: a copy left open means no end of file, ever"),
        c("the caller keeps one socket per worker: its own end", own_end,
          "close child_end in the parent, or a dead worker never shows as end of file"),
        c("a new worker closes its siblings' sockets", siblings,
          "a child inherits every descriptor open at fork: close each socket in siblings "
          "in the child, or worker 1 sees no end of file while worker 2 lives"),
    ]
