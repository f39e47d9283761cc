"""Lab 06's checks: full marks for the solution, lost marks for the classic mistakes.

The solution is taken from solutions/lab06_socketpair.ipynb itself (its code
cells, run in a fresh namespace), so what the course ships is what is tested.
The broken versions below are the solution with one mistake each; every check
runs them under a supervisor that kills and reaps whatever they fork, and the
leak check of conftest.py fails a test that leaves a process or a socket here.
"""

import json
import os
import pickle
import selectors
import signal
import socket
import struct
import time
import types

import pytest
from _helpers import failed, load_solution

from ipclab import proc
from ipclab.labs import lab06
from ipclab.labs.lab06 import WorkerError
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab06_socketpair.ipynb")


def names(checks, *words):
    """The names of the checks whose name contains one of ``words``."""
    return {c.name for c in checks if any(w in c.name for w in words)}


def lost(checks):
    return failed(run_checks("t", checks, show=False))


def only(checks, *words):
    return [c for c in checks if any(w in c.name for w in words)]


def rebind(fn, **globals_):
    """``fn`` with some of its global names (such as start_worker) replaced."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **globals_}, fn.__name__,
                              fn.__defaults__, fn.__closure__)


def make_worker(ns, *, close_parent_end=True, close_child_end=True, close_siblings=True,
                exit=True):
    """The solution's start_worker, or one with a classic mistake.

    A socket object that is no longer referenced is closed by CPython, which hides a
    forgotten close; so the parent that does not close ``child_end`` keeps it, as a
    student who stores both ends with the worker would.
    """
    kept = []
    send_msg, recv_msg = ns["send_msg"], ns["recv_msg"]

    def start_worker(fn, siblings=()):
        parent_end, child_end = socket.socketpair()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            try:
                if close_parent_end:
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
                    except Exception as e:  # noqa: BLE001
                        send_msg(child_end, {"ok": False, "error": f"{type(e).__name__}: {e}"})
            finally:
                if exit:
                    os._exit(0)
            return 0, child_end  # exit=False: back into the caller's code
        if close_child_end:
            child_end.close()
        else:
            kept.append(child_end)
        return pid, parent_end
    return start_worker


def make_pool(ns, start_worker=None, *, in_order=True, reap=True, close=True, parallel=True,
              select_timeout=True, one_by_one=False):
    """A pool_map like the solution's, or with one classic mistake."""
    send_msg, recv_msg = ns["send_msg"], ns["recv_msg"]
    start_worker = start_worker or ns["start_worker"]
    kept = []  # close=False: the sockets stay referenced (CPython would close them)

    def pool_map(fn, items, workers=4, timeout=10.0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        items, results, pool, busy = list(items), [], [], {}
        todo = iter(enumerate(items))
        sel = selectors.DefaultSelector()
        finished = False

        def give_work(sock):
            job = next(todo, None)
            if job is not None:
                busy[sock] = job[0]
                send_msg(sock, job[1])

        def collect(index, sock):
            try:
                reply = recv_msg(sock)
            except (EOFError, ConnectionError):
                sel.unregister(sock)
                value = WorkerError("died")
            else:
                value = reply["result"] if reply["ok"] else WorkerError(reply["error"])
            results.append((index if in_order else len(results), value))
            return isinstance(value, WorkerError) and value.args == ("died",)

        try:
            for _ in range(min(workers, len(items))):
                pid, sock = start_worker(fn, [s for _, s in pool])
                pool.append((pid, sock))
                sock.settimeout(timeout)
                sel.register(sock, selectors.EVENT_READ)
            if not parallel:  # one job at a time, round robin
                alive = [sock for _, sock in pool]
                for index, item in enumerate(items):
                    sock = alive[index % len(alive)]
                    send_msg(sock, item)
                    if collect(index, sock):
                        alive.remove(sock)
                finished = True
                return [v for _, v in sorted(results, key=lambda r: r[0])]
            for _, sock in pool:
                give_work(sock)
            while busy:
                ready = sel.select(timeout if select_timeout else None)
                if not ready:
                    raise TimeoutError(f"no reply in {timeout} s")
                for key, _ in ready:
                    if not collect(busy.pop(key.fileobj), key.fileobj):
                        give_work(key.fileobj)
            finished = True
            return [v for _, v in sorted(results, key=lambda r: r[0])]
        finally:
            sel.close()
            for pid, sock in pool:
                if close:
                    sock.close()
                else:
                    kept.append(sock)
                if one_by_one:
                    os.waitpid(pid, 0)
            for pid, _ in pool if not one_by_one else ():
                if not finished or not close:
                    os.kill(pid, signal.SIGKILL)
                if reap:
                    os.waitpid(pid, 0)
    return pool_map


# -- the solution and the untouched lab ----------------------------------------------------

def test_solution_gets_full_marks(solution, capsys):
    scores = [lab06.check_send_msg(solution["send_msg"]),
              lab06.check_recv_msg(solution["recv_msg"]),
              lab06.check_start_worker(solution["start_worker"]),
              lab06.check_pool_map(solution["pool_map"])]
    assert [(s.passed, s.total) for s in scores] == [(3, 3), (6, 6), (7, 7), (10, 10)]
    out = capsys.readouterr().out
    assert "send_msg: 3/3 checks passed" in out and "pool_map: 10/10 checks passed" in out


def test_the_test_pools_are_right_when_nothing_is_broken(solution):
    assert not lost(lab06.worker_checks(make_worker(solution)))
    assert not lost(lab06.pool_checks(make_pool(solution, make_worker(solution))))


def test_untouched_lab_scores_zero_without_raising_and_quickly():
    def stub(*args, **kwargs):
        raise NotImplementedError()
    start = time.monotonic()
    for check in (lab06.check_send_msg, lab06.check_recv_msg, lab06.check_start_worker,
                  lab06.check_pool_map):
        score = check(stub)
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total
        assert all(detail.startswith("not implemented yet") for detail in details), details
    assert time.monotonic() - start < 20  # no check waits out a timeout for a stub


# -- framing --------------------------------------------------------------------------------

def test_recv_msg_trusting_one_recv_loses_the_partial_read_marks():
    def one_recv(sock):
        header = sock.recv(4)
        if not header:
            raise EOFError()
        (size,) = struct.unpack("!I", header)
        return json.loads(sock.recv(size))
    checks = lab06.recv_msg_checks(one_recv)
    got = lost(checks)
    assert set(got) == names(checks, "one byte", "1 MiB", "end of file", "over MAX_MESSAGE")
    detail = got[next(iter(names(checks, "one byte")))]
    assert "unpack requires a buffer of 4 bytes" in detail
    assert "hint: recv(n) returns at most n bytes" in detail
    assert "inside the length, recv_msg raised error" in got[next(iter(names(checks, "end of")))]
    assert "returned [1] for a frame announcing" in got[next(iter(names(checks, "MAX_MES")))]


def test_recv_msg_spinning_at_end_of_file_is_stopped_with_a_diagnosis(solution):
    def endless(sock, n):
        data = b""
        while len(data) < n:
            data += sock.recv(n - len(data))  # b"" at end of file: loops for ever
        return data
    spinning = rebind(solution["recv_msg"], recv_exactly=endless)
    checks = only(lab06.recv_msg_checks(spinning), "end of file")
    detail = lost(checks)[checks[0].name]
    assert detail.startswith("timed out after 5 s")
    assert "recv_msg is running, not blocked in the kernel (a busy loop?)" in detail
    assert "hint: recv returns b'' at end of file (forever)" in detail


def test_send_instead_of_sendall_loses_only_the_big_message_mark():
    def send_once(sock, obj):
        body = json.dumps(obj).encode()
        if len(body) > lab06.MAX_MESSAGE:
            raise ValueError("too long")
        sock.send(struct.pack("!I", len(body)) + body)  # may send only a part
    checks = lab06.send_msg_checks(send_once)
    got = lost(checks)
    assert set(got) == names(checks, "1 MiB")
    assert "the reader got" in got[next(iter(got))] and "sendall" in got[next(iter(got))]


@pytest.mark.parametrize("mistake, words", [
    (lambda body: struct.pack("<I", len(body)) + body, "the length is little-endian"),
    (lambda body: struct.pack("!I", len(body) + 4) + body, "the length says"),
])
def test_a_wrong_length_field_fails_the_wire_check(mistake, words):
    def send_msg(sock, obj):
        sock.sendall(mistake(json.dumps(obj).encode()))
    checks = lab06.send_msg_checks(send_msg)
    got = lost(checks)
    assert names(checks, "bytes sent") <= set(got)
    assert words in got[next(iter(names(checks, "bytes sent")))]


def test_pickle_on_the_wire_fails_the_wire_check():
    def pickled(sock, obj):
        body = pickle.dumps(obj)
        sock.sendall(struct.pack("!I", len(body)) + body)
    checks = lab06.send_msg_checks(pickled)
    got = lost(checks)
    assert names(checks, "bytes sent", "MAX_MESSAGE") <= set(got)
    assert "the body is not UTF-8 JSON" in got[next(iter(names(checks, "bytes sent")))]


# -- start_worker ---------------------------------------------------------------------------

def test_a_worker_keeping_the_parent_end_never_sees_end_of_file(solution):
    checks = lab06.worker_checks(make_worker(solution, close_parent_end=False))
    got = lost(checks)
    assert set(got) == names(checks, "closing the parent's end", "siblings")
    detail = got[next(iter(names(checks, "closing the parent's end")))]
    assert detail.startswith("worker 1 still runs 3 s after the caller closed its socket: it "
                             "never saw end of file, because its parent end is still open in: "
                             "worker 1 (fd")
    assert "worker 1 (fd" in got[next(iter(names(checks, "siblings")))]


def test_a_parent_keeping_the_child_end_leaks_and_the_pool_waits_for_the_dead(solution):
    leaky = make_worker(solution, close_child_end=False)
    checks = lab06.worker_checks(leaky)
    got = lost(checks)
    assert set(got) == names(checks, "one socket per worker")
    assert "1 socket(s) open in the caller besides" in got[next(iter(got))]
    pool = lab06.pool_checks(rebind(solution["pool_map"], start_worker=leaky))
    got = lost(pool)
    assert names(pool, "dies", "socket closed", "never ends") == set(got)
    assert "pool_map raised TimeoutError" in got[next(iter(names(pool, "dies")))]


def test_a_worker_ignoring_its_siblings_keeps_worker_1_alive(solution):
    careless = make_worker(solution, close_siblings=False)
    checks = lab06.worker_checks(careless)
    got = lost(checks)
    assert set(got) == names(checks, "siblings")
    assert "its parent end is still open in: worker 2 (fd" in got[next(iter(got))]
    # ... which hangs a pool that closes and waits for its workers one at a time,
    one_by_one = only(lab06.pool_checks(make_pool(solution, careless, one_by_one=True)),
                      "20 jobs")
    detail = lost(one_by_one)[one_by_one[0].name]
    assert detail.startswith("timed out after 8 s")
    assert "pool_map is waiting for a child process to exit" in detail
    # ... and not when each worker closes its siblings' sockets,
    assert not lost(only(lab06.pool_checks(make_pool(solution, one_by_one=True)), "20 jobs"))
    # ... nor when the pool closes every socket first: the last worker's end of file comes,
    # it exits and drops its copies, and so on down to worker 1 (the lab's reflection).
    closing_all_first = rebind(solution["pool_map"], start_worker=careless)
    assert not lost(only(lab06.pool_checks(closing_all_first), "20 jobs"))


def test_a_worker_returning_into_the_caller_is_caught(solution):
    checks = lab06.worker_checks(make_worker(solution, exit=False))
    got = lost(checks)
    assert set(got) == names(checks, "closing the parent's end", "siblings")
    assert all("came back out of start_worker into the caller's code" in detail
               for detail in got.values()), got


def test_fn_running_in_the_caller_loses_the_child_mark():
    def in_caller(fn, siblings=()):
        a, b = socket.socketpair()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        b.close()
        fn("x")
        return pid, a
    checks = only(lab06.worker_checks(in_caller), "fn runs in the child")
    detail = lost(checks)[checks[0].name]
    assert "the worker closed its socket instead of replying; it exited with code 0" in detail


# -- pool_map -------------------------------------------------------------------------------

def test_results_in_the_order_they_came_lose_the_order_mark(solution):
    checks = lab06.pool_checks(make_pool(solution, in_order=False))
    got = lost(checks)
    assert names(checks, "input order") <= set(got)
    assert "results in the order they came" in got[next(iter(names(checks, "input order")))]


def test_unreaped_workers_are_flagged_as_zombies(solution):
    checks = lab06.pool_checks(make_pool(solution, reap=False))
    got = lost(checks)
    assert set(got) == names(checks, "reaped", "never ends")
    assert "worker(s) left as zombies (exited, never reaped)" in got[
        next(iter(names(checks, "reaped")))]


def test_sockets_left_open_are_flagged(solution):
    checks = lab06.pool_checks(make_pool(solution, close=False))
    got = lost(checks)
    assert set(got) == names(checks, "socket closed", "never ends")
    assert "socket(s) left open" in got[next(iter(names(checks, "socket closed")))]


def test_one_job_at_a_time_loses_only_the_parallel_mark(solution):
    checks = lab06.pool_checks(make_pool(solution, parallel=False))
    got = lost(checks)
    assert set(got) == names(checks, "same time")
    assert "the jobs ran one after another" in got[next(iter(got))]


def test_a_pool_without_a_timeout_is_stopped_with_a_diagnosis(solution):
    checks = only(lab06.pool_checks(make_pool(solution, select_timeout=False)), "never ends")
    detail = lost(checks)[checks[0].name]
    assert detail.startswith("timed out after 8 s (a blocking call never returned): pool_map")
    assert "hint: select(timeout) returns []" in detail


def test_a_hung_check_leaves_no_process_anywhere(tmp_path):
    fd = os.open(tmp_path / "pids", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def hanging(fn, items, workers=4, timeout=10.0):
        for _ in range(2):
            with proc.quiet_fork_warning():
                if os.fork() == 0:  # a worker, which forks a helper of its own
                    with proc.quiet_fork_warning():
                        os.fork()
                    os.write(fd, f"{os.getpid()}\n".encode())
                    time.sleep(60)
                    os._exit(0)
        time.sleep(60)
    try:
        checks = only(lab06.pool_checks(hanging), "20 jobs")
        detail = lost(checks)[checks[0].name]
    finally:
        os.close(fd)
    assert detail.startswith("timed out after 8 s") and "pool_map is sleeping" in detail
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 4
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]  # not even as zombies


def test_checks_are_wellformed():
    every = (lab06.send_msg_checks(print) + lab06.recv_msg_checks(print)
             + lab06.worker_checks(print) + lab06.pool_checks(print))
    assert all(isinstance(c, Check) for c in every)
    assert len({c.name for c in every}) == len(every) == 26


# -- the lab's last cells -------------------------------------------------------------------

def test_try_pool_shows_results_and_workers(solution, capsys):
    tried = lab06.try_pool(solution["pool_map"], abs, [-3, 1, -2], workers=2)
    out = capsys.readouterr().out
    assert tried.results == [3, 1, 2] and tried.workers == 2 and tried.seconds < 10
    assert out == ("results: [3, 1, 2]\n"
                   "2 different worker processes did the jobs, none of them the caller\n")


def test_try_pool_reports_a_missing_or_hanging_pool(solution):
    def stub(fn, items, workers=4, timeout=10.0):
        raise NotImplementedError()
    tried = lab06.try_pool(stub, abs, [1])
    assert tried.results is None and tried.seconds == float("inf")
    assert tried.timing == "not measured: pool_map did not return"
    hang = make_pool(solution, select_timeout=False)
    assert lab06.try_pool(hang, lambda x: time.sleep(60), [1], timeout=1).results is None
    with pytest.raises(TypeError, match="fn must be callable"):
        lab06.try_pool(hang, 3, [1])
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        lab06.try_pool(hang, abs, [1], timeout=0)


def test_try_pool_does_not_say_who_did_what_when_a_job_failed(solution, capsys):
    def twelve_over(x):
        if x == 0:
            raise ValueError("not by zero")
        return 12 // x
    tried = lab06.try_pool(solution["pool_map"], twelve_over, [3, 0, 4], workers=2)
    assert tried.results[::2] == [4, 3] and isinstance(tried.results[1], WorkerError)
    assert capsys.readouterr().out == "results: [4, WorkerError('ValueError: not by zero'), 3]\n"
