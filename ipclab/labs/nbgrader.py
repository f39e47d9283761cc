"""Export ``solutions/`` as nbgrader source assignments, and score check cells for nbgrader.

:func:`export` copies ``solutions/labNN_x.ipynb`` to ``COURSE/source/labNN_x/labNN_x.ipynb``
with nbgrader's cell metadata (schema 3), so ``nbgrader generate_assignment labNN_x``
releases what ``labs/`` holds.  Cells become, by what they contain:

- a code cell with ``### BEGIN SOLUTION``: an autograded answer (``solution``);
- a markdown cell with it: a manually graded answer, one point per numbered answer;
- a cell calling ``labNN.check_*``: a locked autograder test worth the checks it runs
  (read from the scorecard the executed solution stored: ``7/7 checks passed``);
- any other cell: locked (read-only, restored from the source when autograding).

Grade ids are ``labNN-cell-II``, II the cell's position in the solution.  A check
cell prints a scorecard and never raises, and nbgrader gives full points to a test
that does not raise, so the export appends hidden test lines (gone from the release)
that make the cell's value the points earned: nbgrader's partial credit.  They use
:func:`start_tally` and :func:`tally`, which swap ``scorecard.Score`` for a recording
subclass while the cell runs (in the grading kernel only).

Only file I/O here (pathlib); nbgrader itself is not imported or required.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import nbformat

from .._check import check_int
from . import scorecard
from .generate import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, normalize

SCHEMA_VERSION = 3
_CHECK_CALL = re.compile(r"\blab\d\d\.check_\w+\(")
_SCORECARD = re.compile(r"^(.+): (\d+)/(\d+) checks passed$", re.M)
_NUMBERED = re.compile(r"^\s*\d+\.\s", re.M)
_MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
_MARKER_TEXT = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)")
_GRADE_ID = re.compile(r"[A-Za-z0-9_-]+\Z")
_START = (BEGIN_HIDDEN, "from ipclab.labs import nbgrader as _ipclab_nbgrader",
          "_ipclab_nbgrader.start_tally()", END_HIDDEN)
_FINISH = (BEGIN_HIDDEN, "_ipclab_nbgrader.tally({})  # points earned: nbgrader's partial credit",
           END_HIDDEN)


def _meta(grade_id, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked,
            "schema_version": SCHEMA_VERSION, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _check_points(cell, where: str) -> int:
    """The points of a check cell: the totals of the scorecards its solution run printed."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")
    totals = [int(total) for _, _, total in _SCORECARD.findall(text)]
    if not totals:
        raise ValueError(f"{where} calls a check but stores no scorecard ('N/M checks "
                         f"passed'): execute the solution first (./course notebooks)")
    return sum(totals)


def source_notebook(solution, lab: str) -> nbformat.NotebookNode:
    """Return the nbgrader source version of ``solution`` (left unchanged) for lab ``lab``.

    Outputs are cleared, cell ids, tags and sources kept; check cells gain the
    hidden tally lines described in the module docstring.

    Raises:
        TypeError: ``solution`` is not a notebook, or ``lab`` not a str.
        ValueError: ``lab`` gives invalid grade ids, a check cell has no stored
            scorecard or also holds a solution, or a hidden test region is
            outside a check cell (the message names the cell).
    """
    if not isinstance(solution, dict) or not isinstance(solution.get("cells"), list):
        raise TypeError(f"solution must be a notebook (nbformat.NotebookNode), "
                        f"got {type(solution).__name__}")
    if not isinstance(lab, str):
        raise TypeError(f"lab must be a str such as 'lab03_mutex', got {lab!r}")
    if not _GRADE_ID.match(lab.split("_")[0]):
        raise ValueError(f"lab must be a notebook name such as 'lab03_mutex', got {lab!r}")
    prefix = lab.split("_")[0]
    nb = nbformat.from_dict(copy.deepcopy(solution))
    for index, cell in enumerate(nb.cells):
        where, grade_id = f"{lab}, cell {index}", f"{prefix}-cell-{index:02d}"
        lines = [line.strip() for line in cell.source.splitlines()]
        for line in lines:  # nbgrader finds markers anywhere in a line, generate.py alone
            if _MARKER_TEXT.search(line) and line not in _MARKERS:
                raise ValueError(f"{where}: {line!r} would be read as a marker by nbgrader "
                                 f"but not by ipclab labs; put the marker alone on its line")
        has_solution = BEGIN_SOLUTION in lines
        is_check = cell.cell_type == "code" and bool(_CHECK_CALL.search(cell.source))
        if is_check and has_solution:
            raise ValueError(f"{where} both calls a check and holds a solution: split it")
        if not is_check and BEGIN_HIDDEN in lines:
            raise ValueError(f"{where}: hidden tests belong in a check cell (labNN.check_*)")
        if is_check:
            points = _check_points(cell, where)
            cell.source = "\n".join((*_START, cell.source, _FINISH[0],
                                     _FINISH[1].format(points), _FINISH[2]))
            meta = _meta(grade_id, grade=True, locked=True, points=points)
        elif has_solution and cell.cell_type == "markdown":
            points = max(1, len(_NUMBERED.findall(cell.source)))
            meta = _meta(grade_id, solution=True, grade=True, points=points)
        elif has_solution:
            meta = _meta(grade_id, solution=True)
        else:
            meta = _meta(grade_id, locked=True)
        cell.metadata["nbgrader"] = meta
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return normalize(nb)


def _choose(solutions_dir, labs) -> list[Path]:
    found = {p.stem: p for p in sorted(Path(solutions_dir).glob("lab*.ipynb"))}
    if not found:
        raise ValueError(f"no lab*.ipynb in the solutions folder {str(solutions_dir)!r}")
    if labs is None:
        return list(found.values())
    if isinstance(labs, (str, bytes)) or not hasattr(labs, "__iter__"):
        raise TypeError(f"labs must be None or a list of lab names such as "
                        f"['lab03_mutex'], got {labs!r}")
    labs = list(dict.fromkeys(labs))
    if not labs:
        raise ValueError("labs must name at least one lab, got an empty list")
    for name in labs:
        if name not in found:
            raise ValueError(f"unknown lab {name!r}: {solutions_dir} has "
                             f"{', '.join(found)}")
    return [found[name] for name in labs]


def export(solutions_dir, course_dir, *, labs=None) -> list[str]:
    """Write ``course_dir/source/LAB/LAB.ipynb`` for each solution; return their paths.

    ``labs`` is None (every ``solutions_dir/lab*.ipynb``) or a list of lab
    names (``["lab03_mutex"]``).  Every notebook is made before any is written;
    a file is rewritten only when its bytes change.

    Raises:
        TypeError: a folder is not a str or path, or ``labs`` is a bare str.
        FileNotFoundError: ``solutions_dir`` is not a folder.
        NotADirectoryError: ``course_dir`` exists and is not a folder.
        ValueError: no solutions, an unknown lab, or a notebook that cannot be
            exported (see :func:`source_notebook`; the message names the file).
    """
    for name, value in (("solutions_dir", solutions_dir), ("course_dir", course_dir)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a str or path, got {value!r}")
    if not Path(solutions_dir).is_dir():
        raise FileNotFoundError(f"solutions folder {str(solutions_dir)!r} does not exist")
    course = Path(course_dir)
    if course.exists() and not course.is_dir():
        raise NotADirectoryError(f"course_dir {str(course_dir)!r} exists and is not a folder")
    made = []
    for path in _choose(solutions_dir, labs):
        try:
            nb = source_notebook(nbformat.read(path, as_version=4), path.stem)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        made.append((course / "source" / path.stem / path.name, nbformat.writes(nb) + "\n"))
    for target, text in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return [str(target) for target, _ in made]


_ORIGINAL_SCORE = scorecard.Score
_recorded: list | None = None


class _RecordedScore(_ORIGINAL_SCORE):
    """A Score that adds itself to the tally when made."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if _recorded is not None:
            _recorded.append(self)


def start_tally() -> None:
    """Record every scorecard the checks make until :func:`tally` (hidden test code)."""
    global _recorded
    _recorded = []
    scorecard.Score = _RecordedScore  # run_checks looks Score up at each call


def tally(points: int) -> int:
    """Stop recording; return the points the recorded scorecards earned.

    Raises:
        TypeError, ValueError: ``points`` is not an int >= 1.
        AssertionError: no check ran since :func:`start_tally`, or the checks are
            now worth other than ``points`` (the solution changed: export again).
    """
    global _recorded
    check_int(points, "points", low=1)
    scores, _recorded = _recorded or [], None
    scorecard.Score = _ORIGINAL_SCORE
    if not scores:
        raise AssertionError("no check ran in this cell")
    total = sum(score.total for score in scores)
    if total != points:
        raise AssertionError(f"the checks are worth {total} points, the nbgrader source "
                             f"says {points}: export the solutions again")
    return sum(score.passed for score in scores)


def cli(args) -> int:
    """Run ``python -m ipclab nbgrader``: one line per notebook; return the exit status."""
    try:
        paths = export(args.solutions, args.out, labs=args.lab or None)
    except (OSError, TypeError, ValueError) as exc:
        print(f"ipclab nbgrader: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        metas = [c.metadata["nbgrader"] for c in nb.cells]
        answers = sum(m["solution"] and not m["grade"] for m in metas)
        points = sum(m.get("points", 0) for m in metas if m["grade"] and not m["solution"])
        written = sum(m.get("points", 0) for m in metas if m["grade"] and m["solution"])
        print(f"{path}: {answers} code answers, checks worth {points} points, "
              f"written answers worth {written}")
    print(f"then: cd {args.out} && nbgrader generate_assignment LAB")
    return 0
