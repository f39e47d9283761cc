"""ipclab.shm.Segment: real segments, real children, and every refusal."""

import os
import struct

import pytest
import sysv_ipc
from _helpers import reap, remove_quietly, start_child

from ipclab import keys, proc
from ipclab.errors import IPCLabError, LimitError, ObjectGoneError
from ipclab.shm import Segment, max_size

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def seg():
    with Segment(None, 128) as s:
        yield s


def test_new_segment_is_zero_filled_private_and_0600(seg):
    assert seg.created and seg.size == 128 and seg.key > 0
    assert seg.read() == bytes(128)
    info = sysv_ipc.SharedMemory(seg.key)
    try:
        assert info.mode & 0o777 == 0o600 and info.uid == os.getuid()
    finally:
        info.detach()
    assert repr(seg) == f"<Segment key=0x{seg.key:08x} size=128 attached>"


def test_read_and_write_at_offsets(seg):
    assert seg.write(b"hello", 10) == 5
    assert seg.write("é", 20) == 2  # str is UTF-8
    assert seg.read(10, 5) == b"hello"
    assert seg.read(20, 2).decode() == "é"
    assert seg.read(125) == bytes(3) and seg.read(128) == b"" and seg.read(3, 0) == b""
    seg.write(memoryview(b"abcdef")[2:4], 0)
    assert seg.read(0, 2) == b"cd"


def test_a_child_writes_and_the_parent_reads(seg):
    proc.run(lambda: seg.write(b"from the child", 0), show=False)
    assert seg.read(0, 14) == b"from the child"


def test_open_by_key_shares_the_memory_and_knows_it_did_not_create_it(seg):
    other = Segment(seg.key, create=False)
    try:
        assert not other.created and other.size == 128
        other.write(b"xyz", 5)
        assert seg.read(5, 3) == b"xyz"
        assert seg.attached == 2
    finally:
        other.close()
    assert seg.attached == 1
    # mode "c" on an existing key opens it, with or without a size that fits
    with Segment(seg.key, 64) as again:
        assert not again.created and again.size == 128
    assert seg.read(5, 3) == b"xyz"  # leaving the block did not remove what it did not create


def test_str_key_is_the_users_named_key():
    with Segment("test-shm-named", 16) as s:
        assert s.key == keys.user_key("test-shm-named")
        with Segment("test-shm-named", create=False) as t:
            assert t.key == s.key


def test_segment_outlives_the_process_that_created_it():
    key = keys.user_key("test-shm-outlives")

    def make():
        s = Segment(key, 32)
        s.write(b"left for you")
        os._exit(0)  # no cleanup runs: the segment stays

    assert proc.run(make, show=False).returncode == 0
    s = Segment(key, create=False)
    try:
        assert s.read(0, 12) == b"left for you" and s.attached == 1
    finally:
        s.close()
        s.remove()
    with pytest.raises(ObjectGoneError, match="no shared memory segment has key"):
        Segment(key, create=False)


def test_removing_while_attached_keeps_memory_for_those_attached(seg):
    other = Segment(seg.key, create=False)
    other.remove()
    assert other.removed and "removed" in repr(other)
    seg.write(b"still here")
    assert other.read(0, 10) == b"still here"  # both handles still work
    with pytest.raises(ObjectGoneError):
        Segment(seg.key, create=False)  # but the key no longer finds it
    other.close()
    other.remove()  # twice is fine


def test_view_is_zero_copy_and_shared_with_children(seg):
    view = seg.view(16, 8)
    struct.pack_into("<q", view, 0, -42)
    assert struct.unpack("<q", seg.read(16, 8)) == (-42,)
    proc.run(lambda: seg.view()[100:103].__setitem__(slice(None), b"kid"), show=False)
    assert seg.read(100, 3) == b"kid"
    assert len(seg.view(120)) == 8 and seg.view(0, 0).nbytes == 0
    view.release()


def test_close_refuses_while_a_view_is_alive_then_works():
    s = Segment(None, 64)
    try:
        part = s.view()[8:16]  # a slice of a view keeps the memory in use too
        with pytest.raises(IPCLabError, match="still in use"):
            s.close()
        assert not s.closed
        del part
        s.close()
        s.close()  # twice is fine
        assert s.closed and repr(s).endswith("closed>")
        with pytest.raises(ObjectGoneError, match="closed"):
            s.read()
        with pytest.raises(ObjectGoneError, match="closed"):
            _ = s.attached
    finally:
        s.remove()


def test_readonly_attach_refuses_writes(seg):
    seg.write(b"read me")
    with Segment(seg.key, create=False, readonly=True) as ro:
        assert ro.read(0, 7) == b"read me" and "read-only" in repr(ro)
        with pytest.raises(PermissionError, match="read-only"):
            ro.write(b"x")
        view = ro.view()
        assert view.readonly
        with pytest.raises(TypeError):
            view[0:1] = b"x"
        view.release()
    assert seg.read(0, 7) == b"read me"


def test_exclusive_refuses_an_existing_key(seg):
    with pytest.raises(FileExistsError, match="already exists"):
        Segment(seg.key, 16, exclusive=True)


def test_context_manager_removes_what_it_created():
    with Segment(None, 8) as s:
        key = s.key
        assert any(r.kind == "shm" and r.id == s.id for r in keys.registered())
    assert s.closed and s.removed
    with pytest.raises(ObjectGoneError):
        Segment(key, create=False)
    assert not any(r.kind == "shm" and r.id == s.id for r in keys.registered())


def test_registry_removes_a_forgotten_segment_at_cleanup():
    s = Segment(None, 8)
    s.close()
    removed = keys.cleanup()
    assert any(r.kind == "shm" and r.id == s.id for r in removed)
    with pytest.raises(ObjectGoneError):
        Segment(s.key, create=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"size": 0}, ValueError, r"size must be between 1 and \d+ bytes \(SHMMAX\), got 0"),
    ({"size": -5}, ValueError, "got -5"),
    ({"size": True}, TypeError, "size must be an int, got True"),
    ({"size": "100"}, TypeError, "size must be an int, got '100'"),
    ({"size": None}, ValueError, "size is required to create a new segment"),
    ({"size": 8, "mode": 0o1777}, ValueError, "mode must be permission bits"),
    ({"size": 8, "mode": "600"}, TypeError, "mode must be an int"),
    ({"size": 8, "create": "yes"}, TypeError, "create must be True or False"),
    ({"size": 8, "readonly": True}, ValueError, "pass create=False with it"),
    ({"key": 0, "size": 8}, ValueError, "key 0 is IPC_PRIVATE"),
    ({"key": 2.5, "size": 8}, TypeError, "got float 2.5"),
    ({"key": None, "create": False}, ValueError, "key=None makes a new private"),
    ({"key": 5, "create": False, "exclusive": True}, ValueError, "exclusive=True"),
])
def test_bad_arguments_are_refused_before_any_system_call(kwargs, error, message):
    kwargs.setdefault("key", None)
    key = kwargs.pop("key")
    with pytest.raises(error, match=message):
        Segment(key, **kwargs)


def test_size_beyond_shmmax_is_refused():
    with pytest.raises(ValueError, match="SHMMAX"):
        Segment(None, max_size() + 1)


def test_size_the_kernel_cannot_hold_is_a_limit_error():
    with pytest.raises(LimitError, match="no room"):
        Segment(None, 2**50)  # 1 PiB


def test_missing_key_and_missing_size():
    key = keys.user_key("test-shm-never-created")
    with pytest.raises(ObjectGoneError, match=r"no shared memory segment has key 0x[0-9a-f]{8}"):
        Segment(key, create=False)
    with pytest.raises(ValueError, match="size is required to create a segment"):
        Segment(key)


def test_existing_segment_smaller_than_asked(seg):
    with pytest.raises(ValueError, match="already exists with 128 bytes, fewer than size=4096"):
        Segment(seg.key, 4096)


@pytest.mark.parametrize("call, error, message", [
    (lambda s: s.read(120, 9), ValueError, "cannot read 9 bytes at offset 120: past the end of "
                                           "the 128-byte segment \\(at most 8 fit\\)"),
    (lambda s: s.read(129), ValueError, "offset must be between 0 and the segment's size 128"),
    (lambda s: s.read(-1), ValueError, "offset must be >= 0"),
    (lambda s: s.read(0, -1), ValueError, "count must be >= 0"),
    (lambda s: s.read("0"), TypeError, "offset must be an int"),
    (lambda s: s.write(b"x" * 10, 120), ValueError, "cannot write 10 bytes at offset 120"),
    (lambda s: s.write(42), TypeError, "data must be bytes-like or str, got int"),
    (lambda s: s.view(0, 129), ValueError, "cannot view 129 bytes"),
])
def test_reads_and_writes_past_the_end_or_of_the_wrong_type(seg, call, error, message):
    with pytest.raises(error, match=message):
        call(seg)
    assert seg.read() == bytes(128)  # nothing was written


def _other_users_attempt(key):
    """In a child: become an unprivileged user (as root) and try to open ``key``."""
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        Segment(key, create=False)
    except PermissionError as e:
        print(e)
        return 0
    return 1


def test_permission_denied_is_a_clear_permission_error():
    mode = 0o600 if os.getuid() == 0 else 0o000  # a non-root owner is refused by mode 000
    with Segment(None, 16, mode=mode) as s:
        result = proc.run(_other_users_attempt, s.key, show=False)
    assert result.value == 0, result.stdout + result.stderr
    assert "permission denied: the shared memory segment with key 0x" in result.stdout


def test_remove_by_another_user_is_refused_and_the_segment_stays():
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    with Segment(None, 16) as s:
        def other():
            os.setgid(65534)
            os.setuid(65534)
            s.remove()
        result = proc.run(other, show=False)
        assert result.error["type"] == "PermissionError"
        with Segment(s.key, create=False) as again:
            assert again.size == 16


def test_c_style_open_of_a_segment_made_elsewhere():
    """A segment another program made with shmget(key, IPC_CREAT) opens by its int key."""
    key = keys.user_key("test-shm-foreign")
    foreign = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, 0o600, 100, b"\0")
    try:
        foreign.write(b"from C", 0)
        with Segment(key, create=False) as s:
            assert not s.created and s.read(0, 6) == b"from C" and s.size == 100
    finally:
        foreign.detach()
        remove_quietly(foreign)


def test_a_killed_child_does_not_take_the_segment_with_it(seg):
    def die():
        seg.write(b"before")
        os.kill(os.getpid(), 9)
    pid = start_child(die)
    assert reap(pid) == -9
    assert seg.read(0, 6) == b"before" and seg.attached == 1


def test_read_and_write_leave_no_view_behind_so_close_works_at_once():
    s = Segment(None, 64)
    try:
        assert s.write(b"abc", 61) == 3 and s.read(61) == b"abc" and s.read(0, 0) == b""
        assert s.write(b"") == 0
        s.close()  # read and write went through the guard view, and kept no export of it
        assert s.closed
    finally:
        s.remove()


@pytest.mark.parametrize("call", [
    lambda s: s.read(True), lambda s: s.read(0, False), lambda s: s.write(b"x", True),
    lambda s: s.view(1, True), lambda s: s.read(2.0),
])
def test_offsets_and_counts_must_be_true_ints(seg, call):
    with pytest.raises(TypeError, match=r"(offset|count) must be an int, got (True|False|2\.0)"):
        call(seg)
    assert seg.read() == bytes(128)
