"""Lab 05's clients: they speak the board's line protocol, and never wait long.

Wraps socket(2), connect(2), send(2), recv(2), shutdown(2), setsockopt(2)
(``SO_LINGER``) and close(2).  Every call of a :class:`Client` waits at most
``WAIT`` seconds, and never past the deadline of the run it belongs to
(:class:`ipclab.labs.lab05_harness.ServerRun`); anything that goes wrong is an
``AssertionError`` saying which client saw what, in a student's words.  Besides
polite clients there are hostile ones: a half-close (``SHUT_WR``), an abrupt
reset (``SO_LINGER`` 0: RST instead of FIN), and a flood that never reads.

Not handled: IPv6.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time

HOST = "127.0.0.1"
MAX_LINE = 1024  # bytes a line of the protocol may hold before its b"\n"
WAIT = 3.0  # seconds a client waits for each reply


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no server is listening any more: did serve_board end?)"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the server"
    if isinstance(exc, BrokenPipeError):
        return "the server had closed the connection"
    return os.strerror(exc.errno) if exc.errno else str(exc)


class Client:
    """One TCP client of the board; ``show=True`` prints each exchange (for the demo).

    Raises (every method):
        AssertionError: no reply in time, the connection closed or reset, ...
    """

    def __init__(self, port: int, name: str, *, deadline: float | None = None, show=False):
        self.name, self.show, self._deadline, self._pending = name, show, deadline, b""
        self.sock = None
        try:
            self.sock = socket.create_connection((HOST, port), timeout=self._left())
        except OSError as e:
            raise AssertionError(f"{name} could not connect: {_why(e)}") from None

    def _left(self, wait: float = WAIT) -> float:
        if self._deadline is not None:
            wait = min(wait, self._deadline - time.monotonic())
        if wait <= 0:
            raise AssertionError(f"{self.name}: the check ran out of time")
        return wait

    def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        try:
            self.sock.settimeout(self._left())
            self.sock.sendall(data)
        except OSError as e:
            late = isinstance(e, TimeoutError)
            raise AssertionError(f"{self.name} could not send its request" + (
                " in time: the server does not read" if late else f": {_why(e)}")) from None

    def flood(self, chunk: bytes, limit: int) -> None:
        """Send ``chunk`` over and over, never reading, until a send waits 1 s (the server
        no longer reads), fails (it let the client go) or ``limit`` bytes have gone."""
        sent = 0
        with contextlib.suppress(OSError):
            while sent < limit:
                self.sock.settimeout(min(self._left(), 1.0))
                self.sock.sendall(chunk)
                sent += len(chunk)

    def _recv(self, deadline: float, late: str, *, reset: bytes | None = None) -> bytes:
        """One recv(2) until ``deadline``; a reset returns ``reset`` if that is not None."""
        try:
            self.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            return self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"{self.name} {late}") from None
        except ConnectionResetError:
            if reset is not None:
                return reset
            raise AssertionError(f"{self.name}: the connection was reset by the server") from None
        except OSError as e:
            raise AssertionError(f"{self.name}: {_why(e)}") from None

    def line(self) -> bytes:
        """The next reply line, without its ``b"\\n"``."""
        wait = self._left()
        deadline = time.monotonic() + wait
        while b"\n" not in self._pending:
            chunk = self._recv(deadline, f"got no reply within {wait:g} s (is the server "
                                         f"busy with another client, or waiting for one?)")
            if not chunk:
                raise AssertionError(f"{self.name}: the server closed the connection instead "
                                     f"of replying" + (f" (after {self._pending!r:.60})"
                                                       if self._pending else ""))
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def expect_line(self, want: bytes, after: str = "") -> None:
        got = self.line()
        assert got == want, f"{self.name}{after} got the reply {got!r:.80}, expected {want!r:.80}"

    def ask(self, request: str | bytes) -> bytes:
        """Send one request line and return the reply line."""
        data = request.encode() if isinstance(request, str) else request
        self.send(data + b"\n")
        reply = self.line()
        if self.show:
            print(f"{self.name} > {data.decode(errors='replace')}\n"
                  f"{self.name} < {reply.decode(errors='replace')}")
        return reply

    def expect(self, request: str | bytes, want: bytes) -> None:
        got = self.ask(request)
        assert got == want, f"{self.name} sent {request!r:.60} and got {got!r:.80}, " \
                            f"expected {want!r:.80}"

    def closed(self, why: str) -> bytes:
        """Read until the server closes the connection (a reset counts); return what came."""
        wait = self._left()
        deadline, extra = time.monotonic() + wait, self._pending
        self._pending = b""
        while chunk := self._recv(deadline, f"waited {wait:g} s for the server to close the "
                                            f"connection ({why})", reset=b""):
            extra += chunk
        return extra

    def half_close(self) -> None:
        """shutdown(SHUT_WR): the server reads EOF, the client can still read."""
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
