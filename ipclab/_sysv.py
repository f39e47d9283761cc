"""What the SysV handles (shm, sem, and later msg) share: open-or-create, limits, errors.

Wraps shmget(2)/semget(2)/msgget(2) through the ``sysv_ipc`` constructors.
Creating is always tried first with ``IPC_CREAT | IPC_EXCL``, so a handle knows
whether *it* created the object (and registers it for cleanup at exit, see
:mod:`ipclab.keys`) or opened one that existed; C's plain ``IPC_CREAT`` cannot
tell the two apart.
"""

from __future__ import annotations

import errno
import os

import sysv_ipc

from . import keys
from ._check import check_int
from .errors import IPCLabError, ObjectGoneError

NAMES = {"shm": "shared memory segment", "sem": "semaphore set", "msg": "message queue"}


def hexkey(key: int) -> str:
    """Return ``key`` as ipcs(1) prints it: ``0x0000ff3a``."""
    return f"0x{key & 0xFFFFFFFF:08x}"


def kernel_limit(name: str) -> list[int]:
    """Return the numbers in ``/proc/sys/kernel/<name>`` (shmmax, msgmnb, sem, ...)."""
    with open(f"/proc/sys/kernel/{name}") as f:
        return [int(word) for word in f.read().split()]


def check_mode(mode) -> int:
    """Return ``mode`` if it is a permission mode 0..0o777.

    Raises:
        TypeError, ValueError: it is not.
    """
    try:
        return check_int(mode, "mode", low=0, high=0o777)
    except ValueError:
        raise ValueError(f"mode must be permission bits between 0o000 and 0o777 (0o600: only "
                         f"you may read and write), got {mode!r}") from None


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def open_object(kind: str, make, key, *, create: bool, exclusive: bool):
    """Open or create a SysV object; return ``(object, created)``.

    ``make(key, flags)`` calls the sysv_ipc constructor.  ``key`` is what the
    student passed (None, int or str name, see :func:`ipclab.keys.resolve_key`).
    An object this call created is registered for removal at exit.

    Raises:
        TypeError, ValueError: bad key or flags, or key=None with create=False.
        FileExistsError: exclusive=True and the key is taken.
        ObjectGoneError: create=False and no object has this key.
        PermissionError: the object exists but its mode does not let this user in.
    """
    what = NAMES[kind]
    create = check_flag(create, "create")
    exclusive = check_flag(exclusive, "exclusive")
    resolved = keys.resolve_key(key, what=what)
    if resolved is None and not create:
        raise ValueError(f"key=None makes a new private {what}; to open an existing one pass "
                         f"its key, got create=False with key=None")
    if exclusive and not create:
        raise ValueError("exclusive=True (IPC_EXCL) only makes sense with create=True")
    try:
        if resolved is None:
            obj, created = keys.create_unique(lambda k: make(k, sysv_ipc.IPC_CREX)), True
        else:
            obj, created = _open_key(what, make, resolved, create, exclusive)
    except sysv_ipc.PermissionsError:
        raise _denied(what, resolved) from None
    if created:
        keys.register(kind, obj.id, obj.key)
    return obj, created


def _open_key(what, make, key, create, exclusive):
    if not create:
        try:
            return make(key, 0), False
        except sysv_ipc.ExistentialError:
            raise ObjectGoneError(f"no {what} has key {hexkey(key)}: nothing created it yet, or "
                                  f"it was removed (pass create=True to create it)") from None
    for _ in range(8):  # another process may remove it between our two calls
        try:
            return make(key, sysv_ipc.IPC_CREX), True
        except sysv_ipc.ExistentialError:
            if exclusive:
                raise FileExistsError(errno.EEXIST, f"a {what} with key {hexkey(key)} already "
                                      f"exists (exclusive=True asks for a new one, like "
                                      f"IPC_CREAT | IPC_EXCL)") from None
        try:
            return make(key, 0), False
        except sysv_ipc.ExistentialError:
            continue
    raise IPCLabError(f"the {what} with key {hexkey(key)} kept appearing and disappearing")


def _denied(what: str, key) -> PermissionError:
    whose = "" if key is None else f" with key {hexkey(key)}"
    return PermissionError(errno.EACCES, f"permission denied: the {what}{whose} exists but its "
                           f"mode does not let user {os.getuid()} in (it belongs to another "
                           f"user, or was created with a narrower mode)")


def remove(kind: str, ident: int, what: str) -> None:
    """Remove (IPC_RMID) object ``ident`` and forget it in the registry; gone already is fine.

    Raises:
        PermissionError: it belongs to another user (``what`` names it in the message).
    """
    try:
        keys.REMOVE[kind](ident)
    except sysv_ipc.ExistentialError:
        pass  # removed by someone else (another handle, ipcrm): the outcome we wanted
    except sysv_ipc.PermissionsError:
        raise PermissionError(f"only the owner or creator may remove {what}") from None
    keys.unregister(kind, ident)
