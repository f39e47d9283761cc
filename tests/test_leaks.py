"""The leak checks themselves: a run that leaves a SysV object or a child fails."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sysv_ipc

from ipclab import leaks

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent

LEAKY = '''
import os, sysv_ipc
def test_leaks_a_queue():
    q = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, 0o600)
    open("leaked_id", "w").write(str(q.id))
'''


def test_session_leak_check_fails_a_run_that_leaves_an_object(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=100)
    leaked = int((tmp_path / "leaked_id").read_text())
    try:
        assert run.returncode == 1, run.stdout
        assert "LEAK CHECK FAILED" in run.stdout
        assert "SysV msg key" in run.stdout and f"id {leaked}" in run.stdout
    finally:
        sysv_ipc.remove_message_queue(leaked)


def test_children_lists_zombies_until_reaped():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 5
        while (pid, "Z") not in leaks.children() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (pid, "Z") in leaks.children()
    finally:
        os.waitpid(pid, 0)
    assert pid not in [p for p, _ in leaks.children()]
