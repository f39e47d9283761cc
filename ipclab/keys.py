"""Per-user SysV IPC keys, ftok(3), and the registry of the objects ipclab created.

Wraps stat(2) (for :func:`ftok`) and, for :func:`cleanup`, shmctl(2), semctl(2)
and msgctl(2) with ``IPC_RMID`` (through ``sysv_ipc``).  A SysV key is one
32-bit number shared by every user of a host, so two students who both pick
``1234`` collide; :func:`user_key` derives a key from the user id and a name
instead.  Nothing here creates an IPC object: callers create, then
:func:`register` what they made so :func:`cleanup` can remove it at exit.
Objects made by other programs, or by this process before it registered them,
are not tracked (``python -m ipclab clean`` finds those).
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import os
import random
from dataclasses import dataclass

import sysv_ipc

from ._check import check_callable, check_int
from .errors import IPCLabError

KEY_MIN = -(2**31)  # key_t is a signed 32-bit int in C
KEY_MAX = 2**31 - 1
KINDS = ("shm", "sem", "msg")


def user_key(name: str, uid: int | None = None) -> int:
    """Return the SysV key ipclab uses for ``name`` and user ``uid`` (default: you).

    The algorithm, so C or PHP programs can compute the same key:

    1. ``s = "ipclab:<uid>:<name>"`` encoded UTF-8, uid in decimal
       (``"ipclab:1000:demo"``);
    2. ``d = BLAKE2b-512(s)``: the 64-byte digest with no key, as printed by
       ``printf %s "$s" | b2sum`` or PHP's ``sodium_crypto_generichash($s, "", 64)``;
    3. ``k = (d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3]) & 0x7FFFFFFF``
       (first 4 bytes, big-endian, sign bit cleared);
    4. if ``k == 0`` use 1, because key 0 is ``IPC_PRIVATE``.

    Raises:
        TypeError: name is not a str, or uid is not an int.
        ValueError: name is empty, or uid is negative.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    uid = os.getuid() if uid is None else check_int(uid, "uid", low=0)
    digest = hashlib.blake2b(f"ipclab:{uid}:{name}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") & 0x7FFFFFFF) or 1


def ftok(path, proj_id) -> int:
    """Return glibc's ``ftok(path, proj_id)``: a key made from a file's inode and device.

    The key is ``(st_ino & 0xffff) | (st_dev & 0xff) << 16 | (proj_id & 0xff) << 24``,
    returned signed like C's ``key_t`` (PHP's ``ftok`` gives the same bits).
    Two files can share a key (only 16 bits of the inode are used), and a file
    that is deleted and recreated usually gets a new key.  ``proj_id`` is an int
    1..255 or, as in PHP, a one-character str; 0 is refused because ftok(3)
    says proj_id must be nonzero (glibc would accept it, other systems do not).

    Raises:
        TypeError: proj_id is neither an int nor a str.
        ValueError: proj_id is out of range, or a str that is not one character.
        FileNotFoundError: path does not exist.
    """
    if isinstance(proj_id, str):
        if len(proj_id) != 1 or not 1 <= ord(proj_id) <= 255:
            raise ValueError(f"proj_id as a str must be one character with code 1..255, "
                             f"got {proj_id!r}")
        proj_id = ord(proj_id)
    elif isinstance(proj_id, bool) or not isinstance(proj_id, int):
        raise TypeError(f"proj_id must be an int between 1 and 255 or a one-character str, "
                        f"got {proj_id!r}")
    elif not 1 <= proj_id <= 255:
        raise ValueError(f"proj_id must be between 1 and 255 (0 is refused: ftok(3) requires "
                         f"a nonzero proj_id), got {proj_id!r}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "ftok needs an existing file (the key is made "
                                "from its inode), no such file", os.fspath(path)) from None
    key = (st.st_ino & 0xFFFF) | ((st.st_dev & 0xFF) << 16) | ((proj_id & 0xFF) << 24)
    return key - 2**32 if key > KEY_MAX else key


def resolve_key(key, *, what: str = "object") -> int | None:
    """Turn what a student passed as a key into an int key, or None for a fresh private one.

    ``None`` means "a new object nobody else can find by key"; an int is used
    as is; a str is a name for :func:`user_key`.

    Raises:
        TypeError: key is not None, an int or a str.
        ValueError: the int is 0 (IPC_PRIVATE) or outside key_t, or the str is empty.
    """
    allowed = (f"{what} key must be None (a fresh private key), a nonzero int between "
               f"{KEY_MIN} and {KEY_MAX}, or a str name")
    if key is None:
        return None
    if isinstance(key, str):
        if not key:
            raise ValueError(f"{allowed}, got {key!r}")
        return user_key(key)
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(f"{allowed}, got {type(key).__name__} {key!r}")
    if key == 0:
        raise ValueError(f"{allowed}, got 0: key 0 is IPC_PRIVATE; pass key=None for a "
                         f"fresh private key")
    if not KEY_MIN <= key <= KEY_MAX:
        raise ValueError(f"{allowed}, got {key!r}")
    return key


def create_unique(make, *, attempts: int = 32):
    """Call ``make(key)`` with random positive keys until one is free; return its result.

    ``make`` must create with ``IPC_CREX`` so that a taken key raises
    ``sysv_ipc.ExistentialError``; any other exception propagates at once.

    Raises:
        TypeError, ValueError: make is not callable, or attempts is not an int >= 1.
        IPCLabError: every one of the ``attempts`` keys was taken.
    """
    check_callable(make, "make")
    check_int(attempts, "attempts", low=1)
    for _ in range(attempts):
        key = random.randint(1, KEY_MAX)
        try:
            return make(key)
        except sysv_ipc.ExistentialError:
            continue
    raise IPCLabError(f"no free SysV key found in {attempts} random tries; remove old objects "
                      f"with `python -m ipclab clean`")


@dataclass(frozen=True)
class Registered:
    """One object in the registry: what it is, and which process made it."""

    kind: str
    id: int
    key: int
    owner: int  # pid of the process that registered it


_registry: dict[tuple[str, int], Registered] = {}
_atexit_installed = False
REMOVE = {  # IPC_RMID by kind
    "shm": sysv_ipc.remove_shared_memory,
    "sem": sysv_ipc.remove_semaphore,
    "msg": sysv_ipc.remove_message_queue,
}


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of 'shm', 'sem', 'msg', got {kind!r}")
    return kind


def register(kind: str, ident: int, key: int) -> None:
    """Remember that this process created SysV object ``ident`` so :func:`cleanup` removes it.

    The first call installs an ``atexit`` hook running :func:`cleanup`.

    Raises:
        ValueError, TypeError: unknown kind, or ident/key not ints.
    """
    global _atexit_installed
    _check_kind(kind)
    check_int(ident, "ident", low=0)
    check_int(key, "key", low=KEY_MIN, high=KEY_MAX)
    _registry[(kind, ident)] = Registered(kind, ident, key, os.getpid())
    if not _atexit_installed:
        atexit.register(cleanup)
        _atexit_installed = True


def unregister(kind: str, ident: int) -> None:
    """Forget an object (its owner removed it); forgetting an unknown object is fine.

    Raises:
        ValueError: unknown kind.
    """
    _registry.pop((_check_kind(kind), ident), None)


def registered() -> list[Registered]:
    """Return the registered objects, oldest first (including those of a parent process)."""
    return list(_registry.values())


def cleanup() -> list[Registered]:
    """Remove (IPC_RMID) every registered object this process owns; return those removed.

    Objects registered by a parent before ``fork()`` stay: the child inherits
    the registry but the objects are the parent's to remove.  An object that
    is already gone is forgotten silently.

    Raises:
        PermissionError: an object exists but this user may not remove it.
    """
    pid = os.getpid()
    removed = []
    for entry in list(_registry.values()):
        if entry.owner != pid:
            continue
        try:
            REMOVE[entry.kind](entry.id)
        except sysv_ipc.ExistentialError:
            pass  # someone (ipcrm, the student) removed it first
        except sysv_ipc.PermissionsError:
            raise PermissionError(f"cannot remove {entry.kind} id {entry.id}: permission "
                                  f"denied") from None
        else:
            removed.append(entry)
        _registry.pop((entry.kind, entry.id), None)
    return removed
