"""ipclab.proc: forked children report output, values, errors and statuses, never leak."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from ipclab import diagnose, proc
from ipclab.proc import describe_status

pytestmark = pytest.mark.timeout(60)


def _double(n):
    print("doubling", n)
    print("to stderr", file=sys.stderr)
    return n * 2


def test_run_returns_value_and_labels_output(capsys):
    result = proc.run(_double, 21)
    assert result.ok and result.value == 42 and result.returncode == 0
    assert result.stdout == "doubling 21\n"
    out, err = capsys.readouterr()
    assert out == "[child 1] doubling 21\n"
    assert err == "[child 1] to stderr\n"
    assert repr(result) == "<child 1: exited with code 0, returned 42>"


def test_run_many_reports_in_child_order(capsys):
    def work(i):
        time.sleep(0.05 * (4 - i))  # the last child finishes first
        print("I am", i)
        return i

    results = proc.run_many(work, 4)
    assert [r.value for r in results] == [1, 2, 3, 4]
    assert [r.label for r in results] == ["child 1", "child 2", "child 3", "child 4"]
    out = capsys.readouterr().out
    assert out == "".join(f"[child {i}] I am {i}\n" for i in range(1, 5))


def test_output_of_exec_and_file_descriptors_is_captured():
    def both():
        os.write(1, b"raw fd 1\n")
        os.system("echo from a program")
    result = proc.run(both, show=False)
    assert result.stdout == "raw fd 1\nfrom a program\n"


def test_unflushed_parent_output_is_not_duplicated():
    code = textwrap.dedent("""
        from ipclab import diagnose, proc
        print("parent once", end="")
        proc.run(print, "child")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.count("parent once") == 1
    assert "[child 1] child" in out


def test_exception_is_reported_with_type_message_and_place(capsys):
    def boom():
        raise ValueError("bad input")
    result = proc.run(boom)
    assert not result.ok and result.returncode == 1
    assert result.error["type"] == "ValueError" and result.error["message"] == "bad input"
    assert "boom()" in result.error["where"]
    assert "Traceback" in result.traceback
    assert "[child 1] raised ValueError: bad input (in boom(), line" in capsys.readouterr().err


@pytest.mark.parametrize("code, expected", [(None, 0), (3, 3), ("message", 1)])
def test_sys_exit_in_child_ends_the_child_not_the_parent(code, expected):
    result = proc.run(sys.exit, code, show=False)
    assert result.returncode == expected and result.exited_via == "exit"
    if code == "message":
        assert result.stderr == "message\n"


def test_os_exit_and_signals_are_decoded():
    assert proc.run(os._exit, 4, show=False).outcome().startswith("exited with code 4 without")
    killed = proc.run(lambda: os.kill(os.getpid(), signal.SIGTERM), show=False)
    assert killed.returncode == -signal.SIGTERM
    assert killed.outcome() == "killed by SIGTERM (15)"


def test_unpicklable_return_value_is_an_error_not_a_crash():
    result = proc.run(lambda: (lambda: 1), show=False)
    assert result.error["message"].startswith("the return value cannot be sent to the parent")


def test_timeout_kills_a_busy_child_and_says_so(capsys):
    def spin():
        while True:
            pass
    start = time.monotonic()
    result = proc.run(spin, timeout=0.5)
    assert time.monotonic() - start < 5
    assert result.timed_out and result.returncode == -signal.SIGKILL
    assert "busy loop" in result.diagnosis
    assert "[child 1] timed out after 0.5 s and was killed" in capsys.readouterr().err


def test_timeout_diagnoses_the_classic_pipe_hang():
    r, w = os.pipe()
    try:
        def reader():
            os.close(w)  # the child closes its write end; the parent forgets its own
            return os.read(r, 10) + os.read(r, 10)
        with proc.Family(timeout=1, show=False) as family:
            family.fork(reader)
    finally:
        os.close(r)
        os.close(w)
    (result,) = family.results
    assert result.timed_out
    assert f"child 1 blocked in read on fd {r} (pipe:[" in result.diagnosis
    assert f"the write end of that pipe is still open in: parent (fd {w})" in result.diagnosis


def test_family_lets_the_parent_work_between_fork_and_wait():
    r, w = os.pipe()
    with proc.Family(timeout=5, show=False) as family:
        family.fork(lambda: os.write(w, b"hi") and os.read(r, 0))
        os.close(w)
        data = os.read(r, 10)
    os.close(r)
    assert data == b"hi" and family.results[0].ok


def test_keyboard_interrupt_while_waiting_kills_and_reaps_children():
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            proc.run(time.sleep, 30, timeout=20)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # the autouse leak check asserts that no child is left


def test_new_group_timeout_kills_grandchildren_too():
    def spawn():
        grandchild = subprocess.Popen(["sleep", "30"])  # stays in the child's process group
        print(grandchild.pid, flush=True)
        time.sleep(30)
    with proc.Family(timeout=1, new_group=True, show=False) as family:
        family.fork(spawn)
    result = family.results[0]
    assert result.timed_out
    grandchild = int(result.stdout)
    deadline = time.monotonic() + 5  # killed; its new parent (init) reaps it soon after
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        st = diagnose.proc_stat(grandchild)
        if st is None or st[0] == "Z":
            break
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{grandchild}"), "the grandchild survived the timeout"


def test_fork_warning_of_python_312_is_silenced_only_around_our_forks(monkeypatch):
    real_fork = os.fork

    def warning_fork():  # what CPython >= 3.12 does in a multi-threaded process
        warnings.warn(f"This process (pid={os.getpid()}) is multi-threaded, use of fork() "
                      "may lead to deadlocks in the child.", DeprecationWarning, stacklevel=2)
        return real_fork()

    monkeypatch.setattr(os, "fork", warning_fork)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert proc.run(int, "7", show=False).value == 7
        with pytest.raises(DeprecationWarning):
            warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)


def test_fork_context_is_fork():
    assert proc.fork_context().get_start_method() == "fork"


def test_describe_status():
    assert describe_status(0) == "exited with code 0"
    assert describe_status(3 << 8) == "exited with code 3"
    assert describe_status(signal.SIGKILL) == "killed by SIGKILL (9)"
    assert describe_status(signal.SIGSEGV | 0x80) == "killed by SIGSEGV (11) (core dumped)"


@pytest.mark.parametrize("call, error, words", [
    (lambda: proc.run(42), TypeError, "fn must be callable, got 42"),
    (lambda: proc.run(print, timeout=0), ValueError, "timeout must be a number > 0, got 0"),
    (lambda: proc.run(print, timeout="1"), TypeError, "timeout must be a number > 0"),
    (lambda: proc.run_many(print, 0), ValueError, "n must be between 1 and 256, got 0"),
    (lambda: proc.run_many(print, 2.5), TypeError, "n must be an int, got 2.5"),
    (lambda: describe_status("0"), TypeError, "status must be an int"),
])
def test_bad_arguments_say_what_is_allowed(call, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        call()
