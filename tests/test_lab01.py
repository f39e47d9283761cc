"""Lab 01's checks: full marks for the solution, lost marks for the classic mistakes.

The solution is taken from solutions/lab01_pipes.ipynb itself (its code cells,
run in a fresh namespace), so what the course ships is what is tested.
"""

import os

import pytest
from _helpers import failed, load_solution

from ipclab import proc
from ipclab.labs import lab01
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def solution():
    return load_solution("lab01_pipes.ipynb")


def test_solution_gets_full_marks(solution, capsys):
    a = lab01.check_run_pipeline(solution["run_pipeline"])
    b = lab01.check_ask_child(solution["ask_child"])
    assert (a.passed, a.total, b.passed, b.total) == (7, 7, 5, 5)
    assert "run_pipeline: 7/7 checks passed" in capsys.readouterr().out


def test_untouched_lab_scores_zero_without_raising():
    def stub(*args):
        raise NotImplementedError()
    score = lab01.check_run_pipeline(stub)
    details = list(failed(score).values())
    assert score.passed == 0 and len(details) == score.total == 7
    assert all(detail.startswith("not implemented yet") for detail in details)


def _pipeline_forgetting_to_close(commands, data=b""):
    """The classic mistake: the parent keeps the write end of the output pipe."""
    r, w = os.pipe()
    with proc.quiet_fork_warning():
        pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            os.execvp(commands[0][0], commands[0])
        finally:
            os._exit(127)
    out = b""
    while chunk := os.read(r, 4096):  # never ends: this process still holds w
        out += chunk
    return out, [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]


def test_forgotten_write_end_times_out_with_a_diagnosis():
    check = lab01.pipeline_checks(_pipeline_forgetting_to_close)[0]
    score = run_checks("t", [Check(check.name, check.run, check.hint, timeout=1.5)], show=False)
    detail = failed(score)[check.name]
    assert detail.startswith("timed out after 1.5 s")
    assert "blocked in read on fd" in detail
    assert "the write end of that pipe is still open in: check (fd" in detail
    assert "hint:" in detail


def test_writing_all_input_first_deadlocks_on_big_data(solution):
    def write_then_read(commands, data=b""):
        if len(data) < 100_000:
            return solution["run_pipeline"](commands, data)
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r1, 0)
                os.dup2(w2, 1)
                for fd in (r1, w1, r2, w2):
                    os.close(fd)
                os.execvp("cat", ["cat"])
            finally:
                os._exit(127)
        os.close(r1)
        os.close(w2)
        os.write(w1, data)  # blocks: cat's output pipe is full and nobody reads it
        raise AssertionError("not reached")
    checks = [c for c in lab01.pipeline_checks(write_then_read) if "1 MiB" in c.name]
    score = run_checks("t", [Check(c.name, c.run, timeout=2) for c in checks], show=False)
    assert "timed out" in next(iter(failed(score).values()))


def test_unreaped_children_and_open_fds_lose_marks(solution):
    def no_wait(commands, data=b""):
        r, w = os.pipe()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.close(w)
        del pid  # never waited for: a zombie; r is never closed
        return b"hello\n", [0]
    score = lab01.check_run_pipeline(no_wait)
    assert "child process(es) left running or unreaped" in failed(score)["one command: echo hello"]


def test_exec_failure_that_returns_into_python_is_caught():
    def no_exit_on_failure(commands, data=b""):
        r, w = os.pipe()
        with proc.quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execvp(commands[0][0], commands[0])  # raises in the child: no os._exit
        os.close(w)
        out = os.read(r, 100)
        os.close(r)
        return out, [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
    checks = [c for c in lab01.pipeline_checks(no_exit_on_failure) if "missing" in c.name]
    score = run_checks("t", checks, show=False)
    assert score.passed == 0


def test_ask_child_with_handler_in_the_parent_loses_the_mark():
    def in_parent(handler, requests):
        return [handler(r) for r in requests]
    score = lab01.check_ask_child(in_parent)
    assert list(failed(score)) == ["the handler runs in one child process"]


def test_scorecard_refuses_bad_checks():
    with pytest.raises(TypeError, match="checks must be Check objects"):
        run_checks("t", ["not a check"])
    with pytest.raises(TypeError, match="run must be callable"):
        Check("x", 3)
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        Check("x", print, timeout=-1)
