"""Find and stop what a submission left running, and the SysV objects it left behind.

The grader makes itself the subreaper of everything it starts (prctl(2)
``PR_SET_CHILD_SUBREAPER``): a process whose parent ends is re-parented to
the grader instead of init, so whatever a submission forks stays in the
grader's tree, however it detached (setsid, double fork).  :func:`strays`
lists that tree from /proc/PID/stat; :func:`stop` freezes each process
(SIGSTOP, so a fork bomb cannot replace what is killed) then kills it
(SIGKILL) and reaps the ones that are the grader's children (waitpid(2)).
SysV objects are compared with a snapshot (/proc/sysvipc, through
:mod:`ipclab.sysvinfo`) and removed with IPC_RMID.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

from .. import sysvinfo

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants; False where Linux refuses."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _table() -> dict:
    """{pid: (ppid, state, command)} of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            table[int(name)] = (int(fields[1]), fields[0], head.split("(", 1)[1])
        except (OSError, IndexError, ValueError):  # it ended meanwhile
            continue
    return table


def strays(keep=(), root: int | None = None) -> list:
    """(pid, command) of every live descendant of ``root`` (default: this process), but ``keep``.

    Zombies are left out: they run nothing, and their parent (or we) reap them.
    """
    root = os.getpid() if root is None else root
    table = _table()
    kids: dict = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        if pid not in keep and table[pid][1] != "Z":
            found.append((pid, table[pid][2]))
    return sorted(found)


def stop(keep=(), timeout: float = 10.0) -> list:
    """Kill every descendant of this process but ``keep``; return the (pid, command) killed.

    Repeats until none is left or ``timeout`` passes: a process forked while
    others were being killed is found on the next pass.
    """
    killed: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = strays(keep)
        if not found:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid, _ in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        killed.update(found)
        reap(keep)
        time.sleep(0.01)
    reap(keep)
    return sorted(killed.items())


def reap(keep=()) -> None:
    """Reap every ended child of this process but ``keep`` (theirs to wait for)."""
    for pid, (ppid, state, _) in _table().items():
        if ppid == os.getpid() and state == "Z" and pid not in keep:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def sysv_snapshot(uid: int) -> set:
    """(kind, id) of the SysV objects ``uid`` owns or made now."""
    return {(o.kind, o.id) for o in sysvinfo.list_objects(uid)}


def remove_new_sysv(before: set, uid: int) -> list:
    """Remove the objects of ``uid`` not in ``before``; return their kinds, as words."""
    names = {"shm": "shared memory segment", "sem": "semaphore set", "msg": "message queue"}
    removed = []
    for obj in sysvinfo.list_objects(uid):
        if (obj.kind, obj.id) not in before:
            with contextlib.suppress(PermissionError):
                if sysvinfo.remove(obj):
                    removed.append(names[obj.kind])
    return removed
