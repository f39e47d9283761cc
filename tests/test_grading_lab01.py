"""The grader's parts of lab 01 (ipclab.labs.hidden.lab01): full marks for the solution, 0 for
the untouched lab and for missing names, and hidden checks that catch what the visible ones
let through.

Each wrong implementation is the solution (solutions/lab01_pipes.ipynb, its code cells) with
one small change; most pass every visible check and lose exactly the hidden ones named, within
the checks' timeouts: a forgotten pipe end is a failed check with a diagnosis, never a hang.
"""

import importlib
import time

import nbformat
import pytest
from _helpers import (
    SOLUTIONS,
    failed,
    load_solution,
    missing_fails_every_check,
    run_code_cells,
    untouched_scores_zero,
)

from ipclab.grading import parts
from ipclab.labs import generate, lab01
from ipclab.labs.hidden import lab01 as hidden
from ipclab.labs.scorecard import Check, run_checks

pytestmark = pytest.mark.timeout(120)
NAME = "lab01_pipes.ipynb"
PIPELINE, ASK = hidden.PARTS
BUILD = {"run_pipeline": hidden.pipeline_part, "ask_child": hidden.request_reply_part}


@pytest.fixture(scope="module")
def solution():
    return load_solution(NAME)


def variant(*edits):
    """The solution's namespace with each (old, new) replaced: old must occur exactly once."""
    nb = nbformat.read(SOLUTIONS / NAME, as_version=4)
    for old, new in edits:
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1 and cells[0].source.count(old) == 1, f"not once: {old!r}"
        cells[0].source = cells[0].source.replace(old, new)
    return run_code_cells(nb, NAME)


def hidden_named(part, *words):
    """The hidden check names of ``part`` that contain one of ``words``."""
    names = {c.name for c in BUILD[part.title](print) if c.name.startswith(parts.HIDDEN)}
    found = {n for n in names if any(w in n for w in words)}
    assert len(found) == len(words), (words, names)
    return found


def grade(part, fn, quick=(), timeout=1.5):
    """Run ``part`` on ``fn`` (the checks named in ``quick`` with a shorter timeout)."""
    start = time.monotonic()
    if quick:
        checks = [Check(c.name, c.run, c.hint, timeout if c.name in quick else c.timeout)
                  for c in BUILD[part.title](fn)]
        score = run_checks(part.title, checks, show=False)
    else:
        score = part.run(fn)
    return score, time.monotonic() - start


# --- the parts ----------------------------------------------------------------------------

def test_one_part_per_check_cell_of_the_lab():
    assert [(p.title, p.needs) for p in hidden.PARTS] == [
        ("run_pipeline", ("run_pipeline",)), ("ask_child", ("ask_child",))]
    assert [p.title for p in parts.parts("lab01_pipes")] == ["run_pipeline", "ask_child"]


def test_check_names_are_unique_stable_and_the_visible_ones_come_first():
    visible = {"run_pipeline": lab01.pipeline_checks, "ask_child": lab01.request_reply_checks}
    first = {title: [c.name for c in build(print)] for title, build in BUILD.items()}
    again = importlib.reload(hidden)  # PARTS built a second time
    assert [(p.title, p.needs) for p in again.PARTS] == [(p.title, p.needs) for p in
                                                         (PIPELINE, ASK)]
    for title, names in first.items():
        build = {"run_pipeline": again.pipeline_part, "ask_child": again.request_reply_part}
        assert [c.name for c in build[title](str)] == names
        assert len(set(names)) == len(names)
        shown = [c.name for c in visible[title](print)]
        assert names[:len(shown)] == shown
        assert all(n.startswith(parts.HIDDEN) for n in names[len(shown):])
        assert len(names) > len(shown)


def test_the_solution_gets_full_marks_visible_and_hidden(solution):
    for part, total in [(PIPELINE, 13), (ASK, 9)]:
        score = part.run(*(solution[n] for n in part.needs))
        assert (score.passed, score.total) == (total, total), failed(score)
        assert score.title == part.title
        assert [n for n, *_ in score.lines] == [c.name for c in BUILD[part.title](print)]


def test_the_untouched_lab_scores_zero_without_raising(capsys):
    path = SOLUTIONS / NAME
    lab = run_code_cells(generate.make_lab(nbformat.read(path, as_version=4)), path)
    for part in hidden.PARTS:
        untouched_scores_zero(part, lab)
    assert capsys.readouterr().out == ""  # show=False


def test_a_missing_name_scores_zero_and_says_so():
    for part in hidden.PARTS:
        missing_fails_every_check(part)


# --- run_pipeline: forgotten pipe ends, within the timeouts ----------------------------------

FEEDER_KEEPS_ALL = ("            close_all_but(keep=[fds[0][1]])\n", "")
INNER_READ_ENDS_LATE = [
    ("    close_all_but(keep=[out])\n",
     "    close_all_but(keep=[out] + [r for r, _ in fds[1:-1]])  # the inner read ends: later\n"),
    ("    os.waitpid(feeder, 0)\n",
     "    os.waitpid(feeder, 0)\n    for r, _ in fds[1:-1]:\n        os.close(r)\n"),
]
INPUT_KEPT_WHEN_EMPTY = [
    ("    close_all_but(keep=[out])\n",
     "    close_all_but(keep=[out] if data else [out, fds[0][1]])  # nothing sent: close later\n"),
    ("    os.waitpid(feeder, 0)\n",
     "    os.waitpid(feeder, 0)\n    if not data:\n        os.close(fds[0][1])\n"),
]


@pytest.mark.parametrize("edits, words, why", [
    pytest.param([FEEDER_KEEPS_ALL], ["never reads its input"], "blocked in read",
                 id="the feeder child does not close the pipe fds it does not use"),
    pytest.param(INNER_READ_ENDS_LATE, ["yes | head"], "timed out",
                 id="the parent closes the inner pipes' read ends only after waiting"),
    pytest.param(INPUT_KEPT_WHEN_EMPTY, ["empty input"], "blocked in read",
                 id="with no data the parent keeps the input pipe's write end"),
])
def test_a_forgotten_pipe_end_passes_the_visible_checks_and_times_out_in_a_hidden_one(
        edits, words, why):
    score, took = grade(PIPELINE, variant(*edits)["run_pipeline"])
    lost = failed(score)
    assert set(lost) == hidden_named(PIPELINE, *words)
    detail = lost.popitem()[1]
    assert detail.startswith("timed out after 5 s") and why in detail and "hint:" in detail
    assert took < 5 + 8  # the one timeout, and the other checks' own time


def test_an_output_pipe_write_end_kept_makes_every_hidden_check_time_out_not_hang():
    kept = variant(("    close_all_but(keep=[out])\n",
                    "    close_all_but(keep=[out, fds[-1][1]])  # kept: read never ends\n"),
                   ("    os.close(out)\n", "    os.close(out)\n    os.close(fds[-1][1])\n"))
    quick = {c.name for c in hidden.pipeline_part(print) if c.name.startswith(parts.HIDDEN)}
    checks = [Check(c.name, c.run, c.hint, 1.0) for c in hidden.pipeline_part(
        kept["run_pipeline"]) if c.name in quick]
    lost = failed(run_checks("t", checks, show=False))
    assert set(lost) == quick
    assert all(d.startswith("timed out after 1 s") and "blocked in read" in d
               for d in lost.values()), lost


# --- run_pipeline: other mistakes only the hidden checks catch --------------------------------

def test_commands_run_one_after_another_never_end_with_yes(solution):
    def one_after_another(commands, data=b""):
        if not commands:
            raise ValueError("no commands")
        statuses = []
        for argv in commands:  # each on the whole output of the one before: not a pipeline
            data, (status,) = solution["run_pipeline"]([argv], data)
            statuses.append(status)
        return data, statuses

    yes = hidden_named(PIPELINE, "yes | head")
    score, _ = grade(PIPELINE, one_after_another, quick=yes)
    lost = failed(score)
    assert set(lost) == yes  # yes never ends, so head never runs
    assert lost.popitem()[1].startswith("timed out after 1.5 s")


def test_wexitstatus_loses_the_status_of_a_killed_command():
    wrong = variant(("os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])",
                     "os.WEXITSTATUS(os.waitpid(pid, 0)[1])"))
    score, _ = grade(PIPELINE, wrong["run_pipeline"])
    lost = failed(score)
    assert set(lost) == hidden_named(PIPELINE, "SIGKILL")
    assert "statuses [0, 0], expected [-9, 0]" in lost.popitem()[1]


FEEDER = """\
    with proc.quiet_fork_warning():
        feeder = os.fork()  # writes the input while the parent reads the output
    if feeder == 0:
        try:
            close_all_but(keep=[fds[0][1]])
            view = memoryview(data)
            while view:
                view = view[os.write(fds[0][1], view):]
        finally:
            os._exit(0)

    out = fds[-1][0]
    close_all_but(keep=[out])
"""
ENLARGED_PIPE = """\
    import fcntl
    fcntl.fcntl(fds[0][1], fcntl.F_SETPIPE_SZ, 1 << 20)  # 1 MiB fits at once: no feeder
    out = fds[-1][0]
    close_all_but(keep=[out, fds[0][1]])
    try:
        os.write(fds[0][1], data)  # all the input first
    except BrokenPipeError:
        pass
    os.close(fds[0][1])
"""


def test_writing_the_input_first_into_an_enlarged_pipe_deadlocks_on_six_stages():
    wrong = variant((FEEDER, ENLARGED_PIPE), ("    os.waitpid(feeder, 0)\n", ""))
    six = hidden_named(PIPELINE, "six stages")
    score, _ = grade(PIPELINE, wrong["run_pipeline"], quick=six, timeout=3)
    lost = failed(score)
    assert set(lost) == six  # the visible 1 MiB check passes
    assert lost.popitem()[1].startswith("timed out after 3 s")


def test_a_short_read_taken_for_the_end_loses_the_output_in_pieces():
    wrong = variant(("        chunks.append(chunk)\n",
                     "        chunks.append(chunk)\n        if len(chunk) < 65536:\n"
                     "            break  # a short read taken for the end\n"))
    score, _ = grade(PIPELINE, wrong["run_pipeline"])
    pieces = hidden_named(PIPELINE, "in pieces").pop()
    assert "output b'one', expected b'onetwo'" in failed(score)[pieces]


# --- ask_child --------------------------------------------------------------------------------

def test_the_parent_keeping_the_reply_pipe_write_end_hangs_when_the_handler_raises():
    wrong = variant(("    os.close(up_w)\n", ""),
                    ("    os.waitpid(pid, 0)\n", "    os.waitpid(pid, 0)\n    os.close(up_w)\n"))
    score, took = grade(ASK, wrong["ask_child"])
    lost = failed(score)
    assert set(lost) == hidden_named(ASK, "handler that raises")
    detail = lost.popitem()[1]
    assert detail.startswith("timed out after 5 s") and "blocked in read" in detail
    assert took < 5 + 8


def test_one_read_per_reply_leaves_the_rest_of_a_long_reply_in_the_pipe():
    wrong = variant(('replies.append(inbox.readline().rstrip("\\n"))',
                     'replies.append(os.read(up_r, 65536).decode().rstrip("\\n"))'))
    large = hidden_named(ASK, "100 KiB")
    score, _ = grade(ASK, wrong["ask_child"], quick=large)
    lost = failed(score)
    assert set(lost) == large
    # The rest of the first reply fills the pipe; the child waits to write it, and the
    # parent waits to write the second request: both blocked in write.
    assert "blocked in write" in lost.popitem()[1]


def test_stripping_the_request_loses_its_spaces():
    wrong = variant(('handler(line.rstrip("\\n"))', "handler(line.strip())"))
    score, _ = grade(ASK, wrong["ask_child"])
    lost = failed(score)
    assert set(lost) == hidden_named(ASK, "spaces")
    assert "reply 1 is '[]', expected '[ ]'" in lost.popitem()[1]


def test_all_requests_before_any_reply_deadlocks_beyond_a_pipeful():
    wrong = variant(("""\
        for request in requests:
            outbox.write(request + "\\n")
            outbox.flush()
            replies.append(inbox.readline().rstrip("\\n"))
""", """\
        for request in requests:
            outbox.write(request + "\\n")
        outbox.flush()
        replies = [inbox.readline().rstrip("\\n") for _ in requests]
"""))
    big = hidden_named(ASK, "100 KiB", "20 000")
    score, _ = grade(ASK, wrong["ask_child"], quick=big)
    lost = failed(score)
    assert set(lost) == big  # the visible 500 requests fit in the pipes
    assert all(d.startswith("timed out after 1.5 s") for d in lost.values()), lost
