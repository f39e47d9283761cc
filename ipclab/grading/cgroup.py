"""A pids cgroup per submission: the process limit that also holds for root.

``RLIMIT_NPROC`` binds every user but root, and graders often run as root (a
CI machine, a container).  Where this process may create cgroups (root, with
the pids controller mounted: cgroup v1 ``/sys/fs/cgroup/pids`` or cgroup v2
``/sys/fs/cgroup`` with ``pids`` in ``cgroup.subtree_control``), each
submission gets its own group: mkdir(2) it, write ``pids.max`` (fork(2) then
fails with EAGAIN past that many tasks), the sandbox writes its own pid into
``cgroup.procs`` before it execs the kernel (children inherit the group),
and :func:`remove` kills what is left in it (SIGKILL) and rmdir(2)s it.
Elsewhere :func:`create` returns None and ``RLIMIT_NPROC`` alone limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

V1, V2 = "/sys/fs/cgroup/pids", "/sys/fs/cgroup"


def _base() -> str | None:
    if os.geteuid() != 0:
        return None
    if os.path.isfile(os.path.join(V1, "cgroup.procs")):
        return V1
    with contextlib.suppress(OSError), open(os.path.join(V2, "cgroup.subtree_control")) as f:
        if "pids" in f.read().split():
            return V2
    return None


def create(limit: int) -> str | None:
    """A new pids cgroup allowing ``limit`` tasks; its path, or None where none can be made.

    Raises:
        ValueError: ``limit`` is not a positive int.
    """
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    base = _base()
    if base is None:
        return None
    path = os.path.join(base, f"ipclab-grade-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return path


def join(path: str) -> None:
    """Move this process into the cgroup at ``path`` (its children will be born there).

    Raises:
        OSError: the group does not exist or this process may not join it.
    """
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


def members(path: str) -> list:
    """The pids in the cgroup at ``path`` now (none if it is gone)."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


def refusals(path: str | None) -> int:
    """How many times a fork(2) in the group failed at ``pids.max`` so far (0 without a group)."""
    if path is None:
        return 0
    try:
        with open(os.path.join(path, "pids.events")) as f:
            counts = dict(line.split() for line in f if line.strip())
    except (OSError, ValueError):
        return 0
    return int(counts.get("max", 0))


def remove(path: str | None, timeout: float = 10.0) -> int:
    """Kill every process in the group, then remove it; return how many were killed."""
    if path is None:
        return 0
    killed: set = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = members(path)
        if not pids:
            with contextlib.suppress(OSError):
                os.rmdir(path)
                break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.update(pids)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.01)
    return len(killed)
