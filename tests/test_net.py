"""ipclab.net: real sockets on loopback, every wait bounded, bad arguments refused before any
system call, and nothing left open."""

import errno
import os
import re
import shutil
import socket
import time

import pytest

from ipclab import leaks, net, netdemo, proc
from ipclab.errors import IPCTimeoutError

pytestmark = pytest.mark.timeout(30)
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not installed")


@pytest.fixture
def no_socket_calls(monkeypatch):
    """Fail if the code under test creates a socket: arguments must be checked first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a socket was created before the arguments were checked")
    monkeypatch.setattr(net.socket, "socket", refuse)
    monkeypatch.setattr(net.socket, "create_connection", refuse)


def ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- check_host, check_port ---------------------------------------------------------------
def test_check_host_returns_a_usable_host():
    assert net.check_host("127.0.0.1") == "127.0.0.1"
    assert net.check_host("localhost") == "localhost"


@pytest.mark.parametrize("host, error", [(None, TypeError), (127, TypeError),
                                         (b"127.0.0.1", TypeError), ("", ValueError),
                                         ("  ", ValueError)])
def test_check_host_refuses_what_is_not_a_host(host, error):
    with pytest.raises(error, match=r"^server must .*, got " + re.escape(repr(host)) + "$"):
        net.check_host(host, "server")


def test_check_port_accepts_the_whole_range():
    assert net.check_port(0) == 0
    assert net.check_port(65535) == 65535
    assert net.check_port(1, allow_zero=False) == 1


@pytest.mark.parametrize("port, kwargs, error, text", [
    (-1, {}, ValueError, "port must be between 0 and 65535, got -1"),
    (65536, {}, ValueError, "port must be between 0 and 65535, got 65536"),
    (0, {"allow_zero": False}, ValueError, "port must be between 1 and 65535, got 0"),
    ("8080", {}, TypeError, "port must be an int, got '8080'"),
    (True, {}, TypeError, "port must be an int, got True"),
    (80.0, {}, TypeError, "port must be an int, got 80.0"),
])
def test_check_port_says_what_is_allowed(port, kwargs, error, text):
    with pytest.raises(error) as info:
        net.check_port(port, **kwargs)
    assert str(info.value) == text


# --- listen ---------------------------------------------------------------------------------
def test_listen_binds_loopback_on_a_free_port_with_a_timeout():
    low, high = netdemo.ephemeral_ports()
    with net.listen() as server:
        host, port = server.getsockname()
        assert host == "127.0.0.1" and low <= port <= high
        assert server.family == socket.AF_INET and server.type == socket.SOCK_STREAM
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert server.gettimeout() == net.DEFAULT_TIMEOUT
        assert ("tcp", f"127.0.0.1:{port}") in leaks.listening()
    assert ("tcp", f"127.0.0.1:{port}") not in leaks.listening()


def test_two_listeners_on_port_zero_get_different_ports():
    with net.listen() as one, net.listen() as two:
        assert one.getsockname()[1] != two.getsockname()[1]


def test_listen_accept_waits_only_its_timeout():
    with net.listen(timeout=0.2) as server:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            server.accept()
        assert 0.15 < time.monotonic() - start < 2


def test_listen_without_timeout_makes_a_blocking_socket():
    with net.listen(timeout=None) as server:
        assert server.gettimeout() is None and server.getblocking()


def test_listen_on_a_port_in_use_names_the_address_and_leaves_no_socket():
    with net.listen() as server:
        port = server.getsockname()[1]
        with pytest.raises(OSError) as info:
            net.listen(port=port)
    assert info.value.errno == errno.EADDRINUSE
    assert f"cannot bind to 127.0.0.1:{port}: Address already in use" in str(info.value)


def test_listen_on_an_address_of_another_machine_fails_clearly():
    with pytest.raises(OSError) as info:
        net.listen("192.0.2.1")  # TEST-NET-1: never an address of this machine
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert "cannot bind to 192.0.2.1:0" in str(info.value)


@pytest.mark.skipif(not ipv6_works(), reason="no IPv6 loopback here")
def test_listen_on_ipv6_loopback():
    with net.listen("::1") as server:
        assert server.family == socket.AF_INET6
        with net.connect("::1", server.getsockname()[1]) as client:
            conn, _ = net.accept(server)
            with conn:
                client.sendall(b"six")
                assert conn.recv(10) == b"six"


@pytest.mark.parametrize("kwargs, error, text", [
    ({"host": 1}, TypeError, "host must be a str"),
    ({"host": ""}, ValueError, "host must not be empty"),
    ({"port": 70000}, ValueError, "port must be between 0 and 65535, got 70000"),
    ({"backlog": 0}, ValueError, "backlog must be between 1 and 65535, got 0"),
    ({"timeout": -1}, ValueError, "timeout must be a number > 0 or None, got -1"),
    ({"timeout": "5"}, TypeError, "timeout must be a number > 0 or None, got '5'"),
])
def test_listen_checks_arguments_before_making_a_socket(no_socket_calls, kwargs, error, text):
    with pytest.raises(error, match=text):
        net.listen(**kwargs)


@needs_ss
def test_listen_backlog_is_what_ss_shows():
    with net.listen(backlog=7) as server:
        port = server.getsockname()[1]
        assert net.show_listening(port) == f"LISTEN 0 7 127.0.0.1:{port} 0.0.0.0:*"


# --- udp_socket -----------------------------------------------------------------------------
def test_udp_socket_keeps_datagrams_apart():
    with net.udp_socket() as receiver, net.udp_socket() as sender:
        assert receiver.type == socket.SOCK_DGRAM
        assert receiver.gettimeout() == net.DEFAULT_TIMEOUT
        assert receiver.getsockname()[0] == "127.0.0.1"
        for data in (b"one", b"two"):
            sender.sendto(data, receiver.getsockname())
        assert receiver.recvfrom(100) == (b"one", sender.getsockname())
        assert receiver.recvfrom(100) == (b"two", sender.getsockname())


def test_udp_socket_recvfrom_waits_only_its_timeout():
    with net.udp_socket(timeout=0.2) as receiver:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            receiver.recvfrom(100)
        assert 0.15 < time.monotonic() - start < 2


def test_udp_socket_on_a_port_in_use_fails_and_leaves_no_socket():
    with net.udp_socket() as first:
        with pytest.raises(OSError) as info:
            net.udp_socket(port=first.getsockname()[1])
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("kwargs, error", [({"host": None}, TypeError),
                                           ({"port": -5}, ValueError),
                                           ({"timeout": 0}, ValueError)])
def test_udp_socket_checks_arguments_first(no_socket_calls, kwargs, error):
    with pytest.raises(error):
        net.udp_socket(**kwargs)


# --- connect --------------------------------------------------------------------------------
def test_connect_gives_a_connected_socket_with_the_timeout():
    with net.listen() as server:
        with net.connect(*server.getsockname(), timeout=1.5) as client:
            assert client.gettimeout() == 1.5
            conn, peer = server.accept()
            with conn:
                assert peer == client.getsockname()
                assert client.getpeername() == server.getsockname()


def test_connect_to_nobody_is_refused_with_the_address():
    with net.listen() as server:
        port = server.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as info:
        net.connect("127.0.0.1", port)
    assert str(info.value) == f"nothing listens on 127.0.0.1:{port} (connection refused)"


def test_connect_times_out_when_the_server_never_answers():
    # With its accept queue full, Linux drops new SYNs: the client gets no answer at all.
    clients = []
    try:
        with net.listen(backlog=1) as server:
            port = server.getsockname()[1]
            with pytest.raises(TimeoutError) as info:
                for _ in range(5):
                    clients.append(net.connect("127.0.0.1", port, timeout=0.3))
            assert 1 <= len(clients) < 5
    finally:
        for c in clients:
            c.close()
    assert str(info.value) == f"no answer from 127.0.0.1:{port} within 0.3 s"


@pytest.mark.parametrize("args, kwargs, error, text", [
    (("127.0.0.1", 0), {}, ValueError, "port must be between 1 and 65535, got 0"),
    (("127.0.0.1", "80"), {}, TypeError, "port must be an int"),
    ((None, 80), {}, TypeError, "host must be a str"),
    (("127.0.0.1", 80), {"timeout": None}, TypeError, "timeout must be a number > 0, got None"),
    (("127.0.0.1", 80), {"timeout": float("inf")}, ValueError, "timeout must be a number > 0"),
])
def test_connect_checks_arguments_first(no_socket_calls, args, kwargs, error, text):
    with pytest.raises(error, match=text):
        net.connect(*args, **kwargs)


# --- accept ---------------------------------------------------------------------------------
def test_accept_returns_the_connection_with_a_timeout_and_restores_the_listener():
    for listener_timeout in (None, 0.0, 3.0):
        with net.listen(timeout=listener_timeout or None) as server:
            server.settimeout(listener_timeout)  # 0.0: non-blocking, as in an event loop
            with net.connect(*server.getsockname()) as client:
                conn, peer = net.accept(server, timeout=2.5)
                with conn:
                    assert peer == client.getsockname()
                    assert conn.gettimeout() == 2.5
                    assert server.gettimeout() == listener_timeout
                    client.sendall(b"ping")
                    assert conn.recv(10) == b"ping"


def test_accept_timeout_says_nobody_came_and_restores_the_listener():
    with net.listen(timeout=None) as server:
        port = server.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError) as info:
            net.accept(server, timeout=0.2)
        assert 0.15 < time.monotonic() - start < 2
        assert server.gettimeout() is None
    assert isinstance(info.value, TimeoutError)
    assert str(info.value) == f"no client connected to 127.0.0.1:{port} within 0.2 s"


def test_accept_refuses_what_is_not_a_listening_socket():
    with pytest.raises(TypeError, match="listener must be a socket.socket, got 5"):
        net.accept(5)
    closed = net.listen()
    closed.close()
    with pytest.raises(ValueError, match="listener is closed"):
        net.accept(closed)
    with net.udp_socket() as udp:
        with pytest.raises(ValueError, match="listener must be a listening stream socket"):
            net.accept(udp)
    client, server_side = net.tcp_pair()
    with client, server_side:
        with pytest.raises(ValueError, match="listener must be a listening stream socket"):
            net.accept(server_side)


@pytest.mark.parametrize("timeout, error", [(None, TypeError), (0, ValueError),
                                            (-2, ValueError), ("1", TypeError)])
def test_accept_checks_the_timeout_before_waiting(timeout, error):
    with net.listen() as server:
        with pytest.raises(error, match="timeout must be a number > 0"):
            net.accept(server, timeout=timeout)
        assert server.gettimeout() == net.DEFAULT_TIMEOUT


# --- tcp_pair -------------------------------------------------------------------------------
def test_tcp_pair_is_one_tcp_connection_and_leaves_no_listener():
    client, server_side = net.tcp_pair(timeout=1.5)
    with client, server_side:
        assert client.type == server_side.type == socket.SOCK_STREAM
        assert client.family == socket.AF_INET
        assert client.getpeername() == server_side.getsockname()
        assert server_side.getpeername() == client.getsockname()
        assert client.gettimeout() == server_side.gettimeout() == 1.5
        client.sendall(b"there")
        assert server_side.recv(10) == b"there"
        server_side.sendall(b"and back")
        assert client.recv(10) == b"and back"
        listener = f"127.0.0.1:{server_side.getsockname()[1]}"
        assert ("tcp", listener) not in leaks.listening()  # closed once it had accepted


@pytest.mark.parametrize("timeout, error", [(None, TypeError), (0, ValueError)])
def test_tcp_pair_checks_the_timeout_first(no_socket_calls, timeout, error):
    with pytest.raises(error):
        net.tcp_pair(timeout=timeout)


# --- support_table --------------------------------------------------------------------------
def test_support_table_tries_every_family_and_type():
    rows = net.support_table()
    assert [(f, t) for f, t, _ in rows] == [(f, t) for f in net.FAMILIES for t in net.TYPES]
    table = {(f, t): works for f, t, works in rows}
    assert all(w == "yes" or w.startswith("no: ") for w in table.values())
    for pair in [("AF_INET", "SOCK_STREAM"), ("AF_INET", "SOCK_DGRAM"),
                 ("AF_UNIX", "SOCK_STREAM"), ("AF_UNIX", "SOCK_DGRAM"),
                 ("AF_UNIX", "SOCK_SEQPACKET")]:
        assert table[pair] == "yes", pair
    assert (table["AF_INET", "SOCK_RAW"] == "yes") == netdemo.has_capability("CAP_NET_RAW")


def _as_nobody():
    if os.getuid() == 0:  # become an ordinary user: no capabilities left
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return {(f, t): works for f, t, works in net.support_table()}


def test_support_table_refuses_raw_sockets_to_an_ordinary_user():
    result = proc.run(_as_nobody, show=False, timeout=10)
    assert result.ok, result.outcome()
    assert result.value["AF_INET", "SOCK_RAW"] == "no: Operation not permitted"
    assert result.value["AF_INET", "SOCK_STREAM"] == "yes"


# --- show_listening -------------------------------------------------------------------------
@needs_ss
def test_show_listening_shows_the_listener_and_its_accept_queue():
    with net.listen() as server, net.listen() as other:
        port, other_port = server.getsockname()[1], other.getsockname()[1]
        assert net.show_listening(port) == f"LISTEN 0 128 127.0.0.1:{port} 0.0.0.0:*"
        with net.connect("127.0.0.1", port):
            assert net.show_listening(port).startswith("LISTEN 1 128 ")
            conn, _ = net.accept(server)
            conn.close()
        assert str(other_port) not in net.show_listening(port)
    assert net.show_listening(port) == f"nothing listens on TCP port {port}"


def test_show_listening_without_ss_reads_proc(monkeypatch):
    monkeypatch.setattr(net.shutil, "which", lambda name: None)
    with net.listen() as server:
        port = server.getsockname()[1]
        assert net.show_listening(port) == f"LISTEN 127.0.0.1:{port} (tcp, from /proc/net)"
    assert net.show_listening(port) == f"nothing listens on TCP port {port}"


def test_show_listening_does_not_list_udp():
    with net.udp_socket() as udp:
        port = udp.getsockname()[1]
        assert net.show_listening(port) == f"nothing listens on TCP port {port}"


@pytest.mark.parametrize("port, error", [(0, ValueError), (65536, ValueError),
                                         ("22", TypeError), (None, TypeError)])
def test_show_listening_checks_the_port(port, error):
    with pytest.raises(error, match="port must"):
        net.show_listening(port)
