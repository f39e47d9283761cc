"""Lab 05's checks: full marks for the solution, lost marks for the classic mistakes.

The solution is taken from solutions/lab05_tcp.ipynb itself (its code cells,
run in a fresh namespace), so what the course ships is what is tested.  Wrong
servers are the solution's ``serve_board`` run with a wrong ``LineBuffer`` or
``handle_line`` swapped into its globals, or written out here.  Every check
runs in a forked child and starts the server in a child of its own; the leak
checks of conftest.py fail a test that leaves a process, an open socket or a
listener behind, also after a server that hangs is killed.
"""

import select
import selectors
import time
import types

import pytest
from _helpers import failed, load_solution

from ipclab import leaks
from ipclab.labs import lab05, lab05_server
from ipclab.labs.lab05 import MAX_LINE, LineTooLong
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab05_tcp.ipynb")


def names(checks, *words):
    """The names of the checks whose name contains one of ``words``."""
    return {c.name for c in checks if any(w in c.name for w in words)}


def with_globals(fn, **swapped):
    """``fn`` with some of the names it looks up globally replaced."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **swapped}, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def server_lost(serve_board):
    checks = lab05.serve_board_checks(serve_board)
    return checks, failed(run_checks("t", checks, show=False))


def test_solution_gets_full_marks(solution, capsys):
    scores = [lab05.check_handle_line(solution["handle_line"]),
              lab05.check_line_buffer(solution["LineBuffer"]),
              lab05.check_serve_board(solution["serve_board"])]
    assert [(s.passed, s.total) for s in scores] == [(5, 5), (6, 6), (8, 8)]
    out = capsys.readouterr().out
    assert "handle_line: 5/5 checks passed" in out and "serve_board: 8/8 checks passed" in out


def test_untouched_lab_scores_zero_without_raising():
    def stub(*args, **kwargs):
        raise NotImplementedError()
    start = time.monotonic()
    for check in (lab05.check_handle_line, lab05.check_line_buffer, lab05.check_serve_board):
        score = check(stub)
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total
        assert all(detail.startswith("not implemented yet") for detail in details), details
    assert time.monotonic() - start < 30  # a server that is missing costs no timeouts


def test_the_demo_of_the_untouched_lab_explains_and_does_not_raise(capsys):
    def stub(listener, stop):
        raise NotImplementedError()
    with lab05.serving(stub) as server:
        server.client("alice", show=True).ask("COUNT")
    assert capsys.readouterr().out == \
        "serve_board is not written yet (it raised NotImplementedError)\n"


def test_handle_line_with_its_own_counter_loses_the_post_mark(solution):
    posted = []

    def counting(board, line):
        reply = solution["handle_line"](board, line)
        if line.startswith(b"POST ") and reply.startswith(b"OK "):
            posted.append(line)
            return f"OK {len(posted)}\n".encode()  # its own count, not the board's
        return reply
    checks = lab05.handle_line_checks(counting)
    lost = failed(run_checks("t", checks, show=False))
    assert list(lost) == ["POST adds the text and replies OK with its number"]
    assert "handle_line(board, b'POST d') returned b'OK 3\\n', expected b'OK 4\\n'" in \
        lost["POST adds the text and replies OK with its number"]


def test_handle_line_returning_str_is_told_to_return_bytes(solution):
    def text(board, line):
        return solution["handle_line"](board, line).decode().rstrip("\n")
    checks = lab05.handle_line_checks(text)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == {c.name for c in checks}
    assert "returned the str 'OK 1': return bytes, such as b'OK 1\\n'" in lost[checks[0].name]


def test_handle_line_without_decoding_checks_loses_one_mark(solution):
    def trusting(board, line):
        return solution["handle_line"](board, line.decode("utf-8", "replace").encode())
    lost = failed(run_checks("t", lab05.handle_line_checks(trusting), show=False))
    assert list(lost) == ["anything else is an ERR and leaves the board alone"]
    assert "returned b'ERR unknown command\\n', expected b'ERR not UTF-8\\n'" in \
        lost["anything else is an ERR and leaves the board alone"]


class OneReadOneLine:
    """The classic mistake: whatever one recv returned is taken as one line."""

    def __init__(self, max_line=MAX_LINE):
        self.max_line, self.chunks = max_line, []

    def feed(self, data):
        self.chunks.append(data)

    def next_line(self):
        if not self.chunks:
            return None
        line = self.chunks.pop(0).rstrip(b"\r\n")
        if len(line) > self.max_line:
            raise LineTooLong("too long")
        return line


class Unbounded:
    """Lines split right, but no bound at all."""

    def __init__(self, max_line=MAX_LINE):
        self.waiting = bytearray()

    def feed(self, data):
        self.waiting += data

    def next_line(self):
        end = self.waiting.find(b"\n")
        if end == -1:
            return None
        line = bytes(self.waiting[:end]).removesuffix(b"\r")
        del self.waiting[: end + 1]
        return line


class BoundOnlyFinished(Unbounded):
    """A bound checked only once the b"\\n" has come."""

    def __init__(self, max_line=MAX_LINE):
        super().__init__()
        self.max_line = max_line

    def next_line(self):
        end = self.waiting.find(b"\n")
        if end > self.max_line:
            raise LineTooLong("too long")
        return super().next_line()


def test_one_recv_taken_as_one_line_loses_the_splitting_marks():
    checks = lab05.line_buffer_checks(OneReadOneLine)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == names(checks, "several whole lines", "split across", "\\r\\n",
                              "unfinished", "before an over-long")
    assert "got the lines [b'POST a\\nCOUNT\\n\\nREAD 1']" in \
        lost["several whole lines in one read"]


def test_a_line_buffer_without_a_bound_loses_the_bound_marks():
    checks = lab05.line_buffer_checks(Unbounded)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == names(checks, "one byte more", "unfinished", "before an over-long")
    assert "never raised LineTooLong" in lost[next(iter(names(checks, "unfinished")))]


def test_a_bound_on_finished_lines_only_loses_the_unfinished_marks():
    checks = lab05.line_buffer_checks(BoundOnlyFinished)
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == names(checks, "unfinished", "before an over-long")
    assert "hint: a client may never send b'\\n'" in lost[next(iter(names(checks, "unfinished")))]


def test_a_server_splitting_on_recv_loses_the_marks_that_need_whole_lines(solution):
    checks, lost = server_lost(with_globals(solution["serve_board"], LineBuffer=OneReadOneLine))
    assert set(lost) == names(checks, "64 clients", "silent", "garbage", "half-closed")
    assert "expected OK <number>" in lost[next(iter(names(checks, "64 clients")))]


def test_a_server_without_a_line_bound_loses_the_over_long_mark(solution):
    checks, lost = server_lost(with_globals(solution["serve_board"], LineBuffer=Unbounded))
    assert set(lost) == names(checks, "over-long")
    assert "a client sending an over-long line got no reply within 3 s" in \
        lost[next(iter(names(checks, "over-long")))]


def selector_server(sol, *, blocking=False, ignore_eof=False, catch=OSError,
                    close_on_error=True, close_at_stop=True, watch_stop=True):
    """A student's selectors server, with the flaws asked for, on the solution's helpers."""
    handle_line, LineBuffer = sol["handle_line"], sol["LineBuffer"]

    def serve_board(listener, stop):
        board, conns = [], set()
        sel = selectors.DefaultSelector()
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ)
        if watch_stop:
            sel.register(stop, selectors.EVENT_READ)

        def drop(conn, close=True):
            sel.unregister(conn)
            conns.discard(conn)
            if close:
                conn.close()
        try:
            while True:
                for key, _ in sel.select():
                    conn = key.fileobj
                    if conn is stop:
                        for c in list(conns) if close_at_stop else []:
                            drop(c)
                        return board
                    if conn is listener:
                        conn, _ = listener.accept()
                        conn.setblocking(blocking)
                        conns.add(conn)
                        sel.register(conn, selectors.EVENT_READ, LineBuffer())
                        continue
                    try:
                        data = conn.recv(4096)
                        if not data:
                            if not ignore_eof:
                                drop(conn)
                            continue
                        key.data.feed(data)
                        while (line := key.data.next_line()) is not None:
                            conn.sendall(handle_line(board, line))
                    except LineTooLong:
                        conn.sendall(b"ERR line too long\n")
                        drop(conn)
                    except catch:
                        drop(conn, close_on_error)
        finally:
            listener.close()
            sel.close()
    return serve_board


def test_the_flawless_selector_server_gets_full_marks(solution):
    checks, lost = server_lost(selector_server(solution))
    assert not lost


def one_at_a_time(sol):
    """Blocking accept, then that client alone until it leaves; stop is seen between clients."""
    def serve_board(listener, stop):
        board = []
        try:
            while stop not in select.select([listener, stop], [], [])[0]:
                conn, _ = listener.accept()
                with conn:
                    lines = sol["LineBuffer"]()
                    while data := conn.recv(4096):
                        lines.feed(data)
                        while (line := lines.next_line()) is not None:
                            conn.sendall(sol["handle_line"](board, line))
            return board
        finally:
            listener.close()
    return serve_board


def test_a_server_serving_one_client_at_a_time_fails_by_timeout_not_hang(solution):
    start = time.monotonic()
    checks, lost = server_lost(one_at_a_time(solution))
    assert time.monotonic() - start < 90
    assert set(lost) == {c.name for c in checks} - names(checks, "half-closed")
    crowd = lost[next(iter(names(checks, "64 clients")))]
    assert crowd.startswith("client 2 got no reply within 3 s (is the server busy with another")
    silent = lost[next(iter(names(checks, "silent")))]
    assert silent.startswith("a third client got no reply within 3 s")
    assert "hint: call accept or recv only on a socket the selector says is ready" in silent


def test_a_server_crashing_on_a_reset_is_reported_first(solution):
    checks, lost = server_lost(selector_server(solution,
                                               catch=(BlockingIOError, BrokenPipeError)))
    assert set(lost) == names(checks, "reset")
    detail = lost[next(iter(names(checks, "reset")))]
    assert detail.startswith("the server raised ConnectionResetError: [Errno 104] Connection "
                             "reset by peer (in serve_board(), line"), detail


def test_a_server_forgetting_to_close_reset_connections_loses_the_reset_mark(solution):
    checks, lost = server_lost(selector_server(solution, close_on_error=False))
    assert set(lost) == names(checks, "reset")
    assert lost[next(iter(names(checks, "reset")))].startswith(
        "after 2 s the server still holds 2 connection(s) of clients that reset them")


def test_a_server_leaving_connections_open_at_stop_loses_the_stop_mark(solution):
    checks, lost = server_lost(selector_server(solution, close_at_stop=False))
    assert list(lost) == [checks[-1].name]
    assert lost[checks[-1].name].startswith("after serve_board returned, still open: 2 client "
                                            "connection(s)")


def test_a_server_that_never_stops_loses_only_the_stop_mark(solution):
    checks, lost = server_lost(selector_server(solution, watch_stop=False))
    assert list(lost) == [checks[-1].name]
    assert lost[checks[-1].name].startswith("serve_board did not return within 2 s of the stop "
                                            "byte, and was killed")


def test_a_blocking_sendall_loses_the_slow_reader_mark(solution):
    checks, lost = server_lost(selector_server(solution, blocking=True))
    assert set(lost) == names(checks, "never reads")
    assert "another client got no reply within 3 s" in lost[next(iter(names(checks,
                                                                          "never reads")))]


def test_a_server_ignoring_eof_loses_the_half_close_mark(solution):
    checks, lost = server_lost(selector_server(solution, ignore_eof=True))
    assert set(lost) == names(checks, "half-closed")
    assert "waited 3 s for the server to close the connection (recv returned b'' to it" in \
        lost[next(iter(names(checks, "half-closed")))]


def test_a_hanging_server_is_killed_and_leaves_nothing():
    def hangs(listener, stop):
        time.sleep(600)
    checks = lab05.serve_board_checks(hangs)
    check = [c for c in checks if "stop:" in c.name]
    start = time.monotonic()
    detail = failed(run_checks("t", check, show=False))[check[0].name]
    assert time.monotonic() - start < check[0].timeout
    assert detail.startswith("client 1 got no reply within 3 s"), detail
    assert not leaks.children()  # so no listener either: only the server's child held it


def test_the_demo_prints_the_conversation_and_the_board(solution, capsys):
    with lab05.serving(solution["serve_board"]) as server:
        alice, bob = server.client("alice", show=True), server.client("bob", show=True)
        alice.ask("POST hi")
        bob.ask("READ 1")
        bob.ask("READ 2")
    assert capsys.readouterr().out.splitlines() == [
        "alice > POST hi", "alice < OK 1", "bob > READ 1", "bob < OK hi", "bob > READ 2",
        "bob < ERR no message 2", "serve_board stopped and returned the board ['hi']"]


def test_the_demo_says_what_went_wrong_and_does_not_raise(solution, capsys):
    def chatty_deaf(listener, stop):
        print("listening")
        return selector_server(solution, watch_stop=False)(listener, stop)

    def crashing(listener, stop):
        raise RuntimeError("boom")
    for server, said in [(chatty_deaf, "[serve_board] listening\nserve_board did not return "
                                        "within 2 s of the stop byte and was killed\n"),
                         (crashing, "serve_board failed: the server raised RuntimeError: boom "
                                    "(in crashing(), line")]:
        with lab05.serving(server) as run:
            run.client("alice").ask("COUNT")
        assert capsys.readouterr().out.startswith(said)


def test_checks_are_wellformed():
    every = (lab05.handle_line_checks(print) + lab05.line_buffer_checks(print)
             + lab05_server.serve_board_checks(print))
    assert all(isinstance(c, Check) for c in every)
    assert len({c.name for c in every}) == len(every) == 19
