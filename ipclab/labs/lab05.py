"""Checks for lab 05 (TCP): a message board server for many clients at once, with selectors.

The student writes ``handle_line(board, line) -> bytes`` (one request in, one
reply line out), ``LineBuffer(max_line=MAX_LINE)`` (bytes from recv(2) in, whole
lines out, bounded) and ``serve_board(listener, stop) -> list`` (one selectors
loop, epoll(7), over the listening socket, the stop socket and every client).

Protocol, one line each way, ending in ``\\n`` (``\\r\\n`` accepted)::

    POST <text>   ->  OK <n>           (n: the new message's number, from 1)
    READ <n>      ->  OK <text>  |  ERR no message <n>  |  ERR bad number
    COUNT         ->  OK <count>
    anything else ->  ERR unknown command  |  ERR empty message  |  ERR not UTF-8
    over MAX_LINE ->  ERR line too long, then the server closes the connection

The first two are called directly.  ``serve_board`` runs in a forked child on a
listener the check makes (127.0.0.1, port 0) and is judged only through clients
with a timeout on every call (:mod:`ipclab.labs.lab05_server`): many at once,
silent ones, hostile ones (garbage, an over-long line, a half-close, a reset,
one that never reads), and, once stopped, what it returned and left open.  A
server that hangs or does not stop is killed; the check says what the clients saw.
"""

from __future__ import annotations

import random

from .lab05_clients import MAX_LINE
from .lab05_harness import serving
from .lab05_server import serve_board_checks
from .scorecard import Check, run_checks

__all__ = ["MAX_LINE", "LineTooLong", "check_handle_line", "check_line_buffer",
           "check_serve_board", "serving"]


class LineTooLong(ValueError):
    """Raised by ``LineBuffer.next_line``: a line, finished or not, is over ``max_line`` bytes."""


def _exchanges(handle_line, board, pairs) -> None:
    for request, want in pairs:
        got = handle_line(board, request)
        if isinstance(got, str):
            raise AssertionError(f"handle_line(board, {request!r}) returned the str {got!r:.60}:"
                                 f" return bytes, such as {want!r}")
        assert got == want, f"handle_line(board, {request!r:.60}) returned {got!r:.80}, " \
                            f"expected {want!r:.80}"


def handle_line_checks(handle_line):
    """Return the checks of ``handle_line(board, line) -> bytes``."""
    def post():
        board = []
        _exchanges(handle_line, board, [(b"POST first", b"OK 1\n"),
                                        (b"POST second message", b"OK 2\n")])
        assert board == ["first", "second message"], f"the board became {board!r:.80}, " \
                                                      f"expected ['first', 'second message']"
        _exchanges(handle_line, ["a", "b", "c"], [(b"POST d", b"OK 4\n")])

    def read():
        texts = ["hello", "  two  spaces ", "h\u00e9llo \u2713", "ERR in a message"]
        board = list(texts)
        _exchanges(handle_line, board, [(f"READ {n}".encode(), f"OK {t}\n".encode())
                                        for n, t in enumerate(texts, 1)])
        assert board == texts, f"READ changed the board into {board!r:.80}"

    def missing():
        _exchanges(handle_line, ["a", "b"], [
            (b"READ 0", b"ERR no message 0\n"), (b"READ 3", b"ERR no message 3\n"),
            (b"READ 1000", b"ERR no message 1000\n"), (b"READ x", b"ERR bad number\n"),
            (b"READ", b"ERR bad number\n"), (b"READ -1", b"ERR bad number\n"),
            (b"READ 1 2", b"ERR bad number\n")])

    def count():
        _exchanges(handle_line, [], [(b"COUNT", b"OK 0\n")])
        _exchanges(handle_line, ["a", "b", "c"], [(b"COUNT", b"OK 3\n")])

    def others():
        board = ["keep"]
        _exchanges(handle_line, board, [
            (b"", b"ERR unknown command\n"), (b"post lower case", b"ERR unknown command\n"),
            (b"HELLO", b"ERR unknown command\n"), (b"COUNT 2", b"ERR unknown command\n"),
            (b"POST", b"ERR empty message\n"), (b"POST ", b"ERR empty message\n"),
            (b"\xff\xfe", b"ERR not UTF-8\n"), (b"POST caf\xe9", b"ERR not UTF-8\n")])
        assert board == ["keep"], f"the board became {board!r:.80}, expected ['keep']"

    return [
        Check("POST adds the text and replies OK with its number", post,
              "append everything after 'POST ' to board; its number is len(board)"),
        Check("READ n replies OK and message n, exactly as posted", read,
              "message n is board[n - 1]; encode the reply with UTF-8"),
        Check("READ of a missing message or a bad number is an ERR", missing,
              "n must be ASCII digits, and 1 <= n <= len(board)"),
        Check("COUNT replies OK and how many messages there are", count),
        Check("anything else is an ERR and leaves the board alone", others,
              "decode first (UnicodeDecodeError: 'ERR not UTF-8'); commands are exact, "
              "upper case"),
    ]


def _fed(LineBuffer, chunks, *, max_line=None, into=None) -> list[bytes]:
    """Feed ``chunks`` one at a time, taking every whole line after each; return the lines."""
    buf = LineBuffer() if max_line is None else LineBuffer(max_line=max_line)
    found = [] if into is None else into
    for chunk in chunks:
        buf.feed(chunk)
        while (line := buf.next_line()) is not None:
            found.append(line)
            assert len(found) < 10_000, "next_line kept returning lines: return None once " \
                                        "no whole line is left"
    return found


def _too_long(LineBuffer, chunks, what: str, *, max_line=None, before=()) -> None:
    got = []
    try:
        _fed(LineBuffer, chunks, max_line=max_line, into=got)
    except LineTooLong:
        assert got == list(before), f"{what}: LineTooLong came after the lines {got!r:.80}, " \
                                    f"expected after {list(before)!r}"
        return
    except (NotImplementedError, AssertionError):  # not written yet, or a failed check
        raise
    except Exception as e:  # noqa: BLE001 - the wrong exception is a wrong answer
        raise AssertionError(f"{what}: next_line raised {type(e).__name__}, expected "
                             f"lab05.LineTooLong") from None
    raise AssertionError(f"{what}: next_line gave {got!r:.60} and never raised LineTooLong")


def line_buffer_checks(LineBuffer):
    """Return the checks of ``LineBuffer(max_line=MAX_LINE)`` (``feed``, ``next_line``)."""
    def expect(chunks, want, **kw):
        got = _fed(LineBuffer, chunks, **kw)
        assert got == want, f"fed {chunks!r:.70}, one read at a time, got the lines " \
                            f"{got!r:.80}, expected {want!r:.80}"

    def whole():
        expect([b"POST a\nCOUNT\n\nREAD 1\n"], [b"POST a", b"COUNT", b"", b"READ 1"])

    def split():
        text = b"POST hello world\nCOUNT\nREAD 1\n"
        want = [b"POST hello world", b"COUNT", b"READ 1"]
        expect([text[i:i + 1] for i in range(len(text))], want)
        rng = random.Random(5)
        for _ in range(50):
            cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 6)))
            expect([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)], want)

    def crlf():
        expect([b"COUNT\r", b"\nPOST a\rb\r\n"], [b"COUNT", b"POST a\rb"])

    def bound():
        expect([b"x" * MAX_LINE + b"\n"], [b"x" * MAX_LINE])
        expect([b"12345678\n"], [b"12345678"], max_line=8)
        _too_long(LineBuffer, [b"y" * (MAX_LINE + 1) + b"\n"], f"a line of {MAX_LINE + 1} bytes")
        _too_long(LineBuffer, [b"123456789\n"], "a line of 9 bytes with max_line=8", max_line=8)

    def unfinished():
        expect([b"x" * MAX_LINE], [])  # not too long yet: its b"\n" may come next
        _too_long(LineBuffer, [b"x" * MAX_LINE, b"x"], f"{MAX_LINE + 1} bytes with no b'\\n'")
        _too_long(LineBuffer, [b"123456789"], "9 bytes with no b'\\n', max_line=8", max_line=8)

    def before():
        _too_long(LineBuffer, [b"COUNT\nREAD 1\n" + b"z" * (MAX_LINE + 100)],
                  "two lines, then an over-long one", before=[b"COUNT", b"READ 1"])

    return [
        Check("several whole lines in one read", whole, "find b'\\n', cut, keep the rest"),
        Check("lines split across reads are put back together", split,
              "keep the bytes after the last b'\\n' for the next feed"),
        Check("\\r\\n ends a line too, even split between two reads", crlf,
              "remove one b'\\r' before the b'\\n', once the b'\\n' has come"),
        Check("a line of max_line bytes passes, one byte more raises LineTooLong", bound),
        Check("an unfinished line is refused once it is over max_line bytes", unfinished,
              "a client may never send b'\\n': check the length of what waits, too"),
        Check("the lines before an over-long one still come out", before,
              "raise only when the over-long line is the next one"),
    ]


def check_handle_line(handle_line):
    """Print the scorecard of ``handle_line`` and return it."""
    return run_checks("handle_line", handle_line_checks(handle_line))


def check_line_buffer(LineBuffer):
    """Print the scorecard of ``LineBuffer`` and return it."""
    return run_checks("LineBuffer", line_buffer_checks(LineBuffer))


def check_serve_board(serve_board):
    """Print the scorecard of ``serve_board`` and return it."""
    return run_checks("serve_board", serve_board_checks(serve_board))
