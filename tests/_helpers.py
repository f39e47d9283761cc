"""Small helpers shared by the unit tests (imported as ``_helpers``)."""

import os
import traceback
from pathlib import Path

import nbformat
import sysv_ipc


def start_child(fn) -> int:
    """Fork, run ``fn()`` in the child (its return value is the exit code); return the pid.

    The child always ends with ``os._exit``; reap it with :func:`reap`.
    """
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def reap(pid) -> int:
    """Wait for ``pid``; return its exit code (minus the signal number if killed)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def alive(pid) -> bool:
    """True if pid runs (a zombie waiting for init to reap it counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def remove_quietly(obj):
    """Remove a sysv_ipc object that may already be gone."""
    try:
        obj.remove()
    except sysv_ipc.ExistentialError:
        pass


SOLUTIONS = Path(__file__).resolve().parent.parent / "solutions"


def run_code_cells(nb, path="notebook") -> dict:
    """Run a notebook's code cells, except the check cells, in a fresh namespace; return it."""
    namespace = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "check_" not in cell.source:
            exec(compile(cell.source, str(path), "exec"), namespace)  # noqa: S102
    return namespace


def load_solution(name: str) -> dict:
    """The functions and classes a lab's solution notebook defines, as the course ships them."""
    path = SOLUTIONS / name
    return run_code_cells(nbformat.read(path, as_version=4), path)


def failed(score) -> dict:
    """The checks of ``score`` that failed: name -> what the scorecard said."""
    return {name: detail for name, _, earned, detail in score.lines if not earned}


def missing_fails_every_check(part):
    """Run ``part`` on ``parts.missing`` stand-ins: it scores 0 and every line names what is
    missing.  Returns the score, for further checks."""
    from ipclab.grading import parts

    score = part.run(*(parts.missing(n) for n in part.needs))
    details = list(failed(score).values())
    assert score.passed == 0 and len(details) == score.total > 0
    assert all(any(f"{n} is not defined" in d for n in part.needs) for d in details), details
    return score


def untouched_scores_zero(part, namespace):
    """Run ``part`` on the untouched lab's ``namespace``: it scores 0 without raising and
    every line says "not implemented yet".  Returns the score, for further checks."""
    score = part.run(*(namespace[n] for n in part.needs))
    details = list(failed(score).values())
    assert score.passed == 0 and len(details) == score.total > 0
    assert all(d.startswith("not implemented yet") for d in details), details
    return score
