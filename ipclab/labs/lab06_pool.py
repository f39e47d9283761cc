"""Lab 06 checks of ``pool_map``, and ``try_pool`` for the lab's last cells."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import tempfile
import time
from dataclasses import dataclass

from .. import diagnose, leaks, proc
from .._check import check_callable, check_timeout
from .lab06_base import RETURNED, WorkerError, _check, _supervise
from .lab06_worker import _twelve_over
from .scorecard import _verdict

# -- pool_map -------------------------------------------------------------------------------

def _open_fds() -> dict[int, str]:
    return {fd: t for fd in map(int, os.listdir("/proc/self/fd"))
            if (t := diagnose.describe_fd(os.getpid(), fd)) != "closed"}


def _run_pool(pool_map, fn, items, workers=4, timeout=5.0):
    """Call ``pool_map`` here; return (value, exception or None, seconds, descriptors left)."""
    me, before, start = os.getpid(), _open_fds(), time.monotonic()
    try:
        value, error = pool_map(fn, items, workers=workers, timeout=timeout), None
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - judged by the check
        value, error = None, e
    if os.getpid() != me:  # a worker came back out of start_worker
        os._exit(RETURNED)
    left = {fd: t for fd, t in _open_fds().items() if before.get(fd) != t}
    return value, error, time.monotonic() - start, left


def _returned(pool_map, fn, items, workers=4, timeout=5.0) -> list:
    value, error, _, _ = _run_pool(pool_map, fn, items, workers, timeout)
    assert error is None, f"pool_map raised {type(error).__name__}: {error}"
    assert isinstance(value, list) and len(value) == len(items), \
        f"pool_map returned {value!r:.80}, expected a list of {len(items)} results"
    return value


def _no_workers_left() -> None:
    deadline = time.monotonic() + 1.0  # closed sockets: the workers are on their way out
    while any(s != "Z" for _, s in leaks.children()) and time.monotonic() < deadline:
        time.sleep(0.005)
    kids = leaks.children()
    zombies = sum(s == "Z" for _, s in kids)
    assert not zombies, f"{zombies} worker(s) left as zombies (exited, never reaped): " \
                        f"os.waitpid each worker"
    assert not kids, f"{len(kids)} worker(s) still running: close their sockets, and kill " \
                     f"the ones that may be busy, before os.waitpid"


def _no_fds_left(left: dict[int, str]) -> None:
    sockets = sum(t.startswith("socket:") for t in left.values())
    assert not sockets, f"{sockets} socket(s) left open: close every worker's socket"
    assert not left, f"left open: {', '.join(sorted(left.values()))} (close the selector too)"


@contextlib.contextmanager
def _scratch():
    """A file only this process and its children reach (created, then unlinked)."""
    fd, path = tempfile.mkstemp(prefix="ipclab-lab06-")
    os.unlink(path)
    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_APPEND)
    try:
        yield fd
    finally:
        os.close(fd)


def _square_late_first(x):
    if x == 0:
        time.sleep(0.3)  # the first job ends last
    return x * x


def _counted(fd, x):
    os.write(fd, b".")
    return x[::-1]


def _meet(fd, n, _):
    """Wait (2 s at most) until ``n`` jobs have started; return [pid, whether they did]."""
    os.write(fd, b".")
    deadline = time.monotonic() + 2.0
    while os.fstat(fd).st_size < n:
        if time.monotonic() > deadline:
            os.write(fd, b"!" * n)  # the jobs after this one need not wait
            return [os.getpid(), False]
        time.sleep(0.002)
    return [os.getpid(), True]


def _die_on_3(x):
    if x == 3:
        os._exit(3)
    return x + 1


def _hang_on_2(x):
    if x == 2:
        time.sleep(60)
    return x


def pool_checks(pool_map):
    """Return the checks of ``pool_map(fn, items, workers=4, timeout=10.0) -> list``."""
    def ordered():
        got = _returned(pool_map, _square_late_first, list(range(20)), 4)
        want = [x * x for x in range(20)]
        if got != want and sorted(map(repr, got)) == sorted(map(repr, want)):
            raise AssertionError(f"results in the order they came ({got!r:.50}): store each "
                                 f"at its item's index")
        assert got == want, f"results {got!r:.60}, expected {want!r:.60}"

    def many():
        items = [f"job {i} ✓" for i in range(500)]
        with _scratch() as fd:
            got = _returned(pool_map, functools.partial(_counted, fd), items, 3)
            calls = os.fstat(fd).st_size
        wrong = [i for i, (g, item) in enumerate(zip(got, items, strict=True)) if g != item[::-1]]
        assert not wrong, f"item {wrong[0]}: {got[wrong[0]]!r:.40}, expected " \
                          f"{items[wrong[0]][::-1]!r}"
        assert calls == len(items), f"fn was called {calls} times for {len(items)} items"

    def together():
        with _scratch() as fd:
            got = _returned(pool_map, functools.partial(_meet, fd, 4), list(range(4)), 4)
        assert all(isinstance(g, list) and len(g) == 2 for g in got), f"results {got!r:.80}"
        pids = {pid for pid, _ in got}
        assert os.getpid() not in pids, "the jobs ran in the caller: fn runs in the workers"
        assert len(pids) == 4, f"{len(pids)} process(es) did the 4 jobs, expected 4 workers"
        assert all(met for _, met in got), "the jobs ran one after another: give every " \
                                           "worker a job before you wait for a reply"

    def few():
        assert _returned(pool_map, str.upper, [], 4) == [], "no items: expected []"
        got = _returned(pool_map, str.upper, ["a", "b"], 4)
        assert got == ["A", "B"], f"results {got!r}, expected ['A', 'B']"

    def raises():
        got = _returned(pool_map, _twelve_over, [4, 0, 6, 0, 12], 3)
        for i, (g, want) in enumerate(zip(got, [3, None, 2, None, 1], strict=True)):
            if want is not None:
                assert g == want, f"item {i}: {g!r:.40}, expected {want!r}"
                continue
            assert isinstance(g, WorkerError), f"item {i} (12 // 0): {g!r:.60}, expected " \
                                               f"a WorkerError"
            assert str(g).startswith("ZeroDivisionError: "), \
                f"item {i}: {g!r:.60}, expected the worker's 'ZeroDivisionError: ...'"

    def dies():
        got = _returned(pool_map, _die_on_3, list(range(8)), 4)
        assert isinstance(got[3], WorkerError), f"item 3, whose worker died: {got[3]!r:.40}, " \
                                                f"expected a WorkerError"
        wrong = [i for i in range(8) if i != 3 and got[i] != i + 1]
        assert not wrong, f"item {wrong[0]}: {got[wrong[0]]!r:.40}, expected {wrong[0] + 1}"

    def never_ends():
        value, error, seconds, left = _run_pool(pool_map, _hang_on_2, list(range(6)), 3, 0.5)
        assert isinstance(error, TimeoutError), \
            (f"pool_map returned {value!r:.40}" if error is None else
             f"pool_map raised {type(error).__name__}: {error}") + ", expected TimeoutError"
        assert seconds >= 0.4, f"TimeoutError after {seconds:.2f} s, before timeout=0.5 s"
        _no_fds_left(left)
        _no_workers_left()

    def reaped():
        _returned(pool_map, _square_late_first, list(range(1, 13)), 4)
        _no_workers_left()

    def closed():
        value, error, _, left = _run_pool(pool_map, _square_late_first, list(range(1, 13)), 4)
        assert error is None, f"pool_map raised {type(error).__name__}: {error}"
        _no_fds_left(left)

    def refused():
        value, error, _, _ = _run_pool(pool_map, str.upper, ["a"], 0)
        assert isinstance(error, ValueError), "workers=0: expected ValueError, got " + (
            f"{type(error).__name__}: {error}" if error else f"the result {value!r:.40}")

    def c(name, body, hint="", guard=8.0):
        return _check(name, body, hint, guard, label="pool_map")
    return [
        c("20 jobs, 4 workers: every result, in input order", ordered,
          "remember which item each worker is doing; store its result at that index"),
        c("500 jobs, 3 workers: none lost, none done twice", many),
        c("jobs run at the same time, in 4 different worker processes", together,
          "send one job to every worker first, then wait with a selector for whichever "
          "replies"),
        c("no jobs, and fewer jobs than workers", few),
        c("a job that raises gives a WorkerError in its place", raises,
          "{'ok': false} replies become WorkerError(reply['error']); the other jobs go on"),
        c("a worker that dies during a job gives a WorkerError, not a hang", dies,
          "a dead worker's socket gives end of file (EOFError, or ConnectionError): record "
          "a WorkerError for its job, unregister it, go on with the others"),
        c("a job that never ends: TimeoutError after `timeout`, nothing left", never_ends,
          "select(timeout) returns [] when no reply came in time; in a finally: close "
          "every socket, kill the workers (SIGKILL), then waitpid each"),
        c("every worker reaped: no child, no zombie left", reaped,
          "close the sockets (end of file), then os.waitpid every worker"),
        c("every socket closed", closed, "close every worker's socket in a finally"),
        c("workers=0 is refused with ValueError", refused, "check arguments before forking"),
    ]



# -- the lab's last cells: try the pool -----------------------------------------------------

@dataclass
class Tried:
    """What :func:`try_pool` saw: the results, how many workers did the jobs, how long."""

    results: list | None
    workers: int
    seconds: float  # math.inf when pool_map did not return

    @property
    def timing(self) -> str:
        if self.results is None:
            return "not measured: pool_map did not return"
        return f"{len(self.results)} jobs took {self.seconds:.2f} s"


def _tagged(fn, x):
    return [os.getpid(), fn(x)]


def _try(pool_map, fn, items, workers):
    start = time.monotonic()
    value = pool_map(functools.partial(_tagged, fn), items, workers=workers)
    seconds = time.monotonic() - start
    pids = {v[0] for v in value if isinstance(v, list)}
    return [v[1] if isinstance(v, list) else v for v in value], pids, os.getpid(), seconds


def try_pool(pool_map, fn, items, workers: int = 4, timeout: float = 30.0) -> Tried:
    """Run ``pool_map(fn, items, workers=workers)`` safely elsewhere; print what it gave.

    It runs in a child (its own process group, killed after ``timeout`` s with
    everything it forked), so a pool that hangs cannot freeze the notebook.

    Raises:
        TypeError, ValueError: ``fn`` not callable, or a bad timeout.
    """
    check_callable(fn)
    timeout = check_timeout(timeout, allow_none=False)
    items = list(items)
    result = proc.run(_supervise, _try, (pool_map, fn, items, workers), timeout, "pool_map",
                      timeout=timeout + 5, show=False)
    if result.error and result.error["type"] == "NotImplementedError":
        print("pool_map is not written yet (it raised NotImplementedError)")
        return Tried(None, 0, math.inf)
    if not result.ok:
        print(f"pool_map failed: {result.error['message'] if result.error else _verdict(result)}")
        return Tried(None, 0, math.inf)
    results, pids, caller, seconds = result.value
    print(f"results: {results!r}")
    if not any(isinstance(r, WorkerError) for r in results):  # else who did what varies
        where = "the caller did some itself" if caller in pids else "none of them the caller"
        print(f"{len(pids)} different worker processes did the jobs, {where}")
    return Tried(results, len(pids), seconds)
