"""Tests for ipclab.keys: per-user keys, ftok, resolve_key, create_unique, the registry."""

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import sysv_ipc
from _helpers import reap, remove_quietly, start_child

from ipclab import keys
from ipclab.errors import IPCLabError


@pytest.fixture
def empty_registry(monkeypatch):
    monkeypatch.setattr(keys, "_registry", {})


# --- user_key -------------------------------------------------------------------------------

def test_user_key_is_deterministic_and_follows_the_documented_algorithm():
    digest = hashlib.blake2b(b"ipclab:1000:demo").digest()
    expected = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
    assert keys.user_key("demo", uid=1000) == expected
    assert keys.user_key("demo", uid=1000) == keys.user_key("demo", uid=1000)
    assert keys.user_key("demo") == keys.user_key("demo", uid=os.getuid())


@pytest.mark.skipif(shutil.which("b2sum") is None, reason="b2sum not installed")
def test_user_key_matches_b2sum_as_the_docstring_says():
    out = subprocess.run(["b2sum"], input=b"ipclab:1000:demo", capture_output=True,
                         check=True).stdout.split()[0]
    assert int(out[:8], 16) & 0x7FFFFFFF == keys.user_key("demo", uid=1000)


def test_user_key_differs_per_uid_and_per_name_and_stays_in_range():
    seen = {keys.user_key(name, uid) for name in ("a", "b", "demo", "queue")
            for uid in (0, 1000, 1001)}
    assert len(seen) == 12
    assert all(1 <= k <= 0x7FFFFFFF for k in seen)


def test_user_key_is_never_ipc_private(monkeypatch):
    class Zero:
        def digest(self):
            return b"\x80\x00\x00\x00" + bytes(60)  # sign bit only: masks to 0

    monkeypatch.setattr(keys.hashlib, "blake2b", lambda data: Zero())
    assert keys.user_key("anything", uid=1) == 1


def test_user_key_refuses_bad_arguments():
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        keys.user_key(42)
    with pytest.raises(ValueError, match="name must be a non-empty str, got ''"):
        keys.user_key("")
    with pytest.raises(ValueError, match="uid must be >= 0, got -1"):
        keys.user_key("demo", uid=-1)


# --- ftok -----------------------------------------------------------------------------------

def libc_ftok(path, proj_id: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ftok.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.ftok.restype = ctypes.c_int
    return libc.ftok(os.fsencode(path), proj_id)


@pytest.mark.parametrize("proj_id", [1, 65, 127, 128, 255])
def test_ftok_equals_the_c_library(tmp_path, proj_id):
    path = tmp_path / "keyfile"
    path.write_text("x")
    assert keys.ftok(path, proj_id) == libc_ftok(path, proj_id)
    assert keys.ftok(str(path), proj_id) == libc_ftok(path, proj_id)


def test_ftok_is_signed_like_key_t_and_accepts_a_php_style_char(tmp_path):
    path = tmp_path / "keyfile"
    path.write_text("x")
    assert keys.ftok(path, 255) < 0  # 0xff << 24 sets the sign bit
    assert keys.ftok(path, "A") == keys.ftok(path, 65) == libc_ftok(path, 65)


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_ftok_equals_a_compiled_c_program(tmp_path):
    src = tmp_path / "ftok.c"
    src.write_text('#include <stdio.h>\n#include <stdlib.h>\n#include <sys/ipc.h>\n'
                   'int main(int argc, char **argv) {\n'
                   '    printf("%d\\n", (int) ftok(argv[1], atoi(argv[2])));\n'
                   '    return 0;\n}\n')
    exe = tmp_path / "ftok"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    for proj_id in (1, 42, 200):
        out = subprocess.run([str(exe), str(src), str(proj_id)], capture_output=True,
                             text=True, check=True).stdout
        assert keys.ftok(src, proj_id) == int(out)


@pytest.mark.parametrize(("proj_id", "exc", "message"), [
    (0, ValueError, r"between 1 and 255 \(0 is refused: ftok\(3\) requires a nonzero"),
    (256, ValueError, "between 1 and 255"),
    (-1, ValueError, "between 1 and 255"),
    ("", ValueError, "one character"),
    ("ab", ValueError, "one character"),
    ("\0", ValueError, "one character"),
    (1.5, TypeError, "an int between 1 and 255 or a one-character str, got 1.5"),
    (True, TypeError, "an int between 1 and 255"),
])
def test_ftok_refuses_bad_proj_id(tmp_path, proj_id, exc, message):
    with pytest.raises(exc, match=message):
        keys.ftok(tmp_path, proj_id)


def test_ftok_on_a_missing_path_says_so(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="ftok needs an existing file") as info:
        keys.ftok(missing, 1)
    assert info.value.filename == str(missing)


# --- resolve_key ----------------------------------------------------------------------------

@pytest.mark.parametrize("key", [1, -1, 0x7FFFFFFF, -(2**31), 12345])
def test_resolve_key_accepts_nonzero_key_t_ints(key):
    assert keys.resolve_key(key) == key


def test_resolve_key_none_means_private_and_a_name_means_user_key():
    assert keys.resolve_key(None) is None
    assert keys.resolve_key("demo") == keys.user_key("demo")


def test_resolve_key_zero_explains_ipc_private():
    with pytest.raises(ValueError, match=r"key 0 is IPC_PRIVATE; pass key=None"):
        keys.resolve_key(0)


@pytest.mark.parametrize(("key", "exc"), [
    (2**31, ValueError), (-(2**31) - 1, ValueError), ("", ValueError),
    (1.0, TypeError), (True, TypeError), (b"demo", TypeError), ([1], TypeError),
])
def test_resolve_key_refuses_with_the_allowed_values(key, exc):
    with pytest.raises(exc) as info:
        keys.resolve_key(key, what="semaphore")
    message = str(info.value)
    assert message.startswith("semaphore key must be None")
    assert "nonzero int between -2147483648 and 2147483647" in message
    assert "str name" in message
    assert repr(key) in message


# --- create_unique --------------------------------------------------------------------------

def new_sem(key):
    return sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, mode=0o600)


@pytest.mark.timeout(10)
def test_create_unique_retries_on_a_taken_key(monkeypatch):
    taken = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, mode=0o600)
    made = None
    try:
        probe = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, mode=0o600)
        free_key = probe.key
        probe.remove()
        wanted = iter([taken.key, free_key])
        tried = []

        def fake_randint(low, high):
            assert (low, high) == (1, 0x7FFFFFFF)
            tried.append(next(wanted))
            return tried[-1]

        monkeypatch.setattr(keys.random, "randint", fake_randint)
        made = keys.create_unique(new_sem)
        assert tried == [taken.key, free_key]
        assert made.key == free_key
    finally:
        remove_quietly(taken)
        if made is not None:
            remove_quietly(made)


def test_create_unique_gives_up_after_attempts():
    calls = []

    def always_taken(key):
        calls.append(key)
        raise sysv_ipc.ExistentialError("taken")

    with pytest.raises(IPCLabError, match="no free SysV key found in 3 random tries"):
        keys.create_unique(always_taken, attempts=3)
    assert len(calls) == 3 and all(1 <= k <= 0x7FFFFFFF for k in calls)


def test_create_unique_lets_other_errors_through_and_checks_arguments():
    def broken(key):
        raise sysv_ipc.PermissionsError("no")

    with pytest.raises(sysv_ipc.PermissionsError):
        keys.create_unique(broken)
    with pytest.raises(TypeError, match="make must be callable"):
        keys.create_unique(42)
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        keys.create_unique(new_sem, attempts=0)


# --- registry -------------------------------------------------------------------------------

def exists(sem) -> bool:
    try:
        sysv_ipc.Semaphore(sem.key)
    except sysv_ipc.ExistentialError:
        return False
    return True


@pytest.mark.timeout(10)
def test_cleanup_in_a_forked_child_leaves_the_parents_objects(empty_registry):
    sem = keys.create_unique(new_sem)
    shm = keys.create_unique(lambda k: sysv_ipc.SharedMemory(k, sysv_ipc.IPC_CREX, size=64))
    shm.detach()
    try:
        keys.register("sem", sem.id, sem.key)
        keys.register("shm", shm.id, shm.key)
        assert [(r.kind, r.id, r.owner) for r in keys.registered()] == [
            ("sem", sem.id, os.getpid()), ("shm", shm.id, os.getpid())]
        assert reap(start_child(lambda: len(keys.cleanup()))) == 0
        assert exists(sem)
        assert sysv_ipc.SharedMemory(shm.key).detach() is None  # still there
        removed = keys.cleanup()
        assert sorted((r.kind, r.id) for r in removed) == [("sem", sem.id), ("shm", shm.id)]
        assert not exists(sem)
        assert keys.registered() == []
    finally:
        remove_quietly(sem)
        remove_quietly(shm)


def test_cleanup_ignores_objects_already_gone_and_unregister_forgets(empty_registry):
    sem = keys.create_unique(new_sem)
    keys.register("sem", sem.id, sem.key)
    sem.remove()
    assert keys.cleanup() == []
    assert keys.registered() == []
    keys.register("msg", 7, 1)
    keys.unregister("msg", 7)
    keys.unregister("msg", 7)  # twice is fine
    assert keys.registered() == []


def test_register_checks_arguments(empty_registry):
    with pytest.raises(ValueError, match="kind must be one of 'shm', 'sem', 'msg', got 'pipe'"):
        keys.register("pipe", 1, 1)
    with pytest.raises(TypeError, match="ident must be an int"):
        keys.register("sem", "1", 1)
    assert keys.registered() == []


@pytest.mark.timeout(30)
def test_atexit_hook_is_installed_lazily_and_removes_at_exit():
    code = (
        "import atexit, sys, sysv_ipc\n"
        "n0 = atexit._ncallbacks()\n"
        "from ipclab import keys\n"
        "assert atexit._ncallbacks() == n0, 'import installed a hook'\n"
        "sem = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, mode=0o600)\n"
        "print(sem.key, flush=True)\n"
        "keys.register('sem', sem.id, sem.key)\n"
        "keys.register('sem', sem.id, sem.key)\n"
        "assert atexit._ncallbacks() == n0 + 1, 'expected exactly one hook'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20)
    key = int(proc.stdout.split()[0]) if proc.stdout.strip() else None
    try:
        assert proc.returncode == 0, proc.stderr
        with pytest.raises(sysv_ipc.ExistentialError):
            sysv_ipc.Semaphore(key)
    finally:
        if key is not None:
            try:
                sysv_ipc.Semaphore(key).remove()
            except sysv_ipc.ExistentialError:
                pass
