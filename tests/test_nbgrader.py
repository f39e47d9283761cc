"""ipclab.labs.nbgrader: solutions/ exported as nbgrader source assignments.

The metadata of every lab's export is checked cell by cell against the
solution and the committed lab; the hidden lines that give a check cell its
partial credit are run on the untouched lab and on the solution; the
end-to-end tests run nbgrader itself (generate_assignment, autograde) when it
is installed: in this environment, or named by IPCLAB_NBGRADER
(``IPCLAB_NBGRADER=/path/to/venv/bin/nbgrader``, whose kernel must import ipclab).
nbgrader is not a dependency of the course, so without it they skip.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from _helpers import run_code_cells
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipclab.labs import nbgrader, scorecard
from ipclab.labs.generate import BEGIN_SOLUTION, make_lab
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, LABS = ROOT / "solutions", ROOT / "labs"
NAMES = sorted(p.stem for p in SOLUTIONS.glob("lab*.ipynb"))
CHECK_CALL = re.compile(r"\blab\d\d\.check_\w+\(")
REQUIRED = {"grade", "grade_id", "locked", "schema_version", "solution", "task"}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Every lab exported once into a fresh course folder."""
    out = tmp_path_factory.mktemp("course")
    nbgrader.export(SOLUTIONS, out)
    return out


def exported(course, name):
    return nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)


def checks_listed(cell) -> int:
    """How many ✔/✘ lines the stored scorecards of a solution's check cell show."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return sum(line.startswith(("  ✔", "  ✘")) for line in text.splitlines())


# --- the metadata of every lab ---------------------------------------------------------

def test_every_solution_is_exported(course):
    assert NAMES == ["lab01_pipes", "lab02_shared_memory", "lab03_mutex",
                     "lab04_message_queues", "lab05_tcp", "lab06_socketpair"]
    assert sorted(p.name for p in (course / "source").iterdir()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_cells_get_the_metadata_of_their_role(course, name):
    solution = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    source = exported(course, name)
    assert len(source.cells) == len(solution.cells)
    roles = []
    for index, (sol, cell) in enumerate(zip(solution.cells, source.cells, strict=True)):
        meta = cell.metadata["nbgrader"]
        assert set(meta) == REQUIRED | ({"points"} if meta["grade"] else set()), index
        assert meta["schema_version"] == 3 and meta["task"] is False
        assert meta["grade_id"] == f"{name[:5]}-cell-{index:02d}"
        assert cell.get("id") == sol.get("id") and cell.cell_type == sol.cell_type
        has_solution = BEGIN_SOLUTION in [line.strip() for line in sol.source.splitlines()]
        if cell.cell_type == "code" and CHECK_CALL.search(sol.source):
            role = "check"
            assert (meta["grade"], meta["locked"], meta["solution"]) == (True, True, False)
            assert meta["points"] == checks_listed(sol) > 0
        elif has_solution and cell.cell_type == "markdown":
            role = "written"
            assert (meta["grade"], meta["locked"], meta["solution"]) == (True, False, True)
            numbered = len(re.findall(r"^\d+\. ", sol.source, re.M))
            assert meta["points"] == max(1, numbered)
        elif has_solution:
            role = "answer"
            assert (meta["grade"], meta["locked"], meta["solution"]) == (False, False, True)
            assert cell.source == sol.source
        else:
            role = "locked"
            assert (meta["grade"], meta["locked"], meta["solution"]) == (False, True, False)
            assert cell.source == sol.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        roles.append(role)
    assert {"check", "written", "answer", "locked"} <= set(roles)
    assert source.metadata.kernelspec.language == "python"


@pytest.mark.parametrize("name", NAMES)
def test_stripping_the_export_gives_the_committed_lab(course, name):
    """What nbgrader releases is what labs/ holds: solutions and hidden lines gone."""
    lab = nbformat.read(LABS / f"{name}.ipynb", as_version=4)
    released = make_lab(exported(course, name))
    assert [(c.cell_type, c.source) for c in released.cells] == \
           [(c.cell_type, c.source) for c in lab.cells]


@pytest.mark.parametrize("name", NAMES)
def test_check_cells_end_with_the_tally_of_their_points(course, name):
    for cell in exported(course, name).cells:
        meta = cell.metadata["nbgrader"]
        if meta["grade"] and not meta["solution"]:
            lines = cell.source.splitlines()
            assert lines[:4] == ["### BEGIN HIDDEN TESTS",
                                 "from ipclab.labs import nbgrader as _ipclab_nbgrader",
                                 "_ipclab_nbgrader.start_tally()", "### END HIDDEN TESTS"]
            assert lines[-2].startswith(f"_ipclab_nbgrader.tally({meta['points']})")
            assert lines[-1] == "### END HIDDEN TESTS"


def test_grade_ids_are_unique_and_valid_for_nbgrader(course):
    ids = [c.metadata["nbgrader"]["grade_id"] for n in NAMES for c in exported(course, n).cells]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-zA-Z0-9_\-]+", i) for i in ids)


def test_export_again_rewrites_nothing_and_a_subset_writes_only_it(course, tmp_path):
    path = course / "source" / "lab03_mutex" / "lab03_mutex.ipynb"
    before = path.stat().st_mtime_ns, path.read_bytes()
    assert nbgrader.export(SOLUTIONS, course, labs=["lab03_mutex"]) == [str(path)]
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert nbgrader.export(SOLUTIONS, tmp_path, labs=("lab01_pipes", "lab01_pipes")) == \
           [str(tmp_path / "source" / "lab01_pipes" / "lab01_pipes.ipynb")]
    assert [p.name for p in (tmp_path / "source").iterdir()] == ["lab01_pipes"]


# --- the partial credit of a check cell ----------------------------------------------

def run_cell(source, namespace):
    """Run ``source`` as IPython would; return the value of its last expression."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "cell", "exec"), namespace)  # noqa: S102
    return eval(compile(ast.Expression(last.value), "cell", "eval"), namespace) if last else None


@pytest.fixture
def lab03_check_cell(course):
    return exported(course, "lab03_mutex").cells[4].source


def test_check_cell_is_worth_zero_for_the_untouched_lab(lab03_check_cell, capsys):
    namespace = run_code_cells(nbformat.read(LABS / "lab03_mutex.ipynb", as_version=4))
    assert run_cell(lab03_check_cell, namespace) == 0
    assert "BoundedBuffer: 0/7 checks passed" in capsys.readouterr().out
    assert scorecard.Score is nbgrader._ORIGINAL_SCORE


def test_check_cell_is_worth_its_points_for_the_solution(lab03_check_cell, capsys):
    namespace = run_code_cells(nbformat.read(SOLUTIONS / "lab03_mutex.ipynb", as_version=4))
    assert run_cell(lab03_check_cell, namespace) == 7
    assert "BoundedBuffer: 7/7 checks passed" in capsys.readouterr().out


def _fail():
    raise AssertionError("wrong")


def test_tally_sums_every_scorecard_since_start():
    nbgrader.start_tally()
    run_checks("a", [Check("ok", lambda: None), Check("bad", _fail)], show=False)
    run_checks("b", [Check("ok", lambda: None, points=3)], show=False)
    assert nbgrader.tally(5) == 4
    assert scorecard.Score is nbgrader._ORIGINAL_SCORE


def test_tally_refuses_other_points_and_still_restores_score():
    nbgrader.start_tally()
    run_checks("a", [Check("ok", lambda: None)], show=False)
    with pytest.raises(AssertionError, match="worth 1 points, the nbgrader source says 2"):
        nbgrader.tally(2)
    assert scorecard.Score is nbgrader._ORIGINAL_SCORE


def test_tally_without_a_check_fails():
    with pytest.raises(AssertionError, match="no check ran"):
        nbgrader.tally(1)
    nbgrader.start_tally()
    with pytest.raises(AssertionError, match="no check ran"):
        nbgrader.tally(1)


@pytest.mark.parametrize("points, error", [(0, ValueError), ("7", TypeError), (True, TypeError)])
def test_tally_checks_its_argument(points, error):
    with pytest.raises(error, match="points must be"):
        nbgrader.tally(points)


# --- bad input ---------------------------------------------------------------------------

def write_solution(folder, name, *cells):
    folder.mkdir(exist_ok=True)
    nbformat.write(new_notebook(cells=list(cells)), folder / f"{name}.ipynb")


def check_cell(call="lab09.check_thing(thing)", text="thing: 2/3 checks passed\n"):
    return new_code_cell(call, outputs=[new_output("stream", name="stdout", text=text)])


def test_export_of_a_small_lab(tmp_path):
    write_solution(tmp_path / "sol", "lab09_small",
                   new_code_cell("def thing():\n    ### BEGIN SOLUTION\n    return 1\n"
                                 "    ### END SOLUTION"),
                   check_cell(), new_markdown_cell("### BEGIN SOLUTION\nyes\n### END SOLUTION"))
    nbgrader.export(tmp_path / "sol", tmp_path / "course")
    cells = exported(tmp_path / "course", "lab09_small").cells
    assert [c.metadata["nbgrader"].get("points") for c in cells] == [None, 3, 1]
    assert cells[1].source.endswith("_ipclab_nbgrader.tally(3)  # points earned: nbgrader's "
                                    "partial credit\n### END HIDDEN TESTS")


@pytest.mark.parametrize("cells, message", [
    ([check_cell(text="")], r"lab09_bad\.ipynb: lab09_bad, cell 0 calls a check but stores "
                            r"no scorecard"),
    ([check_cell("lab09.check_thing(thing)\n### BEGIN SOLUTION\n### END SOLUTION")],
     "cell 0 both calls a check and holds a solution"),
    ([new_code_cell("x = 1\n### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS")],
     r"cell 0: hidden tests belong in a check cell"),
    ([new_code_cell("x = 1  ### BEGIN SOLUTION")], "would be read as a marker by nbgrader"),
])
def test_solutions_nbgrader_would_misread_are_refused(tmp_path, cells, message):
    write_solution(tmp_path / "sol", "lab09_bad", *cells)
    with pytest.raises(ValueError, match=message):
        nbgrader.export(tmp_path / "sol", tmp_path / "course")
    assert not (tmp_path / "course").exists()


def test_nothing_is_written_when_one_lab_fails(tmp_path):
    write_solution(tmp_path / "sol", "lab08_good", check_cell())
    write_solution(tmp_path / "sol", "lab09_bad", check_cell(text=""))
    with pytest.raises(ValueError, match="lab09_bad"):
        nbgrader.export(tmp_path / "sol", tmp_path / "course")
    assert not (tmp_path / "course").exists()


def test_bad_arguments(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="solutions folder '.*nowhere' does not exist"):
        nbgrader.export(tmp_path / "nowhere", tmp_path / "c")
    with pytest.raises(NotADirectoryError, match="course_dir '.*file' exists and is not"):
        nbgrader.export(SOLUTIONS, tmp_path / "file")
    with pytest.raises(TypeError, match="course_dir must be a str or path, got 3"):
        nbgrader.export(SOLUTIONS, 3)
    with pytest.raises(ValueError, match="no lab\\*.ipynb in the solutions folder"):
        nbgrader.export(tmp_path / "empty", tmp_path / "c")
    with pytest.raises(TypeError, match="labs must be None or a list of lab names"):
        nbgrader.export(SOLUTIONS, tmp_path / "c", labs="lab03_mutex")
    with pytest.raises(ValueError, match="labs must name at least one lab, got an empty"):
        nbgrader.export(SOLUTIONS, tmp_path / "c", labs=[])
    with pytest.raises(ValueError, match="unknown lab 'lab3': .* has lab01_pipes, "):
        nbgrader.export(SOLUTIONS, tmp_path / "c", labs=["lab3"])
    with pytest.raises(TypeError, match="solution must be a notebook"):
        nbgrader.source_notebook([], "lab03_mutex")
    with pytest.raises(ValueError, match="lab must be a notebook name .*, got 'lab 3'"):
        nbgrader.source_notebook(new_notebook(), "lab 3")
    with pytest.raises(TypeError, match="lab must be a str such as 'lab03_mutex', got 3"):
        nbgrader.source_notebook(new_notebook(), 3)
    assert not (tmp_path / "c").exists()


def test_cli_says_what_it_wrote_and_fails_with_a_message(tmp_path, capsys):
    args = types.SimpleNamespace(solutions=str(SOLUTIONS), out=str(tmp_path), lab=["lab03_mutex"])
    assert nbgrader.cli(args) == 0
    out = capsys.readouterr().out
    assert (f"{tmp_path}/source/lab03_mutex/lab03_mutex.ipynb: 2 code answers, checks worth "
            f"11 points, written answers worth 2\n") in out
    args.lab = ["lab3"]
    assert nbgrader.cli(args) == 1
    assert "ipclab nbgrader: unknown lab 'lab3'" in capsys.readouterr().err


# --- nbgrader itself ----------------------------------------------------------------------

def find_nbgrader():
    named = os.environ.get("IPCLAB_NBGRADER")
    if named:
        return named
    beside = Path(sys.executable).parent / "nbgrader"
    return str(beside) if beside.exists() else None


NBGRADER = find_nbgrader()
needs_nbgrader = pytest.mark.skipif(
    NBGRADER is None, reason="nbgrader is not installed here (pip install nbgrader, or set "
                             "IPCLAB_NBGRADER=/path/to/venv/bin/nbgrader)")


def run_nbgrader(course, *args, timeout=240):
    # nbgrader runs `alembic` from PATH on a new gradebook: put its folder first.
    env = dict(os.environ, PATH=f"{Path(NBGRADER).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([NBGRADER, *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-3000:]
    return done


@needs_nbgrader
def test_nbgrader_releases_our_labs(tmp_path):
    nbgrader.export(SOLUTIONS, tmp_path)
    run_nbgrader(tmp_path, "generate_assignment", "--CourseDirectory.assignment_id=*")
    for name in NAMES:
        released = nbformat.read(tmp_path / "release" / name / f"{name}.ipynb", as_version=4)
        lab = nbformat.read(LABS / f"{name}.ipynb", as_version=4)
        assert [(c.cell_type, c.source) for c in released.cells] == \
               [(c.cell_type, c.source) for c in lab.cells], name
        assert all("checksum" in c.metadata["nbgrader"] for c in released.cells)


@needs_nbgrader
def test_nbgrader_autogrades_the_untouched_lab_zero_and_the_solution_full(tmp_path):
    name = "lab03_mutex"
    nbgrader.export(SOLUTIONS, tmp_path, labs=[name])
    run_nbgrader(tmp_path, "generate_assignment", name)
    released = nbformat.read(tmp_path / "release" / name / f"{name}.ipynb", as_version=4)
    source = exported(tmp_path, name)
    solved = nbformat.from_dict(released)
    for cell, src in zip(solved.cells, source.cells, strict=True):
        if src.metadata["nbgrader"]["solution"]:
            cell.source = src.source
    for student, nb in (("untouched", released), ("solved", solved)):
        (tmp_path / "submitted" / student / name).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "submitted" / student / name / f"{name}.ipynb")
    run_nbgrader(tmp_path, "autograde", name, "--create", "--Execute.timeout=240")
    run_nbgrader(tmp_path, "export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv", newline="") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"]))
                  for row in csv.DictReader(f)}
    # 11 points of checks are autograded; the 2 of the written answers wait for a person.
    assert scores == {"untouched": (0.0, 13.0), "solved": (11.0, 13.0)}

