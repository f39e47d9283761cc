"""The grader's parts of lab 03: full marks for the solution, zero for the untouched lab and
for missing names, and lost marks for wrong buffers and barriers, among them a racy one that
must lose them on every run, and for each part one that passes every visible check and
fails only a hidden one.

The solution is taken from solutions/lab03_mutex.ipynb itself; each wrong implementation
changes one thing in the solution's class, with no sleep added: the hidden checks have to
find the fault by themselves.
"""

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from _helpers import (
    failed,
    load_solution,
    missing_fails_every_check,
    run_code_cells,
    untouched_scores_zero,
)

from ipclab import sem, shm
from ipclab.grading import parts
from ipclab.labs import generate, lab03
from ipclab.labs.hidden import lab03 as hidden

pytestmark = pytest.mark.timeout(240)
SOLUTION = Path(__file__).resolve().parent.parent / "solutions" / "lab03_mutex.ipynb"
BUFFER, BARRIER = hidden.PARTS
CROWD = ("hidden: 8 producers, 8 consumers, 2 then 8 slots, preempted at random: none lost, "
         "none twice")
ODD = "hidden: items of 0 and of item_size (300) bytes, with NUL bytes, come back whole"
EIGHT = "hidden: 8 processes, 150 rounds, late at random: nobody passes early"
GENERATIONS = "hidden: processes that come after others exited"
WHOLE = "hidden: wait(timeout) waits the whole timeout"


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab03_mutex.ipynb")


def names(part, objects):
    """The names of ``part``'s checks, as its scorecard lists them."""
    if part is BUFFER:
        return [c.name for c in lab03.buffer_checks(*objects)
                + parts.hide(hidden.hidden_buffer_checks(*objects))]
    return [c.name for c in lab03.barrier_checks(*objects)
            + parts.hide(hidden.hidden_barrier_checks(*objects))]


def test_one_part_per_check_cell_with_stable_unique_names(solution):
    assert [(p.title, p.needs) for p in hidden.PARTS] == [("BoundedBuffer", ("BoundedBuffer",)),
                                                          ("Barrier", ("Barrier",))]
    assert parts.parts("lab03_mutex") == hidden.PARTS
    for part in hidden.PARTS:
        first, again = names(part, [solution[part.title]]), names(part, [print])
        assert first == again and len(set(first)) == len(first)
        visible = [n for n in first if not n.startswith(parts.HIDDEN)]
        check = lab03.buffer_checks if part is BUFFER else lab03.barrier_checks
        assert visible == [c.name for c in check(print)]  # the same checks, first
    assert names(BUFFER, [print])[7:] == [
        CROWD, ODD, "hidden: a ring of 300 slots, round twice",
        "hidden: two buffers at once share nothing",
        "hidden: a get() or put() that times out while another waits loses nothing"]
    assert names(BARRIER, [print])[4:] == [
        EIGHT, "hidden: barriers of 1 and 2 processes", GENERATIONS, WHOLE]


def test_solution_gets_full_marks_on_every_part(solution, capsys):
    for part, total in ((BUFFER, 12), (BARRIER, 8)):
        score = part.run(solution[part.title])
        assert (score.passed, score.total) == (total, total), failed(score)
        assert score.title == part.title
        assert [line[0] for line in score.lines] == names(part, [print])
    assert capsys.readouterr().out == ""  # show=False: the grader prints nothing


def test_untouched_lab_scores_zero_without_raising():
    lab = run_code_cells(generate.make_lab(nbformat.read(SOLUTION, as_version=4)), SOLUTION)
    for part in hidden.PARTS:
        untouched_scores_zero(part, lab)


def test_missing_names_score_zero_and_say_so():
    for part in hidden.PARTS:
        missing_fails_every_check(part)


def test_what_is_not_a_class_is_refused_as_by_the_check_cell():
    with pytest.raises(TypeError, match="BoundedBuffer must be callable, got 3"):
        BUFFER.run(3)
    with pytest.raises(TypeError, match="Barrier must be callable, got None"):
        BARRIER.run(None)


# -- Part A: wrong buffers --------------------------------------------------------------------

def racy(ns, lock_class):
    """The solution's buffer with its Mutex replaced by ``lock_class()``."""
    class Racy(ns["BoundedBuffer"]):
        def __init__(self, slots, item_size):
            super().__init__(slots, item_size)
            self.lock.remove()
            self.lock = lock_class()  # the solution's remove() removes it too
    return Racy


class NoLock:
    """No lock at all: ``with self.lock:`` guards nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def remove(self):
        pass


class FlagLock:
    """A lock made of a byte in shared memory, tested and then set: not atomic."""

    def __init__(self):
        self.seg = shm.Segment(None, 1)

    def __enter__(self):
        while self.seg.read(0, 1) == b"\1":
            pass
        self.seg.write(b"\1")  # another process may have read 0 too, and be here as well

    def __exit__(self, *exc):
        self.seg.write(b"\0")

    def remove(self):
        self.seg.close()
        self.seg.remove()


def test_a_buffer_without_a_mutex_loses_the_crowd_mark_on_every_run(solution):
    details = failed(BUFFER.run(racy(solution, NoLock)))
    assert CROWD in details
    assert "came out 2 times" in details[CROWD] or "came out changed" in details[CROWD]
    assert "hint: hold the Mutex" in details[CROWD]
    assert not set(details) - {CROWD, lab03.buffer_checks(print)[4].name}  # only the crowds


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a flag tested then set lets two "
                    "processes in only when they run at once, on two CPUs")
def test_a_buffer_whose_lock_tests_then_sets_a_flag_loses_the_crowd_mark(solution):
    score = lab03.run_tracked("t", [c for c in parts.hide(hidden.hidden_buffer_checks(
        racy(solution, FlagLock))) if c.name == CROWD], show=False)
    assert "came out" in failed(score)[CROWD]


def test_a_buffer_that_strips_nuls_passes_every_visible_check_but_not_the_hidden_one(solution):
    ns = solution

    class Strips(ns["BoundedBuffer"]):
        """Pads each item with NULs and strips them on the way out, instead of its length."""

        def put(self, item, timeout=5.0):
            if len(item) > self.item_size:
                raise ValueError("too long")
            super().put(item.ljust(self.item_size, b"\0"), timeout)

        def get(self, timeout=5.0):
            return super().get(timeout).rstrip(b"\0")

    details = failed(BUFFER.run(Strips))
    assert list(details) == [ODD]
    assert details[ODD].startswith("item 1 of 8 (put by another process): put b'\\x00', got b''")


def test_a_buffer_on_fixed_keys_shares_everything_with_the_next_one(solution):
    class Fixed(solution["BoundedBuffer"]):
        def __init__(self, slots, item_size):
            self.slots, self.item_size = slots, item_size
            self.stride = 4 + item_size
            self.seg = shm.Segment("lab03-buffer", 8 + slots * self.stride)
            self.empty = sem.Semaphore("lab03-empty", value=slots)
            self.full = sem.Semaphore("lab03-full", value=0)
            self.lock = sem.Mutex("lab03-lock", timeout=5.0)

    checks = [c for c in hidden.hidden_buffer_checks(Fixed) if "two buffers" in c.name]
    detail = failed(lab03.run_tracked("t", checks, show=False))[checks[0].name]
    assert detail.startswith("the second buffer's get() returned b'in a', put into the first")


# -- Part B: wrong barriers -------------------------------------------------------------------

def test_a_barrier_with_one_gate_is_caught_by_the_many_rounds_of_eight(solution):
    class OneGate(solution["Barrier"]):
        """The count is reset, but there is no second gate (and no sleep to widen the
        window): a fast process can come back and take a slow one's pass."""

        def wait(self, timeout=5.0):
            with self.lock:
                count = int.from_bytes(self.seg.read(0, 4), "little") + 1
                last = count == self.n
                self.seg.write((0 if last else count).to_bytes(4, "little"))
                if last:
                    for _ in range(self.n):
                        self.gate_in.release()
            self.gate_in.acquire(timeout)

    checks = [c for c in parts.hide(hidden.hidden_barrier_checks(OneGate)) if c.name == EIGHT]
    detail = failed(lab03.run_tracked("t", checks, show=False))[EIGHT]
    assert re.match(r"process \d passed wait\(\) in round \d+ before process \d had arrived",
                    detail), detail


def test_a_barrier_with_sem_undo_gates_fails_only_when_processes_come_and_go(solution):
    class Undo(solution["Barrier"]):
        def __init__(self, n):
            super().__init__(n)
            self.gate_in.undo = self.gate_out.undo = True  # the kernel "gives back" at exit

    details = failed(BARRIER.run(Undo))
    assert list(details) == [GENERATIONS]
    assert re.match(r"process \d passed wait\(\) in round 1 before process \d had arrived",
                    details[GENERATIONS])
    assert "no SEM_UNDO" in details[GENERATIONS]


def test_a_barrier_that_ignores_its_timeout_argument_fails_only_the_hidden_check(solution):
    class OneSecond(solution["Barrier"]):
        def wait(self, timeout=5.0):
            super().wait(timeout=1.0)  # whatever the caller asked for

    start = time.monotonic()
    details = failed(BARRIER.run(OneSecond))
    assert list(details) == [WHOLE]
    assert details[WHOLE].startswith("wait(timeout=2) with 1 of 2 processes arrived raised "
                                     "TimeoutError after 1.0")
    assert time.monotonic() - start < 60
