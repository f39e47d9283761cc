"""Tests for ipclab.semwait: semtimedop with timeouts, SEM_UNDO, removal, signals, errors."""

import errno
import os
import signal
import time

import pytest
import sysv_ipc
from _helpers import reap, remove_quietly, start_child

from ipclab import semwait
from ipclab.errors import IPCTimeoutError, LimitError, ObjectGoneError

pytestmark = pytest.mark.timeout(20)


def make_sem(value):
    return sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, mode=0o600, initial_value=value)


@pytest.fixture
def sem0():
    sem = make_sem(0)
    yield sem
    remove_quietly(sem)


@pytest.fixture
def sem1():
    sem = make_sem(1)
    yield sem
    remove_quietly(sem)


def test_acquire_times_out_after_roughly_the_timeout(sem0):
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        semwait.acquire(sem0, timeout=0.2)
    elapsed = time.monotonic() - start
    assert 0.15 <= elapsed < 3
    message = str(info.value)
    assert f"semaphore set {sem0.id}" in message
    assert "decrement sem 0 by 1" in message and "timeout=0.2 s" in message
    assert isinstance(info.value, TimeoutError)
    assert sem0.value == 0


def test_acquire_and_release_by_id_and_delta(sem1):
    semwait.release(sem1.id, delta=2)
    assert sem1.value == 3
    semwait.acquire(sem1.id, timeout=1, delta=3)
    assert sem1.value == 0


def test_wait_for_zero_and_nowait(sem1):
    with pytest.raises(IPCTimeoutError, match="wait for sem 0 to be zero"):
        semwait.semop(sem1.id, [(0, 0, 0)], timeout=0.05)
    with pytest.raises(BlockingIOError, match="IPC_NOWAIT"):
        semwait.semop(sem1.id, [(0, -2, semwait.IPC_NOWAIT)])
    semwait.semop(sem1.id, [(0, -1, semwait.IPC_NOWAIT)])
    semwait.semop(sem1.id, [(0, 0, 0)], timeout=1)  # now zero: returns at once
    assert sem1.value == 0


def test_a_child_releasing_wakes_a_waiting_acquire(sem0):
    def child():
        time.sleep(0.1)
        semwait.release(sem0.id)
        return 0

    pid = start_child(child)
    try:
        start = time.monotonic()
        semwait.acquire(sem0, timeout=5)
        assert time.monotonic() - start < 4
    finally:
        assert reap(pid) == 0
    assert sem0.value == 0


@pytest.mark.parametrize(("undo", "value_after"), [(True, 1), (False, 0)])
def test_sem_undo_gives_back_what_an_exiting_child_took(sem1, undo, value_after):
    def child():
        semwait.acquire(sem1.id, timeout=1, undo=undo)
        return 0 if sem1.value == 0 else 1

    assert reap(start_child(child)) == 0
    assert sem1.value == value_after


def test_removing_the_set_wakes_a_waiter_with_object_gone(sem0):
    def child():
        try:
            semwait.acquire(sem0.id, timeout=10)
        except ObjectGoneError as e:
            return 0 if str(e) == (f"semaphore set {sem0.id} was removed while this "
                                   f"process waited") else 2
        except IPCTimeoutError:
            return 3
        return 4

    pid = start_child(child)
    try:
        deadline = time.monotonic() + 5
        while sem0.waiting_for_nonzero == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sem0.waiting_for_nonzero == 1
        sem0.remove()
    finally:
        assert reap(pid) == 0


class Alarm(Exception):
    pass


@pytest.mark.timeout(20, method="thread")  # pytest-timeout's signal method uses SIGALRM too
def test_a_signal_handler_that_raises_interrupts_a_blocking_acquire(sem0):
    def handler(signum, frame):
        raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(Alarm):
            semwait.acquire(sem0, timeout=None)
        assert time.monotonic() - start >= 0.15
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert sem0.value == 0


@pytest.mark.timeout(20, method="thread")
def test_a_signal_handler_that_returns_lets_the_wait_go_on_with_the_time_left(sem0):
    calls = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError):
            semwait.acquire(sem0, timeout=0.5)
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == [signal.SIGALRM]
    # neither cut short by the signal at 0.3 s nor restarted for a full 0.5 s (0.8 s)
    assert 0.45 <= elapsed < 0.75


def test_a_removed_set_or_a_sem_num_beyond_the_set(sem0):
    with pytest.raises(ValueError, match=r"sem_num must be below .* got \[3\]"):
        semwait.semop(sem0.id, [(3, 1, 0)])
    gone = make_sem(0)
    gone.remove()
    with pytest.raises(ObjectGoneError, match=f"there is no semaphore set {gone.id}"):
        semwait.release(gone.id)


def test_value_beyond_semvmx_is_a_limit_error():
    sem = make_sem(sysv_ipc.SEMAPHORE_VALUE_MAX)
    try:
        with pytest.raises(LimitError, match="SEMVMX"):
            semwait.release(sem)
    finally:
        sem.remove()


def test_no_permission_is_a_permission_error():
    as_root = os.getuid() == 0
    sem = make_sem(1) if as_root else sysv_ipc.Semaphore(
        None, sysv_ipc.IPC_CREX, mode=0o400, initial_value=1)

    def child():
        if as_root:
            os.setgid(65534)
            os.setuid(65534)  # nobody: no right to a 0600 set of root's
        try:
            semwait.acquire(sem.id, timeout=1)
        except PermissionError as e:
            return 0 if f"semaphore set {sem.id}: this user may not alter it" in str(e) else 2
        return 3

    try:
        assert reap(start_child(child)) == 0
        assert sem.value == 1
    finally:
        sem.remove()


@pytest.mark.parametrize(("call", "exc", "message"), [
    (lambda s: semwait.acquire("sem"), TypeError, "sem must be a sysv_ipc.Semaphore or an int"),
    (lambda s: semwait.acquire(s, timeout=0), ValueError, "timeout must be a number > 0"),
    (lambda s: semwait.acquire(s, timeout=-1), ValueError, "got -1"),
    (lambda s: semwait.acquire(s, timeout="1"), TypeError, "timeout must be a number > 0"),
    (lambda s: semwait.acquire(s, delta=0), ValueError, "delta must be between 1 and 32767"),
    (lambda s: semwait.release(s, delta=40000), ValueError, "delta must be between"),
    (lambda s: semwait.acquire(-1), ValueError, "semid must be >= 0, got -1"),
    (lambda s: semwait.semop(s.id, []), ValueError, "ops must be a non-empty list"),
    (lambda s: semwait.semop(s.id, [(0, -1)]), ValueError, r"\(sem_num, sem_op, flags\)"),
    (lambda s: semwait.semop(s.id, [(0, -1, 0o7)]), ValueError, "SEM_UNDO and IPC_NOWAIT"),
    (lambda s: semwait.semop(s.id, [(70000, -1, 0)]), ValueError, "sem_num must be between"),
    (lambda s: semwait.semop(s.id, [(0, 40000, 0)]), ValueError, "sem_op must be between"),
])
def test_bad_arguments_are_refused_before_any_system_call(sem0, call, exc, message):
    with pytest.raises(exc, match=message):
        call(sem0)
    assert sem0.value == 0


# -- prepared operations: checked and packed once, then run many times ------------------

def _native_wanted(backend):
    return pytest.param(backend, marks=pytest.mark.skipif(
        backend == "sysv_ipc" and not semwait.NATIVE_TIMEOUT,
        reason="this sysv_ipc has no semtimedop (the PyPI wheel): only ctypes waits"))


BACKENDS = [_native_wanted("ctypes"), _native_wanted("sysv_ipc")]


def prepared_take(sem, backend):
    """A prepared 'take 1 from sem 0' that waits through ``backend``."""
    op = semwait.prepare(sem if backend == "sysv_ipc" else sem.id, [(0, -1, 0)])
    assert (type(op) is semwait.Operation) == (backend == "ctypes")
    return op


def test_prepare_leaves_waits_to_sysv_ipc_only_where_it_has_semtimedop(sem0):
    native = semwait.NATIVE_TIMEOUT
    assert (type(semwait.prepare(sem0, [(0, -1, 0)])) is semwait.Operation) != native
    for ops in ([(0, 1, 0)], [(0, -1, semwait.SEM_UNDO)], [(0, -2, 0)],
                [(0, -1, semwait.IPC_NOWAIT)], [(0, -1, 0), (0, 1, 0)]):
        assert type(semwait.prepare(sem0, ops)) is semwait.Operation  # ctypes does these
    sem0.undo = True  # now the handle's acquire uses SEM_UNDO: it matches that op instead
    assert type(semwait.prepare(sem0, [(0, -1, 0)])) is semwait.Operation
    assert (type(semwait.prepare(sem0, [(0, -1, semwait.SEM_UNDO)]))
            is semwait.Operation) != native


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prepared_op_runs_many_times_and_honours_each_timeout(sem0, backend):
    take, give = prepared_take(sem0, backend), semwait.prepare(sem0.id, [(0, 1, 0)])
    for _ in range(3):
        give.run()
        take.run(5.0)
    assert sem0.value == 0
    for timeout, low, high in ((0.3, 0.25, 3), (0.05, 0.04, 0.28), (0.3, 0.25, 3)):
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError, match=f"decrement sem 0 by 1 within "
                                                  f"timeout={timeout:g} s \\(sem 0 is 0\\)"):
            take.run(timeout)  # a new timeout replaces the remembered one
        assert low <= time.monotonic() - start < high
    assert sem0.value == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prepared_op_reports_removal_and_a_missing_set(sem0, backend):
    take = prepared_take(sem0, backend)

    def child():
        try:
            take.run(10.0)
        except ObjectGoneError as e:
            return 0 if str(e) == (f"semaphore set {sem0.id} was removed while this "
                                   f"process waited") else 2
        return 3

    pid = start_child(child)
    try:
        deadline = time.monotonic() + 5
        while sem0.waiting_for_nonzero == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        sem0.remove()
    finally:
        assert reap(pid) == 0
    with pytest.raises(ObjectGoneError, match=f"^there is no semaphore set {sem0.id} ") as info:
        take.run(1.0)
    assert info.value.__context__ is None  # no sysv_ipc error chained to it


@pytest.mark.timeout(20, method="thread")  # pytest-timeout's signal method uses SIGALRM too
@pytest.mark.parametrize("backend", BACKENDS)
def test_signals_during_a_prepared_wait(sem0, backend):
    take, calls = prepared_take(sem0, backend), []

    def handler(signum, frame):
        calls.append(signum)
        if len(calls) == 2:
            raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # returns: the wait goes on, time left
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError):
            take.run(0.5)
        assert 0.45 <= time.monotonic() - start < 0.75
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # raises: the wait ends with it
        with pytest.raises(Alarm) as info:
            take.run(10.0)
        assert info.value.__context__ is None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == [signal.SIGALRM] * 2 and sem0.value == 0


@pytest.mark.parametrize(("error", "code"), [
    (sysv_ipc.BusyError("The semaphore is busy"), "EAGAIN"),
    (sysv_ipc.ExistentialError("The semaphore was removed"), "EIDRM"),
    (sysv_ipc.ExistentialError("No semaphore exists with the specified key"), "EINVAL"),
    (sysv_ipc.PermissionsError("Permission denied"), "EACCES"),
    (ValueError("The semaphore's value must remain between 0 and 32767"), "ERANGE"),
    (MemoryError("Not enough memory"), "ENOMEM"),
    (OSError(errno.E2BIG, "Argument list too long"), "E2BIG"),
    (sysv_ipc.Error("Signaled while waiting"), "EINTR"),
])
def test_sysv_ipc_errors_map_back_to_the_errno_they_came_from(error, code):
    assert semwait._native_errno(error) == getattr(errno, code)


def test_prepare_checks_its_arguments_once(sem0):
    with pytest.raises(TypeError, match="sem must be a sysv_ipc.Semaphore or an int"):
        semwait.prepare("sem", [(0, -1, 0)])
    with pytest.raises(ValueError, match=r"each op must be a \(sem_num, sem_op, flags\)"):
        semwait.prepare(sem0, [(0, -1)])
    with pytest.raises(ValueError, match="flags must combine SEM_UNDO and IPC_NOWAIT only"):
        semwait.prepare(sem0.id, [(0, -1, 0o7)])
