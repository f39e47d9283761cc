"""The leak checks themselves: a run that leaves a SysV object or a child fails."""

import os
import shutil
import socket
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


LEAKY_SOCKET = '''
import socket
held = []
def test_leaves_a_listener_open():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    held.append(s)
    open("leaked_port", "w").write(str(s.getsockname()[1]))
'''


def test_both_leak_checks_fail_a_test_that_leaves_a_listening_socket(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_leaky.py").write_text(LEAKY_SOCKET)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=100)
    port = (tmp_path / "leaked_port").read_text()
    assert run.returncode == 1, run.stdout
    assert "the test left behind" in run.stdout and "open socket fd" in run.stdout
    assert "LEAK CHECK FAILED" in run.stdout
    assert f"tcp socket bound to 127.0.0.1:{port}" in run.stdout


def test_open_sockets_and_listening_see_a_socket_until_it_is_closed():
    before, listeners = leaks.open_sockets(), leaks.listening()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("::1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        assert set(leaks.new_sockets(before)) == {udp.fileno(), tcp.fileno()}
        assert leaks.listening() - listeners == {
            ("udp6", f"[::1]:{udp.getsockname()[1]}"),
            ("tcp", f"127.0.0.1:{tcp.getsockname()[1]}")}
    assert leaks.new_sockets(before) == {}
    assert leaks.listening() - listeners == set()
