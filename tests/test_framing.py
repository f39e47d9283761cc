"""ipclab.framing on real socketpairs: partial reads joined, bounds enforced, timeouts fire."""

import os
import socket
import threading

import pytest

from ipclab import framing
from ipclab.errors import IPCTimeoutError, ProtocolError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


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
