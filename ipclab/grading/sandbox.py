"""Start a student's kernel with limits: ``python -m ipclab.grading.sandbox [options] -- CMD...``.

The grader puts this in front of the kernel's command line.  Before it
exec(2)s the kernel it sets resource limits with setrlimit(2):
``RLIMIT_NPROC`` (so a fork bomb stops at a bound: fork(2) fails with
EAGAIN; root ignores it, so the grader also puts the kernel in a pids cgroup
where it can, :mod:`ipclab.grading.cgroup`), ``RLIMIT_CORE`` 0 (a crash writes no core file) and
``RLIMIT_FSIZE`` (a runaway write cannot fill the disk); and, when started by
root with ``--user``, it hands the connection file to that user (chown(2))
and drops to it (setgroups(2), setgid(2), setuid(2)), because the kernel
ignores ``RLIMIT_NPROC`` for root and a submission should not run as root.

``RLIMIT_NPROC`` counts every task (process or thread) of the real user, so
the limit is set to the tasks that user runs now plus ``--nproc``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import resource
import sys

from . import cgroup


def tasks_of(uid: int) -> int:
    """How many tasks (threads included) user ``uid`` runs now, from /proc/PID/task."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                count += len(os.listdir(f"/proc/{name}/task"))
        except OSError:  # it ended meanwhile
            continue
    return count


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ipclab.grading.sandbox",
                                description="run CMD with process, core and file-size limits")
    p.add_argument("--nproc", type=int, required=True,
                   help="tasks CMD and its descendants may add to what the user runs now")
    p.add_argument("--fsize", type=int, default=1 << 30, help="largest file CMD may write, bytes")
    p.add_argument("--user", help="run CMD as this user (only when started as root)")
    p.add_argument("--connection-file", help="a file to hand to --user before dropping to it")
    p.add_argument("--cgroup", help="join this pids cgroup first (see ipclab.grading.cgroup)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command to run")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("sandbox: no command given after --", file=sys.stderr)
        return 2
    if args.nproc < 1 or args.fsize < 1:
        print(f"sandbox: --nproc and --fsize must be positive, got {args.nproc}, {args.fsize}",
              file=sys.stderr)
        return 2
    uid, gid = os.getuid(), os.getgid()
    if args.cgroup:
        cgroup.join(args.cgroup)
    if args.user:
        if os.geteuid() != 0:
            print("sandbox: --user needs root", file=sys.stderr)
            return 2
        try:
            entry = pwd.getpwnam(args.user)
        except KeyError:
            print(f"sandbox: no user named {args.user!r}", file=sys.stderr)
            return 2
        uid, gid = entry.pw_uid, entry.pw_gid
        if args.connection_file:
            os.chown(args.connection_file, uid, gid)
    limit = tasks_of(uid) + args.nproc
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))
    if args.user:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.execvp(cmd[0], cmd)
    return 127  # not reached: execvp raises on failure


if __name__ == "__main__":
    sys.exit(main())
