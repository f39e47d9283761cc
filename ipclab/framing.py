"""Frames on a byte stream: lines and length-prefixed messages, bounded and timed.

Wraps ``recv(2)``, ``send(2)``, ``read(2)``, ``write(2)``, ``poll(2)`` and
``setsockopt(2)``.  A stream socket (TCP, AF_UNIX SOCK_STREAM) carries bytes, not
messages: one ``recv`` may return half a line, or three lines and a bit, whatever has
arrived.  A reader must keep what is left over and join pieces until a whole frame is
there.  Two framings:

- **lines**, ending in ``\\n`` (a ``\\r`` before it is dropped, so ``\\r\\n``
  works too): :class:`LineSplitter` for event loops, :class:`LineReader` and
  :func:`send_line` for blocking code;
- **length-prefixed messages**, a 4-byte big-endian length then the payload:
  :func:`send_message` and :func:`recv_message`, built on :func:`recv_exactly`.

Every frame has a size bound, so a hostile peer cannot make us buffer without
end, and every blocking call here has a timeout.  Payloads are bytes; nothing
here unpickles anything.  Not handled: message boundaries of SOCK_DGRAM or
SOCK_SEQPACKET sockets, which the kernel keeps for you.

A call costs about the system call it makes.  On a :class:`~ipclab.sockpair.Socket`
(blocking; the kernel keeps its timeouts) one ``recv(2)`` with ``MSG_WAITALL`` waits for
a whole frame and one blocking ``send(2)`` sends it, under ``SO_RCVTIMEO``/``SO_SNDTIMEO``
set to the time left, with ``setsockopt(2)`` only when that changes.  Other sockets are
never left to block: a send is tried at once, a read waits in ``poll(2)`` first (a reader
usually has to wait), and ``read(2)``/``write(2)`` skip the ``poll(2)`` Python makes before
each call on a socket with a timeout.  A socket's own timeout and mode stay as they were.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
from time import monotonic

from ._check import check_bytes, check_int, check_timeout
from .errors import IPCTimeoutError, ProtocolError
from .sockpair import Socket, _wait

DEFAULT_TIMEOUT = 5.0
MAX_LINE = 64 * 1024
MAX_MESSAGE = 16 << 20
_LENGTH = struct.Struct("!I")
_INF = math.inf
_SLACK = 0.01  # s a kernel timeout may run past a deadline before it is set anew
_WAITALL, _DONTWAIT = int(socket.MSG_WAITALL), int(socket.MSG_DONTWAIT)
_recv, _send = socket.socket.recv, socket.socket.send
_pollers: dict[int, select.poll] = {}  # fd << 3 | event -> a poll object for it
_SILENT = "the peer sent nothing more and did not close the connection"


def _check_sock(sock):
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, got {type(sock).__name__} {sock!r:.60}")
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    return sock


def wait_readable(sock, deadline: float, what: str) -> None:
    """Wait until ``sock`` has data (or EOF) to read, or raise at ``deadline``.

    Raises:
        IPCTimeoutError: nothing arrived in time; the message says what was awaited.
    """
    if not _wait(sock, select.POLLIN, deadline):
        raise IPCTimeoutError(f"timed out waiting for {what}: {_SILENT}")


def _kernel_timed(sock) -> bool:
    """True for a Socket that blocks in the kernel under SO_RCVTIMEO/SO_SNDTIMEO."""
    return isinstance(sock, Socket) and sock._timeout != 0


def _arm(sock, option: int, held: float, deadline: float) -> bool:
    """Set a kernel-timed Socket's ``option`` (now ``held``) to the time left, unless it is
    within _SLACK of it already; False once ``deadline`` has passed."""
    if (left := deadline - monotonic()) <= 0:
        return False
    if not left - _SLACK <= held <= left + _SLACK:  # (a wait that ends early is tried again)
        sock._set_timeo(option, left)
    return True


def _poll(fd: int, event: int, deadline: float) -> bool:
    """``poll(2)`` ``fd`` for ``event`` until ``deadline``, with a poll object kept per fd."""
    if (poller := _pollers.get(fd << 3 | event)) is None:
        poller = _pollers[fd << 3 | event] = select.poll()  # no kernel state: safe to keep
        poller.register(fd, event)
    while (left := deadline - monotonic()) > 0:
        try:
            if poller.poll(left * 1000):  # milliseconds, rounded up
                return True
        except RuntimeError:  # another thread polls with it: use one of our own
            poller = select.poll()
            poller.register(fd, event)
    return False


def _read_now(sock, size: int) -> bytes:
    """recv without waiting; BlockingIOError if there is nothing (after poll, rarely)."""
    if type(sock) is not socket.socket and not isinstance(sock, Socket):
        return sock.recv(size)  # a subclass (ssl.SSLSocket) reads its own way
    if sock.gettimeout() is None:
        return _recv(sock, size, _DONTWAIT)
    return os.read(sock.fileno(), size)  # O_NONBLOCK: read(2) skips Python's poll(2)


def _recv_some(sock, size: int, deadline: float, flags: int = 0) -> bytes | None:
    """One recv of at most ``size`` bytes (b"" at end of file) by ``deadline``, else None."""
    if _kernel_timed(sock):
        while _arm(sock, socket.SO_RCVTIMEO, sock._rcvtimeo, deadline):
            try:
                return _recv(sock, size, flags)
            except BlockingIOError:  # SO_RCVTIMEO ran out (maybe a jiffy early)
                pass
        return None
    while _poll(sock.fileno(), select.POLLIN, deadline):
        try:
            return _read_now(sock, size)
        except BlockingIOError:  # woken, but another reader took the data
            pass
    return None


def _try_send(sock, data, kernel: bool) -> int:
    """One send: blocking under SO_SNDTIMEO if ``kernel``, else never blocking (0: no room)."""
    try:
        if kernel:
            return _send(sock, data)
        if sock.gettimeout() is None:
            return _send(sock, data, _DONTWAIT)
        return os.write(sock.fileno(), data)  # O_NONBLOCK: write(2) skips Python's poll(2)
    except BlockingIOError:
        return 0


def _send_rest(sock, data: bytes, sent: int, deadline: float) -> None:
    """Send ``data[sent:]`` by ``deadline``, waiting before each try."""
    kernel = _kernel_timed(sock)
    with memoryview(data) as view:
        while sent < len(view):
            if not (_arm(sock, socket.SO_SNDTIMEO, sock._sndtimeo, deadline) if kernel else
                    _poll(sock.fileno(), select.POLLOUT, deadline)):
                _not_sent(data)
            sent += _try_send(sock, view[sent:], kernel)


def _not_sent(data: bytes):
    raise IPCTimeoutError(f"timed out sending {len(data)} bytes: the peer is not reading "
                          "and the socket buffers are full") from None


def _send_foreign(sock, data: bytes, timeout: float) -> None:
    """``sendall`` within ``timeout`` on a subclass (ssl.SSLSocket) that sends its own way."""
    old = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except TimeoutError:
        _not_sent(data)
    finally:
        sock.settimeout(old)


class LineSplitter:
    """Split received bytes into lines, keeping the unfinished rest; never blocks.

    ``feed(data)`` returns the complete lines (without ``\\n`` or ``\\r\\n``).
    ``pending`` is how many bytes of an unfinished line are held.

    Raises (from feed):
        ProtocolError: a line grew over ``max_line`` bytes; the whole lines that
            came before it in the same data are in the error's ``lines``.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = check_int(max_line, "max_line", low=1)
        self._rest = bytearray()

    @property
    def pending(self) -> int:
        return len(self._rest)

    def feed(self, data) -> list[bytes]:
        self._rest += check_bytes(data)
        *lines, rest = self._rest.split(b"\n")
        self._rest = bytearray(rest)
        done = []
        for line in lines:
            line = bytes(line[:-1]) if line.endswith(b"\r") else bytes(line)
            if len(line) > self.max_line:
                self._too_long(done, len(line))
            done.append(line)
        if len(self._rest) > self.max_line:
            self._too_long(done, None)
        return done

    def _too_long(self, done, size):
        """Raise for an over-long line; the whole lines before it travel in ``error.lines``."""
        self._rest.clear()
        error = ProtocolError(f"line longer than {self.max_line} bytes "
                              f"({size if size else 'no newline yet'})")
        error.lines = done
        raise error


class LineReader:
    """Read lines from a stream socket, one at a time, each within a timeout.

    ``readline()`` returns a line as bytes without its ending, or None at a
    clean end of stream (the peer closed between lines).

    Raises (from readline):
        IPCTimeoutError: no whole line arrived within the timeout.
        ProtocolError: a line over ``max_line`` bytes, or the peer closed mid-line.
    """

    def __init__(self, sock, *, max_line: int = MAX_LINE, timeout: float = DEFAULT_TIMEOUT):
        self.sock = _check_sock(sock)
        self.timeout = check_timeout(timeout, allow_none=False)
        self._splitter = LineSplitter(max_line)
        self._lines: list[bytes] = []

    def readline(self, timeout: float | None = None) -> bytes | None:
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        deadline = monotonic() + timeout
        while not self._lines:
            data = _recv_some(self.sock, 65536, deadline)
            if data is None:
                pending = self._splitter.pending
                raise IPCTimeoutError("timed out waiting for a line" + (
                    f" ({pending} bytes of it so far)" if pending else "") + f": {_SILENT}")
            if not data:
                if self._splitter.pending:
                    raise ProtocolError(f"the peer closed the connection in the middle of a "
                                        f"line ({self._splitter.pending} bytes, no newline)")
                return None
            self._lines = self._splitter.feed(data)
        return self._lines.pop(0)


def send_line(sock, line, *, timeout: float = DEFAULT_TIMEOUT, ending: bytes = b"\n") -> None:
    """Send ``line`` (str as UTF-8, or bytes) followed by ``ending``.

    Raises:
        ValueError: the line holds a newline or carriage return of its own.
        IPCTimeoutError: the peer did not take the bytes in time.
    """
    data = check_bytes(line, "line")
    if b"\n" in data or b"\r" in data:
        raise ValueError(f"line must not contain '\\n' or '\\r' (send one line at a time), "
                         f"got {line!r:.60}")
    send_all(_check_sock(sock), data + ending, timeout=timeout)


def send_all(sock, data, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """``sendall`` with a timeout for the whole of ``data``.

    Raises:
        IPCTimeoutError: the peer stopped reading and the socket buffers are full.
    """
    if type(data) is not bytes:
        data = check_bytes(data)
    if type(timeout) is not float or not 0.0 < timeout < _INF:
        timeout = check_timeout(timeout, allow_none=False)
    start, sent = monotonic(), 0
    if isinstance(sock, Socket) and sock._sndtimeo == timeout:  # blocking, timed by the kernel
        try:  # one send(2) queues all of it, or some by the timeout
            sent = _send(sock, data)
        except BlockingIOError:
            pass
        except OSError:
            _check_sock(sock)  # closed: say so
            raise
    elif isinstance(_check_sock(sock), Socket) and sock._timeout != 0:
        sock._set_timeo(socket.SO_SNDTIMEO, timeout)  # later calls take the path above
    elif type(sock) is socket.socket or isinstance(sock, Socket):
        sent = _try_send(sock, data, False)
    else:
        return _send_foreign(sock, data, timeout)
    if sent != len(data):
        _send_rest(sock, data, sent, start + timeout)


def recv_exactly(sock, count: int, *, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
    """Receive exactly ``count`` bytes, joining partial reads; None if the peer closed first.

    Raises:
        IPCTimeoutError: the bytes did not all arrive in time.
        ProtocolError: the peer closed after some, not all, of them.
    """
    if type(count) is not int or count < 0:
        count = check_int(count, "count", low=0)
    if type(timeout) is not float or not 0.0 < timeout < _INF:
        timeout = check_timeout(timeout, allow_none=False)
    start = monotonic()
    if isinstance(sock, Socket) and timeout <= sock._rcvtimeo <= timeout + _SLACK:  # blocking
        try:  # MSG_WAITALL: one recv(2) waits for all of it, or until the timeout or the end
            data = _recv(sock, count, _WAITALL)
        except BlockingIOError:
            data = None
        except OSError:
            _check_sock(sock)  # closed: say so
            raise
    elif not count:
        _check_sock(sock)
        return b""
    elif isinstance(_check_sock(sock), Socket) and sock._timeout != 0:
        sock._set_timeo(socket.SO_RCVTIMEO, timeout)  # later calls take the path above
        data = None
    elif _poll(sock.fileno(), select.POLLIN, start + timeout):
        try:
            data = _read_now(sock, count)
        except BlockingIOError:  # woken, but another reader took the data
            data = None
    else:
        data = None
    if data is not None and len(data) == count:
        return data
    return _gather(sock, count, start + timeout, data)


def _gather(sock, count: int, deadline: float, data: bytes | None) -> bytes | None:
    """The rest of :func:`recv_exactly` after a first read of ``data`` (None: nothing yet)."""
    got = bytearray()
    while True:
        if data is None and (data := _recv_some(sock, count - len(got), deadline,
                                                 _WAITALL)) is None:
            raise IPCTimeoutError(f"timed out waiting for {count} bytes ({len(got)} so far): "
                                  f"{_SILENT}")
        if not data:
            if not got:
                return None
            raise ProtocolError(f"the peer closed the connection after {len(got)} "
                                f"of {count} bytes")
        got += data
        if len(got) == count:
            return bytes(got)
        data = None


def send_message(sock, payload, *, timeout: float = DEFAULT_TIMEOUT,
                 max_size: int = MAX_MESSAGE) -> None:
    """Send ``payload`` as one length-prefixed message.

    Raises:
        ValueError: the payload is longer than ``max_size``.
        IPCTimeoutError: as :func:`send_all`.
    """
    data = check_bytes(payload, "payload")
    if len(data) > check_int(max_size, "max_size", low=0, high=2**32 - 1):
        raise ValueError(f"payload must be at most max_size={max_size} bytes, got {len(data)}")
    send_all(sock, _LENGTH.pack(len(data)) + data, timeout=timeout)


def recv_message(sock, *, timeout: float = DEFAULT_TIMEOUT,
                 max_size: int = MAX_MESSAGE) -> bytes | None:
    """Receive one length-prefixed message; None if the peer closed between messages.

    Raises:
        ProtocolError: the announced length is over ``max_size`` (nothing more
            is read: the stream cannot be trusted after that), or the peer
            closed in the middle of a message.
        IPCTimeoutError: the message did not arrive in time.
    """
    max_size = check_int(max_size, "max_size", low=0, high=2**32 - 1)
    deadline = monotonic() + check_timeout(timeout, allow_none=False)
    header = recv_exactly(sock, _LENGTH.size, timeout=timeout)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > max_size:
        raise ProtocolError(f"the peer announced a {size}-byte message; "
                            f"the bound is max_size={max_size}")
    body = recv_exactly(sock, size, timeout=max(deadline - monotonic(), 1e-3))
    if body is None and size:
        raise ProtocolError(f"the peer closed the connection after the header of a "
                            f"{size}-byte message")
    return body or b""
