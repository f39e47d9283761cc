"""The seeds' store-and-forward "buffer" server, done properly: one loop, many clients.

Wraps ``socket(2)``, ``accept(2)``, ``recv(2)``, ``send(2)`` and ``epoll(7)``
(through :mod:`selectors`).  The protocol is the PHP articles' one:

- on connect the server sends one line: the last line any client stored, or
  ``no data`` until then;
- every line a client sends is stored and answered ``Information Received``.

Lines end in ``\\n`` (``\\r\\n`` is accepted); the server ends its lines with
``\\r\\n`` as the seeds do.  Bytes are stored as sent: the server never decodes.

The PHP server serves one client at a time and blocks in ``socket_read``; here
one ``selectors`` loop serves them all, never blocks on a client, and bounds
what a client can cost: a line over ``max_line`` bytes gets an ``ERROR`` line
and a disconnect; a client that sends but does not read its replies is not
read from until it does (at most ``max_pending`` reply bytes wait for it);
``max_clients`` at once, the next ones are told the server is busy; a client
silent for ``idle_timeout`` s is told so and closed.  Each connection event is
one log line.  :meth:`BufferServer.stop` may be called from a signal handler or
another thread.

Not handled: TLS, authentication (anyone who can reach the port can store a
line, which is why the default address is loopback).
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field

from . import net
from ._check import check_callable, check_int, check_timeout
from .errors import ProtocolError
from .framing import MAX_LINE, LineSplitter

NO_DATA = b"no data"
RECEIVED = b"Information Received"
END = b"\r\n"
_RECV_SIZE = 16384


@dataclass
class _Client:
    sock: socket.socket
    label: str
    splitter: LineSplitter
    out: bytearray = field(default_factory=bytearray)
    lines: int = 0
    reading: bool = True
    closing: str | None = None  # why it goes, once nothing is left to send
    events: int = selectors.EVENT_READ | selectors.EVENT_WRITE
    last_seen: float = field(default_factory=time.monotonic)


class BufferServer:
    """A listening store-and-forward server; ``serve()`` runs its loop.

    Binding happens at construction, so ``.address`` is known before the loop
    starts.  ``log`` receives one str per event (default: print, flushed).

    Raises:
        TypeError, ValueError: bad arguments.
        OSError: the address cannot be bound.
    """

    def __init__(self, host: str = net.LOOPBACK, port: int = 0, *, max_line: int = MAX_LINE,
                 max_clients: int = 256, max_pending: int = 256 * 1024,
                 idle_timeout: float | None = 300.0, log=None):
        self.max_line = check_int(max_line, "max_line", low=1)
        self.max_clients = check_int(max_clients, "max_clients", low=1)
        self.max_pending = check_int(max_pending, "max_pending", low=1024)
        self.idle_timeout = check_timeout(idle_timeout, "idle_timeout")
        self._log = check_callable(log, "log") if log is not None else _print
        self.stored = NO_DATA
        self.served = self.lines_stored = 0
        self._clients: dict[socket.socket, _Client] = {}
        self._listener = net.listen(host, port, timeout=None)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    def stop(self) -> None:
        """Ask the loop to stop; safe from a signal handler or another thread."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):  # already woken, or already closed
            pass

    def serve(self, *, duration: float | None = None, extra=None) -> None:
        """Run the loop until :meth:`stop` (or for ``duration`` s), then close everything.

        ``extra`` is an optional readable file object; when it becomes readable
        (or reaches end of file) the server stops: a parent process holds the
        other end of a pipe so its server dies with it.
        """
        end = None if duration is None else time.monotonic() + check_timeout(duration, "duration")
        if extra is not None:
            self._selector.register(extra, selectors.EVENT_READ)
        host, port = self.address
        self._log(f"listening on {host}:{port} (Ctrl-C stops)")
        try:
            while not self._stopping and (end is None or time.monotonic() < end):
                for key, events in self._selector.select(self._next_wakeup(end)):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r or key.fileobj is extra:
                        self._stopping = True
                    else:
                        self._service(self._clients[key.fileobj], events)
                self._expire_idle()
        finally:
            self.close()

    def close(self) -> None:
        """Close every connection and the listener; safe to call twice."""
        if self._listener.fileno() < 0:
            return
        for client in list(self._clients.values()):
            self._drop(client, None)
        self._selector.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()
        self._log(f"stopped: {_count(self.served, 'connection')} served, "
                  f"{_count(self.lines_stored)} stored")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the loop's steps -------------------------------------------------
    def _next_wakeup(self, end):
        waits = [] if end is None else [end - time.monotonic()]
        if self.idle_timeout and self._clients:
            oldest = min(c.last_seen for c in self._clients.values())
            waits.append(oldest + self.idle_timeout - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def _accept(self):
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ECONNABORTED, EMFILE: log it, keep serving
                self._log(f"accept failed: {e.strerror}")
                return
            if len(self._clients) >= self.max_clients:
                _try_send(sock, b"ERROR server busy: " + str(self.max_clients).encode()
                          + b" clients already connected, try again later" + END)
                sock.close()
                self._log(f"refused a client from {_where(peer)}: "
                          f"{self.max_clients} clients already connected")
                continue
            self.served += 1
            sock.setblocking(False)
            client = _Client(sock, f"client {self.served}", LineSplitter(self.max_line))
            client.out += self.stored + END
            self._clients[sock] = client
            self._selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            self._log(f"{client.label} connected from {_where(peer)}")

    def _service(self, client, events):
        try:
            if events & selectors.EVENT_READ and client.reading:
                self._receive(client)
            if client.out:  # usually writable at once: answer in this same turn
                try:
                    del client.out[:client.sock.send(client.out)]
                except BlockingIOError:
                    pass
        except (ConnectionResetError, BrokenPipeError):
            self._drop(client, f"reset the connection after {_count(client.lines)}")
            return
        except OSError as e:
            self._drop(client, f"failed after {_count(client.lines)}: {e.strerror}")
            return
        self._update(client)

    def _receive(self, client):
        data = client.sock.recv(_RECV_SIZE)
        client.last_seen = time.monotonic()
        if not data:
            client.reading = False
            if client.splitter.pending:
                client.closing = (f"closed mid-line after {_count(client.lines)}: "
                                  f"{client.splitter.pending} bytes without a newline were "
                                  "not stored")
            else:
                client.closing = f"disconnected after {_count(client.lines)}"
            return
        try:
            lines = client.splitter.feed(data)
        except ProtocolError as e:
            self._store(client, e.lines)  # the whole lines before the long one count
            client.reading = False
            client.out += (b"ERROR line longer than " + str(self.max_line).encode()
                           + b" bytes; closing" + END)
            client.closing = (f"sent a line over {self.max_line} bytes after "
                              f"{_count(client.lines)}: told so and disconnected")
            return
        self._store(client, lines)

    def _store(self, client, lines):
        for line in lines:
            self.stored = line
            self.lines_stored += 1
            client.lines += 1
            client.out += RECEIVED + END

    def _update(self, client):
        """Choose what to wait for: close when done, stop reading while replies pile up."""
        if client.closing and not client.out:
            self._drop(client, client.closing)
            return
        want = selectors.EVENT_WRITE if client.out else 0
        if client.reading and len(client.out) < self.max_pending:
            want |= selectors.EVENT_READ
        if want != client.events:  # reading is False only once closing is set
            self._selector.modify(client.sock, want)
            client.events = want

    def _expire_idle(self):
        if not self.idle_timeout:
            return
        now = time.monotonic()
        for client in list(self._clients.values()):
            if now - client.last_seen >= self.idle_timeout:
                _try_send(client.sock, b"ERROR idle for " + f"{self.idle_timeout:g}".encode()
                          + b" s; closing" + END)
                self._drop(client, f"idle for {self.idle_timeout:g} s after "
                                   f"{_count(client.lines)}: told so and disconnected")

    def _drop(self, client, why):
        if why is None:  # the server stops: flush what we can without waiting
            _try_send(client.sock, bytes(client.out))
            why = f"closed by the server stopping after {_count(client.lines)}"
        self._selector.unregister(client.sock)
        del self._clients[client.sock]
        client.sock.close()
        self._log(f"{client.label} {why}")


def _try_send(sock, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:  # the client is gone or not reading: nothing to wait for
        pass


def _count(n: int, noun: str = "line") -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _where(peer) -> str:
    host, port = peer[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print(line: str) -> None:
    print(line, flush=True)
