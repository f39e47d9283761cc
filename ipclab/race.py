"""Lost updates, live: forked children increment one counter in shared memory.

Wraps shmget(2)/shmat(2) (:class:`ipclab.shm.Segment`, the 8-byte counter),
semop(2) (:class:`ipclab.sem.Mutex` around each increment when ``lock=True``,
and a start barrier) and fork(2)/waitpid(2) (:mod:`ipclab.proc`).  Each child
does ``iterations`` read-modify-writes::

    value = read(counter)          # copy the 8 bytes out
    (work: spin, os.sched_yield)   # the gap in which another child may write
    write(counter, value + 1)      # whatever others wrote since the read is lost

Why every unlocked run loses updates, even on one core:

- All children start together: each takes one unit of a semaphore created at
  ``processes`` and then waits for it to reach zero (a barrier), so none
  finishes before the last one was forked.
- Between the read and the write a child calls ``os.sched_yield()``: it offers
  the CPU to another runnable child at exactly the worst moment.  A timer
  interrupt does the same at random on a busy machine; on two cores the
  children overlap anyway, and the yield makes one core (or a loaded machine)
  show the race every run too.  ``work`` adds a busy loop of that many steps
  before the yield, widening the gap further.

With ``lock=True`` the same steps run inside the Mutex: the yield then lets
nobody in, and the count is exact.  Not handled: other counter widths, or
atomic instructions (Python has no portable fetch-and-add on shared memory).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from dataclasses import dataclass

from . import _plot, proc, semwait
from ._check import check_int, check_timeout
from ._sysv import check_flag
from .errors import ChildError, IPCTimeoutError
from .sem import Mutex, Semaphore
from .shm import Segment

__all__ = ["RaceResult", "compare", "plot", "run_race"]

MAX_PROCESSES = 64
MAX_ITERATIONS = 10_000_000
MAX_WORK = 1_000_000
_COUNTER = struct.Struct("=q")  # one signed 64-bit integer in native byte order


@dataclass(frozen=True)
class RaceResult:
    """The outcome of one :func:`run_race`: what the counter should hold and what it holds."""

    processes: int
    iterations: int
    lock: bool
    work: int
    expected: int  # processes * iterations
    actual: int  # the counter's final value
    seconds: float  # wall time of the counting, from the barrier to the last child's end

    @property
    def lost(self) -> int:
        """How many increments were overwritten (expected - actual)."""
        return self.expected - self.actual

    @property
    def label(self) -> str:
        """A short label for plots: "4 x 10,000, no lock"."""
        return f"{self.processes} x {self.iterations:,}, {'Mutex' if self.lock else 'no lock'}"

    def __str__(self) -> str:
        kids = "process" if self.processes == 1 else "processes"
        steps = "increment" if self.iterations == 1 else "increments"
        work = f", work {self.work:,}" if self.work else ""
        how = "with the Mutex" if self.lock else "no lock"
        return (f"{self.processes} {kids} x {self.iterations:,} {steps}{work}, {how}: "
                f"expected {self.expected:,}, got {self.actual:,} ({self.lost:,} lost)")


def _increment(seg: Segment, work: int) -> None:
    """One read-modify-write of the counter; the gap between read and write is the race."""
    (value,) = _COUNTER.unpack(seg.read(0, _COUNTER.size))
    for _ in range(work):  # busy work inside the critical section
        pass
    os.sched_yield()  # let another child run here, as a timer interrupt might
    seg.write(_COUNTER.pack(value + 1))


def _child(seg: Segment, guard, gate: int, iterations: int, work: int, deadline: float):
    """Wait at the barrier, count, and return when the counting started and ended."""
    # "I am here": the gate starts at `processes`, so taking one unit never waits.
    semwait.semop(gate, [(0, -1, semwait.IPC_NOWAIT)])
    try:  # wait for zero: everyone is here
        semwait.semop(gate, [(0, 0, 0)], max(deadline - time.monotonic(), 0.001))
    except IPCTimeoutError:
        raise IPCTimeoutError("it was still waiting at the start barrier: the other "
                              "children were not all started in time") from None
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable between processes
    for _ in range(iterations):
        with guard:
            _increment(seg, work)
    return start, time.monotonic()


def run_race(processes: int = 4, iterations: int = 10_000, *, lock: bool = False, work: int = 0,
             timeout: float = 60.0) -> RaceResult:
    """Let ``processes`` children each increment a shared counter ``iterations`` times.

    With ``lock=False`` the increments race and updates are lost; with
    ``lock=True`` each one is made inside a :class:`~ipclab.sem.Mutex` and the
    count is exact.  The segment and semaphores are removed and every child is
    reaped before this returns or raises.

    Raises:
        TypeError: an argument of the wrong type (bools are not ints here).
        ValueError: processes not in 1..64, iterations not in 1..10,000,000,
            work not in 0..1,000,000, or timeout not > 0.
        IPCTimeoutError: the children did not finish within ``timeout`` seconds
            (they were killed; the message says where each one was).
        ChildError: a child failed otherwise.
    """
    check_int(processes, "processes", low=1, high=MAX_PROCESSES)
    check_int(iterations, "iterations", low=1, high=MAX_ITERATIONS)
    check_flag(lock, "lock")
    check_int(work, "work", low=0, high=MAX_WORK)
    timeout = check_timeout(timeout, allow_none=False)
    with contextlib.ExitStack() as stack:
        seg = stack.enter_context(Segment(None, _COUNTER.size))
        gate = Semaphore(None, processes, timeout=timeout)
        stack.callback(gate.remove)
        guard = contextlib.nullcontext()
        if lock:
            guard = Mutex(None, timeout=timeout)
            stack.callback(guard.remove)
        deadline = time.monotonic() + timeout  # CLOCK_MONOTONIC, the same in the children
        with proc.Family(timeout, show=False) as family:
            for _ in range(processes):
                family.fork(_child, seg, guard, gate.id, iterations, work, deadline)
        names = {gate.id: "the start barrier"}
        if lock:
            names[guard.id] = "the Mutex"
        _check(family.results, processes, iterations, timeout, names)
        (actual,) = _COUNTER.unpack(seg.read(0, _COUNTER.size))
    times = [r.value for r in family.results]
    seconds = max(end for _, end in times) - min(start for start, _ in times)
    return RaceResult(processes, iterations, lock, work, processes * iterations, actual,
                      seconds)


def _check(results, processes: int, iterations: int, timeout: float, names) -> None:
    """Raise if any child did not return; name our semaphore sets in the diagnosis."""

    def outcome(r) -> str:
        text = f"{r.label}: {r.error['message']}" if r.error else f"{r.label} {r.outcome()}"
        for ident, name in names.items():
            text = text.replace(f"semaphore set id {ident} ", f"{name} ")
        return text

    late = [r for r in results
            if r.timed_out or (r.error or {}).get("type") == "IPCTimeoutError"]
    if late:
        raise IPCTimeoutError(
            f"the race of {processes} x {iterations:,} increments did not finish within "
            f"{timeout:g} s; its children were stopped (pass a larger timeout, or fewer "
            f"iterations)", [outcome(r) for r in late])
    failed = [r for r in results if not r.ok]
    if failed:
        raise ChildError("the race failed: " + "; ".join(outcome(r) for r in failed), results)


def compare(processes: int = 4, iterations: int = 10_000, work: int = 0, *,
            timeout: float = 60.0) -> tuple[RaceResult, RaceResult]:
    """Run the same race twice, without and then with the Mutex; return (unlocked, locked).

    Raises:
        as :func:`run_race`.
    """
    return (run_race(processes, iterations, lock=False, work=work, timeout=timeout),
            run_race(processes, iterations, lock=True, work=work, timeout=timeout))


def plot(results, ax=None):
    """Draw expected and actual counts as bars, one pair per result, lost updates marked.

    ``results`` is a :class:`RaceResult` or a sequence of them.  Without ``ax``
    a new :class:`matplotlib.figure.Figure` is made; it is not registered with
    pyplot, so a notebook shows it once (as a PNG, when it is a cell's value or
    displayed), and it is freed like any object: plotting in a loop leaks
    nothing.  Returns the Figure.  Global matplotlib state (rcParams, pyplot)
    is untouched.

    Raises:
        TypeError: results holds something other than RaceResult objects.
        ValueError: results is empty.
    """
    items = [results] if isinstance(results, RaceResult) else list(results)
    if not items:
        raise ValueError("results must hold at least one RaceResult, got an empty sequence")
    for item in items:
        if not isinstance(item, RaceResult):
            raise TypeError(f"results must be RaceResult objects, got {item!r:.60}")
    from matplotlib.ticker import StrMethodFormatter

    if ax is None:
        fig = _plot.new_figure(figsize=(1.6 + 1.5 * len(items), 3.6), layout="constrained")
        ax = fig.subplots()
    x = list(range(len(items)))
    ax.bar([i - 0.2 for i in x], [r.expected for r in items], 0.4, label="expected",
           color="0.75")
    ax.bar([i + 0.2 for i in x], [r.actual for r in items], 0.4, label="actual",
           color=["tab:green" if r.lost == 0 else "tab:red" for r in items])
    for i, r in enumerate(items):
        ax.annotate(f"{r.lost:,} lost", (i + 0.2, r.actual), ha="center", va="bottom",
                    xytext=(0, 2), textcoords="offset points", fontsize="small")
    ax.set_xticks(x, [r.label.replace(", ", "\n") for r in items], fontsize="small")
    ax.set_ylabel("counter value")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylim(0, max(r.expected for r in items) * 1.3)
    ax.legend(loc="upper center", ncols=2, fontsize="small")
    ax.set_title("increments made vs counted")
    return ax.figure
