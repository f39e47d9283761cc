"""Lab 05's hidden checks: what the grader adds to the visible checks of the message board.

The visible checks (:mod:`ipclab.labs.lab05`, :mod:`ipclab.labs.lab05_server`)
try each rule once.  These try the cases a careful grader adds, each allowed by the
lab's protocol table and instructions, and each failed by a mistake that passes the
visible checks:

- ``handle_line``: READ numbers written with other digits (``str.isdigit`` says yes to
  ``'٣'`` and ``'²'``), or with a sign or spaces; POST text kept exactly, spaces at
  both ends included (no ``strip``); commands exact, with no tab or space around them.
- ``LineBuffer``: two buffers at once (a ``bytearray`` shared through a class attribute
  or a default argument mixes connections); a CRLF stream cut at every byte (one ``\\r``
  removed, no more); spaces and tabs kept; thousands of short lines that are longer
  than ``max_line`` together.
- ``serve_board``, through clients on 127.0.0.1 (socket(2), connect(2), send(2),
  recv(2), setsockopt(2) ``TCP_NODELAY``, close(2)), the server in a child
  (:func:`ipclab.labs.lab05_harness.judge`): 128 clients at once with 16 pipelined
  requests each; 64 silent clients and 24 that send a byte at a time, while another
  must be answered after every byte (a server that waits a little for the rest of a
  line fails); every client's request cut at a different byte, UTF-8 and CRLF, each
  piece read by the server (its receive queues in /proc/net/tcp) before the next;
  300 short connections in a row, after which the server must hold none (one
  ``shutdown`` without ``close`` per client leaks a descriptor); and a stop while
  clients are silent or mid-line.

128 clients: at most the listen(2) backlog of the harness (128) wait to be accepted,
so no connect needs a SYN retry, and about 260 descriptors are open in all.
"""

from __future__ import annotations

import socket
import time

from ...grading.parts import Part, hide
from ..lab05 import MAX_LINE, _exchanges, _fed, handle_line_checks, line_buffer_checks
from ..lab05_harness import GRACE, judge
from ..lab05_server import _number, serve_board_checks
from ..scorecard import Check, run_checks

CROWD, PIPELINED, SILENT, SLOW, SHORT = 128, 16, 64, 24, 300


# -- handle_line ----------------------------------------------------------------------------

def handle_line_hidden(handle_line):
    """Return the hidden checks of ``handle_line``."""
    def digits():
        bad = b"ERR bad number\n"
        _exchanges(handle_line, ["first", "second"], [
            (b"READ 01", b"OK first\n"), ("READ \u0663".encode(), bad),  # arabic-indic 3
            ("READ \u00b2".encode(), bad), ("READ \uff11".encode(), bad),  # superscript 2, wide 1
            (b"READ +1", bad), (b"READ  1", bad), (b"READ 1 ", bad), (b"READ 1_0", bad),
            (b"READ 1.0", bad), (b"READ 2", b"OK second\n")])

    def exact():
        texts = [" leading space", "trailing space ", "a\ttab", "a\rreturn", "POST POST",
                 "emoji \U0001f600", "w" * (MAX_LINE - 5)]
        board = []
        _exchanges(handle_line, board, [(f"POST {t}".encode(), f"OK {n}\n".encode())
                                        for n, t in enumerate(texts, 1)])
        _exchanges(handle_line, board, [(f"READ {n}".encode(), f"OK {t}\n".encode())
                                        for n, t in enumerate(texts, 1)])

    def commands():
        board = ["keep"]
        unknown = b"ERR unknown command\n"
        _exchanges(handle_line, board, [(b"COUNT ", unknown), (b" COUNT", unknown),
                                        (b"\tCOUNT", unknown), (b"POST\tx", unknown),
                                        (b"READ\t1", unknown), (b"Count", unknown),
                                        (b"COUNT", b"OK 1\n")])
        assert board == ["keep"], f"the board became {board!r:.80}, expected ['keep']"

    return [
        Check("READ n: the digits 0 to 9 only, leading zeros allowed", digits,
              "str.isdigit() is true for '\u0663' and '\u00b2' too: test s.isascii() as well"),
        Check("POST keeps its text exactly: spaces at the ends, tabs, emoji", exact,
              "the text is everything after 'POST ': do not strip it"),
        Check("commands are exact: no tab or space around them", commands,
              "split with text.partition(' '), not text.split()"),
    ]


# -- LineBuffer -----------------------------------------------------------------------------

def line_buffer_hidden(LineBuffer):
    """Return the hidden checks of ``LineBuffer``."""
    def expect(chunks, want, **kw):
        got = _fed(LineBuffer, chunks, **kw)
        assert got == want, f"fed {chunks!r:.70}, one read at a time, got the lines " \
                            f"{got!r:.80}, expected {want!r:.80}"

    def apart():
        a, b, small = LineBuffer(), LineBuffer(), LineBuffer(max_line=8)
        steps = [(a, "a", b"POST from a", None), (b, "b", b"POST from b\nCO", b"POST from b"),
                 (small, "a third, max_line=8", b"COUNT\n", b"COUNT"), (b, "b", b"", None),
                 (a, "a", b" and more" * 50 + b"\n", b"POST from a" + b" and more" * 50),
                 (b, "b", b"UNT\n", b"COUNT"), (a, "a", b"", None)]
        for buf, name, data, want in steps:
            buf.feed(data)
            got = buf.next_line()
            assert got == want, f"buffer {name}: fed {data!r:.40}, next_line() gave " \
                                f"{got!r:.60}, expected {want!r:.60}"

    def every_cut():
        text = "POST h\u00e9llo \u2713\r\nCOUNT\r\n\r\nREAD 1\nPOST a\rb\r\r\n".encode()
        want = [text[:15], b"COUNT", b"", b"READ 1", b"POST a\rb\r"]
        for i in range(1, len(text)):
            for j in range(i, len(text)):
                expect([text[:i], text[i:j], text[j:]], want)

    def spaces():
        expect([b"  POST x  \n\tCOUNT\t\r\n \n"], [b"  POST x  ", b"\tCOUNT\t", b" "])

    def many():
        expect([b"ab\n" * 1000], [b"ab"] * 1000, max_line=8)
        text = b"".join(f"POST {i}\r\n".encode() for i in range(5_000))
        expect([text[i:i + 4096] for i in range(0, len(text), 4096)],
               [f"POST {i}".encode() for i in range(5_000)])

    return [
        Check("two buffers at once keep their bytes apart", apart,
              "keep the bytes in self (made in __init__), not in a class attribute or a "
              "default argument shared by every buffer"),
        Check("\\r\\n lines cut at every byte come out whole, one \\r removed", every_cut,
              "remove one b'\\r' just before the b'\\n', and only that one"),
        Check("spaces and tabs at the ends of a line are kept", spaces,
              "cut the b'\\n' (and one b'\\r') only: do not strip the line"),
        Check("5,000 short lines, longer than max_line together, all come out", many,
              "max_line bounds one line, not all that waits"),
    ]


# -- serve_board ----------------------------------------------------------------------------

def _crowd(run):
    clients = [run.client(f"client {i}") for i in range(1, CROWD + 1)]
    for i, c in enumerate(clients, 1):
        c.send(b"".join(f"POST c{i} m{j}\n".encode() for j in range(PIPELINED)))
    mine = [[_number(c, c.line(), f"POST c{i} m{j}") for j in range(PIPELINED)]
            for i, c in enumerate(clients, 1)]
    total = CROWD * PIPELINED
    got = sorted(n for ns in mine for n in ns)
    assert got == list(range(1, total + 1)), \
        f"the {total} POSTs got the numbers {got!r:.80}: each of 1..{total} once"
    for c, ns in zip(clients, mine, strict=True):
        assert ns == sorted(ns), f"{c.name} got the numbers {ns!r:.60}: replies out of order"
        c.send(b"".join(f"READ {n}\n".encode() for n in ns) + b"COUNT\n")
    for i, (c, ns) in enumerate(zip(clients, mine, strict=True), 1):
        for j, n in enumerate(ns):
            c.expect_line(f"OK c{i} m{j}".encode(), f" sent READ {n} and")
        c.expect_line(f"OK {total}".encode(), " sent COUNT and")


def _slow(run):
    silent = [run.client(f"silent client {i}") for i in range(1, SILENT + 1)]
    slow = [run.client(f"slow client {i}") for i in range(1, SLOW + 1)]
    for c in slow:  # every byte its own segment
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quick = run.client("a quick client")
    lines = [f"POST slow {i}\r\n".encode() for i in range(1, SLOW + 1)]
    for k in range(max(map(len, lines))):
        for c, line in zip(slow, lines, strict=True):
            if k < len(line):
                c.send(line[k:k + 1])
        _number(quick, quick.ask("COUNT"), f"COUNT (after byte {k + 1} of each slow client)")
    numbers = [_number(c, c.line(), f"POST slow {i} (a byte at a time)")
               for i, c in enumerate(slow, 1)]
    assert sorted(numbers) == list(range(1, SLOW + 1)), f"the slow POSTs got {numbers!r:.80}"
    silent[0].expect(f"READ {numbers[0]}", b"OK slow 1")
    silent[-1].expect("COUNT", f"OK {SLOW}".encode())


def _read_by_server(run) -> None:
    """Wait (GRACE s at most) until the server has read all its clients sent: its sockets'
    receive queues in /proc/net/tcp are empty (a listener's: no one waits to be accepted)."""
    deadline, local = time.monotonic() + GRACE, f"0100007F:{run.port:04X}"
    while True:
        try:
            with open("/proc/net/tcp") as f:
                rows = [line.split() for line in f.read().splitlines()[1:]]
        except OSError:
            return
        unread = {int(r[2].split(":")[1], 16): int(r[4].split(":")[1], 16)
                  for r in rows if r[1] == local and int(r[4].split(":")[1], 16)}
        if not unread:
            return
        if time.monotonic() > deadline:
            who = [f"{c.name} ({unread[port]} bytes)" for c in run.clients
                   if c.sock.fileno() >= 0 and (port := c.sock.getsockname()[1]) in unread]
            raise AssertionError(f"after {GRACE:g} s the server has still not read what "
                                 f"{', '.join(who) or 'clients waiting to be accepted'} sent "
                                 f"(is it waiting for another client?)")
        time.sleep(0.002)


def _cuts(run):
    text = "POST h\u00e9llo \u2713\r\nREAD 1\r\nCOUNT\n".encode()
    clients = [run.client(f"client {i}") for i in range(1, len(text))]
    for i, c in enumerate(clients, 1):
        c.send(text[:i])
    _read_by_server(run)
    for i, c in enumerate(clients, 1):
        c.send(text[i:])
    for i, c in enumerate(clients, 1):
        n = _number(c, c.line(), f"POST h\u00e9llo \u2713 (cut after byte {i})")
        c.expect_line("OK h\u00e9llo \u2713".encode(), " sent READ 1 and")
        count = _number(c, c.line(), "COUNT")
        assert n <= count <= len(clients), f"{c.name} got OK {count} for COUNT, after its " \
                                           f"POST got number {n} of {len(clients)}"


def _short(run):
    posted = 0
    for i in range(1, SHORT + 1):
        c, how = run.client(f"short-lived client {i}"), i % 4
        if how < 2:  # POST, read the reply, leave
            posted += 1
            c.expect(f"POST short {i}", f"OK {posted}".encode())
        elif how == 3:  # a request, then a reset with its reply unread
            c.send(b"COUNT\n")
            c.reset()
        c.close()  # how == 2: connect, then leave without a word
    run.settle(0, "connection(s) of clients that have left (close a connection once recv "
                  "returns b'' or raises)")
    run.client("a last client").expect("COUNT", f"OK {posted}".encode())


def _stop_busy(run):
    for i in range(1, 6):
        run.client(f"client {i}").expect(f"POST kept {i}", f"OK {i}".encode())
    for i in range(1, 21):  # a server waiting 0.3 s for each mid-line one needs 6 s
        run.client(f"silent client {i}")
        run.client(f"mid-line client {i}").send(b"POST unfinish")
    _read_by_server(run)


def serve_board_hidden(serve_board):
    """Return the hidden checks of ``serve_board``."""
    def scene(body):
        return lambda: judge(serve_board, body) and None

    def stops():
        _stopped(judge(serve_board, _stop_busy))

    return [Check(name, run, hint, timeout=25) for name, run, hint in [
        (f"{CROWD} clients at once, {PIPELINED} requests each in one send", scene(_crowd),
         "answer every whole line a recv brought, in order, before waiting again"),
        (f"{SILENT} silent clients and {SLOW} sending a byte at a time block nobody",
         scene(_slow), "recv once per event, and never wait for the rest of a line, not "
         "even a little: keep it in the connection's LineBuffer"),
        ("each client's lines cut at another byte, UTF-8 and \\r\\n, are answered",
         scene(_cuts), "feed raw bytes to the connection's LineBuffer; decode whole lines only"),
        (f"{SHORT} short connections in a row: none left open in the server", scene(_short),
         "close (not just shutdown or unregister) every connection that ends"),
        ("stop with clients silent or mid-line: the board returned, all closed", stops,
         "at stop, unregister and close every connection, whatever its state"),
    ]]


def _stopped(run) -> None:
    assert run.returned, f"serve_board did not return within {GRACE:g} s of the stop byte, " \
                         f"and was killed"
    report = run.report()
    left = (["the listener"] if report["listener_open"] else []) + (
        [f"{report['left_open']} client connection(s)"] if report["left_open"] else [])
    assert not left, f"after serve_board returned, still open: {', '.join(left)}"
    want = [f"kept {i}" for i in range(1, 6)]
    assert report["board"] == want, f"serve_board returned {report['board']!r:.80}, " \
                                    f"expected the board {want!r}"


# -- the parts ------------------------------------------------------------------------------

def _part(title, visible, hidden):
    return Part(title, (title,), lambda fn: run_checks(title, visible(fn) + hide(hidden(fn)),
                                                       show=False))


PARTS = [
    _part("handle_line", handle_line_checks, handle_line_hidden),
    _part("LineBuffer", line_buffer_checks, line_buffer_hidden),
    _part("serve_board", serve_board_checks, serve_board_hidden),
]
__all__ = ["PARTS", "handle_line_hidden", "line_buffer_hidden",
           "serve_board_hidden"]
