"""Say where a blocked process is waiting, read from /proc.

Reads ``/proc/<pid>/stat`` (state, parent), ``/proc/<pid>/syscall`` (the
system call it sleeps in and its arguments), ``/proc/<pid>/wchan`` (the
kernel function it waits in), ``/proc/<pid>/fd`` and ``fdinfo`` (what each
descriptor is, and whether it was opened for reading or writing).  From those
it writes sentences like::

    child 1 blocked in read on fd 3 (pipe:[81234]); the write end of that pipe
    is still open in: parent (fd 4), child 1 (fd 4)

which is the whole lesson of "EOF arrives only when every write end is closed".

Not handled: processes of other users (their /proc entries are unreadable;
they are skipped), and syscall names on machines other than x86_64 and
aarch64 (the number is shown instead).
"""

from __future__ import annotations

import contextlib
import os
import platform

from ._check import check_fd, check_int

# The syscalls a course process may block in, by number.  Only these two
# architectures are listed; elsewhere the number itself is printed.
_SYSCALLS = {
    "x86_64": {0: "read", 1: "write", 7: "poll", 19: "readv", 20: "writev", 23: "select",
               34: "pause", 35: "nanosleep", 42: "connect", 43: "accept", 44: "sendto",
               45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4", 64: "semget",
               65: "semop", 69: "msgsnd", 70: "msgrcv", 72: "fcntl", 130: "rt_sigsuspend",
               202: "futex", 220: "semtimedop", 230: "clock_nanosleep", 232: "epoll_wait",
               247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
               288: "accept4", 441: "epoll_pwait2"},
    "aarch64": {63: "read", 64: "write", 65: "readv", 66: "writev", 72: "pselect6", 73: "ppoll",
                56: "openat", 22: "epoll_pwait", 25: "fcntl", 98: "futex", 101: "nanosleep",
                115: "clock_nanosleep", 133: "rt_sigsuspend", 95: "waitid", 260: "wait4",
                188: "msgrcv", 189: "msgsnd", 192: "semtimedop", 193: "semop", 202: "accept",
                242: "accept4", 203: "connect", 206: "sendto", 207: "recvfrom", 211: "sendmsg",
                212: "recvmsg", 441: "epoll_pwait2"},
}
self_label = "parent"  # what this process is called in reports; a proc child renames itself
_recent: dict[int, str] = {}  # pid -> label of children forked here, oldest first
_READS = {"read", "readv", "recvfrom", "recvmsg"}
_WRITES = {"write", "writev", "sendto", "sendmsg"}
_STATES = {"R": "running", "S": "sleeping", "D": "in uninterruptible sleep",
           "Z": "a zombie (exited, not yet reaped)", "T": "stopped", "t": "stopped by a tracer"}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid: int) -> tuple[str, int, str] | None:
    """Return (state letter, parent pid, command name) of ``pid``, or None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), comm


def family(root: int | None = None) -> list[int]:
    """Return ``root`` (default: this process) and all its living descendants, root first."""
    root = os.getpid() if root is None else check_int(root, "root", low=1)
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                parents[int(name)] = st[1]
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in found]
        found.extend(sorted(frontier))
    return found


def name_self(name: str) -> None:
    """Call this process ``name`` in reports, here and in its siblings' reports.

    The name is also written to ``/proc/self/comm`` as ``@name`` (cut to 15
    bytes, the kernel's limit), which is how a sibling forked before us, that
    never learnt our pid, can still call us "child 2"; ``ps`` shows it too.
    """
    global self_label
    self_label = name
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write("@" + name.encode()[:14].decode(errors="ignore"))


def remember(pid: int, name: str) -> None:
    """Keep the label of a child this process forked, to name it even after it exited."""
    _recent[pid] = name
    while len(_recent) > 256:
        del _recent[next(iter(_recent))]


def label(pid: int, labels: dict[int, str] | None = None) -> str:
    """Name ``pid`` for a student: its label, "parent" for this process, else "pid N (comm)"."""
    if labels and pid in labels:
        return labels[pid]
    if pid == os.getpid():
        return self_label
    st = proc_stat(pid)
    if st and st[2].startswith("@"):
        return st[2][1:]  # a child of ours that named itself (see name_self)
    if st is None and pid in _recent:
        return _recent[pid]  # a child of ours (or of our parent) that has exited
    return f"pid {pid} ({st[2]})" if st else f"pid {pid}"


def describe_fd(pid: int, fd: int) -> str:
    """Return what ``fd`` of ``pid`` is: ``pipe:[81234]``, ``socket:[9]``, a path, or "closed"."""
    check_fd(fd)
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "closed"


def holders(pid: int, fd: int, *, writers: bool, pids=None,
            labels: dict[int, str] | None = None) -> list[str]:
    """Return who holds the object behind ``pid``'s ``fd`` open for writing (or for reading).

    Each entry is "LABEL (fd N)".  ``pids`` defaults to this process's family.
    """
    try:
        target = os.stat(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return []
    found = []
    for other in pids if pids is not None else family():
        try:
            fds = sorted(int(n) for n in os.listdir(f"/proc/{other}/fd"))
        except OSError:
            continue
        for n in fds:
            try:
                st = os.stat(f"/proc/{other}/fd/{n}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                continue
            flags = _fd_flags(other, n)
            mode = flags & 3 if flags is not None else 2  # O_RDONLY=0, O_WRONLY=1, O_RDWR=2
            if (mode != 0) if writers else (mode != 1):
                found.append(f"{label(other, labels)} (fd {n})")
    return found


def _fd_flags(pid: int, fd: int) -> int | None:
    for line in (_read(f"/proc/{pid}/fdinfo/{fd}") or "").splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8)
    return None


def fd_report(pid: int, fd: int, op: str, labels=None, pids=None) -> str:
    """Describe fd ``fd`` of ``pid`` for an ``op`` ("read" or "write") that cannot go on."""
    what = describe_fd(pid, fd)
    text = f"fd {fd} ({what})"
    if not (what.startswith("pipe:") or what.startswith("/")):
        return text
    kind = "pipe" if what.startswith("pipe:") else "FIFO"
    if op in _READS:
        ends = holders(pid, fd, writers=True, pids=pids, labels=labels)
        tail = (f"the write end of that {kind} is still open in: {', '.join(ends)}" if ends
                else f"no process has the write end of that {kind} open")
    elif op in _WRITES:
        ends = holders(pid, fd, writers=False, pids=pids, labels=labels)
        tail = (f"the {kind} is full; its read end is open in: {', '.join(ends)}" if ends
                else f"nobody has the read end of that {kind} open")
    else:
        return text
    return f"{text}; {tail}"


def syscall(pid: int) -> tuple[str, list[int]] | None:
    """Return (syscall name, arguments) ``pid`` sleeps in, ("running", []) or None if unknown."""
    text = _read(f"/proc/{pid}/syscall")
    if not text:
        return None
    parts = text.split()
    if parts[0] == "running":
        return "running", []
    nr = int(parts[0])
    if nr < 0:
        return None
    table = _SYSCALLS.get(platform.machine(), {})
    return table.get(nr, f"syscall {nr}"), [int(a, 16) for a in parts[1:7]]


def where(pid: int, labels: dict[int, str] | None = None, pids=None) -> str:
    """Return one sentence saying what ``pid`` is doing, for a timeout report."""
    who = label(pid, labels)
    st = proc_stat(pid)
    if st is None:
        return f"{who} has already exited"
    state = st[0]
    if state in "ZTt":
        return f"{who} is {_STATES[state]}"
    call = syscall(pid)
    wchan = (_read(f"/proc/{pid}/wchan") or "").strip()
    if state == "R" or (call and call[0] == "running"):
        return f"{who} is running, not blocked in the kernel (a busy loop?)"
    if call is None:
        return f"{who} is {_STATES.get(state, state)}" + (f" in {wchan}" if wchan else "")
    name, args = call
    if name in _READS or name in _WRITES:
        verb = "read" if name in _READS else "write"
        return f"{who} blocked in {verb} on {fd_report(pid, args[0], name, labels, pids)}"
    if name in ("accept", "accept4", "connect"):
        return f"{who} blocked in {name} on fd {args[0]} ({describe_fd(pid, args[0])})"
    if name in ("wait4", "waitid"):
        return f"{who} is waiting for a child process to exit ({name})"
    if name in ("semop", "semtimedop"):
        return f"{who} is waiting on semaphore set id {args[0]} ({name})"
    if name in ("msgrcv", "msgsnd"):
        return f"{who} is waiting on message queue id {args[0]} ({name})"
    if name == "futex":
        return f"{who} is waiting for a lock (futex), perhaps one no thread will ever release"
    if name in ("nanosleep", "clock_nanosleep"):
        return f"{who} is sleeping ({name})"
    if name == "openat" and "fifo" in wchan:
        return f"{who} blocked opening a FIFO: no process has opened its other end"
    return f"{who} blocked in {name}" + (f" (kernel: {wchan})" if wchan else "")


def report(pids, labels: dict[int, str] | None = None) -> list[str]:
    """Return :func:`where` for each pid, looking for fd holders across this whole family."""
    everyone = family()
    return [where(pid, labels, pids=everyone) for pid in pids]
