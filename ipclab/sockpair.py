"""Socketpairs: two connected AF_UNIX sockets, in one process or across ``fork``.

Wraps ``socketpair(2)``, ``send(2)``/``recv(2)``, ``poll(2)`` and ``setsockopt(2)``
(``SO_RCVTIMEO``, ``SO_SNDTIMEO``).  A socketpair is two pipes in one: each end reads
what the *other* end wrote, in both directions.  Kinds: "stream" (``SOCK_STREAM``: a
byte stream, no message boundaries), "seqpacket" (``SOCK_SEQPACKET``: each send arrives
whole, end of file when the peer closes) and "dgram" (``SOCK_DGRAM``: whole messages,
but no end of file).

Every end made by :func:`pair` is a :class:`Socket`, a plain ``socket.socket``
whose timeouts explain themselves: a read that times out raises
:class:`~ipclab.errors.IPCTimeoutError` saying that nothing was written to the
other end and which processes still hold a copy of it (read from /proc).  That
is the pipe lesson again: end of file comes only when every copy is closed.

The kernel keeps a Socket's timeout, not Python, which would ``poll(2)`` before every
call: a second system call each time.  The descriptor stays blocking with
``SO_RCVTIMEO``/``SO_SNDTIMEO`` set; a call that waited that long fails with EAGAIN,
which Socket turns into the explained error (the kernel times it in clock ticks, to a
few ms).  ``send`` takes what fits and waits in
``poll(2)`` only while nothing fits, as with Python's timeouts; ``settimeout``,
``gettimeout`` and ``setblocking`` behave as on any socket.  The options belong to the
socket, not to a descriptor: copies of an end (``dup``, ``fork``) share them, so give
every copy the same timeout.

Not handled: AF_INET pairs (Windows), framing messages on a stream (see
:mod:`ipclab.framing`), passing descriptors (see :mod:`ipclab.fdpass`), a pool
of forked workers (see :mod:`ipclab.workers`).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import struct
import time

from . import diagnose
from ._check import check_timeout
from .errors import IPCTimeoutError

__all__ = ["KINDS", "Pair", "Socket", "pair"]

KINDS = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET,
         "dgram": socket.SOCK_DGRAM}
DEFAULT_TIMEOUT = 5.0
_peers: dict[int, int] = {}  # inode of an end made by pair() -> inode of its other end
_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds
_base = socket.socket


def _wait(sock, event: int, deadline: float) -> bool:
    """``poll(2)`` ``sock`` for ``event`` until ``deadline`` (monotonic); False if it passed."""
    poller = select.poll()
    poller.register(sock, event)
    while (left := deadline - time.monotonic()) > 0:
        if poller.poll(math.ceil(left * 1000)):
            return True
    return False


class Socket(socket.socket):
    """A ``socket.socket`` whose timeouts raise IPCTimeoutError with an explanation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rcvtimeo = self._sndtimeo = -1.0  # what the kernel holds; -1: not known yet
        self.settimeout(_base.gettimeout(self))  # socket.setdefaulttimeout() applies too

    def gettimeout(self):
        return self._timeout

    def settimeout(self, value):
        if type(value) in (float, int) and 0 < value < 1e9:
            _base.settimeout(self, None)  # blocking: the kernel times the waits
        else:  # None, 0 or another type: Python's own checks and modes
            _base.settimeout(self, value)
            if value := _base.gettimeout(self):
                _base.settimeout(self, None)
        self._timeout = None if value is None else float(value)
        self._sync()

    def setblocking(self, flag):
        _base.setblocking(self, flag)
        self._timeout = _base.gettimeout(self)
        self._sync()

    def getblocking(self):
        return self._timeout != 0

    timeout = property(gettimeout, doc="The timeout in seconds, None for none, as set.")

    def _sync(self) -> None:
        """Make the kernel's timeouts the socket's own again (framing may have set others)."""
        self._own = self._timeout or 0.0  # 0: no timeout (blocking for ever, or non-blocking)
        if self._rcvtimeo != self._own:
            self._set_timeo(socket.SO_RCVTIMEO, self._own)
        if self._sndtimeo != self._own:
            self._set_timeo(socket.SO_SNDTIMEO, self._own)

    def _set_timeo(self, option: int, seconds: float) -> None:
        """Set SO_RCVTIMEO or SO_SNDTIMEO to ``seconds`` (0: wait for ever) and remember it."""
        whole, micro = divmod(math.ceil(seconds * 1e6), 1_000_000)  # > 0 stays > 0
        self.setsockopt(socket.SOL_SOCKET, option, _TIMEVAL.pack(whole, micro))
        if option == socket.SO_RCVTIMEO:
            self._rcvtimeo = seconds
        else:
            self._sndtimeo = seconds

    def sendall(self, data, flags=0):
        """``socket.sendall``; a timeout raises IPCTimeoutError saying why."""
        if self._sndtimeo != self._own:
            self._set_timeo(socket.SO_SNDTIMEO, self._own)
        if not self._timeout:
            return _base.sendall(self, data, flags)
        deadline = time.monotonic() + self._timeout
        try:  # a blocking send(2) returns once all is queued, or, partly done, at the timeout
            sent = _base.send(self, data, flags)
            if type(data) is not bytes or sent < len(data):
                with memoryview(data) as view, view.cast("B") as rest:
                    while sent < len(rest):
                        if (left := deadline - time.monotonic()) <= 0:
                            raise BlockingIOError
                        self._set_timeo(socket.SO_SNDTIMEO, left)
                        sent += _base.send(self, rest[sent:], flags)
        except BlockingIOError:
            raise IPCTimeoutError(*_explain(self, "write", self._timeout)) from None

    def send(self, data, flags=0):
        """``socket.send``: what fits now; a timeout raises IPCTimeoutError saying why."""
        return self._write(lambda more: _base.send(self, data, flags | more))

    def sendto(self, data, *args):
        """``socket.sendto(data[, flags], address)``, timed as :meth:`send`."""
        if len(args) not in (1, 2):
            return _base.sendto(self, data, *args)  # Python says what is wrong
        flags, address = args if len(args) == 2 else (0, args[0])
        return self._write(lambda more: _base.sendto(self, data, flags | more, address))

    def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        """``socket.sendmsg``, timed as :meth:`send`."""
        return self._write(lambda more: _base.sendmsg(self, buffers, ancdata, flags | more,
                                                      address))

    def _write(self, call):
        """``call(MSG_DONTWAIT)`` until there is room, as Python's timeouts do: a send takes
        what fits now and waits only while nothing fits."""
        if self._sndtimeo != self._own:
            self._set_timeo(socket.SO_SNDTIMEO, self._own)
        if not self._timeout:
            return call(0)
        deadline = time.monotonic() + self._timeout
        while True:
            with contextlib.suppress(BlockingIOError):
                return call(socket.MSG_DONTWAIT)
            if not _wait(self, select.POLLOUT, deadline):
                raise IPCTimeoutError(*_explain(self, "write", self._timeout))


_FLAGS_AT = {"recv": 1, "recvfrom": 1, "recv_into": 2, "recvfrom_into": 2, "recvmsg": 2,
             "recvmsg_into": 2}  # where each recv method takes its flags


def _reading(name: str):
    base, at = getattr(socket.socket, name), _FLAGS_AT[name]

    def method(self, *args, **kwargs):
        if self._rcvtimeo != self._own:
            self._set_timeo(socket.SO_RCVTIMEO, self._own)
        try:
            return base(self, *args, **kwargs)
        except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out (or the end is non-blocking)
            if not self._timeout:
                raise
            flags = args[at] if len(args) > at else kwargs.get("flags", 0)
            if flags & socket.MSG_DONTWAIT and _wait(self, select.POLLIN,
                                                     time.monotonic() + self._timeout):
                return method(self, *args, **kwargs)  # as Python's timeouts do: wait, then try
            raise IPCTimeoutError(*_explain(self, "read", self._timeout)) from None
    method.__name__, method.__qualname__ = name, f"Socket.{name}"
    method.__doc__ = f"``socket.{name}``; a timeout raises IPCTimeoutError saying why."
    return method


for _name in _FLAGS_AT:
    setattr(Socket, _name, _reading(_name))


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
