"""Tests for ipclab.timeline: intervals from real children, max_overlap, plot, bad input."""

import math
import time

import pytest
from _helpers import reap, start_child

from ipclab import semwait, timeline
from ipclab.errors import ObjectGoneError
from ipclab.sem import Semaphore
from ipclab.timeline import Interval, Timeline, max_overlap

pytestmark = pytest.mark.timeout(30)


def run_children(n, fn):
    """Run fn(i) in n children, i = 1..n; assert that each exited with code 0."""
    pids = [start_child(lambda i=i: fn(i) or 0) for i in range(1, n + 1)]
    assert [reap(pid) for pid in pids] == [0] * n


def test_children_record_their_own_intervals():
    with Timeline(3, visits=2) as log:
        def child(i):
            for visit in (1, 2):
                with log.inside(i, visit):
                    time.sleep(0.01)
        run_children(3, child)
        got = log.intervals()
    assert len(got) == 6
    assert sorted(iv.label for iv in got) == ["child 1"] * 2 + ["child 2"] * 2 + ["child 3"] * 2
    assert got[0].enter == 0.0  # times count from the first enter
    assert [iv.enter for iv in got] == sorted(iv.enter for iv in got)
    for iv in got:
        assert isinstance(iv, Interval)
        assert 0.005 <= iv.leave - iv.enter < 5
    for label in ("child 1", "child 2", "child 3"):  # one child's visits follow each other
        first, second = [iv for iv in got if iv.label == label]
        assert first.leave <= second.enter


def test_records_never_completed_are_left_out():
    with Timeline(3, labels=["a", "b", "c"]) as log:
        def child(i):
            if i == 1:
                log.enter(1)
                log.leave(1)
            elif i == 2:
                log.enter(2)  # "killed inside": never leaves
        run_children(3, child)
        assert [iv.label for iv in log.intervals()] == ["a"]


def test_a_timeline_with_no_record_is_empty_and_close_removes_it():
    log = Timeline(2)
    assert log.intervals() == []
    assert "2 workers x 1 visits" in repr(log)
    log.close()
    log.close()  # twice is fine
    assert "closed" in repr(log)
    with pytest.raises(ObjectGoneError):
        log.intervals()
    with pytest.raises(ObjectGoneError):
        log.enter(1)


def test_a_semaphore_of_value_k_keeps_the_overlap_at_most_k():
    k, workers = 2, 5
    room = Semaphore(None, k, timeout=10)
    try:
        with Timeline(workers, visits=2) as log:
            def child(i):
                for visit in (1, 2):
                    with room, log.inside(i, visit):
                        time.sleep(0.02)
            run_children(workers, child)
            got = log.intervals()
    finally:
        room.remove()
    assert len(got) == 2 * workers
    assert 1 <= max_overlap(got) <= k


def test_children_held_inside_together_all_overlap():
    """The control for the test above: the measurement does see overlap when there is some."""
    workers = 4
    gate = Semaphore(None, workers)
    try:
        with Timeline(workers) as log:
            def child(i):
                with log.inside(i):
                    semwait.semop(gate.id, [(0, -1, 0)], 5)  # "I am inside"
                    semwait.semop(gate.id, [(0, 0, 0)], 5)   # wait until everyone is
            run_children(workers, child)
            got = log.intervals()
    finally:
        gate.remove()
    assert max_overlap(got) == workers


@pytest.mark.parametrize("intervals, expected", [
    ([], 0),
    ([("a", 0, 1)], 1),
    ([("a", 0, 1), ("b", 1, 2)], 1),  # touching: a hand-over, not an overlap
    ([("a", 0, 1), ("b", 0.5, 2)], 2),
    ([("a", 0, 3), ("b", 1, 2), ("c", 1.5, 2.5)], 3),
    ([("a", 0, 1), ("a", 0, 1)], 2),  # identical intervals overlap
    ([("a", 0, 2), ("b", 1, 1)], 1),  # an empty stay is never inside
    ([("a", 0, 1), ("b", 1, 2), ("c", 2, 3), ("d", 0.5, 2.5)], 2),
    ((Interval("a", 0.0, 1.0), ["b", 0, 1]), 2),  # tuples, lists and Intervals alike
])
def test_max_overlap_on_hand_made_intervals(intervals, expected):
    assert max_overlap(intervals) == expected


def test_max_overlap_reads_a_generator_once():
    assert max_overlap(("x", i, i + 1.5) for i in range(5)) == 2


@pytest.mark.parametrize("bad, error, words", [
    (None, TypeError, "list of (label, enter, leave)"),
    (5, TypeError, "list of (label, enter, leave)"),
    ("abc", TypeError, "list of (label, enter, leave)"),
    ([("a", 0)], ValueError, "must be (label, enter, leave), got ('a', 0)"),
    (["a01"], ValueError, "must be (label, enter, leave)"),
    ([("a", "0", 1)], TypeError, "must be numbers"),
    ([("a", True, 1)], TypeError, "must be numbers"),
    ([("a", 2, 1)], ValueError, "must not leave before it enters, got ('a', 2, 1)"),
    ([("a", math.nan, 1)], ValueError, "must be finite, got ('a', nan, 1)"),
    ([("a", 0, math.inf)], ValueError, "must be finite"),
])
def test_max_overlap_refuses_bad_input(bad, error, words):
    with pytest.raises(error) as info:
        max_overlap(bad)
    assert words in str(info.value)


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((0,), {}, ValueError, "workers must be >= 1, got 0"),
    (("3",), {}, TypeError, "workers must be an int, got '3'"),
    ((2, 0), {}, ValueError, "visits must be >= 1, got 0"),
    ((1000, 1000), {}, ValueError, "at most 100000 records, got 1000 x 1000"),
    ((2,), {"labels": ["a"]}, ValueError, "a list of 2 non-empty strs"),
    ((2,), {"labels": ["a", ""]}, ValueError, "a list of 2 non-empty strs"),
    ((2,), {"labels": "ab"}, ValueError, "got 'ab'"),
])
def test_timeline_refuses_bad_arguments(args, kwargs, error, words, monkeypatch):
    monkeypatch.setattr(timeline, "Segment", lambda *a: pytest.fail("a segment was created"))
    with pytest.raises(error) as info:
        Timeline(*args, **kwargs)
    assert words in str(info.value)


def test_enter_and_leave_check_worker_and_visit():
    with Timeline(2, visits=3) as log:
        with pytest.raises(ValueError, match="worker must be between 1 and 2, got 3"):
            log.enter(3)
        with pytest.raises(ValueError, match="worker must be between 1 and 2, got 0"):
            log.leave(0)
        with pytest.raises(ValueError, match="visit must be between 1 and 3, got 4"):
            log.enter(1, 4)
        with pytest.raises(TypeError, match="worker must be an int"):
            log.enter(1.0)
        assert log.intervals() == []


def test_plot_returns_a_figure_without_touching_global_state():
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    before = dict(matplotlib.rcParams)
    labels = [f"child {i}" for i in (10, 2, 1)]
    fig = timeline.plot([(label, 0, 1) for label in labels], title="who")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["child 1", "child 2", "child 10"]
    assert ax.get_title() == "who"
    assert len(ax.collections) == 3  # one broken_barh per label
    assert dict(matplotlib.rcParams) == before
    assert fig._repr_png_().startswith(b"\x89PNG")  # a notebook shows it without pyplot


def test_plot_draws_on_a_given_axes_and_accepts_no_intervals():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert timeline.plot([("a", 0, 1), ("a", 2, 3)], ax=ax) is fig
    assert len(ax.collections) == 1
    assert isinstance(timeline.plot([]), Figure)


def test_plot_refuses_bad_input():
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes or None, got 'axes'"):
        timeline.plot([("a", 0, 1)], ax="axes")
    with pytest.raises(ValueError, match="must not leave before it enters"):
        timeline.plot([("a", 1, 0)])
