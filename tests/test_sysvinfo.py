"""Tests for ipclab.sysvinfo: listing from /proc/sysvipc, the table, clean, and the CLI."""

import os
import subprocess
import sys

import pytest
import sysv_ipc
from _helpers import remove_quietly

from ipclab import keys, sysvinfo
from ipclab.errors import IPCLabError
from ipclab.sysvinfo import SysVObject

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def made():
    """One shm (1000 bytes, attached), one semaphore, one queue holding 5 bytes; all 0600."""
    shm = keys.create_unique(
        lambda k: sysv_ipc.SharedMemory(k, sysv_ipc.IPC_CREX, mode=0o600, size=1000))
    sem = mq = None
    try:
        sem = keys.create_unique(lambda k: sysv_ipc.Semaphore(k, sysv_ipc.IPC_CREX, mode=0o600))
        mq = keys.create_unique(lambda k: sysv_ipc.MessageQueue(k, sysv_ipc.IPC_CREX, mode=0o600))
        mq.send(b"hello")
        yield {"shm": shm, "sem": sem, "msg": mq}
    finally:
        for obj in (shm, sem, mq):
            if obj is not None:
                remove_quietly(obj)
        shm.detach()


def find(objects, kind, ident):
    matches = [o for o in objects if o.kind == kind and o.id == ident]
    assert len(matches) <= 1
    return matches[0] if matches else None


def test_list_objects_finds_each_kind_with_its_details(made):
    objects = sysvinfo.list_objects()
    shm = find(objects, "shm", made["shm"].id)
    sem = find(objects, "sem", made["sem"].id)
    msg = find(objects, "msg", made["msg"].id)
    assert (shm.key, shm.size, shm.mode, shm.attached, shm.messages) == (
        made["shm"].key, 1000, 0o600, 1, None)
    assert (sem.key, sem.size, sem.mode, sem.attached, sem.messages) == (
        made["sem"].key, 1, 0o600, None, None)
    assert (msg.key, msg.size, msg.mode, msg.attached, msg.messages) == (
        made["msg"].key, 5, 0o600, None, 1)
    for obj in (shm, sem, msg):
        assert obj.uid == obj.cuid == os.getuid()
        assert 0 <= obj.age < 60
    made["shm"].detach()
    assert find(sysvinfo.list_objects(), "shm", made["shm"].id).attached == 0
    made["shm"].attach()


def test_list_objects_filters_by_user(made):
    other_uid = 4_000_000_000 - 7  # no such user here
    assert find(sysvinfo.list_objects(other_uid), "sem", made["sem"].id) is None
    assert find(sysvinfo.list_objects(other_uid, all_users=True), "sem", made["sem"].id)


def test_columns_are_found_by_header_name_and_perms_read_in_octal(tmp_path, monkeypatch):
    (tmp_path / "shm").write_text(
        "  key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss\n")
    # columns reordered and one added: the parser must follow the header
    (tmp_path / "sem").write_text(
        "semid   key perms extra nsems uid gid cuid cgid otime ctime\n"
        "    9  -559038737   644  77     3 1001 1001 1001 1001 0 1700000000\n")
    (tmp_path / "msg").write_text("")
    monkeypatch.setattr(sysvinfo, "PROC_DIR", str(tmp_path))
    objects = sysvinfo.list_objects(1001)
    assert objects == [SysVObject("sem", -559038737, 9, 3, None, 0o644, None, 1001, 1001,
                                  1700000000.0)]
    assert "0xdeadbeef" in sysvinfo.format_table(objects)


def test_list_objects_without_proc_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(sysvinfo, "PROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(IPCLabError, match="needs Linux"):
        sysvinfo.list_objects()


def test_format_table_shows_the_objects(made):
    ours = [o for o in sysvinfo.list_objects()
            if (o.kind, o.id) in {(k, v.id) for k, v in made.items()}]
    table = sysvinfo.format_table(ours).splitlines()
    assert table[0].split() == ["KIND", "KEY", "ID", "SIZE", "MODE", "ATTACHED", "AGE"]
    assert len(table) == 4
    for line, kind in zip(table[1:], ("shm", "sem", "msg"), strict=True):
        assert line.split()[:3] == [kind, f"0x{made[kind].key:08x}", str(made[kind].id)]
        assert "0600" in line.split()
    assert "1000 B" in table[1] and "1 sem" in table[2] and "5 B/1 msg" in table[3]


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (3, "3s"), (59, "59s"), (300, "5m"), (7200, "2h"), (4 * 86400 + 5, "4d"),
])
def test_format_table_ages_are_human(seconds, shown):
    obj = SysVObject("shm", 1, 2, 10, None, 0o600, 0, 0, 0, 1000.0)
    assert sysvinfo.format_table([obj], now=1000.0 + seconds).splitlines()[1].split()[-1] == shown


def test_format_table_says_when_there_is_nothing():
    assert sysvinfo.format_table([]) == (
        "no SysV IPC objects (shared memory, semaphores, message queues)")


def test_clean_dry_run_removes_nothing(made):
    all_keys = [obj.key for obj in made.values()]
    would = sysvinfo.clean(dry_run=True, keys=all_keys)
    assert sorted((o.kind, o.id) for o in would) == sorted((k, v.id) for k, v in made.items())
    assert len(sysvinfo.clean(dry_run=True)) >= 3
    for kind, obj in made.items():
        assert find(sysvinfo.list_objects(), kind, obj.id) is not None


def test_clean_by_key_removes_exactly_that_one(made):
    removed = sysvinfo.clean(keys=[made["sem"].key])
    assert [(o.kind, o.id) for o in removed] == [("sem", made["sem"].id)]
    left = sysvinfo.list_objects()
    assert find(left, "sem", made["sem"].id) is None
    assert find(left, "shm", made["shm"].id) and find(left, "msg", made["msg"].id)


def test_clean_by_kind_and_key(made):
    removed = sysvinfo.clean(kinds=["msg"], keys=[o.key for o in made.values()])
    assert [(o.kind, o.id) for o in removed] == [("msg", made["msg"].id)]
    assert find(sysvinfo.list_objects(), "shm", made["shm"].id) is not None


def test_remove_reports_an_object_already_gone(made):
    obj = find(sysvinfo.list_objects(), "sem", made["sem"].id)
    assert sysvinfo.remove(obj) is True
    assert sysvinfo.remove(obj) is False


def test_clean_checks_arguments():
    with pytest.raises(ValueError, match="kinds must be among 'shm', 'sem', 'msg', got 'pipe'"):
        sysvinfo.clean(kinds=["pipe"], dry_run=True)
    with pytest.raises(TypeError, match="keys must be ints, got '0x1'"):
        sysvinfo.clean(keys=["0x1"], dry_run=True)


def ipclab(*args):
    proc = subprocess.run([sys.executable, "-m", "ipclab", *args], capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_status_prints_the_objects(made):
    out = ipclab("status")
    for kind, obj in made.items():
        assert f"0x{obj.key:08x}" in out, kind


def test_cli_clean_dry_run_then_clean(made):
    key = made["msg"].key
    out = ipclab("clean", "--dry-run")
    assert f"would remove msg key 0x{key:08x} id {made['msg'].id}" in out
    out = ipclab("clean", "--dry-run", "--key", hex(key))
    assert out.splitlines() == [f"would remove msg key 0x{key:08x} id {made['msg'].id}",
                                "would remove 1 object"]
    assert find(sysvinfo.list_objects(), "msg", made["msg"].id) is not None
    out = ipclab("clean", "--key", str(key), "--kind", "msg")
    assert out.splitlines()[-1] == "removed 1 object"
    assert find(sysvinfo.list_objects(), "msg", made["msg"].id) is None


def test_cli_key_matches_user_key():
    k = keys.user_key("demo")
    assert ipclab("key", "demo").split() == [f"0x{k:08x}", str(k)]
