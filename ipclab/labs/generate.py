"""Generate the student labs from the instructor solutions; run notebooks for CI.

``solutions/labNN_title.ipynb`` is the one source of truth.  Its cells mark
answers with nbgrader's markers, so an instructor who uses nbgrader can take
``solutions/`` as its source folder as it is::

    ### BEGIN SOLUTION                ### BEGIN HIDDEN TESTS
    ...                               ...
    ### END SOLUTION                  ### END HIDDEN TESTS

:func:`make_lab` turns a solution into a lab, :func:`generate` writes (or
checks) ``labs/``, :func:`execute_notebook` runs a notebook in a fresh
``python3`` kernel through nbclient and :func:`normalize` drops what varies
from run to run, so that a re-run notebook gives a small diff.
``tools/execute_notebooks.py`` uses the same two functions.

Not handled: nbgrader's grade ids, points and checksums (labs here are checked
by ``ipclab.labs`` cells, not by a grader), and markers inside raw cells.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

from .._check import check_timeout
from ..errors import IPCLabError

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
ANSWER_STUB = ("YOUR ANSWER HERE",)
RAISES = "raises-exception"  # the tag nbclient and nbval read: this cell may raise
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
REGENERATE = "./course labs"

_CLOSER = {BEGIN_SOLUTION: END_SOLUTION, BEGIN_HIDDEN: END_HIDDEN}
_OPENER = {end: begin for begin, end in _CLOSER.items()}


class NotebookExecutionError(IPCLabError):
    """A notebook cell raised, timed out or killed its kernel, and was not tagged
    ``raises-exception``; the message names the notebook and the cell index."""


def _strip_regions(source: str, stub: tuple[str, ...], where: str) -> tuple[str, bool]:
    """Return ``source`` with its marked regions replaced, and whether a solution was."""
    out: list[str] = []
    region = None  # (marker, line number, indentation) of the open region
    replaced = False
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker in _CLOSER:
            if region is not None:
                raise ValueError(f"{where}, line {number}: {marker!r} is nested inside "
                                 f"{region[0]!r} of line {region[1]}")
            region = (marker, number, line[: len(line) - len(line.lstrip())])
        elif marker in _OPENER:
            if region is None or region[0] != _OPENER[marker]:
                raise ValueError(f"{where}, line {number}: {marker!r} without a "
                                 f"{_OPENER[marker]!r} before it")
            if region[0] == BEGIN_SOLUTION:
                out.extend(region[2] + text for text in stub)
                replaced = True
            region = None  # hidden tests vanish, markers included (as in nbgrader)
        elif region is None:
            out.append(line)
    if region is not None:
        raise ValueError(f"{where}, line {region[1]}: {region[0]!r} is never closed by "
                         f"{_CLOSER[region[0]]!r}")
    return "\n".join(out), replaced


def make_lab(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the student lab made from ``solution`` (which is left unchanged).

    Solution regions become ``# YOUR CODE HERE`` / ``raise NotImplementedError()``
    at the marker's indentation (``YOUR ANSWER HERE`` in markdown), hidden tests
    are removed, outputs and execution counts cleared.  Ids, types, tags and
    metadata are kept.  No tag is added: a lab is meant to run top to bottom
    without an error (its check cells print a scorecard and never raise), so an
    error in an untouched lab is a fault of the lab, and must show.

    Raises:
        TypeError: ``solution`` is not a notebook.
        ValueError: a marker is unbalanced or nested; names the cell index and line.
    """
    if not isinstance(solution, dict) or not isinstance(solution.get("cells"), list):
        raise TypeError(f"solution must be a notebook (nbformat.NotebookNode), "
                        f"got {type(solution).__name__}")
    lab = nbformat.from_dict(copy.deepcopy(solution))
    for index, cell in enumerate(lab.cells):
        if cell.cell_type == "code":
            cell.source, _ = _strip_regions(cell.source, CODE_STUB, f"cell {index}")
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source, _ = _strip_regions(cell.source, ANSWER_STUB, f"cell {index}")
        cell.metadata.pop("execution", None)  # run timestamps belong with the outputs
    return lab


def normalize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what varies between runs and machines, in place, and return ``nb``.

    Cell ``execution`` timestamps go, execution counts become 1..N in order and
    the notebook metadata is reduced to a fixed ``kernelspec`` and ``language_info``.
    """
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:  # an execute_result repeats it
                    output["execution_count"] = count
    nb.metadata = nbformat.from_dict(
        {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    return nb


def execute_notebook(nb: nbformat.NotebookNode, cwd, *, timeout=300, name="notebook"):
    """Run every cell of ``nb`` in place in a fresh ``python3`` kernel; return ``nb``.

    The kernel starts in ``cwd``; ``timeout`` (seconds) applies to each cell.
    Cells tagged ``raises-exception`` may raise; execution then goes on.

    Raises:
        TypeError, ValueError: ``timeout`` is not a number > 0 (or None).
        FileNotFoundError: ``cwd`` is not a folder.
        NotebookExecutionError: another cell raised, timed out or killed the kernel.
    """
    from nbclient import NotebookClient  # imported late: starting a kernel is rare
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    timeout = check_timeout(timeout)
    if not Path(cwd).is_dir():
        raise FileNotFoundError(f"cwd must be an existing folder, got {str(cwd)!r}")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            first = (cell.source.strip().splitlines() or [""])[0]
            where = f"{name}, cell {index} ({first!r})"
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                error = f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename
                raise NotebookExecutionError(f"{where} raised {error}; if it is meant to "
                                             f"fail, tag the cell {RAISES!r}") from None
            except CellTimeoutError:
                raise NotebookExecutionError(f"{where} ran longer than {timeout} s") from None
            except DeadKernelError:
                raise NotebookExecutionError(f"{where}: the kernel died") from None
    return nb


def _dumps(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _cell_keys(nb: nbformat.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def _drift(expected: nbformat.NotebookNode, path: Path) -> str | None:
    """Say how the lab at ``path`` differs from ``expected`` (outputs ignored), or None."""
    if not path.exists():
        return "missing"
    try:
        actual = nbformat.read(path, as_version=4)
    except ValueError as exc:  # nbformat's NotJSONError is one
        return f"unreadable ({exc})"
    want, have = _cell_keys(expected), _cell_keys(actual)
    if len(want) != len(have):
        return f"has {len(have)} cells, the solution gives {len(want)}"
    for index, (a, b) in enumerate(zip(want, have, strict=True)):
        if a != b:
            return f"cell {index} differs"
    return None


def _plan(solutions_dir, labs_dir, check, execute, timeout):
    """Check the arguments, then return an iterator of (lab path, message, is_problem)."""
    solutions_dir, labs_dir = Path(solutions_dir), Path(labs_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(f"solutions folder {str(solutions_dir)!r} does not exist")
    if check and execute:
        raise ValueError("check and execute cannot be combined: check ignores outputs")
    timeout = check_timeout(timeout)
    sources = sorted(solutions_dir.glob("lab*.ipynb"))

    def run():
        for source in sources:
            target = labs_dir / source.name
            try:
                lab = make_lab(nbformat.read(source, as_version=4))
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
            if check:
                reason = _drift(lab, target)
                yield str(target), reason or "up to date", reason is not None
                continue
            labs_dir.mkdir(parents=True, exist_ok=True)
            if execute:
                try:
                    execute_notebook(lab, labs_dir, timeout=timeout, name=str(target))
                except NotebookExecutionError as exc:  # the tag belongs in the solution
                    raise NotebookExecutionError(f"{exc} in {source}") from None
            text = _dumps(normalize(lab))
            if target.exists() and target.read_text(encoding="utf-8") == text:
                yield str(target), "unchanged", False
            else:
                target.write_text(text, encoding="utf-8")
                yield str(target), "written" + (" and executed" if execute else ""), False
        names = {source.name for source in sources}
        for orphan in sorted(labs_dir.glob("*.ipynb")):
            if orphan.name not in names:
                yield str(orphan), f"no {solutions_dir / orphan.name}; delete the lab or " \
                                   "add its solution", True

    return run()


def generate(solutions_dir, labs_dir, *, check=False, execute=False, timeout=120) -> list[str]:
    """Write ``labs_dir/NAME`` for every ``solutions_dir/lab*.ipynb``; return those labs.

    With ``check=True`` nothing is written; the result lists the labs that are
    missing or whose cell types, sources or tags differ from what would be
    generated (outputs are ignored), and the labs that have no solution.  With
    ``execute=True`` each lab is run (cwd ``labs_dir``, ``timeout`` s per cell)
    and stored with its outputs.  Labs are written normalized, and only when
    their bytes change.

    Raises:
        FileNotFoundError: ``solutions_dir`` is not a folder.
        TypeError, ValueError: a bad timeout, ``check`` with ``execute``, or a
            marker error (the message names the solution file, cell and line).
        NotebookExecutionError: with ``execute=True``, a lab cell failed.
    """
    plan = _plan(solutions_dir, labs_dir, check, execute, timeout)
    return [path for path, _, problem in plan if problem == check]


def cli(args) -> int:
    """Run ``python -m ipclab labs``: one line per lab; return the exit status."""
    problems, count = [], 0
    try:
        for path, message, problem in _plan(args.solutions, args.labs, args.check,
                                            args.execute, 120):
            print(f"{path}: {message}", flush=True)
            count += 1
            if problem:
                problems.append(path)
    except (OSError, ValueError, NotebookExecutionError) as exc:
        print(f"ipclab labs: {exc}", file=sys.stderr)
        return 1
    if not count:
        print(f"no {Path(args.solutions) / 'lab*.ipynb'} found")
    if args.check and problems:
        print(f"ipclab labs: {len(problems)} lab(s) differ from {args.solutions}/: "
              f"{', '.join(problems)}; regenerate them with {REGENERATE}", file=sys.stderr)
    return 1 if problems else 0
