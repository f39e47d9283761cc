"""Lab 03's checks: full marks for the solution, lost marks for the classic mistakes,
and nothing left behind when a student's code hangs or forgets to clean up.

The solution is taken from solutions/lab03_mutex.ipynb itself (its code cells, run
in a fresh namespace), and the untouched lab is made from it by the generator.
Each wrong implementation below changes one thing in the solution's class.
"""

import contextlib
import time
from pathlib import Path

import nbformat
import pytest
import sysv_ipc
from _helpers import failed, run_code_cells

from ipclab import semwait, sysvinfo
from ipclab.labs import generate, lab03
from ipclab.labs.scorecard import Check
from ipclab.sem import Semaphore

pytestmark = pytest.mark.timeout(180)
SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "lab03_mutex.ipynb"
MANY = "4 producers, 4 consumers, 3000 items: none lost, none twice, in order"
SURVIVES = "items and free slots outlive the process that made them"
TIMEOUTS = "get() on an empty and put() on a full buffer raise TimeoutError"
TOO_LONG = "an item longer than item_size is refused with ValueError"
REMOVES = "remove() and `with` remove every object the buffer made"
FIRST = "nobody passes before the last of 4 processes arrives"
ROUNDS = "4 processes, 100 rounds: nobody passes a round before all arrived"
MISSING = "a process that never comes: wait() raises TimeoutError"


@pytest.fixture(scope="module")
def solution():
    return run_code_cells(nbformat.read(SOLUTION, as_version=4), SOLUTION)


def quick(checks, timeout):
    """The same checks with a shorter timeout, for code that hangs."""
    return [Check(c.name, c.run, c.hint, timeout=timeout) for c in checks]


def test_solution_gets_full_marks(solution, capsys):
    a = lab03.check_bounded_buffer(solution["BoundedBuffer"])
    b = lab03.check_barrier(solution["Barrier"])
    assert (a.passed, a.total, b.passed, b.total) == (7, 7, 4, 4)
    out = capsys.readouterr().out
    assert "BoundedBuffer: 7/7 checks passed" in out and "Barrier: 4/4 checks passed" in out


def test_untouched_lab_scores_zero_without_raising():
    lab = run_code_cells(generate.make_lab(nbformat.read(SOLUTION, as_version=4)), SOLUTION)
    for score in (lab03.check_bounded_buffer(lab["BoundedBuffer"]),
                  lab03.check_barrier(lab["Barrier"])):
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total > 0
        assert all(detail.startswith("not implemented yet") for detail in details)


def test_checks_refuse_what_is_not_a_class():
    with pytest.raises(TypeError, match="BoundedBuffer must be callable, got 3"):
        lab03.check_bounded_buffer(3)
    with pytest.raises(TypeError, match="Barrier must be callable, got None"):
        lab03.check_barrier(None)


# -- Part A: wrong buffers --------------------------------------------------------------------

def test_buffer_without_the_mutex_loses_or_repeats_items(solution):
    ns = solution

    class Racy(ns["BoundedBuffer"]):
        """No Mutex around the positions; a short sleep widens the window so that two
        producers (and two consumers) read the same position on every run."""

        def put(self, item, timeout=5.0):
            if len(item) > self.item_size:
                raise ValueError("too long")
            self.empty.acquire(timeout)
            (at,) = ns["INDEX"].unpack(self.seg.read(ns["NEXT_PUT"], 4))
            time.sleep(0.001)
            self.seg.write(ns["INDEX"].pack(len(item)) + item, ns["SLOT_0"] + at * self.stride)
            self.seg.write(ns["INDEX"].pack((at + 1) % self.slots), ns["NEXT_PUT"])
            self.full.release()

        def get(self, timeout=5.0):
            self.full.acquire(timeout)
            (at,) = ns["INDEX"].unpack(self.seg.read(ns["NEXT_GET"], 4))
            time.sleep(0.001)
            start = ns["SLOT_0"] + at * self.stride
            (length,) = ns["INDEX"].unpack(self.seg.read(start, 4))
            item = self.seg.read(start + 4, min(length, self.item_size))
            self.seg.write(ns["INDEX"].pack((at + 1) % self.slots), ns["NEXT_GET"])
            self.empty.release()
            return item

    score = lab03.check_bounded_buffer(Racy)
    assert list(failed(score)) == [MANY]  # one producer and one consumer need no lock
    assert "hold the Mutex" in failed(score)[MANY]


def test_counts_with_sem_undo_lose_items_when_a_process_exits(solution):
    class Undo(solution["BoundedBuffer"]):
        def __init__(self, slots, item_size):
            super().__init__(slots, item_size)
            self.empty.undo = self.full.undo = True  # the kernel "gives back" at exit

    details = failed(lab03.check_bounded_buffer(Undo))
    assert SURVIVES in details
    assert details[SURVIVES].startswith("after a producer process filled all 4 slots and "
                                        "exited, put() returned instead of waiting")
    assert "do not use SEM_UNDO" in details[SURVIVES]
    assert TIMEOUTS not in details and TOO_LONG not in details


def test_buffer_that_never_waits_for_a_free_slot_overwrites(solution):
    ns = solution

    class Overwrites(ns["BoundedBuffer"]):
        def put(self, item, timeout=5.0):
            if len(item) > self.item_size:
                raise ValueError("too long")
            self.empty.try_acquire()  # goes on whether a slot was free or not
            with self.lock:
                (at,) = ns["INDEX"].unpack(self.seg.read(ns["NEXT_PUT"], 4))
                self.seg.write(ns["INDEX"].pack(len(item)) + item,
                               ns["SLOT_0"] + at * self.stride)
                self.seg.write(ns["INDEX"].pack((at + 1) % self.slots), ns["NEXT_PUT"])
            self.full.release()

    details = failed(lab03.check_bounded_buffer(Overwrites))
    assert details[TIMEOUTS].startswith("put() on a full buffer returned instead of waiting")


def test_refusing_a_long_item_after_taking_a_slot_loses_the_slot(solution):
    class LeaksASlot(solution["BoundedBuffer"]):
        def put(self, item, timeout=5.0):
            self.empty.acquire(timeout)  # taken before the length is checked...
            if len(item) > self.item_size:
                raise ValueError("too long")  # ...and never given back
            self.empty.release()
            super().put(item, timeout)

    details = failed(lab03.check_bounded_buffer(LeaksASlot))
    assert list(details) == [TOO_LONG]
    assert details[TOO_LONG].startswith("raised IPCTimeoutError")


def test_remove_that_forgets_the_semaphores_loses_the_mark_and_leaves_nothing(solution):
    class Forgets(solution["BoundedBuffer"]):
        def remove(self):
            self.seg.close()
            self.seg.remove()

    details = failed(lab03.check_bounded_buffer(Forgets))
    assert list(details) == [REMOVES]
    assert details[REMOVES].startswith("after remove(), still there: semaphore set, "
                                       "semaphore set, semaphore set")
    # the leak fixture fails this test if any of the sets outlived the checks


def test_buffer_that_hangs_is_stopped_and_leaves_nothing(solution):
    class Hangs(solution["BoundedBuffer"]):
        def get(self, timeout=5.0):
            semwait.semop(self.full.id, [(0, -1, 0)])  # no timeout: waits for ever
            return b""

    checks = [c for c in lab03.buffer_checks(Hangs) if c.name in (TIMEOUTS, MANY)]
    score = lab03.run_tracked("t", quick(checks, 2), show=False)
    details = failed(score)
    assert details[TIMEOUTS].startswith("timed out after 2 s")
    assert "semtimedop" in details[TIMEOUTS]
    assert details[MANY].startswith("timed out after 2 s")  # its consumers hang too
    # the leak fixture fails this test if a killed check left an object or a process


def test_objects_made_in_a_killed_check_and_its_children_are_removed():
    class MakesThenSleeps:
        def __init__(self, *args):
            self.lock = Semaphore(None)  # made in the check's process, which is killed
            time.sleep(60)

    score = lab03.run_tracked("t", quick(lab03.buffer_checks(MakesThenSleeps)[:1], 1),
                              show=False)
    assert score.passed == 0


def test_objects_the_student_only_opened_are_never_removed(solution):
    theirs = Semaphore(None, value=3)  # made before, outside the checks
    try:
        class Opens(solution["BoundedBuffer"]):
            def __init__(self, slots, item_size):
                super().__init__(slots, item_size)
                self.other = Semaphore(theirs.key, create=False)  # opens, does not make

        score = lab03.run_tracked("t", lab03.buffer_checks(Opens)[:1], show=False)
        assert score.passed == 1
        alive = {(o.kind, o.id) for o in sysvinfo.list_objects()}
        assert ("sem", theirs.id) in alive and theirs.value == 3
    finally:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            theirs.remove()


# -- Part B: wrong barriers -------------------------------------------------------------------

def _count(barrier, delta):
    """Add ``delta`` to the barrier's count under its lock; return the new count."""
    with barrier.lock:
        count = int.from_bytes(barrier.seg.read(0, 4), "little") + delta
        barrier.seg.write(count.to_bytes(4, "little"))
        return count


def test_barrier_that_does_not_wait_loses_marks(solution):
    class NoWait(solution["Barrier"]):
        def wait(self, timeout=5.0):
            _count(self, 1)

    details = failed(lab03.check_barrier(NoWait))
    assert list(details) == [FIRST, ROUNDS, MISSING]
    assert details[FIRST].startswith("process ") and "passed wait() in round 1 before " \
        "process " in details[FIRST]
    assert "wait() returned although only 2 of 3 processes arrived" in details[MISSING]


def test_barrier_that_lets_the_first_arrival_through_loses_marks(solution):
    class FirstThrough(solution["Barrier"]):
        def wait(self, timeout=5.0):
            if _count(self, 1) == 1:  # opens at the first arrival, not the n-th
                for _ in range(self.n):
                    self.gate_in.release()
            self.gate_in.acquire(timeout)

    details = failed(lab03.check_barrier(FirstThrough))
    assert FIRST in details and ROUNDS in details and MISSING in details


def test_barrier_that_works_only_once_loses_the_rounds_check(solution):
    class Once(solution["Barrier"]):
        def wait(self, timeout=5.0):
            if _count(self, 1) == self.n:  # the count is never set back to 0
                for _ in range(self.n):
                    self.gate_in.release()
            self.gate_in.acquire(timeout)

    details = failed(lab03.check_barrier(Once))
    assert list(details) == [ROUNDS]
    assert "round 2" in details[ROUNDS]


def test_barrier_with_one_gate_lets_a_fast_process_take_a_slow_ones_pass(solution):
    class OneGate(solution["Barrier"]):
        """The count is reset, but there is no second gate.  On its first call a process
        that is not last sleeps before taking its pass, so that the last one comes back for
        the next round first: the window, widened to happen on every run."""

        calls = 0

        def wait(self, timeout=5.0):
            with self.lock:
                count = int.from_bytes(self.seg.read(0, 4), "little") + 1
                last = count == self.n
                self.seg.write((0 if last else count).to_bytes(4, "little"))
                if last:
                    for _ in range(self.n):
                        self.gate_in.release()
            self.calls += 1
            if not last and self.calls == 1:
                time.sleep(0.05)
            self.gate_in.acquire(timeout)

    details = failed(lab03.check_barrier(OneGate))
    assert list(details) == [ROUNDS]
    assert "passed wait() in round 2 before process" in details[ROUNDS]


def test_barrier_that_ignores_the_timeout_is_stopped_and_leaves_nothing(solution):
    class Deaf(solution["Barrier"]):
        def wait(self, timeout=5.0):
            _count(self, 1)
            semwait.semop(self.gate_in.id, [(0, -1, 0)])  # no timeout

    checks = [c for c in lab03.barrier_checks(Deaf) if c.name == MISSING]
    details = failed(lab03.run_tracked("t", quick(checks, 2), show=False))
    assert details[MISSING].startswith("timed out after 2 s")
