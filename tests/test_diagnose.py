"""ipclab.diagnose: where a process is blocked, read from /proc, in words."""

import os
import signal
import time

import pytest

from ipclab import diagnose, proc

pytestmark = pytest.mark.timeout(30)


def _spawn(fn):
    """Fork a child that runs fn and then sleeps; return its pid (the test reaps it)."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            time.sleep(30)
        finally:
            os._exit(0)
    return pid


def _until_blocked(pid, word, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = diagnose.where(pid, labels={pid: "child 1"})
        if word in text:
            return text
        time.sleep(0.01)
    return text


def _finish(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_read_on_a_pipe_names_every_process_holding_a_write_end():
    r, w = os.pipe()
    pid = _spawn(lambda: os.read(r, 1))
    try:
        text = _until_blocked(pid, "blocked in read")
        assert text == (f"child 1 blocked in read on fd {r} ({diagnose.describe_fd(pid, r)}); "
                        f"the write end of that pipe is still open in: parent (fd {w}), "
                        f"child 1 (fd {w})")
    finally:
        _finish(pid)
        os.close(r)
        os.close(w)


def test_write_on_a_full_pipe_names_the_readers():
    r, w = os.pipe()
    pid = _spawn(lambda: os.write(w, b"x" * (1 << 20)))
    os.close(w)
    try:
        text = _until_blocked(pid, "blocked in write")
        assert f"blocked in write on fd {w}" in text
        assert f"the pipe is full; its read end is open in: parent (fd {r}), child 1 (fd {r})" \
            in text
    finally:
        _finish(pid)
        os.close(r)


def test_sleeping_busy_zombie_and_gone_processes():
    pid = _spawn(lambda: None)
    try:
        assert "is sleeping" in _until_blocked(pid, "sleeping")
    finally:
        _finish(pid)
    busy = os.fork()
    if busy == 0:
        while True:
            pass
    try:
        assert "busy loop" in _until_blocked(busy, "busy loop")
        os.kill(busy, signal.SIGKILL)
        assert "zombie" in _until_blocked(busy, "zombie")
    finally:
        os.waitpid(busy, 0)
    assert diagnose.where(busy) == f"pid {busy} has already exited"


def test_waiting_for_a_child_is_recognised():
    def parent_of_one():
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(30)
            os._exit(0)
        os.waitpid(grandchild, 0)
    pid = _spawn(parent_of_one)
    try:
        assert "waiting for a child process to exit" in _until_blocked(pid, "waiting for a child")
        assert len(diagnose.family()) >= 3  # this test, the child and the grandchild
    finally:
        for p in reversed(diagnose.family()[1:]):
            os.kill(p, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_describe_fd_and_labels():
    r, w = os.pipe()
    try:
        assert diagnose.describe_fd(os.getpid(), r).startswith("pipe:[")
        assert diagnose.describe_fd(os.getpid(), r) == diagnose.describe_fd(os.getpid(), w)
    finally:
        os.close(r)
        os.close(w)
    assert diagnose.describe_fd(os.getpid(), r) == "closed"
    assert diagnose.label(os.getpid()) == "parent"
    assert diagnose.label(1, {1: "init"}) == "init"
    with pytest.raises(ValueError, match="fd must be >= 0, got -1"):
        diagnose.describe_fd(os.getpid(), -1)
    with pytest.raises(ValueError, match="root must be >= 1, got 0"):
        diagnose.family(0)


def test_an_exited_child_is_still_called_by_its_label():
    result = proc.run(lambda: os.getpid(), show=False)
    assert diagnose.proc_stat(result.value) is None  # reaped
    assert diagnose.label(result.value) == "child 1"
    assert diagnose.label(2**22 + 12345) == f"pid {2**22 + 12345}"  # never ours
