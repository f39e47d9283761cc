"""Tests of ipclab.labs.generate (solutions -> labs), tools/execute_notebooks.py
and tools/add_navigation.py, on small notebooks built in tmp_path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ipclab.__main__ import main as ipclab_main
from ipclab.labs.generate import (
    NotebookExecutionError,
    execute_notebook,
    generate,
    make_lab,
    normalize,
)

ROOT = Path(__file__).resolve().parent.parent
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(*sources):
    """A notebook of code cells, or markdown cells for sources starting with 'md:'."""
    return new_notebook(cells=[
        new_markdown_cell(s[3:]) if s.startswith("md:") else new_code_cell(s) for s in sources])


def lab_sources(*sources):
    return [cell.source for cell in make_lab(notebook(*sources)).cells]


# --- make_lab --------------------------------------------------------------------------

def test_marker_in_function_body_keeps_indentation():
    source = ("def double(x):\n"
              "    ### BEGIN SOLUTION\n"
              "    y = 2 * x\n"
              "    return y\n"
              "    ### END SOLUTION\n"
              "\n"
              "print(double)\n")
    assert lab_sources(source) == ["def double(x):\n"
                                   "    # YOUR CODE HERE\n"
                                   "    raise NotImplementedError()\n"
                                   "\n"
                                   "print(double)\n"]


def test_several_regions_in_one_cell():
    source = ("### BEGIN SOLUTION\na = 1\n### END SOLUTION\n"
              "b = 2\n"
              "if b:\n    ### BEGIN SOLUTION\n    c = 3\n    ### END SOLUTION")
    assert lab_sources(source) == [
        f"{STUB}\nb = 2\nif b:\n    # YOUR CODE HERE\n    raise NotImplementedError()"]


def test_markdown_region_becomes_your_answer_here():
    source = ("md:**Predict:** what does read(2) return?\n\n"
              "### BEGIN SOLUTION\nb''\n### END SOLUTION")
    lab = make_lab(notebook(source))
    assert lab.cells[0].source == "**Predict:** what does read(2) return?\n\nYOUR ANSWER HERE"
    assert "tags" not in lab.cells[0].metadata


def test_hidden_tests_are_removed():
    source = ("assert double(2) == 4\n"
              "### BEGIN HIDDEN TESTS\nassert double(3) == 6\n### END HIDDEN TESTS\n"
              "print('ok')")
    lab = make_lab(notebook(source))
    assert lab.cells[0].source == "assert double(2) == 4\nprint('ok')"
    assert "raises-exception" not in lab.cells[0].metadata.get("tags", [])


@pytest.mark.parametrize("source, message", [
    ("x = 1\n### BEGIN SOLUTION\nx = 2", r"cell 1, line 2: '### BEGIN SOLUTION' is never closed"),
    ("x = 1\n  ### END SOLUTION", r"cell 1, line 2: '### END SOLUTION' without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
     r"cell 1, line 2: .* nested"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION",
     r"cell 1, line 2: .* nested"),
    ("### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS", r"cell 1, line 3: .* without"),
    ("md:### END SOLUTION", r"cell 1, line 1: "),
])
def test_unbalanced_or_nested_markers_name_cell_and_line(source, message):
    with pytest.raises(ValueError, match=message):
        make_lab(notebook("print('fine')", source))


def test_not_a_notebook_is_refused():
    with pytest.raises(TypeError, match="solution must be a notebook"):
        make_lab("solutions/lab01.ipynb")


def test_outputs_cleared_ids_tags_and_metadata_kept():
    solution = notebook("md:# Lab", "### BEGIN SOLUTION\nprint(1)\n### END SOLUTION", "1 + 1")
    code = solution.cells[1]
    code.execution_count = 7
    code.outputs = [new_output("stream", name="stdout", text="1\n")]
    code.metadata.update(tags=["exercise"], nbgrader={"solution": True},
                         execution={"iopub.status.idle": "2024-01-01T00:00:00Z"})
    solution.cells[2].outputs = [new_output("execute_result", {"text/plain": "2"},
                                            execution_count=8)]
    before = nbformat.writes(solution)
    lab = make_lab(solution)
    assert nbformat.writes(solution) == before  # the solution itself is untouched
    assert [c.id for c in lab.cells] == [c.id for c in solution.cells]
    assert [c.cell_type for c in lab.cells] == ["markdown", "code", "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in lab.cells[1:])
    assert lab.cells[1].metadata == {"tags": ["exercise"], "nbgrader": {"solution": True}}
    assert lab.cells[1].source == STUB


def test_make_lab_is_idempotent():
    solution = notebook("md:# Lab\n### BEGIN SOLUTION\nyes\n### END SOLUTION",
                        "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
                        "f()\n### BEGIN HIDDEN TESTS\nassert f() == 1\n### END HIDDEN TESTS\n")
    lab = make_lab(solution)
    assert nbformat.writes(make_lab(lab)) == nbformat.writes(lab)


def test_normalize_renumbers_and_drops_machine_metadata():
    nb = notebook("md:# T", "a = 1", "a", "")
    nb.metadata = {"kernelspec": {"name": "venv"}, "language_info": {"version": "3.11.4"}}
    nb.cells[1].execution_count = 12
    nb.cells[1].metadata["execution"] = {"shell.execute_reply": "now"}
    nb.cells[2].execution_count = 13
    nb.cells[2].outputs = [new_output("execute_result", {"text/plain": "1"}, execution_count=13)]
    normalize(nb)
    assert nb.metadata == {"kernelspec": {"name": "python3", "language": "python",
                                          "display_name": "Python 3 (ipykernel)"},
                           "language_info": {"name": "python"}}
    assert [c.get("execution_count") for c in nb.cells] == [None, 1, 2, None]
    assert nb.cells[2].outputs[0].execution_count == 2
    assert "execution" not in nb.cells[1].metadata


# --- generate ----------------------------------------------------------------------------

@pytest.fixture
def course(tmp_path):
    """solutions/ with two labs, and an empty labs/."""
    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    solutions.mkdir()
    labs.mkdir()
    for name in ("lab01_pipes.ipynb", "lab02_shm.ipynb"):
        nbformat.write(notebook("md:# Lab", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
                       solutions / name)
    return solutions, labs


def test_generate_writes_labs_then_check_is_clean(course):
    solutions, labs = course
    written = generate(solutions, labs)
    assert written == [str(labs / "lab01_pipes.ipynb"), str(labs / "lab02_shm.ipynb")]
    lab = nbformat.read(labs / "lab01_pipes.ipynb", as_version=4)
    assert lab.cells[1].source == STUB
    first = (labs / "lab01_pipes.ipynb").read_bytes()
    generate(solutions, labs)
    assert (labs / "lab01_pipes.ipynb").read_bytes() == first  # byte-stable
    assert generate(solutions, labs, check=True) == []


def test_check_ignores_outputs(course):
    solutions, labs = course
    generate(solutions, labs)
    lab = nbformat.read(labs / "lab01_pipes.ipynb", as_version=4)
    lab.cells[1].outputs = [new_output("stream", name="stdout", text="ran\n")]
    lab.cells[1].execution_count = 1
    nbformat.write(lab, labs / "lab01_pipes.ipynb")
    assert generate(solutions, labs, check=True) == []


def test_check_reports_drifted_missing_and_orphan_labs(course):
    solutions, labs = course
    generate(solutions, labs)
    drifted = nbformat.read(labs / "lab01_pipes.ipynb", as_version=4)
    drifted.cells[1].source = "x = 1  # edited by hand"
    nbformat.write(drifted, labs / "lab01_pipes.ipynb")
    (labs / "lab02_shm.ipynb").unlink()
    nbformat.write(notebook("print(1)"), labs / "lab03_old.ipynb")
    before = sorted(p.name for p in labs.iterdir())
    assert generate(solutions, labs, check=True) == [
        str(labs / "lab01_pipes.ipynb"), str(labs / "lab02_shm.ipynb"),
        str(labs / "lab03_old.ipynb")]
    assert sorted(p.name for p in labs.iterdir()) == before  # check writes nothing


def test_generate_refuses_bad_arguments(course, tmp_path):
    solutions, labs = course
    with pytest.raises(FileNotFoundError, match="solutions folder .*nowhere"):
        generate(tmp_path / "nowhere", labs)
    with pytest.raises(ValueError, match="check and execute cannot be combined"):
        generate(solutions, labs, check=True, execute=True)
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        generate(solutions, labs, timeout=0)
    nbformat.write(notebook("### BEGIN SOLUTION"), solutions / "lab03_bad.ipynb")
    with pytest.raises(ValueError, match=r"lab03_bad.ipynb: cell 0, line 1"):
        generate(solutions, labs)


def test_cli_check_says_what_drifted_and_how_to_fix(course, capsys):
    solutions, labs = course
    argv = ["labs", "--solutions", str(solutions), "--labs", str(labs)]
    assert ipclab_main([*argv, "--check"]) == 1
    out, err = capsys.readouterr()
    assert f"{labs / 'lab01_pipes.ipynb'}: missing" in out
    assert "2 lab(s) differ" in err and "./course labs" in err
    assert ipclab_main(argv) == 0
    assert ipclab_main([*argv, "--check"]) == 0
    assert f"{labs / 'lab02_shm.ipynb'}: up to date" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_execute_stores_outputs_run_in_labs_folder(course):
    solutions, labs = course
    for path in solutions.iterdir():
        path.unlink()
    solution = notebook(
        "import os\nprint(os.path.basename(os.getcwd()))",
        "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
        "double(1)")
    solution.cells[1].metadata["tags"] = ["raises-exception"]  # the author says: may raise
    nbformat.write(solution, solutions / "lab01_tiny.ipynb")
    generate(solutions, labs, execute=True, timeout=60)
    lab = nbformat.read(labs / "lab01_tiny.ipynb", as_version=4)
    assert lab.cells[0].outputs[0].text == "labs\n"
    assert lab.cells[1].outputs[0].ename == "NotImplementedError"
    assert [c.execution_count for c in lab.cells] == [1, 2]
    assert lab.metadata.language_info == {"name": "python"}
    assert generate(solutions, labs, check=True) == []


@pytest.mark.timeout(120)
def test_execute_names_the_failing_cell(tmp_path):
    nb = notebook("x = 1", "1 / 0", "print('never')")
    with pytest.raises(NotebookExecutionError, match=r"demo.ipynb, cell 1 .*ZeroDivisionError"):
        execute_notebook(nb, tmp_path, timeout=60, name="demo.ipynb")
    assert nb.cells[2].outputs == []


@pytest.mark.timeout(120)
def test_execute_notebooks_tool_runs_in_place_and_normalizes(tmp_path):
    path = tmp_path / "00_demo.ipynb"
    nb = notebook("md:# Demo", "print('hi')", "raise KeyError('expected')", "2 + 2")
    nb.cells[2].metadata["tags"] = ["raises-exception"]
    nb.metadata["language_info"] = {"name": "python", "version": "3.0.0"}
    nbformat.write(nb, path)
    assert load_tool("execute_notebooks").main([str(path)]) == 0
    ran = nbformat.read(path, as_version=4)
    assert ran.cells[1].outputs[0].text == "hi\n"
    assert ran.cells[3].outputs[0].data["text/plain"] == "4"
    assert [c.get("execution_count") for c in ran.cells] == [None, 1, 2, 3]
    assert ran.metadata.language_info == {"name": "python"}


def test_labs_match_solutions(monkeypatch):
    """labs/ is exactly what the generator makes from solutions/ (no lab missing)."""
    monkeypatch.chdir(ROOT)
    drift = generate("solutions", "labs", check=True)
    assert drift == [], f"labs/ differs from solutions/: {drift}; run ./course labs"


# --- tools/add_navigation.py -------------------------------------------------------------

def test_add_navigation_links_and_is_idempotent(tmp_path):
    tool = load_tool("add_navigation")
    for name, title in [("00_processes.ipynb", "Processes"), ("01_pipes.ipynb", "Pipes"),
                        ("02_shm.ipynb", "Shared memory"), ("scratch.ipynb", "Scratch")]:
        nbformat.write(notebook(f"md:# {title}\nObjectives", "x = 1"), tmp_path / name)
    assert len(tool.add_navigation(tmp_path)) == 3

    def last(name):
        nb = nbformat.read(tmp_path / name, as_version=4)
        assert sum("navigation" in c.metadata.get("tags", []) for c in nb.cells) <= 1
        return nb.cells[-1].source

    contents = "[Contents](../README.md#the-notebooks)"
    assert last("00_processes.ipynb") == f"{contents} | [01 Pipes](01_pipes.ipynb) >"
    assert last("01_pipes.ipynb") == (f"< [00 Processes](00_processes.ipynb) | {contents} | "
                                      "[02 Shared memory](02_shm.ipynb) >")
    assert last("02_shm.ipynb") == f"< [01 Pipes](01_pipes.ipynb) | {contents}"
    assert last("scratch.ipynb") == "x = 1"
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert tool.add_navigation(tmp_path) == []
    assert tool.main(["--check", "--dir", str(tmp_path)]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot

    renamed = nbformat.read(tmp_path / "02_shm.ipynb", as_version=4)
    renamed.cells[0].source = "# Shared memory segments"
    renamed.cells.append(new_code_cell("y = 2"))  # navigation must move back to the end
    nbformat.write(renamed, tmp_path / "02_shm.ipynb")
    assert tool.main(["--check", "--dir", str(tmp_path)]) == 1
    assert tool.add_navigation(tmp_path) == [tmp_path / "01_pipes.ipynb", tmp_path / "02_shm.ipynb"]
    assert last("01_pipes.ipynb").endswith("[02 Shared memory segments](02_shm.ipynb) >")
    assert last("02_shm.ipynb").startswith("< [01 Pipes]")
