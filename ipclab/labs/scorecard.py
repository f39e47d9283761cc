"""Run a lab's checks on a student's functions and print a scorecard; never raise.

Each check runs in its own forked child (:mod:`ipclab.proc`, in a new process
group) with a timeout, so a student's hang, crash, ``sys.exit`` or stray
process cannot freeze or kill the notebook: it becomes a failed check with a
hint and, for a hang, the /proc diagnosis of where it was blocked.  Checks
test behaviour (they run the function with real processes), never source text.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .. import proc
from .._check import check_callable, check_timeout


@dataclass(frozen=True)
class Check:
    """One check: ``run()`` passes by returning and fails by raising AssertionError."""

    name: str
    run: object
    hint: str = ""
    timeout: float = 10.0
    points: int = 1

    def __post_init__(self):
        check_callable(self.run, "run")
        check_timeout(self.timeout, allow_none=False)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")


@dataclass
class Score:
    """The outcome of a set of checks: ``passed``/``total`` points, one line per check."""

    title: str
    lines: list = field(default_factory=list)  # (name, points, earned, detail)

    @property
    def passed(self) -> int:
        return sum(earned for _, _, earned, _ in self.lines)

    @property
    def total(self) -> int:
        return sum(points for _, points, _, _ in self.lines)

    def __repr__(self) -> str:
        return f"<score {self.passed}/{self.total}>"


def _verdict(result) -> str:
    """Return "" for a pass, else why the check failed, in a student's words."""
    if result.ok:
        return ""
    if result.timed_out:
        return (f"timed out after {result.timeout:g} s (a blocking call never returned)"
                + (f": {result.diagnosis}" if result.diagnosis else ""))
    err = result.error
    if err and err["type"] == "AssertionError":
        return err["message"] or "wrong result"
    if err and err["type"] == "NotImplementedError":
        return "not implemented yet"
    if err:
        return f"raised {err['type']}: {err['message']}"
    return f"the check's process {result.outcome()} (did your code call sys.exit or os._exit?)"


def run_checks(title: str, checks, *, show: bool = True) -> Score:
    """Run each check in a child; print (if ``show``) and return the :class:`Score`.

    Raises:
        TypeError: ``checks`` holds something that is not a :class:`Check`.
    """
    checks = list(checks)
    for c in checks:
        if not isinstance(c, Check):
            raise TypeError(f"checks must be Check objects, got {c!r}")
    score = Score(title)
    for c in checks:
        with proc.Family(c.timeout, show=False, new_group=True) as family:
            family.fork(c.run, label="check")
        detail = _verdict(family.results[0])
        score.lines.append((c.name, c.points, 0 if detail else c.points, detail))
        if detail and c.hint:
            score.lines[-1] = (c.name, c.points, 0, f"{detail}\n      hint: {c.hint}")
    if show:
        print(f"{title}: {score.passed}/{score.total} checks passed")
        for name, _, earned, detail in score.lines:
            print(f"  {'✔' if earned else '✘'} {name}" + (f" — {detail}" if detail else ""))
        sys.stdout.flush()
    return score
