"""Small tools for notebook 05's socket demonstrations, each one bounded in time.

Wraps ``ioctl(2)`` ``FIONREAD`` (bytes waiting in a socket's receive buffer),
``poll(2)``, ``fork(2)`` (through :mod:`ipclab.proc`) and reads
``/proc/self/status`` and ``/proc/sys/net/ipv4/ip_local_port_range``.

- :func:`pending` and :func:`wait_pending`: how many bytes the kernel holds for
  a socket, and waiting until a given number has arrived, so that a demo's
  single ``recv`` sees everything that was sent (on loopback that is almost
  always so at once, but "almost" is not deterministic);
- :func:`has_capability`: whether this process holds a Linux capability such as
  ``CAP_NET_RAW`` (root has them all; a student usually none);
- :func:`ephemeral_ports`: the range the kernel picks from for port 0;
- :func:`held_by_child`: a forked child holds a copy of every descriptor while
  a ``with`` block runs, to show that ``close`` sends no end of file while
  another process still holds the connection;
- :func:`wait_for_log` and :func:`wait_for_clients`: wait until a background
  server (:class:`ipclab.bufclient.ServerProcess`) has logged an event, or the
  end of a number of connections, so its log can be shown complete.

Not handled: anything but Linux (``/proc`` is read directly).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import re
import select
import socket
import termios
import time

from . import proc
from ._check import check_int, check_timeout
from .errors import IPCTimeoutError

DEFAULT_TIMEOUT = 5.0
CAPABILITIES = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
                "CAP_SYS_ADMIN": 21}
PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def _check_sock(sock) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, got {sock!r:.60}")
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    return sock


def pending(sock) -> int:
    """Bytes received by the kernel for ``sock`` and not yet read (``ioctl FIONREAD``).

    For a datagram socket: the size of the next datagram.

    Raises:
        TypeError, ValueError: not an open socket.
    """
    buf = array.array("i", [0])
    fcntl.ioctl(_check_sock(sock).fileno(), termios.FIONREAD, buf)
    return buf[0]


def wait_pending(sock, count: int, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Wait until at least ``count`` bytes wait in ``sock``'s receive buffer; return how many.

    Reads nothing: the bytes stay for the next ``recv``.

    Raises:
        TypeError, ValueError: bad arguments.
        IPCTimeoutError: fewer bytes had arrived when ``timeout`` ran out.
    """
    _check_sock(sock)
    count = check_int(count, "count", low=1)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    while (have := pending(sock)) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise IPCTimeoutError(f"timed out waiting for {count} bytes to arrive: "
                                  f"{have} arrived within {timeout:g} s")
        if have == 0:  # wait for the first bytes without spinning
            select.select([sock], [], [], left)
        else:  # readable already: poll the count
            time.sleep(min(0.001, left))
    return have


def has_capability(name: str) -> bool:
    """Whether this process holds the Linux capability ``name`` (in its effective set).

    Raises:
        ValueError: ``name`` is not one of :data:`CAPABILITIES`.
    """
    if name not in CAPABILITIES:
        raise ValueError(f"name must be one of {sorted(CAPABILITIES)}, got {name!r}")
    with open("/proc/self/status") as f:
        effective = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    return bool(effective >> CAPABILITIES[name] & 1)


def ephemeral_ports() -> tuple[int, int]:
    """The (lowest, highest) port the kernel may choose when a socket binds port 0."""
    with open(PORT_RANGE) as f:
        low, high = (int(word) for word in f.read().split())
    return low, high


def _hold(gate: int, timeout: float) -> None:
    select.select([gate], [], [], timeout)  # until the parent writes (or exits), at most timeout


@contextlib.contextmanager
def held_by_child(*, timeout: float = 10.0):
    """Fork a child that keeps a copy of every descriptor open until the block ends.

    Like any forked child (``pcntl_fork`` in PHP), it inherits the parent's
    sockets: closing one in the parent then only drops the parent's copy.
    The child is released when the block ends (at the latest after ``timeout``
    s it goes by itself) and is always reaped.

    Raises:
        TypeError, ValueError: bad timeout.
    """
    timeout = check_timeout(timeout, allow_none=False)
    gate_r, gate_w = os.pipe()
    try:
        with proc.Family(timeout=timeout + 5, show=False) as family:
            try:
                family.fork(_hold, gate_r, timeout, label="holder")
                yield
            finally:
                os.write(gate_w, b"x")
    finally:
        os.close(gate_r)
        os.close(gate_w)


def wait_for_log(server, text: str, *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Wait until ``server`` (a ServerProcess) has logged a line containing ``text``.

    Returns its log lines so far.

    Raises:
        TypeError, ValueError: bad arguments.
        IPCTimeoutError: no such line within ``timeout`` s (the log is in the message).
    """
    if not callable(getattr(server, "log", None)):
        raise TypeError(f"server must have a log() method (a ServerProcess), got {server!r:.60}")
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    while True:
        lines = server.log()
        if any(text in line for line in lines):
            return lines
        if time.monotonic() >= deadline:
            raise IPCTimeoutError(f"the server logged no line with {text!r} within {timeout:g} "
                                  "s; its log:\n" + "\n".join("  " + line for line in lines))
        time.sleep(0.01)


_CLIENT_LINE = re.compile(r"client (\d+) (connected from )?")


def wait_for_clients(server, count: int, *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Wait until ``server`` has logged ``count`` connections and the end of each; return its log.

    A connection is logged "client N connected from ..." and its end by any
    later "client N ..." line (disconnected, closed mid-line, reset, idle...).

    Raises:
        TypeError, ValueError: bad arguments.
        IPCTimeoutError: not all of them ended within ``timeout`` s (the log is in the message).
    """
    if not callable(getattr(server, "log", None)):
        raise TypeError(f"server must have a log() method (a ServerProcess), got {server!r:.60}")
    count = check_int(count, "count", low=1)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    while True:
        lines = server.log()
        opened, ended = set(), set()
        for line in lines:
            if m := _CLIENT_LINE.match(line):
                (opened if m.group(2) else ended).add(m.group(1))
        if len(opened) >= count and opened <= ended:
            return lines
        if time.monotonic() >= deadline:
            raise IPCTimeoutError(
                f"the server did not log the end of {count} connections within {timeout:g} s "
                f"({len(opened)} connected, {len(opened & ended)} ended); its log:\n"
                + "\n".join("  " + line for line in lines))
        time.sleep(0.01)
