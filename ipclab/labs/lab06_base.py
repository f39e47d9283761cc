"""Lab 06's shared pieces: the frame format as the checks speak it, and supervision.

Supervision (see :mod:`ipclab.labs.lab06`): a check's body runs in a grandchild of its own
process group, under a subreaper (prctl(2) ``PR_SET_CHILD_SUBREAPER``), and whatever it leaves is
killed (killpg(2)) and reaped (waitpid(2)).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import struct
import time

from .. import proc
from .scorecard import Check, _verdict

MAX_MESSAGE = 16 * 1024 * 1024  # the longest JSON body a frame may carry, in bytes
IDLE = 60.0  # a worker that gets no request for this long gives up
HEADER = struct.Struct("!I")  # the length: 4 bytes, unsigned, big-endian ("network order")
WAIT = 3.0  # how long a check waits for a reply, or for a worker to end
RETURNED = 86  # exit code given to a worker that came back out of start_worker
SAMPLES = ["héllo ✓", {"id": 7, "words": ["a", "b"]}, [1, 2.5, None, True], 0, ""]


class WorkerError(Exception):
    """In ``pool_map``'s results, in place of a job that failed: its ``fn`` raised (the
    message is the worker's ``"ValueError: ..."``), or its worker died during it."""



# -- the protocol, as the checks speak it --------------------------------------------------

def _frame(obj) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return HEADER.pack(len(body)) + body


def _exactly(sock, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"end of file after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def _unframe(sock):
    return json.loads(_exactly(sock, HEADER.unpack(_exactly(sock, 4))[0]).decode("utf-8"))


# -- supervision: run a body in its own group, then kill and reap all it left ---------------

def _supervise(body, args, guard: float, label: str):
    """Run ``body(*args)`` in a child of its own group; return its value or fail with why.

    Call it only in a process of its own (a check's, a :func:`proc.run` child's): it
    makes that process the subreaper of everything ``body`` forks.
    """
    with contextlib.suppress(OSError, AttributeError):  # Linux: orphans come to us, not init
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    with proc.Family(guard, show=False, new_group=True) as family:
        group = family.fork(body, *args, label=label)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # until no process of the group is left, zombies too
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.002)
    result = family.results[0]
    if result.ok:
        return result.value
    if result.error and result.error["type"] == "NotImplementedError":
        raise NotImplementedError()
    raise AssertionError(_verdict(result))


def _check(name, body, hint="", guard=6.0, label="check") -> Check:
    return Check(name, functools.partial(_supervise, body, (), guard, label), hint, guard + 4)


def _pair(timeout: float = WAIT):
    a, b = socket.socketpair()
    a.settimeout(timeout)
    b.settimeout(timeout)
    return a, b


def _waiting(sock) -> bytes:
    """Every byte waiting in ``sock`` now, without waiting for more."""
    data = bytearray()
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while chunk := sock.recv(65536):
            data += chunk
    sock.settimeout(WAIT)
    return bytes(data)
