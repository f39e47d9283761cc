"""``python -m ipclab grade``: real notebooks, real kernels, hostile submissions.

One grading run (a subprocess, as an instructor runs it) takes a folder of lab 01
submissions made from the solution: the solution itself, and one notebook for each
way a submission can go wrong.  Each must get a score with a reason, the run must
go on to the next, and afterwards nothing of theirs may be left: no process, no
SysV object, no temporary directory, no cgroup.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ipclab import sysvinfo
from ipclab.grading import cgroup, columns, expand, parts, report, runner

pytestmark = pytest.mark.timeout(420)
ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "lab01_pipes.ipynb"
IMPORTS, PIPELINE, PIPELINE_CHECK, ASK, ASK_CHECK = range(5)  # lab 01's code cells


def _variant(folder, name, change):
    nb = nbformat.read(SOLUTION, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    change(nb, code)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _insert(source):
    """A change that adds a code cell with ``source`` after the imports."""
    def change(nb, code):
        nb.cells.insert(nb.cells.index(code[IMPORTS]) + 1, nbformat.v4.new_code_cell(source))
    return change


def _replace(index, old, new):
    def change(nb, code):
        assert old in code[index].source
        code[index].source = code[index].source.replace(old, new)
    return change


SUBMISSIONS = {
    "solution": lambda nb, code: None,
    "infinite_loop": _insert("while True:\n    pass"),
    "ignores_interrupt": _insert("import time\nwhile True:\n    try:\n        time.sleep(0.2)\n"
                                 "    except KeyboardInterrupt:\n        pass"),
    "sys_exit": _insert("import sys\nsys.exit(3)"),
    "os_exit": _insert("os._exit(1)"),
    "deleted_cell": lambda nb, code: nb.cells.remove(code[ASK]),
    "syntax_error": _replace(PIPELINE, "pids = []", "pids = [)"),
    "fork_bomb": _insert("while True:\n    os.fork()"),
    "process_left": _insert("import subprocess\nsubprocess.Popen(['sleep', '600'])\n"
                            "if os.fork() == 0:  # a daemon: its parent exits at once\n"
                            "    if os.fork() == 0:\n        os.setsid()\n"
                            "        import time\n        time.sleep(600)\n    os._exit(0)"),
    "ipc_left": _insert("import sysv_ipc\n"
                        "sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o600, size=4096)\n"
                        "sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, mode=0o600)"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    for name, change in SUBMISSIONS.items():
        _variant(folder, name, change)
    (folder / "not_a_notebook.ipynb").write_text("this is not JSON")
    out = folder / "grades.csv"
    before = {(o.kind, o.id) for o in sysvinfo.list_objects(all_users=True)}
    run = subprocess.run(
        [sys.executable, "-m", "ipclab", "grade", "--lab", "lab01_pipes", "--cell-timeout", "5",
         "--max-processes", "64", "--out", str(out), str(folder)],
        capture_output=True, text=True, timeout=400)
    after = {(o.kind, o.id) for o in sysvinfo.list_objects(all_users=True)}
    with open(out, newline="") as f:
        rows = {Path(r["submission"]).stem: r for r in csv.DictReader(f)}
    return {"run": run, "rows": rows, "json": json.loads(out.with_suffix(".json").read_text()),
            "new_objects": after - before, "header": out.read_text().splitlines()[0]}


def _checks(row):
    return {k: int(v) for k, v in row.items() if k not in report.FIXED}


def test_every_submission_gets_a_row_and_the_run_succeeds(graded):
    assert graded["run"].returncode == 0, graded["run"].stdout + graded["run"].stderr
    assert set(graded["rows"]) == {*SUBMISSIONS, "not_a_notebook"}
    assert graded["header"].startswith("submission,score,max_score,status,reason,")
    for row in graded["rows"].values():
        assert int(row["score"]) == sum(_checks(row).values())
        assert int(row["max_score"]) == len(_checks(row)) > 0


def test_the_solution_gets_full_marks_with_nothing_to_say(graded):
    row = graded["rows"]["solution"]
    assert (row["status"], row["reason"]) == ("ok", "")
    assert row["score"] == row["max_score"]
    assert any(name.startswith(f"run_pipeline: {parts.HIDDEN}") for name in _checks(row))


@pytest.mark.parametrize("name, status, words", [
    ("infinite_loop", "timeout", "code cell 2 ran longer than 5 s and was interrupted"),
    ("ignores_interrupt", "crashed", "code cell 2 ended the kernel or could not be stopped"),
    ("sys_exit", "error", "code cell 2 raised SystemExit: 3"),
    ("os_exit", "crashed", "code cell 2 ended the kernel or could not be stopped: graded "
                           "without it"),
    ("fork_bomb", "limit", "code cell 2 tried to start more processes than the limit (64, a "
                           "fork bomb?): stopped there; "),
    ("process_left", "leftover", "the notebook left 2 process(es) running (python, sleep): "
                                 "they were killed"),
    ("ipc_left", "leftover", "left 2 SysV object(s) behind (message queue, shared memory "
                             "segment): removed"),
])
def test_a_hostile_cell_costs_only_itself(graded, name, status, words):
    row = graded["rows"][name]
    assert row["status"] == status and words in row["reason"], row
    assert row["score"] == row["max_score"], row  # the student's functions still get their marks


def test_a_deleted_cell_loses_its_part_and_says_why(graded):
    row = graded["rows"]["deleted_cell"]
    assert row["status"] == "error"
    assert "ask_child is not defined (its cell was deleted or failed)" in row["reason"]
    checks = _checks(row)
    assert all(v == 0 for k, v in checks.items() if k.startswith("ask_child: "))
    assert all(v == 1 for k, v in checks.items() if k.startswith("run_pipeline: "))
    details = [c["detail"] for c in graded["json"] if c["submission"].endswith("deleted_cell.ipynb")
               for c in c["checks"] if c["part"] == "ask_child"]
    assert details and all(d.startswith("ask_child is not defined") for d in details)


def test_a_syntax_error_loses_that_function_and_names_the_cell(graded):
    row = graded["rows"]["syntax_error"]
    assert row["status"] == "error" and "code cell 2 raised SyntaxError" in row["reason"]
    assert "run_pipeline is not defined" in row["reason"]
    checks = _checks(row)
    assert all(v == 0 for k, v in checks.items() if k.startswith("run_pipeline: "))
    assert all(v == 1 for k, v in checks.items() if k.startswith("ask_child: "))


def test_a_file_that_is_not_a_notebook_is_reported(graded):
    row = graded["rows"]["not_a_notebook"]
    assert (row["status"], row["score"]) == ("invalid", "0")
    assert row["reason"].startswith("not a notebook this grader can read")


def test_nothing_is_left_behind(graded):
    assert not graded["new_objects"]
    assert not glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "ipclab-grade-*"))
    base = cgroup._base()
    assert base is None or not glob.glob(os.path.join(base, "ipclab-grade-*"))


# -- the pieces, without a kernel -----------------------------------------------------------

def test_check_cells_are_recognised_by_their_calls_only():
    assert runner.is_check_cell("lab01.check_run_pipeline(run_pipeline)")
    assert runner.is_check_cell("lab03.check_barrier(Barrier)\nlab03.check_barrier(Barrier)")
    for source in ("x = lab01.check_run_pipeline(f)", "print(1)", "lab01.check_x(", "",
                   "def check_x(): pass", "os.check_x()"):
        assert not runner.is_check_cell(source), source


def test_the_most_serious_status_wins_and_every_reason_is_kept():
    outcome = runner.Outcome("x.ipynb")
    assert (outcome.status, outcome.reason) == ("ok", "")
    outcome.note("leftover", "a")
    outcome.note("timeout", "b")
    outcome.note("error", "c")
    outcome.note("error", "c")
    assert (outcome.status, outcome.reason) == ("timeout", "a; b; c")


def test_columns_name_every_check_of_every_part():
    cols = columns("lab01_pipes")
    titles = [p.title for p in parts.parts("lab01_pipes")]
    assert [t for t in titles] == list(dict.fromkeys(t for t, _, _ in cols))
    assert len({(t, n) for t, n, _ in cols}) == len(cols)
    assert all(points >= 1 for _, _, points in cols)


def test_a_folder_means_its_notebooks(tmp_path):
    for name in ("b.ipynb", "a.ipynb", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert expand([str(tmp_path), "x.ipynb"]) == [str(tmp_path / "a.ipynb"),
                                                 str(tmp_path / "b.ipynb"), "x.ipynb"]


@pytest.mark.parametrize("args, words", [
    (["--lab", "lab09_nothing", "x.ipynb"], "unknown lab 'lab09_nothing': choose one of"),
    (["--lab", "lab01_pipes", "--timeout", "0", "x.ipynb"], "timeout"),
    (["--lab", "lab01_pipes", "--max-processes", "3", "x.ipynb"],
     "max_processes must be an int from 32 to 100000, got 3"),
    (["--lab", "lab01_pipes", "--user", "no-such-user-ipclab", "x.ipynb"],
     "no-such-user-ipclab"),
])
def test_bad_arguments_are_refused_with_what_is_allowed(args, words):
    run = subprocess.run([sys.executable, "-m", "ipclab", "grade", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and words in run.stdout, run.stdout + run.stderr


def test_missing_stands_in_for_a_name_and_fails_every_use():
    stand_in = parts.missing("Barrier")
    assert isinstance(stand_in, type) and repr(stand_in) == "<Barrier is not defined>"
    with pytest.raises(AssertionError, match="Barrier is not defined"):
        stand_in(3)
    with pytest.raises(ValueError, match="name must be a Python name"):
        parts.missing("not a name")


def test_the_sandbox_stops_a_fork_bomb_at_its_limit():
    """As a user, RLIMIT_NPROC; as root, the same once dropped to nobody (root ignores it)."""
    user = ["--user", "nobody"] if os.geteuid() == 0 else []
    script = "n=0; while [ $n -lt 60 ]; do sleep 3 & n=$((n+1)); done; wait"
    run = subprocess.run([sys.executable, "-m", "ipclab.grading.sandbox", "--nproc", "20", *user,
                          "--", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                         cwd="/")
    assert "fork" in run.stderr.lower(), run.stderr  # sh: "Cannot fork" / "fork: retry"


@pytest.mark.parametrize("args, words", [
    (["--nproc", "0", "--", "true"], "--nproc and --fsize must be positive, got 0"),
    (["--nproc", "5"], "no command given after --"),
])
def test_the_sandbox_refuses_bad_arguments(args, words):
    run = subprocess.run([sys.executable, "-m", "ipclab.grading.sandbox", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and words in run.stderr, run.stderr


@pytest.mark.parametrize("lab", parts.LABS)
def test_every_lab_s_solution_gets_full_marks_through_the_grader(lab, tmp_path):
    """Each lab's visible and hidden checks, run inside the grader's limited kernel."""
    shutil.copy(ROOT / "solutions" / f"{lab}.ipynb", tmp_path / "solution.ipynb")
    run = subprocess.run([sys.executable, "-m", "ipclab", "grade", "--lab", lab,
                          str(tmp_path / "solution.ipynb"), "--out", str(tmp_path / "g.csv")],
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "g.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["status"], row["reason"]) == ("ok", "")
    assert row["score"] == row["max_score"] and int(row["max_score"]) == len(columns(lab))
