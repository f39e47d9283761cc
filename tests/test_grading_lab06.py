"""The grader's parts of lab 06: visible and hidden checks, on the solution and on mistakes.

Each part runs the visible checks (tested in test_lab06.py) and the hidden ones of
:mod:`ipclab.labs.hidden.lab06`.  Here: the solution gets full marks on every part;
the untouched lab (generated from the solution) and names the notebook lacks
(:func:`ipclab.grading.parts.missing`) score 0 without raising; and for each part
mistakes that pass every visible check lose hidden marks, which shows what the hidden
checks add.  Real workers, real socketpairs, and the leak checks of conftest.py.
"""

import json
import os
import selectors
import signal
import socket
import struct
import time
import types

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

from ipclab import proc
from ipclab.grading import parts
from ipclab.labs import generate, lab06
from ipclab.labs.hidden import lab06 as hidden
from ipclab.labs.lab06 import MAX_MESSAGE, WorkerError
from ipclab.labs.scorecard import run_checks

pytestmark = pytest.mark.timeout(120)
PART = {p.title: p for p in hidden.PARTS}
VISIBLE = {"send_msg": lab06.send_msg_checks, "recv_msg": lab06.recv_msg_checks,
           "start_worker": lab06.worker_checks, "pool_map": lab06.pool_checks}
HIDDEN = {"send_msg": hidden.send_msg_hidden, "recv_msg": hidden.recv_msg_hidden,
          "start_worker": hidden.worker_hidden, "pool_map": hidden.pool_hidden}


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab06_socketpair.ipynb")


@pytest.fixture(scope="module")
def untouched():
    lab = generate.make_lab(nbformat.read(SOLUTIONS / "lab06_socketpair.ipynb", as_version=4))
    return run_code_cells(lab, "labs/lab06_socketpair.ipynb")


def expected_names(title):
    """The names of the part's lines: the visible checks', then the hidden ones'."""
    return [c.name for c in VISIBLE[title](print)] + [parts.HIDDEN + c.name
                                                      for c in HIDDEN[title](print)]


def hidden_names(title, *words):
    return {parts.HIDDEN + c.name for c in HIDDEN[title](print)
            if any(w in c.name for w in words)}


def rebind(fn, **globals_):
    """``fn`` with some of its global names (such as recv_msg) replaced."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **globals_}, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def lost_in(title, fn):
    """What each failed line of the part said, by check name."""
    return failed(PART[title].run(fn))


# -- the parts ------------------------------------------------------------------------------

def test_one_part_per_check_cell_named_as_its_scorecard():
    assert [(p.title, p.needs) for p in hidden.PARTS] == [
        ("send_msg", ("send_msg",)), ("recv_msg", ("recv_msg",)),
        ("start_worker", ("start_worker",)), ("pool_map", ("pool_map",))]
    assert parts.parts("lab06_socketpair") == hidden.PARTS


def test_the_solution_gets_full_marks_with_every_check_named_as_expected(solution):
    for title, part in PART.items():
        score = part.run(*(solution[n] for n in part.needs))
        names = [name for name, _, _, _ in score.lines]
        assert names == expected_names(title) and len(set(names)) == len(names)
        assert len(names) > len(VISIBLE[title](print))
        assert (score.title, score.passed) == (title, score.total), failed(score)


def test_the_untouched_lab_scores_zero_without_raising(untouched):
    start = time.monotonic()
    for part in hidden.PARTS:
        score = untouched_scores_zero(part, untouched)
        assert [name for name, _, _, _ in score.lines] == expected_names(part.title)
    assert time.monotonic() - start < 30  # no check waits out a timeout for a stub


@pytest.mark.parametrize("title", list(PART))
def test_a_name_the_notebook_lacks_fails_every_check_saying_so(title):
    score = missing_fails_every_check(PART[title])
    assert [name for name, _, _, _ in score.lines] == expected_names(title)


# -- send_msg and recv_msg ------------------------------------------------------------------

def test_off_by_one_limits_lose_only_the_hidden_largest_frame_marks(solution):
    def send_msg(sock, obj):
        body = json.dumps(obj).encode()
        if len(body) >= MAX_MESSAGE:  # >=: the largest allowed body is refused
            raise ValueError("too long")
        sock.sendall(struct.pack("!I", len(body)) + body)

    def recv_msg(sock):
        (size,) = struct.unpack("!I", solution["recv_exactly"](sock, 4))
        if size >= MAX_MESSAGE:
            raise ValueError("too long")
        return json.loads(solution["recv_exactly"](sock, size))
    lost = lost_in("send_msg", send_msg)
    assert set(lost) == hidden_names("send_msg", "exactly MAX_MESSAGE")
    assert next(iter(lost.values())).startswith("send_msg refused a body of exactly "
                                                "MAX_MESSAGE bytes (too long)")
    lost = lost_in("recv_msg", recv_msg)
    assert set(lost) == hidden_names("recv_msg", "exactly MAX_MESSAGE")


def test_a_send_msg_turning_anything_into_json_loses_only_the_hidden_not_json_mark():
    def send_msg(sock, obj):
        body = json.dumps(obj, default=str).encode()  # a set becomes the string "{1, 2}"
        if len(body) > MAX_MESSAGE:
            raise ValueError("too long")
        sock.sendall(struct.pack("!I", len(body)) + body)
    lost = lost_in("send_msg", send_msg)
    assert set(lost) == hidden_names("send_msg", "cannot carry")
    assert "send_msg({'a set': {1, 2}}) returned: JSON cannot carry it" in \
        lost[next(iter(hidden_names("send_msg", "cannot carry")))]


def test_a_recv_msg_buffering_for_every_socket_loses_only_the_two_sockets_mark():
    waiting = bytearray()  # one buffer for all sockets: what one recv brought too much

    def recv_msg(sock):
        while True:
            if len(waiting) >= 4:
                (size,) = struct.unpack("!I", waiting[:4])
                if size > MAX_MESSAGE:
                    raise ValueError("too long")
                if len(waiting) >= 4 + size:
                    body = bytes(waiting[4:4 + size])
                    del waiting[:4 + size]
                    return json.loads(body)
            chunk = sock.recv(65536)
            if not chunk:
                waiting.clear()
                raise EOFError()
            waiting.extend(chunk)
    lost = lost_in("recv_msg", recv_msg)
    assert set(lost) == hidden_names("recv_msg", "two sockets")
    assert next(iter(lost.values())).startswith("reading two sockets in turns, recv_msg "
                                                "returned 'one 1', expected 'two 0'")


# -- start_worker ---------------------------------------------------------------------------

def student_worker(sol, *, exit_in_finally=True, close_siblings=True):
    """The solution's start_worker, or with its os._exit after the loop (not in a finally),
    or with the siblings' sockets left open in the child."""
    send_msg, recv_msg = sol["send_msg"], sol["recv_msg"]

    def start_worker(fn, siblings=()):
        parent_end, child_end = socket.socketpair()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            try:
                parent_end.close()
                for sock in siblings if close_siblings else ():
                    sock.close()
                while True:
                    try:
                        request = recv_msg(child_end)
                    except EOFError:
                        break
                    try:
                        send_msg(child_end, {"ok": True, "result": fn(request)})
                    except Exception as e:  # noqa: BLE001 - but SystemExit goes through
                        send_msg(child_end, {"ok": False, "error": f"{type(e).__name__}: {e}"})
                os._exit(0)
            finally:
                if exit_in_finally:
                    os._exit(1)
        child_end.close()
        return pid, parent_end
    return start_worker


def one_recv(sock):
    """recv_msg trusting one recv for the length and one for the body."""
    header = sock.recv(4)
    if not header:
        raise EOFError()
    return json.loads(sock.recv(struct.unpack("!I", header)[0]))


def lost_in_hidden(title, fn, words):
    """Run only the hidden checks of the part whose name contains ``words``; what they said."""
    checks = [c for c in parts.hide(HIDDEN[title](fn)) if c.name in hidden_names(title, words)]
    lost = failed(run_checks(title, checks, show=False))
    assert len(checks) == len(lost) >= 1
    return lost


def test_a_worker_without_finally_loses_only_the_hidden_sys_exit_mark(solution):
    assert not lost_in("start_worker", student_worker(solution))
    lost = lost_in("start_worker", student_worker(solution, exit_in_finally=False))
    assert set(lost) == hidden_names("start_worker", "sys.exit")
    assert next(iter(lost.values())).startswith(
        "after fn called sys.exit, the worker came back out of start_worker into the caller's "
        "code")


# -- pool_map -------------------------------------------------------------------------------

def make_pool(sol, *, batch=False, fill_left=True, start_all=False, refuse_zero_only=False,
              as_list=True):
    """The solution's algorithm, with one mistake if asked: ``batch``, a new job only when
    every worker has replied; no WorkerError for jobs ``left`` when all workers died;
    ``start_all`` workers whatever the number of items; only ``workers == 0`` refused;
    items used without ``list(items)``."""
    send_msg, recv_msg, start_worker = sol["send_msg"], sol["recv_msg"], sol["start_worker"]

    def pool_map(fn, items, workers=4, timeout=10.0):
        if workers == 0 if refuse_zero_only else workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        items = list(items) if as_list else items
        results, pool, busy = [None] * len(items), [], {}
        todo, sel, finished = iter(range(len(items))), selectors.DefaultSelector(), False

        def give(sock):
            if (index := next(todo, None)) is not None:
                busy[sock] = index
                send_msg(sock, items[index])
        try:
            for _ in range(workers if start_all else min(workers, len(items))):
                pid, sock = start_worker(fn, [s for _, s in pool])
                pool.append((pid, sock))
                sock.settimeout(timeout)
                sel.register(sock, selectors.EVENT_READ)
            alive = [sock for _, sock in pool]
            for sock in alive:
                give(sock)
            while busy:
                if not (ready := sel.select(timeout)):
                    raise TimeoutError("no reply")
                for key, _ in ready:
                    sock = key.fileobj
                    index = busy.pop(sock)
                    try:
                        reply = recv_msg(sock)
                    except (EOFError, ConnectionError):
                        results[index] = WorkerError("died")
                        sel.unregister(sock)
                        alive.remove(sock)
                        continue
                    results[index] = reply["result"] if reply["ok"] else WorkerError(
                        reply["error"])
                    if not batch:
                        give(sock)
                if batch and not busy:
                    for sock in alive:
                        give(sock)
            for index in todo if fill_left else ():
                results[index] = WorkerError("no worker left")
            finished = True
            return results
        finally:
            sel.close()
            for _, sock in pool:
                sock.close()
            for pid, _ in pool:
                if not finished:
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return pool_map


def test_the_test_pool_without_a_mistake_gets_full_marks(solution):
    assert not lost_in("pool_map", make_pool(solution))


@pytest.mark.parametrize("mistake, words, says", [
    ({"batch": True}, "slow job", "the 12 quick jobs waited for the slow one"),
    ({"fill_left": False}, "every worker dies", "item 3: None, expected a WorkerError"),
    ({"refuse_zero_only": True}, "negative", "workers=-1: expected ValueError, got [Worker"),
])
def test_a_pool_mistake_passing_the_visible_checks_loses_a_hidden_mark(solution, mistake,
                                                                       words, says):
    lost = lost_in("pool_map", make_pool(solution, **mistake))
    assert set(lost) == hidden_names("pool_map", words)
    assert next(iter(lost.values())).startswith(says), lost


@pytest.mark.parametrize("mistake, words, says", [
    ({"start_all": True}, "no worker for", "pool_map forked 8 time(s) for no items"),
    ({"as_list": False}, "generator", "items from a generator: pool_map raised TypeError"),
    ({"recv_msg": one_recv}, "1 MiB", "pool_map raised "),
])
def test_more_pool_mistakes_lose_their_hidden_mark(solution, mistake, words, says):
    sol = dict(solution, **{k: v for k, v in mistake.items() if k == "recv_msg"})
    pool = make_pool(sol, **{k: v for k, v in mistake.items() if k != "recv_msg"})
    lost = lost_in_hidden("pool_map", pool, words)
    assert next(iter(lost.values())).startswith(says), lost


def test_every_hidden_framing_and_worker_check_can_fail(solution):
    lost_in_hidden("recv_msg", one_recv, "every byte")
    lost_in_hidden("recv_msg", one_recv, "end of file")
    careless = student_worker(solution, close_siblings=False)
    detail = next(iter(lost_in_hidden("start_worker", careless, "8 workers").values()))
    assert "still runs 3 s after the caller closed its socket" in detail
    deaf = rebind(solution["start_worker"], recv_msg=one_recv)  # a 1 MiB request in pieces
    detail = next(iter(lost_in_hidden("start_worker", deaf, "50 requests").values()))
    assert detail.startswith(("the worker closed its socket", "a 1 MiB request")), detail
