"""Grade lab submissions: ``python -m ipclab grade --lab LAB SUBMISSION.ipynb... [--out F.csv]``.

Each notebook runs in a fresh kernel with time and process limits
(:mod:`~ipclab.grading.runner`, :mod:`~ipclab.grading.sandbox`); then the
lab's visible and hidden checks (:mod:`~ipclab.grading.parts`,
:mod:`ipclab.labs.hidden`) run on the functions it defined
(:mod:`~ipclab.grading.incell`); what it left running or in the kernel's
SysV tables is killed or removed (:mod:`~ipclab.grading.strays`).  One row
per submission goes to the CSV and JSON (:mod:`~ipclab.grading.report`).
Not a security sandbox: see docs/instructor.md.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from .._check import check_timeout
from . import parts, report, strays
from .runner import Options, Outcome, Submission


def expand(paths) -> list:
    """The submissions ``paths`` name: files as given, directories as their ``*.ipynb``."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            found += sorted(str(f) for f in Path(p).glob("*.ipynb") if f.is_file())
        else:
            found.append(str(p))
    return found


def columns(lab: str) -> list:
    """(part title, check name, points) of every check of ``lab``, in order.

    Found by running each part on :func:`parts.missing` stand-ins: every check
    fails at once, which names it.

    Raises:
        ValueError: unknown lab.
    """
    found = []
    for part in parts.parts(lab):
        score = part.run(*[parts.missing(n) for n in part.needs])
        found += [(part.title, name, points) for name, points, _, _ in score.lines]
    return found


def _known(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def can_run_as(user: str) -> bool:
    """True if, dropped to ``user`` by the sandbox, this Python can import ipykernel and ipclab."""
    cmd = [sys.executable, "-m", "ipclab.grading.sandbox", "--nproc", "64", "--user", user, "--",
           sys.executable, "-c", "import ipykernel, ipclab.grading"]
    try:
        return subprocess.run(cmd, cwd="/", capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _options(lab, timeout, cell_timeout, max_processes, user) -> Options:
    parts.check_lab(lab)
    check_timeout(timeout, allow_none=False)
    check_timeout(cell_timeout, allow_none=False)
    if type(max_processes) is not int or not 32 <= max_processes <= 100_000:
        raise ValueError(f"max_processes must be an int from 32 to 100000, got {max_processes!r}")
    if os.geteuid() == 0 and user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ValueError(f"no user named {user!r} to run submissions as") from None
        if not can_run_as(user):
            raise ValueError(f"user {user!r} cannot run {sys.executable} with ipclab: make the "
                             f"course's Python readable by that user, or grade as that user")
    elif os.geteuid() == 0:
        user = "nobody" if _known("nobody") and can_run_as("nobody") else None
    elif user is not None:
        raise ValueError(f"user={user!r} needs root: as a user, submissions run as you")
    return Options(lab, float(timeout), float(cell_timeout), max_processes, user)


def grade(lab: str, paths, *, timeout: float = 300.0, cell_timeout: float = 60.0,
          max_processes: int = 256, user: str | None = None, progress=None) -> list:
    """Grade each submission in ``paths``; return one :class:`Outcome` per notebook.

    ``progress(outcome)`` is called as each one is done.

    Raises:
        ValueError: unknown lab, bad limits, ``user`` unknown or given without root.
    """
    options = _options(lab, timeout, cell_timeout, max_processes, user)
    if os.geteuid() == 0 and options.user is None and progress:
        print(f"warning: submissions run as root (user nobody cannot run {sys.executable}; "
              f"see --user); processes are limited by a pids cgroup where one can be made",
              flush=True)
    strays.become_subreaper()

    def cell(result_path):
        return ("from ipclab.grading import incell as _ipclab_incell\n"
                f"_ipclab_incell.grade({lab!r}, globals(), {result_path!r})")

    outcomes = []
    for path in expand(paths):
        if not os.path.isfile(path):
            outcome = Outcome(path)
            outcome.note("invalid", "no such file")
        else:
            outcome = Submission(path, options, cell).grade()
        outcomes.append(outcome)
        if progress:
            progress(outcome)
    return outcomes


def cli(args) -> int:
    """``python -m ipclab grade``: grade, print a line per submission, write CSV and JSON."""
    try:
        cols = columns(args.lab)
        total = sum(points for _, _, points in cols)

        def show(outcome):
            row = report.row(outcome, cols)
            print(f"{outcome.submission}: {row['score']}/{total} {outcome.status}"
                  + (f" — {outcome.reason}" if outcome.reason else ""), flush=True)

        outcomes = grade(args.lab, args.submissions, timeout=args.timeout,
                         cell_timeout=args.cell_timeout, max_processes=args.max_processes,
                         user=args.user, progress=show)
    except ValueError as e:
        print(f"ipclab grade: {e}")
        return 2
    if args.out:
        json_path = args.json or str(Path(args.out).with_suffix(".json"))
        report.write_csv(args.out, outcomes, cols)
        report.write_json(json_path, outcomes, cols)
        print(f"wrote {args.out} and {json_path}")
    elif args.json:
        report.write_json(args.json, outcomes, cols)
        print(f"wrote {args.json}")
    return 0


__all__ = ["Options", "Outcome", "cli", "columns", "expand", "grade"]
