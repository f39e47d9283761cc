"""Tests for ipclab.mq: typed messages, selective receive, capacity, timeouts, errors, interop."""

import collections
import errno
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sysv_ipc
from _helpers import reap, remove_quietly, start_child

from ipclab import keys, mq, proc, sysvinfo
from ipclab.errors import IPCTimeoutError, LimitError, ObjectGoneError

pytestmark = pytest.mark.timeout(60)


def exists(ident: int) -> bool:
    return any(o.kind == "msg" and o.id == ident for o in sysvinfo.list_objects())


# --- sending and receiving ------------------------------------------------------------------

def test_each_send_is_one_message_and_boundaries_are_kept(queue):
    queue.send(b"ab")
    queue.send(bytearray(b"cd"))
    queue.send(memoryview(b""))
    queue.send("é")
    assert (queue.count, queue.bytes) == (4, 6)
    got = [queue.receive(timeout=1) for _ in range(4)]
    assert got == [(b"ab", 1), (b"cd", 1), (b"", 1), ("é".encode(), 1)]
    assert (queue.count, queue.bytes) == (0, 0)


def test_a_new_queue_holds_msgmnb_bytes_read_live(queue):
    assert queue.max_bytes == mq.max_queue() == int(Path("/proc/sys/kernel/msgmnb").read_text())
    assert mq.max_message() == int(Path("/proc/sys/kernel/msgmax").read_text())
    assert queue.created and queue.key > 0 and repr(queue) == f"<Queue 0x{queue.key:08x}>"


def test_a_positive_type_selects_the_oldest_message_of_that_type(queue):
    for data, kind in [(b"a1", 1), (b"b2", 2), (b"c1", 1), (b"d3", 3), (b"e2", 2)]:
        queue.send(data, kind)
    assert queue.receive(2) == (b"b2", 2)
    assert queue.receive(3) == (b"d3", 3)
    assert queue.receive(0) == (b"a1", 1)
    assert queue.receive(2) == (b"e2", 2)
    assert queue.receive() == (b"c1", 1)


def test_a_negative_type_takes_the_lowest_type_first_and_fifo_within_a_type(queue):
    for data, kind in [(b"low-a", 5), (b"mid-a", 3), (b"top-a", 1), (b"mid-b", 3),
                       (b"top-b", 1), (b"too-low", 9)]:
        queue.send(data, kind)
    got = [queue.receive(-5, timeout=1)[0] for _ in range(5)]
    assert got == [b"top-a", b"top-b", b"mid-a", b"mid-b", b"low-a"]
    with pytest.raises(BlockingIOError, match=r"no message of type 1\.\.5 is waiting"):
        queue.receive(-5, block=False)
    assert queue.receive(-9) == (b"too-low", 9)


def test_json_helper_round_trips_and_refuses_what_is_not_json(queue):
    queue.send_json({"id": 7, "text": "ünï", "tags": [1, 2.5, None, True]}, type=4)
    assert queue.bytes == len('{"id":7,"text":"ünï","tags":[1,2.5,null,true]}'.encode())
    assert queue.receive_json(4, timeout=1) == ({"id": 7, "text": "ünï",
                                                 "tags": [1, 2.5, None, True]}, 4)
    with pytest.raises(TypeError, match="to be sent as JSON"):
        queue.send_json({"f": open})
    with pytest.raises(TypeError, match="to be sent as JSON"):
        queue.send_json(float("nan"))
    queue.send(b"\x80\x04not json", 2)
    with pytest.raises(ValueError, match=r"the message of type 2 taken from .* is not JSON"):
        queue.receive_json()
    assert queue.count == 0


# --- waiting: timeouts, capacity, removal ---------------------------------------------------

def test_receive_times_out_and_explains_what_is_waiting(queue):
    queue.send(b"other", 3)
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        queue.receive(4, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 2
    assert isinstance(info.value, TimeoutError)
    assert info.value.diagnosis == ["it holds 1 message, none of type 4",
                                    "the last process to send to it was parent (this process)"]
    assert str(info.value).startswith(f"<Queue 0x{queue.key:08x}>: no message of type 4 "
                                      f"came within 0.2 s")


def test_timeout_none_uses_the_handles_timeout_and_names_an_exited_sender():
    with mq.Queue(timeout=0.2) as q:
        assert proc.run(q.send, b"x", 2, show=False).ok
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError, match=r"no message of type 1 came within 0\.2 s"):
            q.receive(1)
        assert time.monotonic() - start >= 0.2
        with pytest.raises(IPCTimeoutError) as info:
            q.receive(5, timeout=0.05)
        assert info.value.diagnosis[1] == "the last process to send to it was child 1 " \
                                          "(it has exited)"


def test_an_empty_queue_does_not_block_a_nonblocking_receive(queue):
    with pytest.raises(BlockingIOError) as info:
        queue.receive(block=False)
    assert info.value.errno == errno.ENOMSG
    assert "no message is waiting (block=False)" in str(info.value)
    with pytest.raises(IPCTimeoutError, match="the queue is empty"):
        queue.receive(timeout=0.01)


def test_a_full_queue_refuses_a_nonblocking_send_after_exactly_msgmnb_bytes(queue):
    size = 1000
    fits = 0
    with pytest.raises(BlockingIOError) as info:
        while True:
            queue.send(bytes(size), block=False)
            fits += 1
    assert fits == queue.max_bytes // size
    assert info.value.errno == errno.EAGAIN
    assert f"it holds {fits * size} of its {queue.max_bytes} bytes ({fits} messages), " \
           f"and {size} more do not fit (block=False)" in str(info.value)
    with pytest.raises(IPCTimeoutError) as timeout:
        queue.send(bytes(size), timeout=0.1)
    assert timeout.value.diagnosis[1] == "no process has received from it yet"
    assert queue.count == fits


def test_empty_messages_count_against_capacity_too(queue):
    queue.max_bytes = 50
    for _ in range(50):
        queue.send(b"", block=False)
    with pytest.raises(BlockingIOError, match="it holds 50 messages, as many as its 50 bytes "
                                              "allow"):
        queue.send(b"", block=False)
    assert (queue.count, queue.bytes) == (50, 0)


def test_a_blocked_sender_goes_on_when_a_receiver_drains(queue):
    queue.max_bytes = 300
    for i in range(3):
        queue.send(bytes([i]) * 100)
    r, w = os.pipe()

    def sender():
        os.close(r)
        os.write(w, b"ready")
        queue.send(b"late" * 25, timeout=10)  # blocks: 300 of 300 bytes are taken
        os.write(w, str(time.monotonic()).encode())
        return 0

    pid = start_child(sender)
    os.close(w)
    try:
        assert os.read(r, 5) == b"ready"
        time.sleep(0.2)  # give a sender that does not block the time to finish
        assert os.waitpid(pid, os.WNOHANG) == (0, 0) and queue.count == 3
        drained_at = time.monotonic()
        assert queue.receive(timeout=1) == (bytes(100), 1)
        sent_at = float(os.read(r, 100))
        assert sent_at >= drained_at
    finally:
        assert reap(pid) == 0
        os.close(r)
    assert [queue.receive(timeout=1)[0][:4] for _ in range(3)] == [b"\1" * 4, b"\2" * 4, b"late"]


def test_removing_the_queue_wakes_a_waiting_receiver_at_once(queue):
    r, w = os.pipe()

    def receiver():
        os.close(r)
        os.write(w, b"ready")
        start = time.monotonic()
        try:
            queue.receive(timeout=20)
        except ObjectGoneError as e:
            ok = "was removed (IPC_RMID)" in str(e) and time.monotonic() - start < 10
            return 0 if ok else 2
        return 3

    pid = start_child(receiver)
    os.close(w)
    try:
        assert os.read(r, 5) == b"ready"
        queue.remove()
    finally:
        assert reap(pid) == 0
        os.close(r)


def test_removing_the_queue_fails_a_waiting_sender_too(queue):
    queue.max_bytes = 10
    queue.send(bytes(10))
    r, w = os.pipe()

    def sender():
        os.close(r)
        os.write(w, b"ready")
        try:
            queue.send(b"more", timeout=20)
        except ObjectGoneError as e:
            return 0 if "was removed (IPC_RMID)" in str(e) else 2
        return 3

    pid = start_child(sender)
    os.close(w)
    try:
        assert os.read(r, 5) == b"ready"
        time.sleep(0.05)  # let it start waiting (it fails the same way if not yet)
        queue.remove()
    finally:
        assert reap(pid) == 0
        os.close(r)


def test_many_senders_and_receivers_lose_and_duplicate_nothing(queue):
    senders, receivers, each = 4, 4, 2000

    def send(i):
        for n in range(each):
            queue.send(f"{i}:{n}", 1, timeout=20)

    def receive(i):
        got = []
        while (message := queue.receive(timeout=20))[1] == 1:
            got.append(message[0].decode())
        return got

    with proc.Family(timeout=50, show=False) as family:
        for i in range(receivers):
            family.fork(receive, i, label=f"receiver {i}")
        with proc.Family(timeout=40, show=False) as sending:
            for i in range(senders):
                sending.fork(send, i, label=f"sender {i}")
        assert all(r.ok for r in sending.results), [r.outcome() for r in sending.results]
        for _ in range(receivers):
            queue.send(b"stop", 2)  # after every message of type 1
    assert all(r.ok for r in family.results), [r.outcome() for r in family.results]
    counts = collections.Counter(m for r in family.results for m in r.value)
    assert counts == collections.Counter(f"{i}:{n}" for i in range(senders) for n in range(each))
    for r in family.results:  # one receiver sees each sender's messages in the order sent
        for i in range(senders):
            mine = [int(m.split(":")[1]) for m in r.value if m.startswith(f"{i}:")]
            assert mine == sorted(mine)
    assert queue.count == 0


# --- limits and errors ----------------------------------------------------------------------

def test_a_message_may_hold_msgmax_bytes_and_no_more(queue):
    most = mq.max_message()
    queue.send(b"m" * most)
    assert queue.receive(timeout=1) == (b"m" * most, 1)
    with pytest.raises(LimitError, match=rf"at most {most} bytes on this machine \(MSGMAX, "
                                         rf"/proc/sys/kernel/msgmax\), got {most + 1}"):
        queue.send(bytes(most + 1))
    queue.max_bytes = 10
    with pytest.raises(LimitError, match="holds at most 10 bytes .* a 11-byte message could "
                                         "never fit"):
        queue.send(bytes(11))
    assert queue.count == 0


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def test_max_bytes_can_be_lowered_and_raised_up_to_msgmnb(queue):
    queue.max_bytes = 100
    assert queue.max_bytes == 100
    queue.max_bytes = mq.max_queue()
    assert queue.max_bytes == mq.max_queue()
    if _has_cap_sys_resource():
        queue.max_bytes = mq.max_queue() + 1
        assert queue.max_bytes == mq.max_queue() + 1
    else:
        with pytest.raises(PermissionError, match="only with CAP_SYS_RESOURCE"):
            queue.max_bytes = mq.max_queue() + 1


@pytest.mark.parametrize(("call", "exc", "message"), [
    (lambda q: q.send(b"x", 0), ValueError, r"type must be an int between 1 and 2147483647 "
                                            r"\(msgsnd needs a positive type.*got 0"),
    (lambda q: q.send(b"x", -3), ValueError, "got -3"),
    (lambda q: q.send(b"x", 2**31), ValueError, "got 2147483648"),
    (lambda q: q.send(b"x", True), TypeError, "type must be an int .* got True"),
    (lambda q: q.send(b"x", "1"), TypeError, "got '1'"),
    (lambda q: q.send(42), TypeError, "data must be bytes or str, got int 42"),
    (lambda q: q.send(b"x", block=0), TypeError, "block must be True or False, got 0"),
    (lambda q: q.send(b"x", timeout=0), ValueError, "timeout must be a number > 0 or None"),
    (lambda q: q.send(b"x", block=False, timeout=1), ValueError,
     "timeout only applies when block=True"),
    (lambda q: q.receive(2**31), ValueError, r"n < 0: the lowest type up to \|n\|.*2147483648"),
    (lambda q: q.receive(-(2**31) - 1), ValueError, "got -2147483649"),
    (lambda q: q.receive(1.5), TypeError, "type must be an int"),
    (lambda q: q.receive(timeout=-1), ValueError, "got -1"),
    (lambda q: q.receive(timeout="1"), TypeError, "timeout must be a number > 0"),
    (lambda q: setattr(q, "max_bytes", 0), ValueError, "max_bytes must be >= 1, got 0"),
    (lambda q: mq.Queue(mode=0o1000), ValueError, "mode must be permission bits"),
    (lambda q: mq.Queue(0), ValueError, "key 0 is IPC_PRIVATE"),
    (lambda q: mq.Queue(None, create=False), ValueError, "key=None makes a new private"),
    (lambda q: mq.Queue(timeout=0), ValueError, "timeout must be a number > 0 or None"),
])
def test_bad_arguments_are_refused_before_any_system_call(queue, call, exc, message):
    queue.send(b"keep", 7)
    with pytest.raises(exc, match=message):
        call(queue)
    assert queue.count == 1 and queue.max_bytes == mq.max_queue()


def test_closed_and_removed_handles_say_so(queue):
    other = mq.Queue(queue.key, create=False)
    assert not other.created
    other.close()
    other.close()
    assert other.closed and repr(other) == f"<Queue 0x{queue.key:08x} closed>"
    with pytest.raises(ObjectGoneError, match="this handle of message queue 0x.* is closed"):
        other.send(b"x")
    third = mq.Queue(queue.key, create=False)
    queue.remove()
    queue.remove()  # twice is fine
    assert repr(queue) == f"<Queue 0x{queue.key:08x} removed>"
    with pytest.raises(ObjectGoneError, match="was removed"):
        queue.receive()
    for call in (lambda: third.send(b"x"), lambda: third.receive(block=False),
                 lambda: third.count, lambda: third.bytes):
        with pytest.raises(ObjectGoneError, match=r"message queue 0x[0-9a-f]{8} was removed "
                                                  r"\(IPC_RMID\); its messages are gone"):
            call()
    third.remove()  # removing what someone else removed is fine


# --- opening, keys, permissions, interop ----------------------------------------------------

def test_a_queue_made_by_another_program_is_opened_by_its_int_key():
    raw = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, 0o600)  # as a C program would
    try:
        q = mq.Queue(raw.key, create=False)
        raw.send(b"from C", type=7)
        assert q.receive(timeout=1) == (b"from C", 7)
        q.send(b"from Python", 12)
        assert raw.receive(block=False) == (b"from Python", 12)
        again = mq.Queue(raw.key)  # create=True opens an existing queue too
        assert (again.created, again.id, repr(again)) == (False, raw.id, repr(q))
        with pytest.raises(FileExistsError, match="IPC_CREAT | IPC_EXCL"):
            mq.Queue(raw.key, exclusive=True)
    finally:
        remove_quietly(raw)
    with pytest.raises(ObjectGoneError, match="no message queue has key"):
        mq.Queue(raw.key, create=False)


def test_a_named_queue_is_registered_and_removed_by_its_context_manager(monkeypatch):
    monkeypatch.setattr(keys, "_registry", {})
    with mq.Queue("test-mq-named") as q:
        assert q.key == keys.user_key("test-mq-named") and repr(q) == "<Queue 'test-mq-named'>"
        assert [(e.kind, e.id) for e in keys.registered()] == [("msg", q.id)]
        with mq.Queue("test-mq-named") as opened:  # opened, not created: left in place
            opened.send(b"x")
        assert exists(q.id) and q.count == 1
    assert not exists(q.id) and keys.registered() == []


def test_the_queue_outlives_the_process_that_made_it():
    key = keys.user_key("test-mq-outlives")

    def maker():
        mq.Queue(key, exclusive=True).send(b"left behind", 3)

    assert proc.run(maker, show=False).ok
    q = mq.Queue(key, create=False)
    try:
        assert q.receive(timeout=1) == (b"left behind", 3)
    finally:
        q.remove()


def test_no_permission_is_a_permission_error():
    as_root = os.getuid() == 0
    q = mq.Queue(mode=0o600 if as_root else 0o000)

    def child():
        if as_root:
            os.setgid(65534)
            os.setuid(65534)  # nobody: no right to a 0600 queue of root's
        try:
            mq.Queue(q.key, create=False)
        except PermissionError as e:
            return 0 if re.search(f"message queue with key 0x{q.key:08x} exists but its mode "
                                  f"does not let user {os.getuid()} in", str(e)) else 2
        return 3

    try:
        assert reap(start_child(child)) == 0
    finally:
        q.remove()


def _php_has_sysvmsg() -> bool:
    if not shutil.which("php"):
        return False
    modules = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30).stdout
    return "sysvmsg" in modules.split()


@pytest.mark.skipif(not _php_has_sysvmsg(), reason="php with the sysvmsg module is not installed")
def test_php_msg_send_and_msg_receive_share_the_queue(queue):
    """The seeds' msg_send: raw bytes with serialize=false, PHP's own format without it."""
    script = """
        $q = msg_get_queue((int)$argv[1]);
        msg_receive($q, 5, $type, 8192, $text, false);
        msg_send($q, 6, strtoupper($text), false);
        msg_send($q, 7, $text);
    """
    queue.send(b"hello php", 5)
    done = subprocess.run(["php", "-r", script, "--", str(queue.key)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert queue.receive(6, timeout=5) == (b"HELLO PHP", 6)
    assert queue.receive(7, timeout=5) == (b's:9:"hello php";', 7)  # PHP's serialize()


def test_after_finding_nothing_receives_yield_first_until_a_probe_finds_messages_waiting(
        queue, monkeypatch):
    # A ping-pong's reply is not there yet when the receive starts: yielding the CPU first
    # lets a peer on this CPU answer, instead of a failed try.  A stream has messages
    # waiting: every 8th receive tries first, and finding one ends the yielding.
    yields = []
    monkeypatch.setattr(mq.os, "sched_yield", lambda: yields.append(1))

    def receive_counting(**options):
        before = len(yields)
        got = queue.receive(**options)
        return got, len(yields) - before

    queue.send(b"m")
    assert receive_counting() == ((b"m", 1), 0)  # messages waiting: no yield
    with pytest.raises(IPCTimeoutError):
        queue.receive(timeout=0.01)  # found nothing
    for i in range(10):
        queue.send(bytes([i]))
    counts = [receive_counting(timeout=1) for _ in range(10)]
    assert [got for got, _ in counts] == [(bytes([i]), 1) for i in range(10)]  # nothing lost
    assert [n for _, n in counts] == [1] * 7 + [0] * 3  # the 8th is the probe that ends it
    with pytest.raises(IPCTimeoutError):
        queue.receive(timeout=0.01)
    queue.send(b"x")
    assert receive_counting(block=False) == ((b"x", 1), 0)  # block=False never yields
