"""Frames on a byte stream: lines and length-prefixed messages, bounded and timed.

Wraps ``recv(2)``, ``send(2)`` and ``poll(2)``.  A stream socket (TCP, AF_UNIX
SOCK_STREAM) carries bytes, not messages: one ``recv`` may return half a line,
or three lines and a bit, whatever has arrived.  A reader must keep what is
left over and join pieces until a whole frame is there.  Two framings:

- **lines**, ending in ``\\n`` (a ``\\r`` before it is dropped, so ``\\r\\n``
  works too): :class:`LineSplitter` for event loops, :class:`LineReader` and
  :func:`send_line` for blocking code;
- **length-prefixed messages**, a 4-byte big-endian length then the payload:
  :func:`send_message` and :func:`recv_message`, built on :func:`recv_exactly`.

Every frame has a size bound, so a hostile peer cannot make us buffer without
end, and every blocking call here has a timeout.  Payloads are bytes; nothing
here unpickles anything.  Not handled: message boundaries of SOCK_DGRAM or
SOCK_SEQPACKET sockets, which the kernel keeps for you.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import time

from ._check import check_bytes, check_int, check_timeout
from .errors import IPCTimeoutError, ProtocolError

DEFAULT_TIMEOUT = 5.0
MAX_LINE = 64 * 1024
MAX_MESSAGE = 16 << 20
_LENGTH = struct.Struct("!I")


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
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        if poller.poll(math.ceil(left * 1000)):
            return
    raise IPCTimeoutError(f"timed out waiting for {what}: the peer sent nothing more "
                          "and did not close the connection")


def _recv_some(sock, size: int, deadline: float, what: str) -> bytes:
    wait_readable(sock, deadline, what)
    try:
        return sock.recv(size)
    except BlockingIOError:  # woken, but another reader took the data
        return _recv_some(sock, size, deadline, what)


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
        deadline = time.monotonic() + timeout
        while not self._lines:
            what = "a line" + (f" ({self._splitter.pending} bytes of it so far)"
                               if self._splitter.pending else "")
            data = _recv_some(self.sock, 65536, deadline, what)
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
    data, timeout = check_bytes(data), check_timeout(timeout, allow_none=False)
    old = _check_sock(sock).gettimeout()
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except TimeoutError:
        raise IPCTimeoutError(f"timed out sending {len(data)} bytes: the peer is not reading "
                              "and the socket buffers are full") from None
    finally:
        sock.settimeout(old)


def recv_exactly(sock, count: int, *, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
    """Receive exactly ``count`` bytes, joining partial reads; None if the peer closed first.

    Raises:
        IPCTimeoutError: the bytes did not all arrive in time.
        ProtocolError: the peer closed after some, not all, of them.
    """
    count = check_int(count, "count", low=0)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    got = bytearray()
    while len(got) < count:
        data = _recv_some(_check_sock(sock), count - len(got), deadline,
                          f"{count} bytes ({len(got)} so far)")
        if not data:
            if not got:
                return None
            raise ProtocolError(f"the peer closed the connection after {len(got)} "
                                f"of {count} bytes")
        got += data
    return bytes(got)


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
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    header = recv_exactly(sock, _LENGTH.size, timeout=timeout)
    if header is None:
        return None
    (size,) = _LENGTH.unpack(header)
    if size > max_size:
        raise ProtocolError(f"the peer announced a {size}-byte message; "
                            f"the bound is max_size={max_size}")
    body = recv_exactly(sock, size, timeout=max(deadline - time.monotonic(), 1e-3))
    if body is None and size:
        raise ProtocolError(f"the peer closed the connection after the header of a "
                            f"{size}-byte message")
    return body or b""
