"""The grader's last cell: run a lab's parts on what the student's notebook defined.

Runs inside the student's kernel, after the student's cells, as
``incell.grade(lab, globals(), result_path)``.  It first reaps the kernel's
ended children (waitpid(2)), whose zombies would still count against the
process limit, then runs each :class:`ipclab.grading.parts.Part` on the
names it needs (a :func:`~ipclab.grading.parts.missing` stand-in for each one
the notebook lacks) and writes the scores as JSON to ``result_path``: a file,
not the cell's output, so nothing the student's code did to ``sys.stdout``
can change them.
"""

from __future__ import annotations

import contextlib
import json
import os

from . import parts as _parts


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def run_part(part, namespace: dict) -> list:
    """[name, points, earned, detail] for each check of ``part`` on ``namespace``'s objects."""
    objects = [namespace[n] if n in namespace else _parts.missing(n) for n in part.needs]
    try:
        score = part.run(*objects)
    except Exception as e:  # noqa: BLE001 - e.g. an argument check refused what the student wrote
        why = f"{type(e).__name__}: {e}"
        score = part.run(*[_parts.missing(n, why) for n in part.needs])
    return [list(line) for line in score.lines]


def grade(lab: str, namespace: dict, result_path: str) -> None:
    """Run every part of ``lab`` on ``namespace``; write the scores to ``result_path``.

    Raises:
        ValueError: unknown lab.
        TypeError: ``namespace`` is not a dict.
    """
    labs_parts = _parts.parts(lab)
    if not isinstance(namespace, dict):
        raise TypeError(f"namespace must be a dict (globals()), got {type(namespace).__name__}")
    _reap_children()
    result = {"parts": [{"title": p.title, "lines": run_part(p, namespace)} for p in labs_parts],
              "missing": sorted({n for p in labs_parts for n in p.needs if n not in namespace})}
    tmp = f"{result_path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, result_path)
