"""ipclab.bench: round-trip latency and one-way throughput of every IPC mechanism.

``python -m ipclab bench [--quick] [--json FILE]`` (also ``python -m ipclab.bench``)
measures pipe, FIFO, socketpair, Unix and TCP sockets, SysV message queues and
shared memory, POSIX shared memory, ``multiprocessing.Pipe`` and ``Queue``, each
three ways: ``ipclab`` (through ipclab's helpers), ``bare`` (the same exchange
with the direct os/socket/sysv_ipc calls) and ``c`` (``ipclab/c/pingpong.c``,
compiled on the fly by ``ipclab.cref`` when a C compiler is present), against
the memory-copy ceiling.  Each figure runs in freshly forked processes (see
:mod:`.runner`); round trips run with both processes pinned to one CPU
(sched_setaffinity(2)), because a wake-up across CPUs costs more than the rest
of a round trip.  Targets are reported, never asserted.  With both ipclab and C
rows at 64 B, the C reference also runs with every wait bounded the way ipclab
bounds it (``pingpong --timed``), which shows what the timeouts alone cost.

``run(...)`` returns a :class:`Report` (``.table()``, ``.to_json(path)``);
``cli(args)`` is the command.  Not handled: machines without fork(2).
"""

from __future__ import annotations

import importlib
import os
import time

from .._check import check_int, check_timeout
from .loops import Plan
from .mechanisms import IMPLS, MECHANISMS, NO_WRAPPER
from .report import Progress, Report, Row, size_text

__all__ = ["IMPLS", "MECHANISMS", "Report", "cli", "run"]

MAX_SIZE = 1 << 20
FULL_SIZES = (64, 256, 1024, 4096, 16384, 65536, 262144, MAX_SIZE)
QUICK_SIZES = (64, 65536, MAX_SIZE)
FULL_PLAN = Plan(repeats=7, batch_s=0.05, warm_s=0.02)
QUICK_PLAN = Plan(repeats=3, batch_s=0.02, warm_s=0.01)
DEFAULT_TIMEOUT = 30.0
C_MECHANISMS = MECHANISMS[:7]  # what ipclab/c/pingpong.c implements
TIMED_C = "c --timed"  # a task, not a row: the C round trip with ipclab's bounded waits
TIMED_SIZE = 64


def _names(value, name: str, allowed) -> list[str]:
    if value is None:
        return list(allowed)
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of names such as [{allowed[0]!r}], got {value!r}")
    bad = [v for v in value if v not in allowed]
    if bad or not value:
        raise ValueError(f"{name} must be a non-empty list of {', '.join(allowed)}; got {value!r}")
    return [v for v in allowed if v in value]


def _check_sizes(sizes) -> list[int]:
    if sizes is None:
        return []
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise TypeError(f"sizes must be a non-empty list of ints such as [64, 65536], "
                        f"got {sizes!r}")
    return sorted({check_int(s, "size", low=1, high=MAX_SIZE) for s in sizes})


def c_reference(wanted: bool = True):
    """Return ``(ipclab.cref, None)`` if the C reference can run, else ``(None, why not)``."""
    if not wanted:
        return None, None
    try:
        cref = importlib.import_module("ipclab.cref")
    except ImportError:
        return None, "c rows: no C reference here (the module ipclab.cref is missing)"
    try:
        if cref.available():
            if hasattr(cref, "program"):
                cref.program()  # build it now (once per version of its source), not mid-run
            return cref, None
    except Exception as e:  # noqa: BLE001 - a broken build is a note, not a crash
        return None, f"c rows: the C reference could not be built: {e}"
    from .. import cbuild

    if cbuild.compiler() is None:
        return None, "c rows: no C compiler (cc, gcc or clang) on this machine"
    return None, "c rows: the C reference is not available (ipclab.cref.available() is False)"


def _cpu():
    """The CPU latency runs are pinned to (the highest this process may use), or None."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def run(quick: bool = False, mechanisms=None, sizes=None, progress: bool | None = None, *,
        impls=None, repeats: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Measure every mechanism x implementation x size, rtt and tput; return the Report.

    ``quick``: sizes 64 B, 64 KiB, 1 MiB and 3 short repeats (under 30 s on 2
    cores); otherwise 8 sizes, 7 repeats (a few minutes).  ``progress``: a bar
    on stderr (None: only on a terminal).  ``timeout``: seconds per figure,
    after which its processes are killed and the figure reads "timed out".

    Raises:
        TypeError, ValueError: a bad argument (checked before anything runs).
    """
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    mechanisms = _names(mechanisms, "mechanisms", MECHANISMS)
    impls = _names(impls, "impls", IMPLS)
    sizes = _check_sizes(sizes) or list(QUICK_SIZES if quick else FULL_SIZES)
    plan = QUICK_PLAN if quick else FULL_PLAN
    if repeats is not None:
        plan = plan._replace(repeats=check_int(repeats, "repeats", low=1, high=100))
    timeout = check_timeout(timeout, allow_none=False)
    from . import mechanisms as registry
    from . import runner

    start = time.monotonic()
    bar = Progress(0, progress)
    if bar.enabled:
        bar.step("building the C reference" if "c" in impls else "starting")
    cref, why_no_c = c_reference("c" in impls)
    report = Report(cpu=_cpu(), quick=quick, repeats=plan.repeats)
    tasks, notes = _plan_tasks(mechanisms, impls, sizes, cref, registry)
    report.notes = ([why_no_c] if why_no_c else []) + notes
    bar = Progress(len(tasks) + 1, progress)
    bar.step("memory copy of 1 MiB")
    report.memcpy = runner.memcpy(MAX_SIZE, plan)
    rows: dict[tuple, Row] = {}
    for mechanism, impl, size, mode in tasks:
        bar.step(f"{mechanism} {impl} {size_text(size)} {mode}")
        cpu = report.cpu if mode == "rtt" else None
        if impl == TIMED_C:
            report.c_timed[mechanism] = runner.c_figure(
                cref, mechanism, mode, size, plan=plan, timeout=timeout, cpu=cpu, timed=True)
            continue
        if impl == "c":
            figure = runner.c_figure(cref, mechanism, mode, size, plan=plan, timeout=timeout,
                                     cpu=cpu)
        else:
            figure = runner.measure(registry.REGISTRY[(mechanism, impl)], mode, size,
                                    plan=plan, timeout=timeout, cpu=cpu)
        row = rows.setdefault((mechanism, impl, size), Row(mechanism, impl, size))
        setattr(row, mode, figure)
    bar.close()
    report.rows = list(rows.values())
    pins = [r.rtt.pinned for r in report.rows if r.rtt is not None and r.rtt.value is not None]
    report.pinned = report.cpu is not None and all(pins)
    report.elapsed = time.monotonic() - start
    return report


def _plan_tasks(mechanisms, impls, sizes, cref, registry):
    """The (mechanism, impl, size, mode) to measure, and notes on what is left out and why."""
    known = registry.load()
    c_mechanisms = tuple(getattr(cref, "MECHANISMS", C_MECHANISMS)) if cref else ()
    tasks, limited, no_wrapper, no_c = [], {}, [], []
    for mechanism in mechanisms:
        if "ipclab" in impls and mechanism in NO_WRAPPER:
            no_wrapper.append(mechanism)
        if cref and "c" in impls and mechanism not in c_mechanisms:
            no_c.append(mechanism)
        for size in sizes:
            why = registry.limit(mechanism, size)
            if why:
                limited.setdefault((mechanism, why), []).append(size_text(size))
                continue
            for mode in ("rtt", "tput"):
                for impl in impls:
                    if (mechanism, impl) in known or (impl == "c" and mechanism in c_mechanisms):
                        tasks.append((mechanism, impl, size, mode))
            if (size == TIMED_SIZE and cref and {"c", "ipclab"} <= set(impls)
                    and mechanism in c_mechanisms and (mechanism, "ipclab") in known):
                tasks.append((mechanism, TIMED_C, size, "rtt"))
    notes = [f"{m} at {', '.join(s)}: {why}" for (m, why), s in limited.items()]
    if no_wrapper:
        notes.append(f"ipclab rows for {', '.join(no_wrapper)}: ipclab has no wrapper here "
                     "(the course uses the standard library directly), so bare only")
    if no_c:
        notes.append(f"c rows for {', '.join(no_c)}: no C reference for "
                     f"{'it' if len(no_c) == 1 else 'them'}")
    return tasks, notes


def cli(args=None) -> int:
    """``python -m ipclab bench``: ``args`` is an argparse Namespace or a list of arguments."""
    from .command import main

    return main(args)
