"""Run one benchmark figure in forked processes: pin, warm up, repeat, take the median.

Wraps fork(2) (through :class:`ipclab.proc.Family`, in a new process group, and
``os.fork`` for the echoing side), sched_setaffinity(2), waitpid(2), kill(2)
and ``time.perf_counter_ns``.  The supervisor (the calling process) forks A
and only waits: it neither pins itself nor blocks on the mechanism, so its
affinity never changes and a wedged mechanism cannot hang it.  A pins itself
to ``cpu`` for latency runs (B, forked from A, inherits the mask), calibrates
how many iterations fill one batch, times ``repeats`` batches and returns the
samples.  On the timeout the whole group (A and B) is killed and the figure
says "timed out" with where A was blocked; what outlives processes is removed
by the supervisor in any case (:meth:`.mechanisms.Bench.teardown`).

Every figure starts from the same state of the C allocator: glibc's malloc serves a
request at or above its mmap threshold with a fresh mmap(2) (page faults on first touch,
munmap(2) on free), and raises the threshold to the size of each such block freed.  So
whether ``recv(1 MiB)`` costs page faults depended on what the supervisor had freed before
forking A (the memory-copy figure frees 1 MiB buffers, so a 256 KiB recv came from the
heap and a 1 MiB one did not).  :func:`settle_malloc` first frees one 4 MiB block (four
times the largest message), in A before B is forked: every message buffer then comes from
the heap, as in a long-running process (a notebook kernel) that has handled a big buffer.

Also here: the memory-copy ceiling (:func:`memcpy`) and the C floor
(:func:`c_figure`, through ``ipclab.cref``).  Not handled: pinning A and B
to two chosen CPUs (the cross-CPU wake-up swamps everything, see the issue).
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field

from .. import diagnose, proc
from .loops import MAX_ITERATIONS, Plan, calibrate, drain, echo, rtt, timed, tput
from .mechanisms import payload

# Above any message or buffer of the benchmark (1 MiB, plus headers and a send buffer).
SETTLE_BYTES = 4 << 20


def settle_malloc() -> None:
    """Allocate and free one SETTLE_BYTES block, which raises glibc's dynamic mmap threshold
    above every size measured here (no effect on other allocators)."""
    block = bytearray(SETTLE_BYTES)
    del block


@dataclass
class Figure:
    """One measured figure: the median of the samples and their spread, or why there is none.

    ``value`` is µs per round trip (rtt) or MB/s (tput, 1 MB = 10^6 bytes).
    """

    value: float | None = None
    low: float | None = None
    high: float | None = None
    samples: list = field(default_factory=list)
    iterations: int = 0
    pinned: bool | None = None
    error: str | None = None

    @classmethod
    def of(cls, samples, iterations: int, pinned=None) -> Figure:
        if not samples or not all(math.isfinite(s) and s > 0 for s in samples):
            return cls(error=f"not a positive finite measurement: {samples!r:.80}")
        return cls(statistics.median(samples), min(samples), max(samples), list(samples),
                   iterations, pinned)


def measure(cls, mode: str, size: int, *, plan: Plan, timeout: float, cpu: int | None = None,
            verify: bool = False) -> Figure:
    """Measure ``cls`` (a :class:`.mechanisms.Bench`) once: rtt in µs or tput in MB/s.

    Never raises for a failing mechanism: the Figure's ``error`` says what happened.
    """
    bench = cls(size, timeout * 0.8)  # ipclab's own timeouts explain themselves first
    try:
        bench.setup()
    except Exception as e:  # noqa: BLE001 - no room for the objects, say
        return Figure(error=f"setup failed: {type(e).__name__}: {e}")
    try:
        family = proc.Family(timeout, show=False, new_group=True)
        with family:
            family.fork(_side_a, bench, mode, size, plan, cpu, verify,
                        label=f"{cls.mechanism} {cls.impl} A")
    finally:
        bench.teardown()
    result = family.results[0]
    if result.ok:
        got = result.value
        return Figure.of(got["samples"], got["iterations"], got["pinned"])
    return Figure(error=_why(result))


def _why(result) -> str:
    """One line: how A ended, and the last line either side wrote on stderr."""
    text = result.outcome()
    tail = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if tail and tail[-1] not in text:
        text += f"; {tail[-1]}"
    return text


def _pin(cpu):
    if cpu is None:
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return False
    return True


def _side_a(bench, mode, size, plan, cpu, verify):
    """Process A: pin, fork B, run the timed loops; return the samples."""
    pinned = _pin(cpu)
    settle_malloc()  # before B's fork: B inherits the allocator's state
    try:
        bench.prepare()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            _side_b(bench, mode, size, verify)
        diagnose.remember(pid, f"{bench.mechanism} {bench.impl} B")
        try:
            end = bench.endpoint("a")
            loop = rtt if mode == "rtt" else tput
            samples, n = loop(end, size, plan, verify)
            end.close()
        except BaseException:
            _reap(pid, 0)
            raise
        _reap(pid, bench.timeout)
    finally:
        bench.finish()
    return {"samples": samples, "iterations": n, "pinned": pinned}


def _reap(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` s for B, then kill it; raise if B did not end well
    (``timeout`` 0: kill now, raise nothing: A is failing already)."""
    deadline = time.monotonic() + timeout
    while not (reaped := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if timeout:
                raise RuntimeError(f"the echo side did not end within {timeout:g} s; killed")
            return
        time.sleep(0.001)
    if timeout and os.waitstatus_to_exitcode(reaped[1]):
        raise RuntimeError(f"the echo side {proc.describe_status(reaped[1])}")


def _side_b(bench, mode, size, verify):
    """Process B (never returns): echo (rtt) or drain and acknowledge (tput) until STOP."""
    code = 1
    try:
        diagnose.name_self(f"{bench.mechanism} {bench.impl} B")
        end = bench.endpoint("b")
        (echo if mode == "rtt" else drain)(end, size, verify)
        end.close()
        code = 0
    except BaseException:  # noqa: BLE001 - reported on stderr, and A is stopped at once
        print("the echo side failed:", file=sys.stderr)
        traceback.print_exc()
        sys.stderr.flush()
        os.kill(os.getppid(), signal.SIGTERM)  # A may be blocked on a queue for ever
    finally:
        os._exit(code)


def memcpy(size: int, plan: Plan) -> Figure:
    """The memory-copy ceiling: MB/s of copying a ``size``-byte buffer (memoryview slice
    assignment, which is memcpy), measured in this process."""
    settle_malloc()
    src, dst = payload(size, 1), memoryview(bytearray(size))

    def step(k):
        for _ in range(k):
            dst[:] = src
    n = calibrate(step, plan)
    return Figure.of([size * n * 1e3 / ns for ns in timed(step, n, plan.repeats)], n)


def c_figure(cref, mechanism: str, mode: str, size: int, *, plan: Plan, timeout: float,
             cpu: int | None = None, timed: bool = False) -> Figure:
    """The C reference's figure: ``plan.repeats`` runs of ``cref.run``, median and spread
    (``timed``: with every wait bounded, as ipclab bounds it)."""
    cpu = cpu if mode == "rtt" else None
    extra = {"timed": True} if timed else {}

    def call(n):
        return cref.run(mechanism, size, iterations=n, mode=mode, cpu=cpu, timeout=timeout,
                        **extra)

    def seconds(value):  # per iteration, from what the program printed
        return value * 1e-6 if mode == "rtt" else size / (value * 1e6)

    try:
        n = plan.iterations
        if not n:  # two probes: the first is dominated by start-up, the second warms up
            warm = round(plan.warm_s / max(seconds(call(16)), 1e-9))
            n = round(plan.batch_s / max(seconds(call(max(16, min(warm, MAX_ITERATIONS)))),
                                         1e-9))
            n = max(16, min(MAX_ITERATIONS, n))
        return Figure.of([call(n) for _ in range(plan.repeats)], n,
                         None if cpu is None else True)
    except Exception as e:  # noqa: BLE001 - a figure that failed, not a failed benchmark
        return Figure(error=f"{type(e).__name__}: {e}")
