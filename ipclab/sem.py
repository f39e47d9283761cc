"""SysV semaphores: a counting Semaphore and a Mutex that survives a holder's death.

Wraps semget(2), semctl(2) and, to release, semop(2) (through
``sysv_ipc.Semaphore``) and semtimedop(2) (through :mod:`ipclab.semwait`, so
every wait has a timeout that really fires).  Each handle uses semaphore 0
of its set, which is what PHP's ``sem_get``/``sem_acquire`` use too (PHP
makes a set of 3; the other two are its bookkeeping, which a handle opening
such a set joins, see ``Semaphore._join_php``), so Python, C and PHP can
share a lock by key.

PHP's ``sem_get($key, $max_acquire)`` is ``Semaphore(key, value=max_acquire)``;
``sem_acquire``/``sem_release`` are :meth:`Semaphore.acquire`/``release``.
As with ``sem_get``, the initial value only applies when the set is created;
opening an existing set keeps its current value.  Not handled: operations on
several semaphores of one set at once (use :func:`ipclab.semwait.semop`).
"""

from __future__ import annotations

import contextlib
import os

import sysv_ipc

from . import _sysv, diagnose, semwait, sysvinfo
from ._check import check_int, check_timeout
from .errors import IPCLabError, IPCTimeoutError, ObjectGoneError

SEMVMX = 32767  # the largest value a SysV semaphore can hold
_names: dict[int, str] = {}  # set id -> name, to word timeout reports


class Semaphore:
    """Semaphore 0 of a SysV set: at most ``value`` processes inside at once.

    ``with sem:`` acquires and releases (like ``threading.Semaphore``); the set
    itself lives until :meth:`remove` (or, if this process created it, until
    the process exits normally: see :mod:`ipclab.keys`).  ``timeout`` is the
    default of :meth:`acquire` and of ``with``; ``None`` means wait forever.
    ``undo=True`` asks the kernel to give back what this process took when it
    exits (SEM_UNDO); leave it False for a semaphore one process takes and
    another gives, such as the "slots full" count of a bounded buffer.

    Raises (constructor):
        TypeError, ValueError: a bad key, value, mode, flag or timeout.
        FileExistsError: exclusive=True and a set with this key exists.
        ObjectGoneError: create=False and no set has this key.
        PermissionError: the set exists but its mode does not let you in.
    """

    kind = "Semaphore"

    def __init__(self, key=None, value: int = 1, *, create: bool = True, mode: int = 0o600,
                 exclusive: bool = False, undo: bool = False, timeout: float | None = 60.0):
        value = check_int(value, "value", low=0, high=SEMVMX)
        mode = _sysv.check_mode(mode)
        undo = _sysv.check_flag(undo, "undo")
        self.timeout = check_timeout(timeout)

        def make(k, flags):
            return sysv_ipc.Semaphore(k, flags, mode if flags else 0o600, value)

        self._sem, self.created = _sysv.open_object("sem", make, key, create=create,
                                                    exclusive=exclusive)
        self.key, self.id = self._sem.key, self._sem.id
        self.name = key if isinstance(key, str) else _sysv.hexkey(self.key)
        _names[self.id] = self.name
        self._php_user = None  # pid that counts as a user of a PHP set (see _join_php)
        self.undo = undo  # prepares the operations, see below
        if not self.created and _nsems(self.id) == 3:
            self._join_php()

    def _join_php(self) -> None:
        """Count this process as a user of a set PHP's sem_get made, as sem_get itself does.

        PHP keeps a usage count in semaphore 1 (guarded by semaphore 2), and a
        sem_get that finds itself the only user *resets semaphore 0* to its
        max_acquire.  A Python process that did not count itself would have
        the lock it holds reset under it by the next PHP script that starts.
        Both increments use SEM_UNDO, so the kernel takes them back if we die.
        """
        ops = [(2, 0, 0), (2, 1, semwait.SEM_UNDO), (1, 1, semwait.SEM_UNDO)]
        semwait.semop(self.id, ops, self.timeout or 30.0)
        semwait.semop(self.id, [(2, -1, semwait.SEM_UNDO)])
        self._php_user = os.getpid()

    @property
    def undo(self) -> bool:
        """Whether the kernel gives back what this process took when it exits (SEM_UNDO)."""
        return self._undo

    @undo.setter
    def undo(self, undo: bool) -> None:
        # Check and pack the operations now (semwait.prepare), so that acquire and release
        # cost one system call and a few attribute reads.  release() is sysv_ipc's own (it
        # never waits); only when it fails does _up redo it, to word the error as ipclab.
        self._undo = undo
        sem, flag = self._sem, semwait.SEM_UNDO if undo else 0
        if sem is not None:
            sem.undo = bool(undo)  # SEM_UNDO on sysv_ipc's release (and acquire) too
        self._down = semwait.prepare(self.id if sem is None else sem, [(0, -1, flag)]).run
        self._up = semwait.prepare(self.id, [(0, 1, flag)]).run
        self._try = semwait.prepare(self.id, [(0, -1, semwait.IPC_NOWAIT | flag)]).run

    def _handle(self):
        if self._sem is None:
            raise ObjectGoneError(f"this {self.kind} handle is closed")
        return self._sem

    @property
    def value(self) -> int:
        """The semaphore's current value (semctl GETVAL): how many may still enter."""
        return self._read("value")

    @property
    def waiting(self) -> int:
        """How many processes are blocked waiting for it (semctl GETNCNT)."""
        return self._read("waiting_for_nonzero")

    def _read(self, attribute: str) -> int:
        try:
            return getattr(self._handle(), attribute)
        except sysv_ipc.ExistentialError:
            raise ObjectGoneError(f"{self!r} was removed") from None

    def acquire(self, timeout: float | None = None) -> None:
        """Take one unit, waiting at most ``timeout`` seconds (default: the handle's timeout).

        Raises:
            TypeError, ValueError: bad timeout.
            IPCTimeoutError: not acquired in time; the message says who holds it and what
                that process is doing.
            ObjectGoneError: the set was removed (before or while waiting), or handle closed.
        """
        wait = self.timeout if timeout is None else check_timeout(timeout)
        if self._sem is None:
            raise ObjectGoneError(f"{self.kind} {self.name!r}: this {self.kind} handle is closed")
        try:
            self._down(wait)
        except IPCTimeoutError:
            raise IPCTimeoutError(f"{self.kind} {self.name!r} not acquired within {wait:g} s",
                                  self._explain()) from None
        except ObjectGoneError as e:
            raise ObjectGoneError(f"{self.kind} {self.name!r}: {e}") from None

    def try_acquire(self) -> bool:
        """Take one unit if that needs no waiting (IPC_NOWAIT); return whether it did."""
        self._handle()
        try:
            self._try(None)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Give one unit back (never waits).

        Raises:
            ObjectGoneError: the set was removed, or the handle is closed.
            LimitError: the value would exceed SEMVMX.
        """
        if self._sem is None:
            raise ObjectGoneError(f"{self.kind} {self.name!r}: this {self.kind} handle is closed")
        try:
            return self._sem.release()
        except (sysv_ipc.Error, ValueError, MemoryError):
            pass
        try:  # it failed: do it again through semwait, which words the error as ipclab does
            self._up()
        except ObjectGoneError as e:
            raise ObjectGoneError(f"{self.kind} {self.name!r}: {e}") from None

    def _explain(self) -> list[str]:
        """Say who last changed the semaphore and what that process is doing now."""
        try:
            value, last = self._sem.value, self._sem.last_pid
        except sysv_ipc.Error:
            return []
        lines = [f"its value is {value}; the last process to change it was "
                 f"{diagnose.label(last)}"]
        if last and last != os.getpid() and diagnose.proc_stat(last):
            lines.append(_name_sets(diagnose.where(last)))
        elif last and last != os.getpid():
            lines.append(f"{diagnose.label(last)} has exited"
                         + ("" if self.undo else " without releasing it (no SEM_UNDO)"))
        return lines

    def close(self) -> None:
        """Forget the handle (the set stays: see :meth:`remove`); closing twice is fine."""
        if self._php_user == os.getpid() and self._sem is not None:
            with contextlib.suppress(IPCLabError):  # the set may be gone already
                semwait.semop(self.id, [(1, -1, semwait.SEM_UNDO)])
        self._php_user = None
        self._sem = None

    def remove(self) -> None:
        """Remove the set (IPC_RMID): processes waiting on it fail at once.  Twice is fine.

        Raises:
            PermissionError: it belongs to another user.
        """
        _sysv.remove("sem", self.id, repr(self))
        self._php_user = self._sem = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name!r}{' closed' if self._sem is None else ''}>"


def _nsems(ident: int) -> int | None:
    """How many semaphores set ``ident`` has (from /proc/sysvipc/sem), or None if unknown."""
    for obj in sysvinfo.list_objects(all_users=True):
        if obj.kind == "sem" and obj.id == ident:
            return obj.size
    return None


def _name_sets(sentence: str) -> str:
    """Replace "semaphore set id N" by the name of our handle for set N, where known."""
    for ident, name in _names.items():
        sentence = sentence.replace(f"semaphore set id {ident} ", f"{name!r} ")
    return sentence


class Mutex(Semaphore):
    """A lock (a semaphore of value 1) that one process holds at a time: ``with lock: ...``.

    It uses SEM_UNDO, so when a holder dies inside the critical section the
    kernel releases for it and the others go on.  ``undo=False`` is the broken
    variant, kept to watch what happens without it.  A process may not take a
    Mutex it already holds (that would wait for itself forever) nor release
    one it does not hold; both raise at once.

    Raises (constructor):
        as :class:`Semaphore`.
    """

    kind = "Mutex"

    def __init__(self, key=None, *, create: bool = True, mode: int = 0o600,
                 exclusive: bool = False, undo: bool = True, timeout: float | None = 60.0):
        super().__init__(key, 1, create=create, mode=mode, exclusive=exclusive, undo=undo,
                         timeout=timeout)
        self._holder = None  # pid of the process (of this handle's copies) holding it

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this handle."""
        return self._holder == os.getpid()

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting at most ``timeout`` s (default: the handle's timeout).

        Raises:
            IPCLabError: this process already holds it.
            others: as :meth:`Semaphore.acquire`.
        """
        pid = os.getpid()
        if self._holder == pid:
            raise IPCLabError(f"{self!r} is already held by this process; a Mutex is not "
                              f"reentrant, so waiting for it would wait forever")
        super().acquire(timeout)
        self._holder = pid

    def try_acquire(self) -> bool:
        if self.held:
            raise IPCLabError(f"{self!r} is already held by this process")
        got = super().try_acquire()
        if got:
            self._holder = os.getpid()
        return got

    def release(self) -> None:
        """Release the lock this process holds.

        Raises:
            IPCLabError: this process does not hold it.
            others: as :meth:`Semaphore.release`.
        """
        if self._holder != os.getpid():
            raise IPCLabError(f"{self!r} is not held by this process; only the process that "
                              f"acquired a Mutex may release it")
        self._holder = None
        super().release()
