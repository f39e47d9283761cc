"""The grader's parts of lab 02 (ipclab.labs.hidden.lab02): full marks for the solution, 0 for
the untouched lab and for missing names, and hidden checks that catch what the visible ones
let through; no segment is left behind (the autouse leak check).

Each wrong implementation is the solution (solutions/lab02_shared_memory.ipynb, its code
cells) with one small change that passes every visible check. Two of the mistakes show only
when processes run at the same moment; their tests give the race a few tries.
"""

import importlib
import os

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
from ipclab.labs import generate, lab02
from ipclab.labs.hidden import lab02 as hidden

pytestmark = pytest.mark.timeout(120)
NAME = "lab02_shared_memory.ipynb"
RECORDS, RING = hidden.PARTS
BUILD = {RECORDS.title: (hidden.record_part, lab02.record_checks),
         RING.title: (hidden.ring_part, lab02.ring_checks)}
racy = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a race needs two CPUs to show")


@pytest.fixture(scope="module")
def solution():
    return load_solution(NAME)


def variant(*edits):
    """The solution's namespace with each (old, new[, times]) replaced, old found that often."""
    nb = nbformat.read(SOLUTIONS / NAME, as_version=4)
    for old, new, *times in edits:
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1 and cells[0].source.count(old) == (times or [1])[0], old
        cells[0].source = cells[0].source.replace(old, new)
    return run_code_cells(nb, NAME)


def names(part) -> list:
    """The check names of ``part``, visible then hidden."""
    with lab02.Segments() as segments:
        return [c.name for c in BUILD[part.title][0](print, print, segments)]


def hidden_named(part, *words):
    """The hidden check names of ``part`` that contain one of ``words``."""
    found = {n for n in names(part) if n.startswith(parts.HIDDEN) and any(w in n for w in words)}
    assert len(found) == len(words), (words, found)
    return found


def grade(part, ns):
    return part.run(*(ns[n] for n in part.needs))


def lost_until(part, ns, check, tries=5):
    """Grade up to ``tries`` times; return the first score that lost ``check`` (a race)."""
    for _ in range(tries):
        score = grade(part, ns)
        if check in failed(score):
            return score
    raise AssertionError(f"{check!r} passed {tries} times")


# --- the parts ----------------------------------------------------------------------------

def test_one_part_per_check_cell_of_the_lab():
    assert [(p.title, p.needs) for p in hidden.PARTS] == [
        ("put_record / get_record", ("put_record", "get_record")),
        ("ring_append / ring_latest", ("ring_append", "ring_latest"))]
    assert [p.title for p in parts.parts("lab02_shared_memory")] == [RECORDS.title, RING.title]


def test_check_names_are_unique_stable_and_the_visible_ones_come_first():
    first = {part.title: names(part) for part in hidden.PARTS}
    again = importlib.reload(hidden)  # PARTS built a second time
    assert [(p.title, p.needs) for p in again.PARTS] == [(p.title, p.needs) for p in
                                                         (RECORDS, RING)]
    for build, title in [(again.record_part, RECORDS.title), (again.ring_part, RING.title)]:
        with lab02.Segments() as segments:
            assert [c.name for c in build(str, str, segments)] == first[title]
            shown = [c.name for c in BUILD[title][1](print, print, segments)]
        listed = first[title]
        assert len(set(listed)) == len(listed) > len(shown)
        assert listed[:len(shown)] == shown
        assert all(n.startswith(parts.HIDDEN) for n in listed[len(shown):])


def test_the_solution_gets_full_marks_visible_and_hidden(solution):
    for part, total in [(RECORDS, 10), (RING, 11)]:
        score = grade(part, solution)
        assert (score.passed, score.total) == (total, total), failed(score)
        assert [n for n, *_ in score.lines] == names(part)


def test_the_untouched_lab_scores_zero_without_raising(capsys):
    path = SOLUTIONS / NAME
    lab = run_code_cells(generate.make_lab(nbformat.read(path, as_version=4)), path)
    capsys.readouterr()
    for part in hidden.PARTS:
        untouched_scores_zero(part, lab)
    assert capsys.readouterr().out == ""  # show=False


def test_missing_names_score_zero_and_say_so():
    for part in hidden.PARTS:
        missing_fails_every_check(part)


# --- put_record / get_record ----------------------------------------------------------------

def test_stripping_spaces_off_names_loses_only_the_names_check():
    wrong = variant(('encoded.rstrip(b"\\0").decode("utf-8")',
                     'encoded.decode("utf-8").strip("\\0 ")'))
    lost = failed(grade(RECORDS, wrong))
    assert set(lost) == hidden_named(RECORDS, "spaces")
    assert "expected [(' ada ', 0.0), ('  ', 1.0)" in lost.popitem()[1]


def test_a_name_written_without_its_padding_leaves_the_old_name_behind():
    wrong = variant(("    seg.write(RECORD.pack(encoded, score), index * RECORD.size)\n",
                     "    seg.write(encoded, index * RECORD.size)  # the name's own bytes only\n"
                     "    seg.write(struct.pack('<d', score), index * RECORD.size + 16)\n"))
    lost = failed(grade(RECORDS, wrong))
    assert set(lost) == hidden_named(RECORDS, "shorter name")
    assert "returned ('abcdefghijklmnop', 2.5), expected ('ab', 2.5)" in lost.popitem()[1]


def test_refusing_int_scores_loses_only_the_scores_check():
    wrong = variant(("not isinstance(score, (int, float))", "not isinstance(score, float)"))
    lost = failed(grade(RECORDS, wrong))
    assert set(lost) == hidden_named(RECORDS, "int scores")
    assert "raised TypeError: score must be an int or a float, got 7" in lost.popitem()[1]


@racy
def test_writing_the_whole_segment_back_undoes_other_processes_records():
    wrong = variant(("    seg.write(RECORD.pack(encoded, score), index * RECORD.size)\n",
                     "    whole = bytearray(seg.read())\n"
                     "    RECORD.pack_into(whole, index * RECORD.size, encoded, score)\n"
                     "    seg.write(bytes(whole))  # the other records, as they were when read\n"))
    check = hidden_named(RECORDS, "same time").pop()
    lost = failed(lost_until(RECORDS, wrong, check))
    assert set(lost) == {check}  # one process at a time, it is right
    assert ("between two writes of its only writer" in lost[check]
            or "get_record(seg, 0..3) at the end returned" in lost[check]), lost


# --- ring_append / ring_latest ------------------------------------------------------------

def test_refusing_a_ring_of_one_slot_loses_only_that_check():
    wrong = variant(("    if slots < 1:\n", "    if slots < 2:\n", 2))
    lost = failed(grade(RING, wrong))
    assert set(lost) == hidden_named(RING, "one slot")
    assert "raised ValueError: a ring needs at least 48 bytes" in lost.popitem()[1]


def test_a_four_byte_counter_breaks_past_2_32():
    wrong = variant(('COUNTER = struct.Struct("<Q")', 'COUNTER = struct.Struct("<I")'))
    lost = failed(grade(RING, wrong))
    assert set(lost) == hidden_named(RING, "2**32")
    assert "raised error" in lost.popitem()[1]  # struct.error: 2**32 does not fit


def test_a_next_slot_kept_in_the_unused_bytes_fails_on_rings_written_elsewhere():
    wrong = variant(("    put_record(seg, 1 + count % slots, name, score)",
                     "    (slot,) = COUNTER.unpack(seg.read(8, COUNTER.size))  # its own index\n"
                     "    put_record(seg, 1 + slot, name, score)\n"
                     "    seg.write(COUNTER.pack((slot + 1) % slots), 8)"))
    lost = failed(grade(RING, wrong))
    assert set(lost) == hidden_named(RING, "another program", "2**32")
    assert all("in another process, your code raised ValueError" in d or "returned" in d
               for d in lost.values()), lost


@racy
def test_counting_a_record_before_writing_it_shows_to_a_reader_meanwhile():
    wrong = variant(("    put_record(seg, 1 + count % slots, name, score)  # checks name and "
                     "score first\n    seg.write(COUNTER.pack(count + 1), 0)",
                     "    if len(name.encode()) > 16:\n"
                     "        raise ValueError('name too long')\n"
                     "    seg.write(COUNTER.pack(count + 1), 0)  # counted first\n"
                     "    put_record(seg, 1 + count % slots, name, score)"))
    check = hidden_named(RING, "reader running").pop()
    lost = failed(lost_until(RING, wrong, check))
    assert set(lost) == {check}  # one process at a time, it is right
    assert "a record counted before it was written?" in lost[check]
