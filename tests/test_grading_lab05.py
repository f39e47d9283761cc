"""The grader's parts of lab 05: visible and hidden checks, on the solution and on mistakes.

Each part runs the visible checks (tested in test_lab05.py) and the hidden ones of
:mod:`ipclab.labs.hidden.lab05`.  Here: the solution gets full marks on every part;
the untouched lab (generated from the solution) and names the notebook lacks
(:func:`ipclab.grading.parts.missing`) score 0 without raising; and for each part a
mistake that passes every visible check loses a hidden mark, which shows what the
hidden checks add.  A server that blocks on one client loses hidden marks by timeout,
without hanging.  Real servers in children, real TCP clients, real leak checks.
"""

import selectors
import socket
import time

import nbformat
import pytest
from _helpers import (
    SOLUTIONS,
    failed,
    load_solution,
    missing_fails_every_check,
    run_code_cells,
    untouched_scores_zero,
)

from ipclab.grading import parts
from ipclab.labs import generate, lab05
from ipclab.labs.hidden import lab05 as hidden
from ipclab.labs.lab05 import MAX_LINE, LineTooLong
from ipclab.labs.scorecard import run_checks

pytestmark = pytest.mark.timeout(120)
PART = {p.title: p for p in hidden.PARTS}
VISIBLE = {"handle_line": lab05.handle_line_checks, "LineBuffer": lab05.line_buffer_checks,
           "serve_board": lab05.serve_board_checks}
HIDDEN = {"handle_line": hidden.handle_line_hidden, "LineBuffer": hidden.line_buffer_hidden,
          "serve_board": hidden.serve_board_hidden}


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab05_tcp.ipynb")


@pytest.fixture(scope="module")
def untouched():
    lab = generate.make_lab(nbformat.read(SOLUTIONS / "lab05_tcp.ipynb", as_version=4))
    return run_code_cells(lab, "labs/lab05_tcp.ipynb")


def lost_in(title, *objects):
    """What each failed line of the part said, by check name, for a run that must not raise."""
    return failed(PART[title].run(*objects))


def hidden_names(title, words):
    """The names, in the part's lines, of the hidden checks whose name contains ``words``."""
    return {parts.HIDDEN + c.name for c in HIDDEN[title](print) if words in c.name}


def expected_names(title):
    """The names of the part's lines: the visible checks', then the hidden ones'."""
    return [c.name for c in VISIBLE[title](print)] + [parts.HIDDEN + c.name
                                                      for c in HIDDEN[title](print)]


# -- the parts ------------------------------------------------------------------------------

def test_one_part_per_check_cell_named_as_its_scorecard():
    assert [(p.title, p.needs) for p in hidden.PARTS] == [
        ("handle_line", ("handle_line",)), ("LineBuffer", ("LineBuffer",)),
        ("serve_board", ("serve_board",))]
    assert parts.parts("lab05_tcp") == hidden.PARTS


def test_the_solution_gets_full_marks_with_every_check_named_as_expected(solution):
    for title, part in PART.items():
        score = part.run(*(solution[n] for n in part.needs))
        names = [name for name, _, _, _ in score.lines]
        assert names == expected_names(title)
        assert len(names) > len(VISIBLE[title](print)) and len(set(names)) == len(names)
        assert (score.title, score.passed) == (title, score.total), failed(score)


def test_the_untouched_lab_scores_zero_without_raising(untouched):
    start = time.monotonic()
    for part in hidden.PARTS:
        score = untouched_scores_zero(part, untouched)
        assert [name for name, _, _, _ in score.lines] == expected_names(part.title)
    assert time.monotonic() - start < 30  # a stub costs no client's timeout


@pytest.mark.parametrize("title", [
    "handle_line",
    "LineBuffer",
    "serve_board"])
def test_a_name_the_notebook_lacks_fails_every_check_saying_so(title):
    score = missing_fails_every_check(PART[title])
    assert [name for name, _, _, _ in score.lines] == expected_names(title)


# -- handle_line ----------------------------------------------------------------------------

def test_digits_that_are_not_0_to_9_lose_only_the_hidden_digits_mark(solution):
    def isdigit_only(board, line):  # str.isdigit, without str.isascii
        command, _, arg = line.decode("utf-8", "replace").partition(" ")
        if command == "READ" and arg.isdigit():
            n = int(arg)  # int("\u00b2") raises ValueError
            return (f"OK {board[n - 1]}\n" if 1 <= n <= len(board) else
                    f"ERR no message {n}\n").encode()
        return solution["handle_line"](board, line)
    lost = lost_in("handle_line", isdigit_only)
    assert set(lost) == hidden_names("handle_line", "digits")
    assert "handle_line(board, b'READ \\xd9\\xa3') returned b'ERR no message 3\\n', expected " \
           "b'ERR bad number\\n'" in next(iter(lost.values()))


def test_a_stripped_post_loses_only_the_hidden_exact_text_mark(solution):
    def stripping(board, line):
        if line.startswith(b"POST "):
            line = b"POST " + line[5:].strip()
        return solution["handle_line"](board, line)
    lost = lost_in("handle_line", stripping)
    assert set(lost) == hidden_names("handle_line", "exactly")
    assert "returned b'OK  leading space\\n'" not in next(iter(lost.values()))


def test_commands_split_on_any_whitespace_lose_hidden_marks(solution):
    def splitting(board, line):  # text.split(maxsplit=1), not text.partition(" ")
        try:
            line = " ".join(line.decode("utf-8").split(maxsplit=1)).encode()
        except UnicodeDecodeError:
            pass
        return solution["handle_line"](board, line)
    lost = lost_in("handle_line", splitting)
    assert set(lost) == hidden_names("handle_line", "exact") | hidden_names("handle_line",
                                                                            "digits")
    assert "handle_line(board, b'COUNT ') returned b'OK 1\\n', expected b'ERR unknown " \
           "command\\n'" in lost[next(iter(hidden_names("handle_line", "commands")))]


# -- LineBuffer -----------------------------------------------------------------------------

def test_a_buffer_shared_by_every_instance_loses_only_the_hidden_apart_mark(solution):
    class Shared(solution["LineBuffer"]):
        waiting = bytearray()  # one for the class: every connection's bytes in one heap

        def __init__(self, max_line=MAX_LINE):
            self.max_line = max_line
    lost = lost_in("LineBuffer", Shared)
    assert set(lost) == hidden_names("LineBuffer", "apart")
    assert next(iter(lost.values())).startswith("buffer b: fed b'POST from b\\nCO', next_line()"
                                                " gave b'POST from aPOST from b', expected")


def test_stripped_lines_lose_only_hidden_marks(solution):
    class Stripping(solution["LineBuffer"]):
        def next_line(self):
            line = super().next_line()
            return None if line is None else line.strip()
    lost = lost_in("LineBuffer", Stripping)
    assert set(lost) == hidden_names("LineBuffer", "cut at every byte") | hidden_names(
        "LineBuffer", "spaces and tabs")


def test_a_cap_on_all_that_waits_loses_only_the_hidden_many_lines_mark(solution):
    class Capped(solution["LineBuffer"]):
        def feed(self, data):  # "a few lines at most": a bound on the buffer, not a line
            super().feed(data)
            if len(self.waiting) > 4 * self.max_line:
                raise LineTooLong("too much waiting")
    lost = lost_in("LineBuffer", Capped)
    assert set(lost) == hidden_names("LineBuffer", "short lines")


# -- serve_board ----------------------------------------------------------------------------

def student_server(sol, *, at_eof="close", wait_for_line=False, patience=None,
                   max_clients=None):
    """A selectors server on the solution's helpers, with one mistake if asked.

    ``at_eof="shutdown"``: a client that leaves is unregistered and shut down, never
    closed.  ``wait_for_line``: a recv that brought no whole line is followed by more
    recv on that socket, blocking (``patience=None``) or for ``patience`` s at most.
    ``max_clients``: the clients beyond that many are accepted and closed at once.
    """
    handle_line, LineBuffer = sol["handle_line"], sol["LineBuffer"]

    def serve_board(listener, stop):
        board, sel = [], selectors.DefaultSelector()
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ)
        sel.register(stop, selectors.EVENT_READ)

        def drop(conn, how="close"):
            sel.unregister(conn)
            if how == "close":
                conn.close()
            else:
                conn.shutdown(socket.SHUT_RDWR)

        def serve(conn, lines):
            try:
                data = conn.recv(4096)
                if wait_for_line and data and b"\n" not in data:
                    conn.settimeout(patience)
                    try:
                        while (more := conn.recv(4096)) and b"\n" not in data + more:
                            data += more
                        data += more
                    except TimeoutError:
                        pass
                    conn.setblocking(False)
                if not data:
                    drop(conn, at_eof)
                    return
                lines.feed(data)
                while (line := lines.next_line()) is not None:
                    conn.sendall(handle_line(board, line))
            except LineTooLong:
                conn.sendall(b"ERR line too long\n")
                drop(conn)
            except OSError:
                drop(conn)
        try:
            while True:
                for key, _ in sel.select():
                    if key.fileobj is stop:
                        return board
                    if key.fileobj is listener:
                        conn, _ = listener.accept()
                        if max_clients and len(sel.get_map()) - 2 >= max_clients:
                            conn.close()
                            continue
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, LineBuffer())
                    else:
                        serve(key.fileobj, key.data)
        finally:
            for key in list(sel.get_map().values()):
                if key.fileobj is not stop:
                    key.fileobj.close()
            sel.close()
    return serve_board


def test_the_student_server_without_a_mistake_gets_full_marks(solution):
    assert not lost_in("serve_board", student_server(solution))


def test_a_server_for_100_clients_at_most_loses_only_the_crowd_mark(solution):
    lost = lost_in("serve_board", student_server(solution, max_clients=100))
    assert set(lost) == hidden_names("serve_board", "clients at once")
    detail = next(iter(lost.values()))  # closed with our request unread: reset, or not yet
    assert detail.startswith(("client 101: the server closed the connection instead of",
                              "client 101: the connection was reset by the server")), detail


def test_a_server_blocking_on_one_client_loses_hidden_marks_by_timeout(solution):
    blocking = student_server(solution, wait_for_line=True)  # recv until a whole line
    checks = parts.hide(hidden.serve_board_hidden(blocking))
    start = time.monotonic()
    lost = failed(run_checks("serve_board", checks, show=False))
    assert time.monotonic() - start < 60
    assert set(lost) == hidden_names("serve_board", "byte") | hidden_names("serve_board",
                                                                           "stop with")
    slow = lost[next(iter(hidden_names("serve_board", "byte at a time")))]
    assert slow.startswith("a quick client got no reply within 3 s"), slow
    stop = lost[next(iter(hidden_names("serve_board", "stop with")))]
    assert stop.startswith("after 2 s the server has still not read what mid-line client "), stop


def test_a_server_waiting_a_little_for_whole_lines_loses_the_slow_client_marks(solution):
    patient = student_server(solution, wait_for_line=True, patience=0.3)
    lost = lost_in("serve_board", patient)  # the visible checks all pass
    assert set(lost) == hidden_names("serve_board", "byte") | hidden_names("serve_board",
                                                                           "stop with")
    assert lost[next(iter(hidden_names("serve_board", "byte at a time")))].startswith(
        "a quick client got no reply within 3 s")
    assert "the server has still not read what" in lost[next(iter(hidden_names(
        "serve_board", "cut at another byte")))]


def test_a_server_that_shuts_down_instead_of_closing_loses_only_the_leak_mark(solution):
    lost = lost_in("serve_board", student_server(solution, at_eof="shutdown"))
    assert set(lost) == hidden_names("serve_board", "short connections")
    assert next(iter(lost.values())).startswith("after 2 s the server still holds 225 "
                                                "connection(s) of clients that have left")
