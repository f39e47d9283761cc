"""semop(2) with a timeout that really fires: glibc's semtimedop(2) through ctypes.

Why not ``sysv_ipc.Semaphore.acquire(timeout=...)``?  sysv_ipc only honours
the timeout when it was built with semtimedop; its Linux wheels are not
(``sysv_ipc.SEMAPHORE_TIMEOUT_SUPPORTED`` is False, osvenskan/sysv_ipc#69), and
then ``acquire(timeout=5)`` silently blocks forever.  A lab that hangs a
notebook kernel is worse than one that fails, so this module calls the C
library's ``semtimedop`` directly: it is our one way to wait with a timeout.
Where sysv_ipc was built with semtimedop (``./course`` builds it from source
when a C compiler is there), :func:`prepare` lets it do single-semaphore waits
itself: the same system call, without ctypes' cost (0.3 µs a call here).

Wraps semtimedop(2) (and semctl(2) ``GETVAL`` to describe a timeout).  It does
not create or remove semaphore sets (use ``sysv_ipc.Semaphore``), and needs a
C library that has semtimedop (glibc, musl; not macOS).  The non-blocking form
is ``flags=IPC_NOWAIT`` in an op, which raises ``BlockingIOError`` instead of
waiting; ``timeout=0`` is refused.  A hot loop should :func:`prepare` its ops
once: :func:`semop` checks and packs them on every call.
"""

from __future__ import annotations

import ctypes
import errno
import time

import sysv_ipc

from ._check import check_int, check_timeout
from .errors import IPCLabError, IPCTimeoutError, LimitError, ObjectGoneError

SEM_UNDO = 0x1000  # undo this op when the process exits (see acquire)
IPC_NOWAIT = 0o4000  # fail with EAGAIN instead of waiting
_GETVAL = 12  # semctl command, <linux/sem.h>
NATIVE_TIMEOUT = bool(getattr(sysv_ipc, "SEMAPHORE_TIMEOUT_SUPPORTED", False))
_monotonic = time.monotonic


class _Sembuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short),
                ("sem_flg", ctypes.c_short)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = None


def _lib():
    """Load the C library on first use (importing ipclab must not touch it)."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        if not hasattr(lib, "semtimedop"):
            raise IPCLabError("this C library has no semtimedop(); semwait needs Linux")
        # No argtypes: each call passes (int, byref(sembufs), int, byref(timespec) or None),
        # which ctypes hands over as they are, faster than converting through argtypes.
        # nsops goes as a C int (libffi widens it; the kernel reads an unsigned int).
        lib.semtimedop.restype = ctypes.c_int
        _libc = lib
    return _libc


def _timespec(seconds: float):
    return ctypes.byref(_Timespec(int(seconds), int(seconds % 1 * 1e9)))


def _semid(sem) -> int:
    if isinstance(sem, int) and not isinstance(sem, bool):
        return check_int(sem, "semid", low=0)
    ident = getattr(sem, "id", None)
    if isinstance(ident, int) and not isinstance(ident, bool) and ident >= 0:
        return ident
    raise TypeError(f"sem must be a sysv_ipc.Semaphore or an int semaphore set id, got {sem!r}")


def _check_ops(ops) -> list[tuple[int, int, int]]:
    if not isinstance(ops, (list, tuple)) or not ops:
        raise ValueError(f"ops must be a non-empty list of (sem_num, sem_op, flags), got {ops!r}")
    checked = []
    for op in ops:
        if not isinstance(op, (list, tuple)) or len(op) != 3:
            raise ValueError(f"each op must be a (sem_num, sem_op, flags) tuple, got {op!r}")
        num = check_int(op[0], "sem_num", low=0, high=65535)
        delta = check_int(op[1], "sem_op", low=-32768, high=32767)
        flags = check_int(op[2], "flags", low=0)
        if flags & ~(SEM_UNDO | IPC_NOWAIT):
            raise ValueError(f"flags must combine SEM_UNDO and IPC_NOWAIT only, got {flags:#o}")
        checked.append((num, delta, flags))
    return checked


def _describe(ops) -> str:
    parts = []
    for num, delta, _ in ops:
        parts.append(f"wait for sem {num} to be zero" if delta == 0
                     else f"decrement sem {num} by {-delta}" if delta < 0
                     else f"increment sem {num} by {delta}")
    return ", ".join(parts)


def _value(semid: int, num: int) -> int | None:
    value = _lib().semctl(semid, num, _GETVAL)
    return None if value < 0 else value


class Operation:
    """``ops`` on one semaphore set, checked and packed once: ``op.run(timeout)`` applies them.

    The sembuf array is built once; the timespec of the last timeout is kept,
    so a call with the same timeout converts nothing.  ``timeout`` must already
    be checked (a float > 0, or None: no limit): :func:`semop` checks it.

    Raises (when called):
        as :func:`semop`.
    """

    __slots__ = ("semid", "ops", "_fn", "_buf", "_ref", "_n", "_last")

    def __init__(self, semid: int, ops):
        self.semid, self.ops, self._fn = semid, ops, _lib().semtimedop
        self._buf = (_Sembuf * len(ops))(*[_Sembuf(n, d, f) for n, d, f in ops])
        self._ref, self._n = ctypes.byref(self._buf), len(ops)
        self._last = (None, None)  # (timeout, its timespec)

    def run(self, timeout: float | None = None) -> None:
        if timeout is None:
            if self._fn(self.semid, self._ref, self._n, None) == 0:
                return
            return self._failed(None, 0.0)
        last = self._last  # one tuple, so threads sharing the handle never mix them up
        if last[0] != timeout:
            last = self._last = (timeout, _timespec(timeout))
        start = _monotonic()  # only read again if a signal interrupts the wait
        if self._fn(self.semid, self._ref, self._n, last[1]) == 0:
            return
        self._failed(timeout, start)

    def _failed(self, timeout, start) -> None:
        while True:
            err = ctypes.get_errno()
            if err != errno.EINTR:
                _raise(err, self.semid, self.ops, timeout)
            # A signal arrived.  Returning to Python lets its handler run now: a Jupyter
            # "interrupt" (SIGINT -> KeyboardInterrupt) or a handler that raises ends the
            # wait here.  A handler that returns lets us retry with the remaining time.
            ts = (None if timeout is None
                  else _timespec(max(0.0, start + timeout - _monotonic())))
            if self._fn(self.semid, self._ref, self._n, ts) == 0:
                return


class _NativeAcquire(Operation):
    """Take 1 from semaphore 0 with sysv_ipc's acquire(timeout), built with semtimedop."""

    __slots__ = ("_acquire",)

    def run(self, timeout: float | None = None) -> None:
        if timeout is None:  # sysv_ipc would call semop(): keep semtimedop for diagnose
            return Operation.run(self, None)
        start, left = _monotonic(), timeout
        while True:
            try:
                return self._acquire(left)
            except (sysv_ipc.Error, ValueError, MemoryError, OSError) as e:
                failure = e
            # Out of the except block: what a signal handler raises, or ours, does not
            # come chained to sysv_ipc's exception.
            err = _native_errno(failure)
            if err != errno.EINTR:
                _raise(err, self.semid, self.ops, timeout)
            left = max(0.0, start + timeout - _monotonic())  # the handler returned: go on


def _native_errno(e: BaseException) -> int:
    """The errno behind an exception sysv_ipc raised for semop (see its sem_set_error)."""
    if isinstance(e, sysv_ipc.BusyError):
        return errno.EAGAIN
    if isinstance(e, sysv_ipc.ExistentialError):
        return errno.EIDRM if "removed" in str(e) else errno.EINVAL
    if isinstance(e, sysv_ipc.PermissionsError):
        return errno.EACCES
    if isinstance(e, OSError):
        return e.errno or errno.EIO
    if isinstance(e, ValueError):
        return errno.ERANGE
    if isinstance(e, MemoryError):
        return errno.ENOMEM
    return errno.EINTR  # the plain sysv_ipc.Error: "Signaled while waiting"


def prepare(sem, ops) -> Operation:
    """Check and pack ``ops`` for set ``sem`` once; return ``op`` to call as ``op.run(timeout)``.

    ``sem`` is a set id or a ``sysv_ipc.Semaphore``.  Where sysv_ipc was built
    with semtimedop (:data:`NATIVE_TIMEOUT`) and ``ops`` is what that handle's
    ``acquire`` does (take 1 from semaphore 0, SEM_UNDO as its ``undo``), the
    wait goes through sysv_ipc itself (so leave the handle's ``undo`` and ``block``
    as they are then).  ``op.run(timeout)`` takes a checked timeout.

    Raises:
        TypeError, ValueError: a bad set id or ops (the call raises as :func:`semop`).
    """
    semid = _semid(sem)
    ops = _check_ops(ops)
    if (NATIVE_TIMEOUT and isinstance(sem, sysv_ipc.Semaphore) and len(ops) == 1
            and ops[0][:2] == (0, -1) and ops[0][2] == (SEM_UNDO if sem.undo else 0)
            and sem.block):
        native = _NativeAcquire(semid, ops)
        native._acquire = sem.acquire
        return native
    return Operation(semid, ops)


def semop(semid: int, ops, timeout: float | None = None) -> None:
    """Apply ``ops`` to semaphore set ``semid`` atomically, waiting at most ``timeout`` seconds.

    ``ops`` is a list of ``(sem_num, sem_op, flags)``; flags combine
    ``SEM_UNDO`` and ``IPC_NOWAIT``.  ``timeout=None`` waits as long as it
    takes, still interruptible by signals (Ctrl-C, Jupyter's interrupt).

    Raises:
        TypeError, ValueError: bad arguments, or sem_num beyond the set (EFBIG).
        IPCTimeoutError: the timeout expired; nothing was applied.
        BlockingIOError: an op had IPC_NOWAIT and would have to wait.
        ObjectGoneError: no such set (EINVAL) or it was removed while waiting (EIDRM).
        PermissionError: this user may not alter the set (EACCES).
        LimitError: too many ops (E2BIG) or a value beyond SEMVMX (ERANGE).
    """
    semid = check_int(semid, "semid", low=0)
    op = Operation(semid, _check_ops(ops))
    op.run(check_timeout(timeout))


def _raise(err: int, semid: int, ops, timeout) -> None:
    where = f"semaphore set {semid}"
    if err == errno.EAGAIN:
        if any(flags & IPC_NOWAIT for _, _, flags in ops):
            raise BlockingIOError(err, f"{where}: {_describe(ops)} would have to wait "
                                       f"(IPC_NOWAIT was given)")
        value = _value(semid, ops[0][0])
        now = "" if value is None else f" (sem {ops[0][0]} is {value})"
        raise IPCTimeoutError(f"{where}: could not {_describe(ops)} within "
                              f"timeout={timeout:g} s{now}")
    if err == errno.EIDRM:
        raise ObjectGoneError(f"{where} was removed while this process waited")
    if err == errno.EINVAL:
        raise ObjectGoneError(f"there is no {where} (never created, or already removed)")
    if err == errno.EFBIG:
        nums = sorted({n for n, _, _ in ops})
        raise ValueError(f"sem_num must be below the number of semaphores in {where}, "
                         f"got {nums}")
    if err == errno.EACCES:
        raise PermissionError(err, f"{where}: this user may not alter it (check its mode)")
    if err == errno.E2BIG:
        raise LimitError(f"{where}: {len(ops)} ops in one call is more than SEMOPM allows")
    if err == errno.ERANGE:
        raise LimitError(f"{where}: {_describe(ops)} would exceed SEMVMX (32767)")
    raise OSError(err, f"semtimedop on {where}: {errno.errorcode.get(err, err)}")


def acquire(sem, timeout: float | None = None, *, undo: bool = False, delta: int = 1) -> None:
    """Decrement semaphore 0 of ``sem`` by ``delta``, waiting at most ``timeout`` seconds.

    With ``undo=True`` the kernel adds ``delta`` back if this process exits
    (even killed) without releasing: SEM_UNDO.

    Raises:
        as :func:`semop`.
    """
    delta = check_int(delta, "delta", low=1, high=32767)
    semop(_semid(sem), [(0, -delta, SEM_UNDO if undo else 0)], timeout)


def release(sem, *, undo: bool = False, delta: int = 1) -> None:
    """Increment semaphore 0 of ``sem`` by ``delta`` (never waits).

    Raises:
        as :func:`semop`.
    """
    delta = check_int(delta, "delta", low=1, high=32767)
    semop(_semid(sem), [(0, delta, SEM_UNDO if undo else 0)])
