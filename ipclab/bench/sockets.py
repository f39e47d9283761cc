"""Stream sockets for the benchmark: socketpair, Unix-domain and TCP (loopback) sockets.

``ipclab`` goes through :func:`ipclab.framing.send_all` and
:func:`~ipclab.framing.recv_exactly` on sockets from :func:`ipclab.sockpair.pair` and
:func:`ipclab.net.listen`/``connect``/``accept`` (ipclab has no helper that makes a
Unix-domain listener, so that one is a plain socket with a timeout, and its connected
ends are :class:`ipclab.sockpair.Socket`, whose timeouts the kernel keeps).  ``bare`` is
the same exchange on blocking sockets with ``sendall`` and ``recv`` and no
timeouts: socketpair(2), socket(2), bind(2), listen(2), accept(2), connect(2),
recv(2), send(2).  TCP sockets get TCP_NODELAY, as in the C reference.  The Unix
socket's file lives in a private folder (mode 0700) that the supervisor removes.
"""

from __future__ import annotations

import os
import shutil
import socket

from .. import framing, net, sockpair
from .mechanisms import Bench, Endpoint, private_dir, register


def _sock_recv_exactly(sock, n: int):
    data = sock.recv(n)
    if len(data) == n:
        return data
    buf = bytearray(data)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"the peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class _Sock(Bench):
    """One bidirectional stream socket per side."""

    def ends(self, sock) -> Endpoint:
        if self.impl == "bare":
            sock.settimeout(None)
            return Endpoint(sock.sendall, lambda n: _sock_recv_exactly(sock, n), sock.close)
        t = self.timeout
        return Endpoint(lambda d: framing.send_all(sock, d, timeout=t),
                        lambda n: framing.recv_exactly(sock, n, timeout=t), sock.close)


class _Socketpair(_Sock):
    mechanism = "socketpair"

    def prepare(self):
        if self.impl == "ipclab":
            self.pair = sockpair.pair("stream", timeout=self.timeout)
        else:
            self.pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def endpoint(self, side):
        mine, other = self.pair if side == "a" else self.pair[::-1]
        other.close()
        return self.ends(mine)


@register
class SocketpairIpclab(_Socketpair):
    impl = "ipclab"


@register
class SocketpairBare(_Socketpair):
    impl = "bare"


class _Listening(_Sock):
    """A listener made in A before the fork: B accepts, A connects."""

    def endpoint(self, side):
        if side == "a":
            address = self.listener.getsockname()
            self.listener.close()
            sock = self.connect(address)
        else:
            sock = self.accept()
            self.listener.close()
        if self.mechanism == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ends(sock)

    def accept(self):
        if self.impl == "ipclab":
            return net.accept(self.listener, timeout=self.timeout)[0]
        return self.listener.accept()[0]


def _kernel_timed(sock, timeout: float) -> sockpair.Socket:
    """``sock`` as a :class:`ipclab.sockpair.Socket` with ``timeout`` (kernel-timed: no poll)."""
    timed = sockpair.Socket(fileno=sock.detach())
    timed.settimeout(timeout)
    return timed


class _Unix(_Listening):
    """ipclab has no Unix-domain helper: its side uses :class:`ipclab.sockpair.Socket`
    ends (timeouts kept by the kernel, as ipclab's socketpairs), ``bare`` plain sockets."""

    mechanism = "unix"

    def setup(self):
        self.dir = private_dir()

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def prepare(self):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.dir, "sock"))
        self.listener.listen(1)
        if self.impl == "ipclab":
            self.listener.settimeout(self.timeout)

    def connect(self, address):
        if self.impl == "ipclab":
            sock = sockpair.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        return sock

    def accept(self):
        sock = super().accept()
        return _kernel_timed(sock, self.timeout) if self.impl == "ipclab" else sock


@register
class UnixIpclab(_Unix):
    impl = "ipclab"


@register
class UnixBare(_Unix):
    impl = "bare"


@register
class TcpIpclab(_Listening):
    mechanism, impl = "tcp", "ipclab"

    def prepare(self):
        self.listener = net.listen(timeout=self.timeout)

    def connect(self, address):
        return net.connect(*address, timeout=self.timeout)


@register
class TcpBare(_Listening):
    mechanism, impl = "tcp", "bare"

    def prepare(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)

    def connect(self, address):
        return socket.create_connection(address)
