"""How a :class:`ipclab.mq.Queue` waits: msgsnd(2)/msgrcv(2) with ``IPC_NOWAIT``, polled.

Why poll?  sysv_ipc's send and receive either fail at once (``IPC_NOWAIT``,
raising ``BusyError``) or block in msgsnd(2)/msgrcv(2) with no timeout, and a
student's queue that never fills or empties must not freeze a notebook kernel.
So a wait here retries with ``IPC_NOWAIT``: first, for up to 1 ms, calling
sched_yield(2) between tries, so that a peer on the same CPU runs at once and
a reply that comes quickly (a ping-pong) is taken within microseconds, as a
blocking msgrcv(2) would; then sleeping 50 µs, doubling up to 10 ms, until the
deadline.  A waiting receiver therefore notices within 10 ms that the queue was
removed; the price is up to 10 ms of latency for a message that comes late,
1 ms of CPU spent per long wait, and no kernel FIFO order among waiting
processes.  In /proc a waiting process is seen sleeping (clock_nanosleep) or
running, not in msgrcv.  (:meth:`ipclab.mq.Queue.receive` also yields once before its
first try after a receive that found nothing, which spares a ping-pong the failed try.)

When the wait fails, the error explains it: how full the queue is (msg_qnum,
msg_cbytes, msg_qbytes) and which process last sent or received
(msg_lspid/msg_lrpid from msgctl(2) ``IPC_STAT``) and whether it still runs.
Argument checks are the caller's (:mod:`ipclab.mq`); nothing here is public.
"""

from __future__ import annotations

import errno
import os
import time

import sysv_ipc

from . import diagnose
from .errors import IPCLabError, IPCTimeoutError, LimitError, ObjectGoneError

_SPIN, _FIRST_NAP, _LONGEST_NAP = 1e-3, 50e-6, 0.01


def poll(queue, attempt, wait: float | None, op: str, arg):
    """Call ``attempt`` (an ``IPC_NOWAIT`` send or receive on ``queue``) again until it
    succeeds; the caller's own first try has just failed with ``BusyError``.

    ``wait`` is 0 (try once), None (for ever) or seconds; ``op`` is "send"
    (``arg``: the message's size) or "receive" (``arg``: the type asked for).
    The caller handles its first try's other errors with :func:`explain`.

    Raises:
        BlockingIOError: wait == 0 and the queue is full / has no such message.
        IPCTimeoutError: still so after ``wait`` seconds (says why, and who is to blame).
        ObjectGoneError: the queue was removed (before or while waiting).
        PermissionError: the queue's mode does not allow ``op``.
        LimitError: a waiting message is longer than the receive buffer (MSGMAX).
    """
    start = time.monotonic()
    deadline = None if wait is None else start + wait
    spin_end = start + _SPIN if deadline is None else min(start + _SPIN, deadline)
    nap, sched_yield, monotonic = _FIRST_NAP, os.sched_yield, time.monotonic
    while True:  # here the last try failed with BusyError
        if op == "send" and arg > queue.max_bytes:  # only now: IPC_STAT costs a syscall
            raise LimitError(f"{queue!r} holds at most {queue.max_bytes} bytes (max_bytes), "
                             f"so a {arg}-byte message could never fit") from None
        if wait == 0:
            what = f"the queue is full: {_fullness(queue, arg)}" if op == "send" else \
                f"no message{_which(arg)} is waiting"
            raise BlockingIOError(errno.EAGAIN if op == "send" else errno.ENOMSG,
                                  f"{queue!r}: {what} (block=False)")
        now = monotonic()
        if now < spin_end:
            sched_yield()
        elif deadline is not None and now >= deadline:
            raise _timeout(queue, op, arg, wait)
        else:
            time.sleep(nap if deadline is None else min(nap, deadline - now))
            nap = min(2 * nap, _LONGEST_NAP)
        try:
            return attempt()
        except sysv_ipc.BusyError:
            pass
        except (sysv_ipc.Error, OSError) as e:
            explain(queue, e, op)
            raise


def explain(queue, e: Exception, op: str) -> None:
    """Raise a clearer error for what a try raised other than ``BusyError``, if there is one."""
    if isinstance(e, sysv_ipc.ExistentialError):
        raise ObjectGoneError(queue._gone()) from None
    if isinstance(e, sysv_ipc.PermissionsError):
        raise PermissionError(errno.EACCES, f"{queue!r}: this user may not {op} (check "
                              f"the queue's mode)") from None
    if isinstance(e, OSError):  # sysv_ipc passes msgsnd's EINVAL (no such queue) on
        if e.errno == errno.EINVAL:
            raise ObjectGoneError(queue._gone()) from None
        if e.errno == errno.E2BIG:
            raise LimitError(f"{queue!r}: a waiting message is longer than {queue._msgmax} "
                             f"bytes (was MSGMAX raised since the queue was opened?)") from None


# -- explaining a wait -------------------------------------------------------------------


def _fullness(queue, size: int) -> str:
    count, used, cap = queue.count, queue.bytes, queue.max_bytes
    if used + size > cap:
        return (f"it holds {used} of its {cap} bytes ({messages_phrase(count)}), and "
                f"{size} more do not fit")
    return (f"it holds {messages_phrase(count)}, as many as its {cap} bytes allow (the kernel "
            f"counts each message as a byte of max_bytes)")


def _timeout(queue, op: str, arg, wait) -> IPCTimeoutError:
    try:
        if op == "send":
            lines = [f"the queue is full: {_fullness(queue, arg)}"]
            lines.append(_last("receive from", "received from", queue._q.last_receive_pid))
        else:
            held = queue.count
            lines = ["the queue is empty" if not held else
                     f"it holds {messages_phrase(held)}, none{_which(arg)}"]
            lines.append(_last("send to", "sent to", queue._q.last_send_pid))
    except (sysv_ipc.Error, IPCLabError):
        lines = []
    what = f"could not send {arg} bytes" if op == "send" else f"no message{_which(arg)} came"
    return IPCTimeoutError(f"{queue!r}: {what} within {wait:g} s", lines)


def messages_phrase(n: int) -> str:
    """``"1 message"``, ``"3 messages"``."""
    return f"{n} message" + ("" if n == 1 else "s")


def _which(type: int) -> str:
    return "" if type == 0 else f" of type {type}" if type > 0 else f" of type 1..{-type}"


def _last(verb: str, done: str, pid: int) -> str:
    """Say which process last did ``verb`` (from msg_lspid/msg_lrpid) and whether it lives."""
    if not pid:
        return f"no process has {done} it yet"
    who = diagnose.label(pid)
    state = " (this process)" if pid == os.getpid() else \
        " (still running)" if diagnose.proc_stat(pid) else " (it has exited)"
    return f"the last process to {verb} it was {who}{state}"
