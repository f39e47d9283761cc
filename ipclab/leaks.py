"""Find what a test run or a notebook left behind: SysV objects and child processes.

Reads /proc/sysvipc (through :mod:`ipclab.sysvinfo`) and ``/proc/<pid>/stat``.
Used by the test suite's leak checks and by the lab grader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from . import diagnose, sysvinfo


def sysv_ids() -> set[tuple[str, int]]:
    """Return (kind, id) of every SysV object this user owns now."""
    return {(o.kind, o.id) for o in sysvinfo.list_objects()}


def children(pid: int | None = None) -> list[tuple[int, str]]:
    """Return (pid, state) of each direct child of ``pid`` (default: this process), zombies too."""
    pid = os.getpid() if pid is None else pid
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = diagnose.proc_stat(int(name))
            if st and st[1] == pid:
                found.append((int(name), st[0]))
    return sorted(found)


def new_sysv(before: set[tuple[str, int]]) -> list:
    """Return the SysV objects of this user that were not in ``before``."""
    return [o for o in sysvinfo.list_objects() if (o.kind, o.id) not in before]


def settle_children(timeout: float = 5.0) -> list[tuple[int, str]]:
    """Wait up to ``timeout`` s for this process's children to go; return those left."""
    deadline = time.monotonic() + timeout
    while (left := children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_children(kids) -> None:
    """Kill and reap the given children of this process.

    SysV objects are never removed here: one that appeared during a run may
    belong to another program of the same user (a notebook open beside the
    tests), so a leak is reported and ``ipclab clean`` is left to a person.
    """
    for pid, _ in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def describe(objects, kids) -> str:
    """Say what was left, one line each."""
    lines = [f"SysV {o.kind} key {o.key:#010x} id {o.id}" for o in objects]
    lines += [f"child process {pid} (state {state})" for pid, state in kids]
    return "\n".join(lines)
