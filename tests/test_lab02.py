"""Lab 02's checks: full marks for the solution, the right marks lost for each classic mistake,
and no segment left behind, even by a check that hangs or code that raises.

The solution is taken from solutions/lab02_shared_memory.ipynb itself (its code
cells, run in a fresh namespace), so what the course ships is what is tested.
"""

import struct
import time

import pytest
from _helpers import failed, load_solution

from ipclab import leaks, shm
from ipclab.errors import ObjectGoneError
from ipclab.labs import lab02
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(120)
RECORD = lab02.RECORD


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab02_shared_memory.ipynb")


def named(score, *parts):
    """The names of the checks in ``score`` that contain one of ``parts``."""
    return {name for name, *_ in score.lines if any(part in name for part in parts)}


def test_solution_gets_full_marks(solution, capsys):
    a = lab02.check_records(solution["put_record"], solution["get_record"])
    b = lab02.check_ring(solution["ring_append"], solution["ring_latest"])
    assert (a.passed, a.total, b.passed, b.total) == (6, 6, 7, 7), failed(a) | failed(b)
    out = capsys.readouterr().out
    assert "put_record / get_record: 6/6 checks passed" in out
    assert "ring_append / ring_latest: 7/7 checks passed" in out


def test_solution_constants_are_the_documented_layout(solution):
    assert solution["RECORD"].format == RECORD.format == "<16sd"
    assert solution["COUNTER"].format == lab02.COUNTER.format == "<Q"


def test_untouched_lab_scores_zero_without_raising():
    def stub(*args):
        raise NotImplementedError()
    for score in (lab02.check_records(stub, stub), lab02.check_ring(stub, stub)):
        details = list(failed(score).values())
        assert score.passed == 0 and len(details) == score.total > 0
        assert all(detail.startswith("not implemented yet") for detail in details), details


# --- Part A: the classic mistakes --------------------------------------------------------

def test_big_endian_records_lose_only_the_layout_mark(solution):
    big = struct.Struct(">16sd")  # reads back what it wrote, but no other program can

    def put(seg, index, name, score):
        solution["put_record"](seg, index, name, score)  # all the checks, then the wrong bytes
        seg.write(big.pack(name.encode(), score), index * big.size)

    def get(seg, index):
        solution["get_record"](seg, index)
        raw, score = big.unpack(seg.read(index * big.size, big.size))
        return raw.rstrip(b"\0").decode(), score

    score = lab02.check_records(put, get)
    assert set(failed(score)) == named(score, "documented layout")
    assert "expected b'ada" in failed(score).popitem()[1]


def test_names_cut_by_struct_lose_only_the_name_mark(solution):
    def put(seg, index, name, score):
        if not 0 <= index < seg.size // RECORD.size:
            raise ValueError(f"index out of range: {index!r}")
        if not isinstance(name, str) or not isinstance(score, (int, float)):
            raise TypeError("name must be a str, score a number")
        seg.write(RECORD.pack(name.encode(), score), index * RECORD.size)  # struct cuts it

    score = lab02.check_records(put, solution["get_record"])
    assert set(failed(score)) == named(score, "16 UTF-8 bytes")
    assert "'xxxxxxxxxxxxxxxxx'" in failed(score).popitem()[1]


def test_negative_index_counting_from_the_end_loses_only_the_bad_argument_mark(solution):
    def last_is_minus_one(fn):
        def wrapped(seg, index, *rest):
            if index < 0:
                index += seg.size // RECORD.size  # like a list, or struct.pack_into
            return fn(seg, index, *rest)
        return wrapped

    score = lab02.check_records(last_is_minus_one(solution["put_record"]),
                                last_is_minus_one(solution["get_record"]))
    assert set(failed(score)) == named(score, "bad index")
    assert "put_record(seg, -1, ...) should raise ValueError" in failed(score).popitem()[1]


# --- Part B: the classic mistakes --------------------------------------------------------

def _slots(seg):
    return seg.size // RECORD.size - 1


def _check_n(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {n!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")


def _ring(solution, *, slots=_slots, count_in_python=False, cap=True):
    """A ring like the solution's, with one mistake switched on."""
    put, get = solution["put_record"], solution["get_record"]
    kept = [0]  # the count, if kept in this process's memory instead of the segment

    def count(seg):
        return kept[0] if count_in_python else lab02.COUNTER.unpack(seg.read(0, 8))[0]

    def append(seg, name, score):
        if slots(seg) < 1:
            raise ValueError("no room")
        n = count(seg)
        put(seg, 1 + n % slots(seg), name, score)
        if count_in_python:
            kept[0] = n + 1
        else:
            seg.write(lab02.COUNTER.pack(n + 1), 0)

    def latest(seg, n):
        _check_n(n)
        if slots(seg) < 1:
            raise ValueError("no room")
        total = count(seg)
        n = min(n, total, slots(seg)) if cap else min(n, total)
        return [get(seg, 1 + i % slots(seg)) for i in range(total - n, total)]

    return append, latest


def test_the_test_ring_without_mistakes_gets_full_marks(solution):
    assert lab02.check_ring(*_ring(solution)).passed == 7  # so each mistake below is the cause


def test_count_in_a_python_variable_fails_across_processes(solution):
    score = lab02.check_ring(*_ring(solution, count_in_python=True))
    assert set(failed(score)) == named(score, "by another", "more than", "wraparound",
                                       "documented layout", "processes in turn")
    assert "returned [], expected [('r0', 0.0)" in failed(score)[next(iter(named(
        score, "by another")))]


def test_one_slot_too_few_loses_wraparound_layout_and_many_writers(solution):
    score = lab02.check_ring(*_ring(solution, slots=lambda seg: seg.size // RECORD.size - 2))
    assert set(failed(score)) == named(score, "wraparound", "documented layout",
                                       "processes in turn")


def test_latest_not_capped_at_the_slots_returns_overwritten_records(solution):
    score = lab02.check_ring(*_ring(solution, cap=False))
    assert set(failed(score)) == named(score, "wraparound")
    assert "ring_latest(seg, 99) after 5 appends" in failed(score).popitem()[1]


def test_counting_before_checking_the_name_loses_the_bad_input_mark(solution):
    _, latest = _ring(solution)

    def counting_first(seg, name, score):
        n = lab02.COUNTER.unpack(seg.read(0, 8))[0]
        seg.write(lab02.COUNTER.pack(n + 1), 0)  # counted before put_record checks the name
        solution["put_record"](seg, 1 + n % _slots(seg), name, score)

    score = lab02.check_ring(counting_first, latest)
    assert set(failed(score)) == named(score, "bad input")
    assert "changed the segment before raising" in failed(score).popitem()[1]


# --- hangs, crashes and clean-up --------------------------------------------------------

def test_a_hang_is_reported_and_leaves_no_segment(solution):
    def hanging_get(seg, index):
        time.sleep(3600)

    before = leaks.sysv_ids()
    with lab02.Segments() as segments:
        checks = lab02.record_checks(solution["put_record"], hanging_get, segments)
        assert len(leaks.new_sysv(before)) == 7  # made here, before any check forks
        mine = [c for c in checks if "three records" in c.name]
        elsewhere = [c for c in checks if "by another" in c.name]
        score = run_checks("t", [Check(c.name, c.run, c.hint, timeout=1.5) for c in mine]
                           + elsewhere, show=False)
    details = list(failed(score).values())
    assert details[0].startswith("timed out after 1.5 s")
    assert details[1].startswith("in another process, your code timed out after 5 s")
    assert leaks.new_sysv(before) == []  # all removed, though a check and a reader were killed


def test_segments_are_removed_when_the_block_raises():
    with pytest.raises(RuntimeError), lab02.Segments() as segments:
        seg = segments.new(64)
        key = seg.key
        raise RuntimeError("the checks failed")
    assert seg.closed and seg.removed
    with pytest.raises(ObjectGoneError):
        shm.Segment(key, create=False)


def test_code_that_removes_and_closes_the_segment_itself_does_not_break_the_cleanup(solution):
    def put_and_remove(seg, index, name, score):
        solution["put_record"](seg, index, name, score)
        seg.remove()
        seg.close()

    before = leaks.sysv_ids()
    score = lab02.check_records(put_and_remove, solution["get_record"])
    assert score.passed == 0 and score.total == 6
    assert all("handle is closed" in detail for detail in failed(score).values())
    assert leaks.new_sysv(before) == []
