"""ipclab.framing on real socketpairs: partial reads joined, bounds enforced, timeouts fire."""

import os
import socket
import threading
import time

import pytest

from ipclab import diagnose, framing, sockpair
from ipclab.errors import IPCTimeoutError, ProtocolError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _blocking():
    return socket.socketpair()


def _python_timeout():  # O_NONBLOCK, and Python polls before each call (net.connect's kind)
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    return a, b


def _non_blocking():  # as in a selectors loop
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _sockpair_end():  # blocking, the timeout kept by the kernel
    return sockpair.pair(timeout=5)


def _sockpair_end_without_timeout():
    a, b = sockpair.pair()
    a.settimeout(None)
    b.settimeout(None)
    return a, b


@pytest.fixture(params=[_blocking, _python_timeout, _non_blocking, _sockpair_end,
                        _sockpair_end_without_timeout], ids=lambda make: make.__name__[1:])
def any_pair(request):
    """Connected stream sockets in each mode framing meets: the mode must not matter."""
    a, b = request.param()
    modes = [(s.gettimeout(), os.get_blocking(s.fileno())) for s in (a, b)]
    yield a, b
    if a.fileno() >= 0:
        assert [(s.gettimeout(), os.get_blocking(s.fileno())) for s in (a, b)] == modes
    a.close()
    b.close()


def _raises(call, seconds: float, match: str) -> None:
    """``call`` raises IPCTimeoutError matching ``match``, after ``seconds`` (not much later)."""
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError, match=match):
        call()
    assert seconds <= time.monotonic() - start < seconds + 0.5


def test_splitter_joins_pieces_and_accepts_both_endings():
    s = framing.LineSplitter()
    assert s.feed(b"hel") == []
    assert s.pending == 3
    assert s.feed(b"lo\r\nwor") == [b"hello"]
    assert s.feed(b"ld\n\n\rx\n") == [b"world", b"", b"\rx"]
    assert s.pending == 0


def test_splitter_refuses_a_line_over_the_bound_with_or_without_its_newline():
    s = framing.LineSplitter(max_line=4)
    assert s.feed(b"abcd\n") == [b"abcd"]
    with pytest.raises(ProtocolError, match="longer than 4 bytes"):
        s.feed(b"abcde\n")
    with pytest.raises(ProtocolError, match="no newline yet"):
        framing.LineSplitter(max_line=4).feed(b"abcde")


def test_reader_reads_lines_sent_one_byte_at_a_time(pair):
    a, b = pair
    sender = threading.Thread(target=lambda: [a.send(bytes([c])) for c in b"one\r\ntwo\n"])
    sender.start()
    reader = framing.LineReader(b, timeout=5)
    assert [reader.readline(), reader.readline()] == [b"one", b"two"]
    sender.join()
    a.shutdown(socket.SHUT_WR)
    assert reader.readline() is None


def test_reader_times_out_with_an_explanation_and_counts_the_partial_line(pair):
    a, b = pair
    a.send(b"half a li")
    with pytest.raises(IPCTimeoutError, match=r"a line \(9 bytes of it so far\).*did not close"):
        framing.LineReader(b, timeout=0.2).readline()


def test_reader_reports_a_close_in_the_middle_of_a_line(pair):
    a, b = pair
    a.sendall(b"done\npartial")
    a.close()
    reader = framing.LineReader(b)
    assert reader.readline() == b"done"
    with pytest.raises(ProtocolError, match=r"middle of a line \(7 bytes"):
        reader.readline()


def test_send_line_refuses_embedded_newlines_and_sends_str_as_utf8(pair):
    a, b = pair
    with pytest.raises(ValueError, match="one line at a time"):
        framing.send_line(a, "two\nlines")
    framing.send_line(a, "café")
    assert b.recv(100) == "café\n".encode()


def test_send_all_times_out_when_the_peer_never_reads(pair):
    a, b = pair
    with pytest.raises(IPCTimeoutError, match="not reading"):
        framing.send_all(a, b"x" * (16 << 20), timeout=0.3)
    assert a.gettimeout() is None  # the socket's own timeout is restored


def test_messages_round_trip_including_empty_and_large(pair):
    a, b = pair
    big = os.urandom(1 << 20)
    t = threading.Thread(target=lambda: [framing.send_message(a, m) for m in (b"", b"hi", big)])
    t.start()
    got = [framing.recv_message(b) for _ in range(3)]
    t.join()
    assert got == [b"", b"hi", big]
    a.close()
    assert framing.recv_message(b) is None


def test_recv_message_refuses_an_announced_length_over_the_bound(pair):
    a, b = pair
    a.sendall((1 << 30).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="1073741824-byte message.*max_size=1024"):
        framing.recv_message(b, max_size=1024)


def test_recv_exactly_reports_a_short_stream(pair):
    a, b = pair
    a.sendall(b"abc")
    a.close()
    with pytest.raises(ProtocolError, match="after 3 of 5 bytes"):
        framing.recv_exactly(b, 5)


def test_send_message_refuses_a_payload_over_max_size(pair):
    with pytest.raises(ValueError, match="at most max_size=2 bytes, got 3"):
        framing.send_message(pair[0], b"abc", max_size=2)


@pytest.mark.parametrize("call, message", [
    (lambda s: framing.LineReader("not a socket"), "must be a socket.socket"),
    (lambda s: framing.LineReader(s, timeout=0), "timeout must be a number > 0"),
    (lambda s: framing.LineSplitter(max_line=0), "max_line must be >= 1"),
    (lambda s: framing.send_line(s, 42), "line must be bytes or str"),
    (lambda s: framing.recv_exactly(s, -1), "count must be >= 0"),
    (lambda s: framing.recv_message(s, timeout=None), "timeout must be a number > 0, got None"),
])
def test_arguments_are_checked(pair, call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call(pair[0])


def test_frames_cross_on_every_kind_of_socket_which_keeps_its_mode(any_pair):
    a, b = any_pair
    big = os.urandom(1 << 20)

    def sender():
        for m in (b"", b"hi", big):
            framing.send_message(a, m)
        framing.send_all(a, bytes(range(200)))
        framing.send_line(a, "a line")  # LineReader keeps whatever comes after a line

    t = threading.Thread(target=sender)
    t.start()
    assert [framing.recv_message(b) for _ in range(3)] == [b"", b"hi", big]
    assert framing.recv_exactly(b, 200) == bytes(range(200))
    assert framing.LineReader(b).readline() == b"a line"
    t.join()
    a.close()
    assert framing.recv_exactly(b, 5) is None and framing.recv_exactly(b, 0) == b""


def test_bytes_sent_one_at_a_time_are_joined_on_every_kind_of_socket(any_pair):
    a, b = any_pair
    data = os.urandom(300)
    sender = threading.Thread(target=lambda: [framing.send_all(a, data[i:i + 1])
                                              for i in range(len(data))])
    sender.start()
    assert framing.recv_exactly(b, len(data)) == data
    sender.join()


def test_timeouts_fire_on_time_on_every_kind_of_socket(any_pair):
    a, b = any_pair
    framing.send_all(a, b"abc")
    _raises(lambda: framing.recv_exactly(b, 5, timeout=0.2), 0.2,
            r"waiting for 5 bytes \(3 so far\): the peer sent nothing more")
    framing.send_all(a, b"half a li")
    _raises(lambda: framing.LineReader(b, timeout=0.2).readline(), 0.2,
            r"waiting for a line \(9 bytes of it so far\)")
    _raises(lambda: framing.send_all(a, b"x" * (16 << 20), timeout=0.2), 0.2,
            "timed out sending 16777216 bytes: the peer is not reading")


def test_a_close_in_the_middle_of_a_frame_is_reported_on_every_kind_of_socket(any_pair):
    a, b = any_pair
    framing.send_all(a, b"\0\0\0\x09abc")
    a.close()
    with pytest.raises(ProtocolError, match="the peer closed the connection after 3 of 9 bytes"):
        framing.recv_message(b)


def test_a_sockpair_end_gets_no_setsockopt_per_call(monkeypatch):
    calls = []
    set_timeo = sockpair.Socket._set_timeo
    monkeypatch.setattr(sockpair.Socket, "_set_timeo",
                        lambda sock, *args: calls.append(args) or set_timeo(sock, *args))
    with sockpair.pair(timeout=5) as (a, b):
        for timeout, expected in ((5.0, 0), (2.0, 4)):  # 2 s: once per end and direction
            calls.clear()
            for _ in range(20):
                framing.send_message(a, b"ping", timeout=timeout)
                assert framing.recv_message(b, timeout=timeout) == b"ping"
                framing.send_line(b, "pong", timeout=timeout)
                assert framing.LineReader(a, timeout=timeout).readline() == b"pong"
            assert len(calls) == expected


def test_two_threads_may_wait_on_one_socket():
    a, b = _python_timeout()
    got = []
    threads = [threading.Thread(target=lambda: got.append(framing.recv_exactly(b, 1)))
               for _ in range(2)]
    with a, b:
        for t in threads:
            t.start()
            deadline = time.monotonic() + 5
            while (diagnose.syscall(t.native_id) or ("",))[0] not in ("poll", "ppoll"):
                assert time.monotonic() < deadline, "the reader never waited in poll"
                time.sleep(0.001)
        a.sendall(b"xy")
        for t in threads:
            t.join()
    assert sorted(got) == [b"x", b"y"]


class _Shouting(socket.socket):
    """A subclass that reads and writes its own way, as ssl.SSLSocket does."""

    def recv(self, size, flags=0):
        return super().recv(size, flags).upper()

    def sendall(self, data, flags=0):
        return super().sendall(bytes(data).lower(), flags)


def test_a_socket_subclass_is_read_and_written_through_its_own_methods(pair):
    a, b = (_Shouting(fileno=s.detach()) for s in pair)
    with a, b:
        b.settimeout(2)
        framing.send_all(a, b"Hello")
        assert framing.recv_exactly(b, 5) == b"HELLO" and b.gettimeout() == 2
        with pytest.raises(IPCTimeoutError, match="timed out sending 16777216 bytes"):
            framing.send_all(a, b"x" * (16 << 20), timeout=0.2)
        assert a.gettimeout() is None


def test_wait_readable_says_what_it_waited_for(pair):
    a, b = pair
    with pytest.raises(IPCTimeoutError, match="timed out waiting for a reply: the peer sent "
                                              "nothing more and did not close"):
        framing.wait_readable(b, time.monotonic() + 0.1, "a reply")
    a.sendall(b"!")
    framing.wait_readable(b, time.monotonic() + 5, "a reply")


def test_a_closed_socket_is_refused(pair):
    a, _ = pair
    a.close()
    with pytest.raises(ValueError, match="sock is closed"):
        framing.LineReader(a)


def test_the_whole_lines_before_an_over_long_one_are_not_lost():
    s = framing.LineSplitter(max_line=3)
    with pytest.raises(ProtocolError) as caught:
        s.feed(b"ab\ncd\r\ntoolong\nx")
    assert caught.value.lines == [b"ab", b"cd"]
    assert s.pending == 0
