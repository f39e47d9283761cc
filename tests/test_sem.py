"""ipclab.sem: counting semaphores, the Mutex, SEM_UNDO, timeouts that explain, and stress."""

import ctypes
import os
import signal
import struct
import time

import pytest
import sysv_ipc
from _helpers import reap, start_child

from ipclab import keys, proc
from ipclab.errors import IPCLabError, IPCTimeoutError, LimitError, ObjectGoneError
from ipclab.sem import SEMVMX, Mutex, Semaphore
from ipclab.shm import Segment

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def made():
    """Collect handles a test creates; remove them all at teardown."""
    handles = []
    yield lambda h: handles.append(h) or h
    for h in handles:
        h.remove()


def test_counting_semaphore_lets_k_in_then_times_out_with_an_explanation(made):
    sem = made(Semaphore(value=3, timeout=0.2))
    assert sem.created and sem.value == 3
    for _ in range(3):
        sem.acquire()
    assert sem.value == 0 and not sem.try_acquire()
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        sem.acquire()
    assert 0.15 < time.monotonic() - start < 5
    assert str(info.value).startswith(f"Semaphore '0x{sem.key:08x}' not acquired within 0.2 s")
    assert "its value is 0; the last process to change it was parent" in str(info.value)
    for _ in range(3):
        sem.release()
    assert sem.value == 3 and sem.try_acquire() and sem.value == 2


def test_with_acquires_and_releases(made):
    sem = made(Semaphore(value=2))
    with sem:
        assert sem.value == 1
        with sem:
            assert sem.value == 0
    assert sem.value == 2


def test_new_sets_are_0600_and_per_user_by_name(made):
    sem = made(Semaphore("test-sem-named", value=5))
    assert sem.key == keys.user_key("test-sem-named") and sem.name == "test-sem-named"
    raw = sysv_ipc.Semaphore(sem.key)
    assert raw.mode & 0o777 == 0o600 and raw.uid == os.getuid()
    again = Semaphore("test-sem-named", value=1)  # opening keeps the value: like PHP's sem_get
    assert not again.created and again.value == 5


def test_a_waiter_is_woken_by_a_release_in_another_process(made):
    sem = made(Semaphore(value=0))

    def post_later():
        time.sleep(0.2)
        sem.release()

    with proc.Family(timeout=10, show=False) as family:
        family.fork(post_later)
        sem.acquire(timeout=5)
    assert family.results[0].ok and sem.value == 0


def test_undo_gives_back_what_a_dead_process_took(made):
    with_undo = made(Semaphore(value=2, undo=True))
    without = made(Semaphore(value=2))

    def take_and_exit():
        with_undo.acquire()
        without.acquire()
        os._exit(0)

    assert reap(start_child(take_and_exit)) == 0
    assert with_undo.value == 2  # the kernel undid the child's acquire
    assert without.value == 1  # a signal given to nobody: used by producer/consumer


def _hold_and_die(lock):
    lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_process_killed_inside_the_mutex_does_not_block_the_others(made):
    lock = made(Mutex(timeout=5))
    assert reap(start_child(lambda: _hold_and_die(lock))) == -signal.SIGKILL
    results = proc.run_many(lambda i: lock.acquire() or lock.release() or i, 3, show=False)
    assert [r.value for r in results] == [1, 2, 3] and lock.value == 1


def test_without_undo_a_dead_holder_blocks_the_others_and_the_timeout_says_why(made):
    lock = made(Mutex(undo=False, timeout=0.3))
    assert reap(start_child(lambda: _hold_and_die(lock))) == -signal.SIGKILL
    with pytest.raises(IPCTimeoutError) as info:
        lock.acquire()
    message = str(info.value)
    assert f"Mutex '0x{lock.key:08x}' not acquired within 0.3 s" in message
    assert "has exited without releasing it (no SEM_UNDO)" in message


def test_deadlock_report_names_the_other_process_and_what_it_waits_for(made):
    a = made(Mutex("test-sem-lock-a"))
    b = made(Mutex("test-sem-lock-b"))

    def take(first, second, timeout):
        with first:
            time.sleep(0.3)
            second.acquire(timeout)
            second.release()

    with proc.Family(timeout=20, show=False) as family:
        family.fork(take, a, b, 0.6)
        family.fork(take, b, a, 5)
    first, second = family.results
    assert first.error["type"] == "IPCTimeoutError" and second.ok
    assert first.error["message"].splitlines() == [
        "Mutex 'test-sem-lock-b' not acquired within 0.6 s",
        "  its value is 0; the last process to change it was child 2",
        "  child 2 is waiting on 'test-sem-lock-a' (semtimedop)",
    ]


def test_mutex_is_not_reentrant_and_only_the_holder_releases(made):
    lock = made(Mutex(timeout=1))
    with pytest.raises(IPCLabError, match="is not held by this process"):
        lock.release()
    with lock:
        assert lock.held and lock.value == 0
        with pytest.raises(IPCLabError, match="not reentrant"):
            lock.acquire()
        with pytest.raises(IPCLabError, match="already held"):
            lock.try_acquire()
        # a forked child does not inherit the holding (nor the kernel's undo record)
        child = proc.run(lambda: (lock.held, lock.try_acquire()), show=False)
        assert child.value == (False, False)
    assert not lock.held and lock.value == 1
    assert lock.try_acquire() and lock.held
    lock.release()


def test_open_a_php_style_set_of_three_and_use_semaphore_0():
    """PHP's sem_get makes a set of 3 semaphores (value, usage count, init lock)."""
    libc = ctypes.CDLL(None, use_errno=True)
    key = keys.user_key("test-sem-php")
    semid = libc.semget(key, 3, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL
    assert semid >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.semctl(semid, 0, 16, 1) == 0  # SETVAL sem 0 = max_acquire 1
        assert libc.semctl(semid, 1, 16, 7) == 0  # PHP's usage count, must stay untouched
        lock = Mutex(key, create=False, timeout=0.2)
        assert not lock.created and lock.id == semid
        assert libc.semctl(semid, 1, 12) == 8  # counted as one more user, as sem_get does
        with lock:
            assert libc.semctl(semid, 0, 12) == 0  # GETVAL
            assert proc.run(lambda: lock.try_acquire(), show=False).value is False
        assert libc.semctl(semid, 0, 12) == 1 and libc.semctl(semid, 2, 12) == 0
        lock.close()
        assert libc.semctl(semid, 1, 12) == 7
        lock.close()  # twice is fine
        assert libc.semctl(semid, 1, 12) == 7
    finally:
        libc.semctl(semid, 0, 0)  # IPC_RMID


def test_removing_the_set_wakes_a_waiter_with_a_clear_error(made):
    sem = Semaphore(value=0)

    def remove_later():
        time.sleep(0.2)
        sem.remove()

    with proc.Family(timeout=10, show=False) as family:
        family.fork(remove_later)
        with pytest.raises(ObjectGoneError, match="was removed while this process waited"):
            sem.acquire(timeout=5)
    with pytest.raises(ObjectGoneError, match=r"^Semaphore '0x[0-9a-f]{8}': there is no sema"):
        sem.release()  # another process removed it
    sem.remove()  # removing what is gone is fine
    with pytest.raises(ObjectGoneError, match="handle is closed"):
        sem.release()


def test_a_removed_set_is_gone_for_other_handles(made):
    sem = Semaphore(value=1)
    other = Semaphore(sem.key, create=False)
    sem.remove()
    with pytest.raises(ObjectGoneError):
        other.acquire(timeout=1)
    with pytest.raises(ObjectGoneError, match="was removed"):
        _ = other.value
    with pytest.raises(ObjectGoneError, match="no semaphore set has key"):
        Semaphore(sem.key, create=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"value": -1}, ValueError, "value must be between 0 and 32767, got -1"),
    ({"value": SEMVMX + 1}, ValueError, "got 32768"),
    ({"value": 1.0}, TypeError, "value must be an int"),
    ({"value": True}, TypeError, "value must be an int"),
    ({"mode": 0o10000}, ValueError, "mode must be permission bits"),
    ({"timeout": 0}, ValueError, "timeout must be a number > 0 or None, got 0"),
    ({"timeout": "1"}, TypeError, "timeout must be a number"),
    ({"undo": 1}, TypeError, "undo must be True or False"),
    ({"exclusive": "no"}, TypeError, "exclusive must be True or False"),
    ({"key": [1]}, TypeError, "semaphore set key must be None"),
    ({"key": 2**31}, ValueError, "semaphore set key must be None"),
    ({"key": ""}, ValueError, "semaphore set key must be None"),
    ({"key": None, "create": False}, ValueError, "key=None makes a new private semaphore set"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    key = kwargs.pop("key", None)
    with pytest.raises(error, match=message):
        Semaphore(key, **kwargs)


def test_bad_acquire_timeouts_and_missing_or_taken_keys(made):
    sem = made(Semaphore(value=1))
    for bad in (0, -1, float("nan"), "2"):
        with pytest.raises((TypeError, ValueError), match="timeout must be a number > 0"):
            sem.acquire(bad)
    assert sem.value == 1
    with pytest.raises(FileExistsError, match="already exists"):
        Mutex(sem.key, exclusive=True)
    with pytest.raises(ObjectGoneError, match="pass create=True to create it"):
        Mutex(keys.user_key("test-sem-never-made"), create=False)


def test_permission_denied_for_another_user(made):
    lock = made(Mutex(mode=0o600 if os.getuid() == 0 else 0o000))

    def other():
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        Mutex(lock.key, create=False)

    result = proc.run(other, show=False)
    assert result.error["type"] == "PermissionError"
    assert "permission denied: the semaphore set with key 0x" in result.error["message"]


def _increment(i, seg, lock, start, n):
    """Child i: wait for the start signal, then add 1 to the counter n times."""
    start.acquire(timeout=30)
    view = seg.view(0, 8)
    for _ in range(n):
        if lock is None:
            (x,) = struct.unpack_from("<q", view)
            os.sched_yield()  # let another child in here, as a timer interrupt might
            struct.pack_into("<q", view, 0, x + 1)
        else:
            with lock:
                (x,) = struct.unpack_from("<q", view)
                os.sched_yield()
                struct.pack_into("<q", view, 0, x + 1)
    view.release()


def _race(n_procs, n, locked):
    with Segment(None, 8) as seg:
        lock = Mutex(timeout=60) if locked else None
        start = Semaphore(value=0)
        try:
            with proc.Family(timeout=110) as family:
                for i in range(n_procs):
                    family.fork(_increment, i, seg, lock, start, n)
                for _ in range(n_procs):  # all forked: let them start together
                    start.release()
            assert all(r.ok for r in family.results)
            return struct.unpack("<q", seg.read(0, 8))[0]
        finally:
            start.remove()
            if lock:
                lock.remove()


@pytest.mark.parametrize("run", [1, 2])
def test_stress_8_processes_x_20000_increments_under_the_mutex_are_exact(run):
    assert _race(8, 20_000, locked=True) == 160_000


def test_stress_without_the_mutex_updates_are_lost():
    assert _race(8, 20_000, locked=False) < 160_000


# -- the fast paths keep every check and message ----------------------------------------

@pytest.mark.parametrize(("undo", "value_after"), [(True, 0), (False, 1)])
def test_release_uses_sem_undo_exactly_when_the_handle_does(made, undo, value_after):
    sem = made(Semaphore(value=0, undo=undo))
    assert reap(start_child(lambda: sem.release() or 0)) == 0
    assert sem.value == value_after  # with SEM_UNDO the kernel took the child's release back


def test_changing_undo_on_an_open_handle_applies_to_the_next_operations(made):
    sem = made(Semaphore(value=1))
    sem.undo = True  # as lab 03's checks do

    def take_and_give_twice():
        sem.acquire()  # undone at exit: +1
        sem.release()
        sem.release()  # undone at exit: -1, -1
        return 0 if sem.value == 2 else 1

    assert reap(start_child(take_and_give_twice)) == 0
    assert sem.value == 1 and sem.undo is True
    sem.undo = False
    assert reap(start_child(lambda: sem.acquire() or 0)) == 0
    assert sem.value == 0  # nothing given back this time


def test_release_beyond_semvmx_is_a_limit_error_and_changes_nothing(made):
    sem = made(Semaphore(value=SEMVMX))
    with pytest.raises(LimitError, match=f"^semaphore set {sem.id}: increment sem 0 by 1 "
                                         f"would exceed SEMVMX \\(32767\\)$") as info:
        sem.release()
    assert info.value.__context__ is None  # no sysv_ipc error chained to it
    assert sem.value == SEMVMX
    sem.acquire()
    sem.release()
    assert sem.value == SEMVMX


def test_a_closed_handle_says_so_and_touches_nothing(made):
    sem = made(Semaphore(value=1))
    sem.close()
    name = f"'0x{sem.key:08x}'"
    for call in (sem.acquire, sem.release):
        with pytest.raises(ObjectGoneError) as info:
            call()
        assert str(info.value) == f"Semaphore {name}: this Semaphore handle is closed"
    with pytest.raises(ObjectGoneError, match="^this Semaphore handle is closed$"):
        sem.try_acquire()
    assert sysv_ipc.Semaphore(sem.key).value == 1


def test_each_acquire_honours_its_own_timeout(made):
    sem = made(Semaphore(value=0, timeout=0.3))
    for timeout, low, high in ((None, 0.25, 3), (0.05, 0.04, 0.28), (None, 0.25, 3)):
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError, match=f"not acquired within "
                                                  f"{0.3 if timeout is None else timeout:g} s"):
            sem.acquire(timeout)
        assert low <= time.monotonic() - start < high


class Alarm(Exception):
    pass


@pytest.mark.timeout(20, method="thread")  # pytest-timeout's signal method uses SIGALRM too
def test_a_signal_during_acquire_runs_its_handler_and_keeps_the_deadline(made):
    sem, calls = made(Semaphore(value=0, timeout=0.5)), []

    def handler(signum, frame):
        calls.append(signum)
        if len(calls) == 2:
            raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError):
            sem.acquire()  # the handler returns: the wait goes on for the time left
        assert 0.45 <= time.monotonic() - start < 0.75
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Alarm):
            sem.acquire(10)  # the handler raises: the wait ends with its exception
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == [signal.SIGALRM] * 2 and sem.value == 0
