"""ipclab.netdemo: the notebook's socket tools, on real sockets, a real child and a real server."""

import os
import socket
import threading
import time

import pytest

from ipclab import bufclient, net, netdemo, proc
from ipclab.errors import IPCTimeoutError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    client, server_side = net.tcp_pair(timeout=5)
    yield client, server_side
    client.close()
    server_side.close()


class FakeLog:
    """Stands in for a ServerProcess: only its log() is used."""

    def __init__(self, *lines):
        self.lines = list(lines)

    def log(self):
        return list(self.lines)


def later(delay, fn, *args):
    thread = threading.Timer(delay, fn, args)
    thread.start()
    return thread


# --- pending, wait_pending ------------------------------------------------------------------
def test_pending_counts_bytes_received_and_not_yet_read(pair):
    client, server_side = pair
    assert netdemo.pending(server_side) == 0
    client.sendall(b"0123456789")
    assert netdemo.wait_pending(server_side, 10) == 10
    assert server_side.recv(4) == b"0123"
    assert netdemo.pending(server_side) == 6


def test_pending_of_a_datagram_socket_is_the_next_datagram():
    with net.udp_socket() as receiver, net.udp_socket() as sender:
        sender.sendto(b"abc", receiver.getsockname())
        sender.sendto(b"defgh", receiver.getsockname())
        netdemo.wait_pending(receiver, 1)
        assert netdemo.pending(receiver) == 3
        receiver.recvfrom(10)
        assert netdemo.wait_pending(receiver, 1) == 5


def test_wait_pending_waits_for_bytes_sent_later_and_reads_none(pair):
    client, server_side = pair
    timers = [later(0.1, client.sendall, b"one "), later(0.2, client.sendall, b"two")]
    assert netdemo.wait_pending(server_side, 7, timeout=5) == 7
    for t in timers:
        t.join()
    assert server_side.recv(100) == b"one two"


def test_wait_pending_timeout_says_how_much_arrived(pair):
    client, server_side = pair
    client.sendall(b"abc")
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        netdemo.wait_pending(server_side, 10, timeout=0.2)
    assert 0.15 < time.monotonic() - start < 2
    assert str(info.value) == "timed out waiting for 10 bytes to arrive: 3 arrived within 0.2 s"
    assert server_side.recv(10) == b"abc"  # still there


def test_wait_pending_on_an_idle_socket_times_out():
    client, server_side = net.tcp_pair()
    with client, server_side:
        with pytest.raises(IPCTimeoutError, match="0 arrived within 0.1 s"):
            netdemo.wait_pending(server_side, 1, timeout=0.1)


def test_pending_and_wait_pending_refuse_bad_arguments(pair):
    client, _ = pair
    with pytest.raises(TypeError, match="sock must be a socket.socket, got 3"):
        netdemo.pending(3)
    closed = socket.socket()
    closed.close()
    with pytest.raises(ValueError, match="sock is closed"):
        netdemo.pending(closed)
    with pytest.raises(ValueError, match="sock is closed"):
        netdemo.wait_pending(closed, 1)
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        netdemo.wait_pending(client, 0)
    with pytest.raises(TypeError, match="count must be an int"):
        netdemo.wait_pending(client, 1.5)
    with pytest.raises(TypeError, match="timeout must be a number > 0, got None"):
        netdemo.wait_pending(client, 1, timeout=None)


# --- has_capability, ephemeral_ports --------------------------------------------------------
def raw_socket_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return True
    except PermissionError:
        return False


def test_has_capability_agrees_with_the_kernel():
    assert netdemo.has_capability("CAP_NET_RAW") == raw_socket_allowed()


def _ordinary_user_capabilities():
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return {name: netdemo.has_capability(name) for name in netdemo.CAPABILITIES}, \
        raw_socket_allowed()


def test_an_ordinary_user_has_no_network_capabilities():
    result = proc.run(_ordinary_user_capabilities, show=False, timeout=10)
    assert result.ok, result.outcome()
    capabilities, raw = result.value
    assert not any(capabilities.values()) and not raw


@pytest.mark.parametrize("name", ["CAP_FOO", "net_raw", "", None, 13])
def test_has_capability_names_the_known_capabilities(name):
    with pytest.raises(ValueError, match=r"name must be one of \['CAP_NET_ADMIN'"):
        netdemo.has_capability(name)


def test_port_zero_lands_in_the_ephemeral_range():
    low, high = netdemo.ephemeral_ports()
    assert 1 <= low <= high <= 65535
    with net.listen() as server, net.udp_socket() as udp:
        assert low <= server.getsockname()[1] <= high
        assert low <= udp.getsockname()[1] <= high


# --- held_by_child --------------------------------------------------------------------------
def test_close_sends_no_end_of_stream_while_a_child_holds_the_socket(pair):
    client, server_side = pair
    server_side.settimeout(0.3)
    with netdemo.held_by_child():
        client.close()
        with pytest.raises(TimeoutError):
            server_side.recv(10)
    server_side.settimeout(5)
    assert server_side.recv(10) == b""  # the child has exited: the last copy is closed


def test_shutdown_reaches_the_peer_although_a_child_holds_the_socket(pair):
    client, server_side = pair
    with netdemo.held_by_child():
        client.shutdown(socket.SHUT_WR)
        assert server_side.recv(10) == b""
        server_side.sendall(b"still open the other way")
        assert client.recv(100) == b"still open the other way"


def test_held_by_child_child_goes_by_itself_after_its_timeout(pair):
    client, server_side = pair
    start = time.monotonic()
    with netdemo.held_by_child(timeout=0.3):
        client.close()
        assert server_side.recv(10) == b""  # no one released the child: it left on its own
        assert 0.25 < time.monotonic() - start < 4


def test_held_by_child_reaps_the_child_when_the_block_raises(pair):
    with pytest.raises(KeyError):
        with netdemo.held_by_child():
            raise KeyError("inside")
    # the leak fixture fails this test if the child were left


@pytest.mark.parametrize("timeout, error", [(0, ValueError), (None, TypeError)])
def test_held_by_child_checks_the_timeout_before_forking(monkeypatch, timeout, error):
    monkeypatch.setattr(netdemo.proc.Family, "fork", lambda *a, **k: pytest.fail("forked"))
    with pytest.raises(error, match="timeout must be a number > 0"):
        with netdemo.held_by_child(timeout=timeout):
            pass


# --- wait_for_log, wait_for_clients ---------------------------------------------------------
def test_wait_for_log_returns_the_log_once_the_line_is_there():
    server = FakeLog("listening on 127.0.0.1:1 (Ctrl-C stops)")
    timer = later(0.1, server.lines.append, "client 1 connected from 127.0.0.1:2")
    lines = netdemo.wait_for_log(server, "client 1 connected", timeout=5)
    timer.join()
    assert lines == server.lines


def test_wait_for_log_timeout_shows_the_log():
    server = FakeLog("listening on x", "client 1 connected from y")
    with pytest.raises(IPCTimeoutError) as info:
        netdemo.wait_for_log(server, "mid-line", timeout=0.1)
    assert str(info.value) == ("the server logged no line with 'mid-line' within 0.1 s; "
                               "its log:\n  listening on x\n  client 1 connected from y")


def test_wait_for_log_refuses_bad_arguments():
    with pytest.raises(TypeError, match="server must have a log"):
        netdemo.wait_for_log(object(), "x")
    with pytest.raises(ValueError, match="text must be a non-empty str, got ''"):
        netdemo.wait_for_log(FakeLog(), "")
    with pytest.raises(ValueError, match="text must be a non-empty str, got 5"):
        netdemo.wait_for_log(FakeLog(), 5)
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        netdemo.wait_for_log(FakeLog(), "x", timeout=-1)


def test_wait_for_clients_counts_every_way_a_connection_ends():
    server = FakeLog("listening on x",
                     "client 1 connected from a", "client 2 connected from b",
                     "client 1 disconnected after 1 line",
                     "client 2 closed mid-line after 0 lines: 3 bytes without a newline")
    assert netdemo.wait_for_clients(server, 2, timeout=1) == server.lines
    assert netdemo.wait_for_clients(server, 1, timeout=1) == server.lines


def test_wait_for_clients_waits_for_the_end_of_each():
    server = FakeLog("client 1 connected from a", "client 2 connected from b",
                     "client 2 disconnected after 0 lines")
    timer = later(0.1, server.lines.append, "client 1 reset the connection after 0 lines")
    netdemo.wait_for_clients(server, 2, timeout=5)
    timer.join()
    assert server.lines[-1].startswith("client 1 reset")


@pytest.mark.parametrize("lines, said", [
    (["client 1 connected from a"], "(1 connected, 0 ended)"),
    (["client 1 connected from a", "client 1 disconnected after 0 lines"],
     "(1 connected, 1 ended)"),  # only one of the two connections asked for
])
def test_wait_for_clients_timeout_says_how_far_it_got(lines, said):
    with pytest.raises(IPCTimeoutError) as info:
        netdemo.wait_for_clients(FakeLog(*lines), 2, timeout=0.1)
    assert f"did not log the end of 2 connections within 0.1 s {said}" in str(info.value)
    assert lines[0] in str(info.value)


def test_wait_for_clients_refuses_bad_arguments():
    with pytest.raises(TypeError, match="server must have a log"):
        netdemo.wait_for_clients("server", 1)
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        netdemo.wait_for_clients(FakeLog(), 0)
    with pytest.raises(TypeError, match="timeout must be a number > 0, got None"):
        netdemo.wait_for_clients(FakeLog(), 1, timeout=None)


def test_wait_for_log_and_clients_with_a_real_server():
    with bufclient.ServerProcess() as srv:
        bufclient.exchange(srv.host, srv.port, ["whole"])
        with net.connect(srv.host, srv.port) as sock:
            sock.recv(100)
            sock.sendall(b"half")
        netdemo.wait_for_log(srv, "client 2 closed mid-line", timeout=5)
        lines = netdemo.wait_for_clients(srv, 2, timeout=5)
    assert "client 1 disconnected after 1 line" in lines
    assert ("client 2 closed mid-line after 0 lines: 4 bytes without a newline were not stored"
            in lines)
