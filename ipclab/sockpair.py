"""Socketpairs: two connected AF_UNIX sockets, in one process or across ``fork``.

Wraps ``socketpair(2)`` and ``send(2)``/``recv(2)``.  A socketpair is two pipes in one:
each end reads what the *other* end wrote, in both directions.  Kinds:
"stream" (``SOCK_STREAM``: a byte stream, no message boundaries), "seqpacket"
(``SOCK_SEQPACKET``: each send arrives whole, end of file when the peer
closes) and "dgram" (``SOCK_DGRAM``: whole messages, but no end of file).

Every end made by :func:`pair` is a :class:`Socket`, a plain ``socket.socket``
whose timeouts explain themselves: a read that times out raises
:class:`~ipclab.errors.IPCTimeoutError` saying that nothing was written to the
other end and which processes still hold a copy of it (read from /proc).  That
is the pipe lesson again: end of file comes only when every copy is closed.

Not handled: AF_INET pairs (Windows), framing messages on a stream (see
:mod:`ipclab.framing`), passing descriptors (see :mod:`ipclab.fdpass`), a pool
of forked workers (see :mod:`ipclab.workers`).
"""

from __future__ import annotations

import contextlib
import os
import socket

from . import diagnose
from ._check import check_timeout
from .errors import IPCTimeoutError

__all__ = ["KINDS", "Pair", "Socket", "pair"]

KINDS = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET,
         "dgram": socket.SOCK_DGRAM}
DEFAULT_TIMEOUT = 5.0
_peers: dict[int, int] = {}  # inode of an end made by pair() -> inode of its other end


class Socket(socket.socket):
    """A ``socket.socket`` whose timeouts raise IPCTimeoutError with an explanation."""


def _explaining(name: str):
    base, op = getattr(socket.socket, name), "read" if name.startswith("recv") else "write"

    def method(self, *args, **kwargs):
        try:
            return base(self, *args, **kwargs)
        except TimeoutError:  # socket.timeout: the timeout set by settimeout() fired
            raise IPCTimeoutError(*_explain(self, op, self.gettimeout())) from None
    method.__name__, method.__qualname__ = name, f"Socket.{name}"
    method.__doc__ = f"``socket.{name}``; a timeout raises IPCTimeoutError saying why."
    return method


for _name in ("recv", "recv_into", "recvfrom", "recvmsg", "send", "sendall", "sendmsg"):
    setattr(Socket, _name, _explaining(_name))


def _explain(sock, op: str, timeout) -> tuple[str, list[str]]:
    """Return (message, diagnosis) for a timed-out ``op`` ("read"/"write") on ``sock``."""
    me, fd = os.getpid(), sock.fileno()
    where = f"{'from' if op == 'read' else 'to'} fd {fd} ({diagnose.describe_fd(me, fd)})"
    waited = f"{diagnose.label(me)} waited {timeout:g} s to {op} {where}"
    if op == "write":
        return (f"{waited}: the buffer towards the other end is full because nobody reads "
                "the other end", _holders(sock))
    eof = ("; a datagram pair never reports end of file" if sock.type == socket.SOCK_DGRAM else
           ", and returns b'' (end of file) only once every copy of the peer's end is closed")
    return (f"{waited}: nothing was written to the other end.\nA socketpair read waits until the "
            f"peer writes{eof}. What an end sends goes to the other end, never back to itself.",
            _holders(sock))


def _holders(sock) -> list[str]:
    """Who holds the other end of ``sock`` open, if :func:`pair` made it ([] if unknown)."""
    with contextlib.suppress(OSError):
        peer = _peers.get(os.fstat(sock.fileno()).st_ino)
        if peer is not None:
            target, root, labels, found = f"socket:[{peer}]", os.getpid(), {}, []
            if diagnose.self_label != "parent":  # a proc child: its parent and siblings too
                root = os.getppid()
                labels = {root: "parent"}
            for pid in diagnose.family(root):
                with contextlib.suppress(OSError):
                    for n in sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd")):
                        with contextlib.suppress(OSError):
                            if os.readlink(f"/proc/{pid}/fd/{n}") == target:
                                found.append(f"{diagnose.label(pid, labels)} (fd {n})")
            return [f"the other end ({target}) is still open in: "
                    + (", ".join(found) or "no process of this family")]
    return []


class Pair(tuple):
    """The two ends of a socketpair: ``p[0]`` and ``p[1]``, or ``a, b = p``.

    Leaving ``with pair() as (a, b):`` closes both ends in this process.
    """

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Close both ends here (copies in other processes stay open); safe twice."""
        for end in self:
            end.close()


def pair(kind: str = "stream", *, timeout: float = DEFAULT_TIMEOUT) -> Pair:
    """Make a socketpair of ``kind`` whose ends wait at most ``timeout`` s per call.

    Raises:
        ValueError: ``kind`` is not "stream", "seqpacket" or "dgram"; ``timeout`` <= 0.
        TypeError: ``timeout`` is not a number.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    timeout = check_timeout(timeout, allow_none=False)
    ends = [Socket(fileno=s.detach()) for s in socket.socketpair(socket.AF_UNIX, KINDS[kind])]
    a, b = (os.fstat(end.fileno()).st_ino for end in ends)
    _peers[a], _peers[b] = b, a
    while len(_peers) > 512:
        del _peers[next(iter(_peers))]
    for end in ends:
        end.settimeout(timeout)
    return Pair(ends)
