"""This user's SysV IPC objects: list them (like ipcs) and remove them (like ipcrm).

Reads the kernel's tables in /proc/sysvipc/{shm,sem,msg} (Linux only; the
columns are found by the names in their header line, so added columns do not
matter) and removes with shmctl(2), semctl(2), msgctl(2) ``IPC_RMID`` by id,
through ``sysv_ipc``.  It sees only the IPC namespace of this process (a
container has its own) and does not read semaphore values or queued messages.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import sysv_ipc

from . import keys as _keys
from .errors import IPCLabError

PROC_DIR = "/proc/sysvipc"
# kind -> (file, id column, size column, messages column, attached column)
_COLUMNS = {
    "shm": ("shm", "shmid", "size", None, "nattch"),
    "sem": ("sem", "semid", "nsems", None, None),
    "msg": ("msg", "msqid", "cbytes", "qnum", None),
}


@dataclass(frozen=True)
class SysVObject:
    """One SysV object as the kernel lists it.

    ``size`` is bytes for shm, the number of semaphores for sem, and bytes
    queued for msg; ``messages`` (msg) and ``attached`` (shm) are None for the
    other kinds.  ``key`` is signed like C's key_t; ``ctime`` is the last
    change (creation, IPC_SET, and for semaphores SETVAL) in seconds since 1970.
    """

    kind: str
    key: int
    id: int
    size: int
    messages: int | None
    mode: int
    attached: int | None
    uid: int
    cuid: int
    ctime: float

    @property
    def age(self) -> float:
        """Seconds since ``ctime``."""
        return max(0.0, time.time() - self.ctime)

    def describe(self) -> str:
        """A short label: ``shm key 0x1a2b3c4d id 7``."""
        return f"{self.kind} key 0x{self.key & 0xFFFFFFFF:08x} id {self.id}"


def _read(kind: str) -> list[SysVObject]:
    name, id_col, size_col, msg_col, att_col = _COLUMNS[kind]
    path = f"{PROC_DIR}/{name}"
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise IPCLabError(f"cannot read {path}: listing SysV objects needs Linux "
                          f"with /proc mounted") from None
    if not lines:
        return []
    header = lines[0].split()
    objects = []
    for line in lines[1:]:
        if not line.strip():
            continue
        # Every column is decimal except perms, which the kernel prints in octal (%4o).
        row = {name: int(v, 8 if name == "perms" else 10)
               for name, v in zip(header, line.split(), strict=True)}
        objects.append(SysVObject(
            kind=kind, key=row["key"], id=row[id_col], size=row[size_col],
            messages=row[msg_col] if msg_col else None, mode=row["perms"] & 0o777,
            attached=row[att_col] if att_col else None, uid=row["uid"], cuid=row["cuid"],
            ctime=float(row["ctime"]),
        ))
    return objects


def list_objects(uid: int | None = None, *, all_users: bool = False) -> list[SysVObject]:
    """Return the SysV objects owned or created by ``uid`` (default: you), by kind then id.

    Raises:
        IPCLabError: /proc/sysvipc cannot be read (not Linux).
    """
    uid = os.getuid() if uid is None else uid
    found = [obj for kind in _COLUMNS for obj in _read(kind)
             if all_users or uid in (obj.uid, obj.cuid)]
    return sorted(found, key=lambda o: (list(_COLUMNS).index(o.kind), o.id))


def _human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _size_text(obj: SysVObject) -> str:
    if obj.kind == "sem":
        return f"{obj.size} sem" + ("s" if obj.size != 1 else "")
    if obj.kind == "msg":
        return f"{obj.size} B/{obj.messages} msg"
    return f"{obj.size} B"


def format_table(objects, now: float | None = None) -> str:
    """Return an ipcs-like table (KIND KEY ID SIZE MODE ATTACHED AGE) of ``objects``."""
    objects = list(objects)
    if not objects:
        return "no SysV IPC objects (shared memory, semaphores, message queues)"
    now = time.time() if now is None else now
    rows = [("KIND", "KEY", "ID", "SIZE", "MODE", "ATTACHED", "AGE")]
    for o in objects:
        rows.append((o.kind, f"0x{o.key & 0xFFFFFFFF:08x}", str(o.id), _size_text(o),
                     f"{o.mode:04o}", "-" if o.attached is None else str(o.attached),
                     _human_age(now - o.ctime)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def remove(obj: SysVObject) -> bool:
    """Remove ``obj`` (IPC_RMID by id); return False if it was already gone.

    Raises:
        PermissionError: this user may not remove it.
    """
    remover = {"shm": sysv_ipc.remove_shared_memory, "sem": sysv_ipc.remove_semaphore,
               "msg": sysv_ipc.remove_message_queue}[obj.kind]
    try:
        remover(obj.id)
    except sysv_ipc.ExistentialError:
        return False
    except sysv_ipc.PermissionsError:
        raise PermissionError(f"cannot remove {obj.describe()}: it belongs to uid "
                              f"{obj.uid} and this process may not remove it") from None
    _keys.unregister(obj.kind, obj.id)
    return True


def clean(*, dry_run: bool = False, kinds=None, keys=None, uid: int | None = None):
    """Remove this user's objects, optionally only some kinds or keys; return them.

    With ``dry_run`` nothing is removed and the list says what would be.
    ``keys`` match modulo 2**32, so ``0xdeadbeef`` finds a negative key_t.

    Raises:
        ValueError: a kind other than 'shm', 'sem', 'msg'.
        TypeError: a key that is not an int.
        PermissionError: an object may not be removed by this user.
    """
    if kinds is not None:
        kinds = set(kinds)
        bad = sorted(kinds - set(_COLUMNS))
        if bad:
            raise ValueError(f"kinds must be among 'shm', 'sem', 'msg', got {bad[0]!r}")
    wanted = None
    if keys is not None:
        for k in keys:
            if isinstance(k, bool) or not isinstance(k, int):
                raise TypeError(f"keys must be ints, got {k!r}")
        wanted = {k & 0xFFFFFFFF for k in keys}
    chosen = [o for o in list_objects(uid)
              if (kinds is None or o.kind in kinds)
              and (wanted is None or o.key & 0xFFFFFFFF in wanted)]
    if dry_run:
        return chosen
    return [o for o in chosen if remove(o)]


def cli(args) -> int:
    """Run ``python -m ipclab status|clean|key`` with argparse's ``args``; return the exit code."""
    if args.command == "status":
        print(format_table(list_objects(all_users=args.all_users)))
    elif args.command == "clean":
        done = clean(dry_run=args.dry_run, kinds=args.kind, keys=args.key)
        verb = "would remove" if args.dry_run else "removed"
        for obj in done:
            print(f"{verb} {obj.describe()}")
        print(f"{verb} {len(done)} object" + ("" if len(done) == 1 else "s"))
    elif args.command == "key":
        k = _keys.user_key(args.name)
        print(f"0x{k:08x} {k}")
    else:
        raise ValueError(f"command must be 'status', 'clean' or 'key', got {args.command!r}")
    return 0
