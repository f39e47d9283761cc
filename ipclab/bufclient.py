"""The buffer protocol's client, the two commands, and the server as a background process.

Wraps ``connect(2)``, ``send(2)``/``recv(2)`` (through :mod:`ipclab.framing`),
``fork(2)``/``execve(2)`` (through :mod:`subprocess`) and ``kill(2)``.

- :func:`exchange` connects, reads the greeting, sends each line and reads its
  reply, then closes: every step within a timeout.  The seeds' PHP client
  instead reads replies ``while (socket_read(...))``, which never ends because
  the server keeps the connection open for more lines: it hangs.
- ``python -m ipclab serve`` and ``python -m ipclab client`` (:func:`serve_cli`,
  :func:`client_cli`).
- :class:`ServerProcess` starts ``python -m ipclab serve`` in a child process
  for a notebook, reads the port it got, and stops it (SIGTERM, then SIGKILL)
  and reaps it when the ``with`` block ends.  Should the notebook's kernel die
  first, the server sees its stdin pipe close and stops by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import subprocess
import sys
import threading

from . import net
from ._check import check_timeout
from .bufserver import NO_DATA, RECEIVED, BufferServer
from .errors import IPCTimeoutError, ProtocolError
from .framing import LineReader, send_line

DEFAULT_TIMEOUT = 5.0


@dataclasses.dataclass
class Exchange:
    """What one client saw: the greeting and the reply to each line it sent."""

    greeting: str
    replies: list[str]

    def __str__(self):
        return "\n".join([self.greeting, *self.replies])


def _text(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace")


def exchange(host: str, port: int, lines=(), *, timeout: float = DEFAULT_TIMEOUT) -> Exchange:
    """Connect, read the greeting, send each of ``lines`` and read its reply; close.

    Raises:
        TypeError, ValueError: bad arguments (a line holding a newline included).
        ConnectionRefusedError: nothing listens there.
        IPCTimeoutError: the server did not answer in time.
        ProtocolError: the server closed early or answered something else
            (its ERROR line is in the message).
    """
    if isinstance(lines, (str, bytes)):
        raise TypeError(f"lines must be a list of lines, not one {type(lines).__name__}: "
                        f"use [{lines!r:.40}]")
    lines = list(lines)
    for line in lines:
        if not isinstance(line, (str, bytes)) or "\n" in str(line) or "\r" in str(line):
            raise ValueError(f"each line must be a str or bytes without '\\n' or '\\r', "
                             f"got {line!r:.60}")
    timeout = check_timeout(timeout, allow_none=False)
    with net.connect(host, port, timeout=timeout) as sock:
        reader = LineReader(sock, timeout=timeout)
        greeting = reader.readline()  # any stored line, even one that starts "ERROR"
        if greeting is None:
            raise ProtocolError("the server closed the connection without a greeting")
        replies = []
        for line in lines:
            send_line(sock, line, timeout=timeout)
            reply = reader.readline()
            if reply != RECEIVED:
                said = ("closed the connection" if reply is None
                        else f"answered {_text(reply)!r}")
                raise ProtocolError(f"the server {said} instead of replying to {line!r:.40} "
                                    f"(its greeting was {_text(greeting)!r:.80})")
            replies.append(reply)
    return Exchange(_text(greeting), [_text(r) for r in replies])


def client_cli(args) -> int:
    """``python -m ipclab client``: print the greeting, then each reply."""
    try:
        result = exchange(args.host, args.port, args.send or [], timeout=args.timeout)
    except (OSError, ValueError, ProtocolError, IPCTimeoutError) as e:
        print(f"ipclab client: {e}", file=sys.stderr)
        return 1
    for line in [result.greeting, *result.replies]:
        print(line)
    return 0


def serve_cli(args) -> int:
    """``python -m ipclab serve``: serve until Ctrl-C or SIGTERM; log to stdout."""
    try:
        server = BufferServer(args.host, args.port, max_line=args.max_line,
                              max_clients=args.max_clients, idle_timeout=args.idle_timeout)
    except (OSError, ValueError, TypeError) as e:
        print(f"ipclab serve: {e}", file=sys.stderr)
        return 1
    old = {sig: signal.signal(sig, lambda *_: server.stop())
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve(extra=sys.stdin if args.stop_on_stdin else None)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


_LISTENING = re.compile(r"listening on (.+):(\d+) ")


class ServerProcess:
    """``python -m ipclab serve`` in a child process, stopped when the block ends.

    ``.host`` and ``.port`` say where it listens; ``.log()`` returns the lines
    it has logged so far; :meth:`stop` ends it (idempotent).

    Raises:
        TypeError, ValueError: bad arguments.
        IPCTimeoutError: the server did not say where it listens within ``timeout``.
        ProtocolError: it exited instead (its output is in the message).
    """

    host: str | None = None
    port: int | None = None

    def __init__(self, host: str = net.LOOPBACK, port: int = 0, *,
                 timeout: float = 10.0, options=()):
        host, port = net.check_host(host), net.check_port(port)
        self.timeout = check_timeout(timeout, allow_none=False)
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "ipclab", "serve", "--host", host, "--port", str(port),
             "--stop-on-stdin", *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.timeout) or self.port is None:
            self.stop()
            if self._lines:
                raise ProtocolError("the server exited: " + " / ".join(self._lines))
            raise IPCTimeoutError(f"the server did not start listening within {timeout:g} s")

    def _read(self):
        for line in self._proc.stdout:
            line = line.rstrip("\n")
            self._lines.append(line)
            if (m := _LISTENING.match(line)) and self.port is None:
                self.host, self.port = m.group(1), int(m.group(2))
                self._ready.set()
        self._ready.set()  # it exited

    def log(self) -> list[str]:
        return list(self._lines)

    def stop(self) -> int:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); return its exit code."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._reader.join(self.timeout)
            self._proc.stdin.close()
            self._proc.stdout.close()
        return self._proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


__all__ = ["NO_DATA", "Exchange", "ServerProcess", "client_cli", "exchange", "serve_cli"]
