"""Who was inside when: record time intervals from several processes in shared memory.

Wraps clock_gettime(2) ``CLOCK_MONOTONIC`` (``time.monotonic``; on Linux one
clock for every process, so times from different processes compare) and a
SysV shared memory segment (shmget(2)/shmat(2), through :class:`ipclab.shm.Segment`).

A :class:`Timeline` is a segment of fixed 16-byte records, one per
(worker, visit): two native doubles, *enter* and *leave*.  Worker ``i``
writes only its own records, so no lock is needed; the parent reads them all
back once the workers have ended.  :func:`max_overlap` says how many
intervals were open at the same moment, and :func:`plot` draws them
(matplotlib, imported on first use; no pyplot, no global settings changed).
Not handled: intervals from processes that do not inherit or attach the
segment, and clocks of other machines.
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from typing import NamedTuple

from . import _plot
from ._check import check_int
from .shm import Segment

_RECORD = struct.Struct("=dd")  # enter, leave; 0.0 means "not written"
MAX_RECORDS = 100_000


class Interval(NamedTuple):
    """One stay inside: who, and when (seconds since the timeline's first enter)."""

    label: str
    enter: float
    leave: float


class Timeline:
    """A shared log of ``workers`` x ``visits`` intervals; a context manager.

    Worker numbers run 1..workers, like :func:`ipclab.proc.run_many`'s ``i``;
    visits run 1..visits.  Labels default to "child 1", "child 2", ...
    ``with Timeline(...) as tl:`` removes the segment at the end.

    Raises (constructor):
        TypeError, ValueError: workers or visits not an int >= 1, too many
            records in all, or labels not ``workers`` strs.
        LimitError: the kernel has no room for the segment.
    """

    def __init__(self, workers: int, visits: int = 1, *, labels=None):
        self.workers = check_int(workers, "workers", low=1)
        self.visits = check_int(visits, "visits", low=1)
        if workers * visits > MAX_RECORDS:
            raise ValueError(f"workers x visits must be at most {MAX_RECORDS} records, "
                             f"got {workers} x {visits}")
        if labels is None:
            labels = [f"child {i}" for i in range(1, workers + 1)]
        labels = list(labels) if isinstance(labels, (list, tuple)) else labels
        if not isinstance(labels, list) or len(labels) != workers or \
                not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"labels must be a list of {workers} non-empty strs (one per "
                             f"worker), got {labels!r}")
        self.labels = labels
        self._segment = Segment(None, workers * visits * _RECORD.size)

    def _offset(self, worker, visit) -> int:
        check_int(worker, "worker", low=1, high=self.workers)
        check_int(visit, "visit", low=1, high=self.visits)
        return ((worker - 1) * self.visits + visit - 1) * _RECORD.size

    def enter(self, worker: int, visit: int = 1) -> None:
        """Note that ``worker`` enters now (its ``visit``-th stay).

        Raises:
            TypeError, ValueError: worker or visit out of range.
            ObjectGoneError: the timeline is closed.
        """
        self._segment.write(struct.pack("=d", time.monotonic()), self._offset(worker, visit))

    def leave(self, worker: int, visit: int = 1) -> None:
        """Note that ``worker`` leaves now.

        Raises:
            as :meth:`enter`.
        """
        self._segment.write(struct.pack("=d", time.monotonic()),
                            self._offset(worker, visit) + 8)

    @contextlib.contextmanager
    def inside(self, worker: int, visit: int = 1):
        """``with tl.inside(i, v):`` notes the enter and the leave of the block.

        Raises:
            as :meth:`enter`.
        """
        self.enter(worker, visit)
        try:
            yield
        finally:
            self.leave(worker, visit)

    def intervals(self) -> list[Interval]:
        """Return every complete record, earliest enter first, in seconds from the first enter.

        A record whose worker never entered, or entered and never left (it was
        killed inside), is left out.

        Raises:
            ObjectGoneError: the timeline is closed.
        """
        raw = self._segment.read()
        found = []
        for n, (enter, leave) in enumerate(_RECORD.iter_unpack(raw)):
            if enter and leave:
                found.append((enter, leave, self.labels[n // self.visits]))
        start = min((enter for enter, _, _ in found), default=0.0)
        return [Interval(label, enter - start, leave - start)
                for enter, leave, label in sorted(found)]

    def close(self) -> None:
        """Detach and remove the segment; closing twice is fine."""
        if not self._segment.closed:
            self._segment.close()
            self._segment.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._segment.closed else ""
        return f"<Timeline {self.workers} workers x {self.visits} visits{state}>"


def _check_intervals(intervals) -> list[Interval]:
    if isinstance(intervals, (str, bytes)) or not hasattr(intervals, "__iter__"):
        raise TypeError(f"intervals must be a list of (label, enter, leave), got {intervals!r}")
    checked = []
    for item in intervals:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"each interval must be (label, enter, leave), got {item!r}")
        label, enter, leave = item
        if isinstance(enter, bool) or isinstance(leave, bool) or \
                not isinstance(enter, (int, float)) or not isinstance(leave, (int, float)):
            raise TypeError(f"enter and leave must be numbers, got {item!r}")
        if not (math.isfinite(enter) and math.isfinite(leave)):
            raise ValueError(f"enter and leave must be finite, got {item!r}")
        if not enter <= leave:
            raise ValueError(f"an interval must not leave before it enters, got {item!r}")
        checked.append(Interval(str(label), float(enter), float(leave)))
    return checked


def max_overlap(intervals) -> int:
    """Return the largest number of intervals open at one moment (0 for none).

    Intervals are half-open, [enter, leave): one that leaves exactly when
    another enters does not overlap it, since that is what a handed-over
    lock looks like.

    Raises:
        TypeError, ValueError: not a list of (label, enter, leave) with enter <= leave.
    """
    events = []
    for _, enter, leave in _check_intervals(intervals):
        if leave > enter:  # an empty stay is never inside
            events += [(enter, 1), (leave, -1)]
    inside = most = 0
    for _, step in sorted(events):  # at equal times -1 sorts first: leave, then enter
        inside += step
        most = max(most, inside)
    return most


def plot(intervals, ax=None, *, title: str | None = None):
    """Draw one row per label, one bar per interval; return the matplotlib Figure.

    With ``ax=None`` a new Figure is made, not through pyplot: nothing global
    changes, and a notebook shows it once, as a PNG, even with no pyplot
    backend active.

    Raises:
        TypeError, ValueError: bad intervals (see :func:`max_overlap`), or ax
            is not a matplotlib Axes.
    """
    intervals = _check_intervals(intervals)
    labels = sorted({iv.label for iv in intervals}, key=_natural)
    from matplotlib.axes import Axes

    if ax is None:
        fig = _plot.new_figure(figsize=(8, 0.5 + 0.4 * max(len(labels), 1)),
                              layout="constrained")
        ax = fig.add_subplot()
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {ax!r}")
    for row, label in enumerate(labels):
        bars = [(iv.enter, iv.leave - iv.enter) for iv in intervals if iv.label == label]
        ax.broken_barh(bars, (row - 0.35, 0.7), color=f"C{row % 10}")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(max(len(labels), 1) - 0.5, -0.5)
    ax.set_xlabel("seconds")
    if title:
        ax.set_title(title)
    return ax.figure


def _natural(label: str):
    """Sort "child 2" before "child 10"."""
    head, _, tail = label.rpartition(" ")
    return (head, int(tail), "") if tail.isdigit() else (label, -1, label)
