"""Find what a test run or a notebook left behind: SysV objects, child processes, sockets.

Reads /proc/sysvipc (through :mod:`ipclab.sysvinfo`), ``/proc/<pid>/stat``,
``/proc/self/fd`` and ``/proc/net/tcp``, ``tcp6``, ``udp``, ``udp6``.
Used by the test suite's leak checks and by the lab grader.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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


def open_sockets() -> dict[int, str]:
    """Return {fd: "socket:[inode]"} for every socket this process holds open now."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd listing itself closes meanwhile
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:"):
                found[int(name)] = target
    return found


def new_sockets(before: dict[int, str]) -> dict[int, str]:
    """Return the sockets this process holds now that it did not hold in ``before``."""
    return {fd: t for fd, t in open_sockets().items() if before.get(fd) != t}


def listening(uid: int | None = None) -> set[tuple[str, str]]:
    """Return (protocol, "address:port") of each TCP listener or bound UDP socket of ``uid``.

    ``uid`` defaults to this user.  Read from /proc/net, so it sees the sockets of
    every process of this user, orphans included.
    """
    uid = os.getuid() if uid is None else uid
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:  # no IPv6, say
            continue
        for row in rows:
            fields = row.split()
            # TCP state 0A is LISTEN; a UDP socket that is bound shows state 07 (CLOSE).
            wanted = "0A" if proto.startswith("tcp") else "07"
            if fields[3] == wanted and int(fields[7]) == uid:
                found.add((proto, _address(fields[1])))
    return found


def _address(hex_address: str) -> str:
    """Turn /proc/net's "0100007F:1F90" into "127.0.0.1:8080" (IPv6 into [...]:port)."""
    addr, port = hex_address.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four host-order 32-bit words
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        host = "[" + socket.inet_ntop(socket.AF_INET6, words) + "]"
    return f"{host}:{int(port, 16)}"


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


def describe(objects, kids, sockets=(), listeners=()) -> str:
    """Say what was left, one line each."""
    lines = [f"SysV {o.kind} key {o.key:#010x} id {o.id}" for o in objects]
    lines += [f"child process {pid} (state {state})" for pid, state in kids]
    lines += [f"open socket fd {fd} ({target})" for fd, target in sorted(dict(sockets).items())]
    lines += [f"{proto} socket bound to {addr}" for proto, addr in sorted(listeners)]
    return "\n".join(lines)
