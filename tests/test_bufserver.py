"""The seeds' buffer server: the protocol, many clients at once, hostile clients, clean stops."""

import socket
import struct
import threading
import time

import pytest

from ipclab import bufclient
from ipclab.bufserver import BufferServer
from ipclab.framing import recv_exactly

pytestmark = pytest.mark.timeout(60)
RECEIVED = b"Information Received\r\n"


class Running:
    """A BufferServer serving in a thread, its log kept in a list."""

    def __init__(self, **options):
        self.log = []
        self.server = BufferServer(log=self.log.append, **options)
        self.host, self.port = self.server.address
        self.thread = threading.Thread(target=self.server.serve)
        self.thread.start()

    def stop(self):
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def wait_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.log):
            assert time.monotonic() < deadline, f"no log line with {text!r} in {self.log}"
            time.sleep(0.01)
        return next(line for line in self.log if text in line)

    def raw(self):
        s = socket.create_connection((self.host, self.port), timeout=5)
        return s


@pytest.fixture
def running():
    servers = []

    def start(**options):
        servers.append(Running(**options))
        return servers[-1]

    yield start
    for r in servers:
        r.stop()


def read_all(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_greeting_is_no_data_then_the_last_line_any_client_stored(running):
    r = running()
    assert bufclient.exchange(r.host, r.port, ["first", "second"]).greeting == "no data"
    seen = bufclient.exchange(r.host, r.port, [])
    assert (seen.greeting, seen.replies) == ("second", [])
    assert bufclient.exchange(r.host, r.port, ["x"]).replies == ["Information Received"]


def test_the_bytes_on_the_wire_are_the_seeds_and_crlf_is_accepted(running):
    r = running()
    with r.raw() as s:
        s.sendall(b"Some data\r\nmore\n")
        s.shutdown(socket.SHUT_WR)
        assert read_all(s) == b"no data\r\n" + RECEIVED * 2
    with r.raw() as s:
        assert s.recv(100) == b"more\r\n"


def test_one_log_line_per_connection_event_and_loopback_by_default(running):
    r = running()
    assert r.host == "127.0.0.1"
    bufclient.exchange(r.host, r.port, ["a"])
    r.wait_log("client 1 disconnected")
    r.stop()
    assert [line.split(" from ")[0] for line in r.log] == [
        f"listening on 127.0.0.1:{r.port} (Ctrl-C stops)",
        "client 1 connected",
        "client 1 disconnected after 1 line",
        "stopped: 1 connection served, 1 line stored",
    ]


def test_a_hundred_concurrent_clients_are_all_answered(running):
    r = running()
    results, errors = {}, []
    start = threading.Barrier(100, timeout=20)

    def client(i):
        try:
            start.wait()
            results[i] = bufclient.exchange(r.host, r.port, [f"c{i} l{k}" for k in range(3)],
                                            timeout=20)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 100
    assert all(e.replies == ["Information Received"] * 3 for e in results.values())
    assert r.server.lines_stored == 300 and r.server.served == 100
    last = bufclient.exchange(r.host, r.port, []).greeting
    assert last.startswith("c") and last.endswith(" l2")


def test_a_silent_client_does_not_block_the_others(running):
    r = running()
    with r.raw() as silent:
        assert silent.recv(100) == b"no data\r\n"
        assert bufclient.exchange(r.host, r.port, ["still served"]).replies
        assert bufclient.exchange(r.host, r.port, []).greeting == "still served"


def test_a_line_over_the_bound_gets_an_error_line_and_a_disconnect(running):
    r = running(max_line=1000)
    with r.raw() as s:
        s.sendall(b"ok\n" + b"x" * 5000)
        assert read_all(s) == (b"no data\r\n" + RECEIVED
                               + b"ERROR line longer than 1000 bytes; closing\r\n")
    assert "client 1 sent a line over 1000 bytes after 1 line" in r.wait_log("over 1000")
    assert bufclient.exchange(r.host, r.port, []).greeting == "ok"


def test_the_default_bound_is_64_kib(running):
    r = running()
    with r.raw() as s:
        s.sendall(b"y" * 65536 + b"\n")
        assert recv_exactly(s, 9 + len(RECEIVED)) == b"no data\r\n" + RECEIVED
        s.sendall(b"z" * 65537 + b"\n")
        assert b"ERROR line longer than 65536 bytes" in read_all(s)


def test_binary_garbage_is_stored_as_bytes_and_answered(running):
    r = running()
    garbage = bytes(range(256)).replace(b"\n", b"") * 40
    with r.raw() as s:
        s.sendall(garbage + b"\n" + b"\x00\xff\xfe\n")
        s.shutdown(socket.SHUT_WR)
        assert read_all(s) == b"no data\r\n" + RECEIVED * 2
    with r.raw() as s:
        assert read_all_after_shutdown(s) == b"\x00\xff\xfe\r\n"
    assert bufclient.exchange(r.host, r.port, []).greeting == "\x00\\xff\\xfe"


def read_all_after_shutdown(sock):
    sock.shutdown(socket.SHUT_WR)
    return read_all(sock)


def test_a_half_closed_client_still_gets_every_reply(running):
    r = running()
    with r.raw() as s:
        s.sendall(b"".join(b"line %d\n" % i for i in range(1000)))
        s.shutdown(socket.SHUT_WR)
        assert read_all(s) == b"no data\r\n" + RECEIVED * 1000
    r.wait_log("client 1 disconnected after 1000 lines")


def test_a_client_gone_mid_line_is_logged_and_the_partial_line_not_stored(running):
    r = running()
    bufclient.exchange(r.host, r.port, ["kept"])
    with r.raw() as s:
        assert recv_exactly(s, 6) == b"kept\r\n"  # unread data would make close send a reset
        s.sendall(b"half a li")
    line = r.wait_log("client 2 closed mid-line")
    assert "after 0 lines: 9 bytes without a newline were not stored" in line
    assert bufclient.exchange(r.host, r.port, []).greeting == "kept"


def test_an_abrupt_reset_is_logged_and_the_server_goes_on(running):
    r = running()
    s = r.raw()
    s.recv(100)
    s.sendall(b"x\n")
    assert s.recv(100) == RECEIVED
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(b"unfinished")
    s.close()  # linger 0: the kernel sends RST instead of FIN
    r.wait_log("client 1 ")
    assert "client 1 reset the connection after 1 line" in r.wait_log("reset")
    assert bufclient.exchange(r.host, r.port, []).greeting == "x"


def test_a_client_that_does_not_read_is_throttled_and_loses_nothing(running):
    r = running(max_pending=4096)
    count = 200_000
    with r.raw() as flooder:
        sender = threading.Thread(target=flooder.sendall, args=(b"f\n" * count,))
        sender.start()
        time.sleep(0.5)  # let the buffers fill: the server must stop reading this client
        client = r.server._clients  # the server's own bookkeeping, looked at, not changed
        pending = max(len(c.out) for c in list(client.values()))
        assert pending <= 4096 + 16384 // 2 * len(RECEIVED)
        assert bufclient.exchange(r.host, r.port, ["others are served"]).replies
        flooder.settimeout(10)
        got = 0
        need = len(b"no data\r\n") + count * len(RECEIVED)
        while got < need:
            chunk = flooder.recv(1 << 20)
            assert chunk, f"connection closed after {got} of {need} bytes"
            got += len(chunk)
        sender.join(10)
        assert got == need


def test_clients_over_max_clients_are_told_the_server_is_busy(running):
    r = running(max_clients=2)
    with r.raw() as a, r.raw() as b:
        a.recv(100), b.recv(100)
        with r.raw() as c:
            assert read_all(c).startswith(b"ERROR server busy: 2 clients already connected")
    assert "refused a client" in r.wait_log("refused")


def test_a_client_idle_past_the_idle_timeout_is_told_and_closed(running):
    r = running(idle_timeout=0.3)
    with r.raw() as s:
        assert read_all(s) == b"no data\r\nERROR idle for 0.3 s; closing\r\n"
    assert "client 1 idle for 0.3 s after 0 lines" in r.wait_log("idle")


def test_stop_closes_every_connection_and_logs_it(running):
    r = running()
    with r.raw() as s:
        s.recv(100)
        r.stop()
        assert s.recv(100) == b""
    assert r.log[-2].startswith("client 1 closed by the server stopping")
    assert r.log[-1] == "stopped: 1 connection served, 0 lines stored"
    r.server.close()  # twice is fine


@pytest.mark.parametrize("options, message", [
    ({"max_line": 0}, "max_line must be >= 1"),
    ({"max_clients": "many"}, "max_clients must be an int"),
    ({"idle_timeout": -1}, "idle_timeout must be a number > 0 or None"),
    ({"host": ""}, "host must not be empty"),
    ({"port": 70000}, "port must be between 0 and 65535"),
    ({"log": "stdout"}, "log must be callable"),
])
def test_server_arguments_are_checked(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        BufferServer(**options)


def test_binding_a_port_in_use_says_which(running):
    r = running()
    with pytest.raises(OSError, match=f"cannot bind to 127.0.0.1:{r.port}: Address already in"):
        BufferServer(port=r.port)


def test_exchange_arguments_are_checked(running):
    r = running()
    with pytest.raises(TypeError, match="lines must be a list of lines"):
        bufclient.exchange(r.host, r.port, "abc")
    with pytest.raises(ValueError, match="without '\\\\n'"):
        bufclient.exchange(r.host, r.port, ["a\nb"])
    with pytest.raises(ValueError, match="port must be between 1 and 65535"):
        bufclient.exchange(r.host, 0, [])


def test_exchange_with_nothing_listening_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectionRefusedError, match=f"nothing listens on 127.0.0.1:{port}"):
            bufclient.exchange("127.0.0.1", port, [])


def test_exchange_reports_a_server_that_answers_something_else():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def odd_server():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"hello\r\n")
                conn.recv(100)
                conn.sendall(b"ERROR nope\r\n")

        t = threading.Thread(target=odd_server)
        t.start()
        with pytest.raises(Exception, match="answered 'ERROR nope' instead of replying to 'x'"):
            bufclient.exchange("127.0.0.1", listener.getsockname()[1], ["x"])
        t.join(5)


def test_the_server_as_a_process_stops_cleanly_on_sigterm():
    with bufclient.ServerProcess() as server:
        assert server.host == "127.0.0.1"
        assert bufclient.exchange(server.host, server.port, ["via a process"]).replies
    assert server.stop() == 0
    log = server.log()
    assert log[0] == f"listening on 127.0.0.1:{server.port} (Ctrl-C stops)"
    assert log[-1] == "stopped: 1 connection served, 1 line stored"


def test_sigint_stops_it_like_ctrl_c_and_a_closed_stdin_too():
    server = bufclient.ServerProcess()
    server._proc.send_signal(2)
    assert server._proc.wait(10) == 0
    assert server.stop() == 0 and server.log()[-1].startswith("stopped:")
    server = bufclient.ServerProcess()
    server._proc.stdin.close()  # what happens when the notebook's kernel dies
    assert server._proc.wait(10) == 0
    server.stop()


def test_a_server_process_that_cannot_bind_reports_why(running):
    r = running()
    with pytest.raises(Exception, match=f"cannot bind to 127.0.0.1:{r.port}"):
        bufclient.ServerProcess(port=r.port)


def test_the_client_command_prints_the_greeting_and_each_reply(running, capsys):
    r = running()
    args = type("Args", (), {"host": r.host, "port": r.port, "send": ["hi", "there"],
                             "timeout": 5.0})
    assert bufclient.client_cli(args) == 0
    assert capsys.readouterr().out == "no data\nInformation Received\nInformation Received\n"
    args.send = ["bad\nline"]
    assert bufclient.client_cli(args) == 1
    assert "ipclab client: each line must be" in capsys.readouterr().err


def test_serve_with_a_duration_returns_and_closes_the_listener():
    server = BufferServer(log=lambda line: None)
    host, port = server.address
    server.serve(duration=0.2)
    with pytest.raises(ConnectionRefusedError):
        bufclient.exchange(host, port, [])
