"""TCP and UDP sockets with safe defaults: listen, connect, and what this machine supports.

Wraps ``socket(2)``, ``bind(2)``, ``listen(2)``, ``accept(2)``, ``connect(2)`` and reads
``/proc/net/tcp`` (or runs ``ss``) to show listening sockets.  Servers bind to
the loopback address 127.0.0.1 unless told otherwise, so nothing a student
starts is reachable from the network by accident; port 0 asks the kernel for
a free port, which ``getsockname()`` then tells.  Every socket returned here
has a timeout, so a forgotten ``accept`` or ``recv`` raises instead of
hanging the kernel.

Not handled: name resolution beyond what ``getaddrinfo`` does, TLS.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

from . import leaks
from ._check import check_int, check_timeout
from .errors import IPCTimeoutError

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0

FAMILIES = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "AF_UNIX": socket.AF_UNIX}
TYPES = {name: getattr(socket, name) for name in
         ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_SEQPACKET", "SOCK_RAW", "SOCK_RDM")
         if hasattr(socket, name)}


def check_host(host, name: str = "host") -> str:
    """Return ``host`` if it is a non-empty str.

    Raises:
        TypeError, ValueError: it is not.
    """
    if not isinstance(host, str):
        raise TypeError(f"{name} must be a str such as '127.0.0.1', got {host!r}")
    if not host.strip():
        raise ValueError(f"{name} must not be empty (use '127.0.0.1' for this machine only, "
                         f"'0.0.0.0' for every interface), got {host!r}")
    return host


def check_port(port, name: str = "port", *, allow_zero: bool = True) -> int:
    """Return ``port`` if it is an int in 0..65535 (1..65535 if not ``allow_zero``).

    Raises:
        TypeError, ValueError: it is not.
    """
    return check_int(port, name, low=0 if allow_zero else 1, high=65535)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str = LOOPBACK, port: int = 0, *, backlog: int = 128,
           timeout: float | None = DEFAULT_TIMEOUT) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` and listening; ``accept`` waits ``timeout`` s.

    SO_REUSEADDR is set so a restarted server can bind while old connections
    linger in TIME_WAIT.  ``timeout=None`` makes a blocking socket (for a
    selectors loop that never blocks on it, set non-blocking yourself).

    Raises:
        TypeError, ValueError: bad arguments.
        OSError: the address is in use or cannot be bound (the message says which).
    """
    host, port = check_host(host), check_port(port)
    backlog = check_int(backlog, "backlog", low=1, high=65535)
    timeout = check_timeout(timeout)
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise OSError(e.errno, f"cannot bind to {host}:{port}: {e.strerror}") from None
        sock.listen(backlog)
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def udp_socket(host: str = LOOPBACK, port: int = 0, *,
               timeout: float | None = DEFAULT_TIMEOUT) -> socket.socket:
    """A UDP socket bound to ``host``:``port``; ``recvfrom`` waits ``timeout`` s.

    Raises:
        TypeError, ValueError, OSError: as :func:`listen`.
    """
    host, port, timeout = check_host(host), check_port(port), check_timeout(timeout)
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def connect(host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    """A TCP socket connected to ``host``:``port``; every later call waits ``timeout`` s.

    Raises:
        TypeError, ValueError: bad arguments.
        ConnectionRefusedError: nothing listens there.
        TimeoutError: no answer within ``timeout`` (a firewall dropping packets).
    """
    host, port = check_host(host), check_port(port, allow_zero=False)
    timeout = check_timeout(timeout, allow_none=False)
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise ConnectionRefusedError(f"nothing listens on {host}:{port} "
                                     "(connection refused)") from None
    except TimeoutError:
        raise TimeoutError(f"no answer from {host}:{port} within {timeout:g} s") from None


def accept(listener: socket.socket, *, timeout: float = DEFAULT_TIMEOUT):
    """Wait at most ``timeout`` s for a client; return ``(connection, peer address)``.

    The connection gets ``timeout`` too: a plain ``accept()`` hands back a socket
    without any timeout, whose first ``recv`` could wait for ever.

    Raises:
        TypeError, ValueError: ``listener`` is not an open listening TCP socket, bad timeout.
        IPCTimeoutError: no client connected in time.
    """
    if not isinstance(listener, socket.socket):
        raise TypeError(f"listener must be a socket.socket, got {listener!r:.60}")
    if listener.fileno() < 0:
        raise ValueError("listener is closed")
    if listener.type != socket.SOCK_STREAM or not listener.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ValueError(f"listener must be a listening stream socket (see listen()), "
                         f"got {listener!r:.80}")
    timeout = check_timeout(timeout, allow_none=False)
    old = listener.gettimeout()
    listener.settimeout(timeout)
    try:
        conn, peer = listener.accept()
    except TimeoutError:
        host, port = listener.getsockname()[:2]
        raise IPCTimeoutError(f"no client connected to {host}:{port} within "
                              f"{timeout:g} s") from None
    finally:
        listener.settimeout(old)
    conn.settimeout(timeout)
    return conn, peer


def tcp_pair(*, timeout: float = DEFAULT_TIMEOUT) -> tuple[socket.socket, socket.socket]:
    """Two ends of one TCP connection over loopback: ``(client, server side)``.

    A listener on a free port is used for the one ``accept`` and closed at
    once.  Both sockets get ``timeout``.  (:func:`socket.socketpair` gives an
    AF_UNIX pair; this one goes through TCP, as between two machines.)

    Raises:
        TypeError, ValueError: bad timeout.
    """
    timeout = check_timeout(timeout, allow_none=False)
    with listen(timeout=timeout) as listener:
        client = connect(*listener.getsockname()[:2], timeout=timeout)
        try:
            server_side, _ = accept(listener, timeout=timeout)
        except BaseException:
            client.close()
            raise
    return client, server_side


def support_table() -> list[tuple[str, str, str]]:
    """Try every family x type; return (family, type, "yes" or why not) for each.

    Measured live: each pair is really created (and closed at once).  SOCK_RAW
    over IP (here with ICMP, as ping uses it) needs CAP_NET_RAW, so it is "yes"
    for root and refused for a student.
    """
    raw = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
    rows = []
    for fname, family in FAMILIES.items():
        for tname, kind in TYPES.items():
            proto = raw.get(family, 0) if tname == "SOCK_RAW" else 0  # raw IP needs a protocol
            try:
                socket.socket(family, kind, proto).close()
                rows.append((fname, tname, "yes"))
            except OSError as e:
                rows.append((fname, tname, f"no: {e.strerror}"))
    return rows


def show_listening(port: int) -> str:
    """The line ``ss -ltn`` prints for TCP listeners on ``port`` (from /proc if no ``ss``).

    Raises:
        TypeError, ValueError: bad port.
    """
    port = check_port(port, allow_zero=False)
    ss = shutil.which("ss")
    if ss:
        out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=DEFAULT_TIMEOUT).stdout
        lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
    else:  # the same facts, read where ss reads them
        lines = [f"LISTEN {addr} ({proto}, from /proc/net)" for proto, addr
                 in sorted(leaks.listening()) if proto.startswith("tcp")
                 and addr.endswith(f":{port}")]
    return "\n".join(lines) or f"nothing listens on TCP port {port}"
