"""SysV shared memory segments: create or open by key, read and write at offsets, zero-copy views.

Wraps shmget(2), shmat(2), shmdt(2) and shmctl(2) ``IPC_RMID`` through
``sysv_ipc.SharedMemory``.  A segment is a byte array any process that knows
its key can attach; it outlives the process that made it until someone removes
it.  Nothing here synchronises access: guard a segment with
:class:`ipclab.sem.Mutex`.  POSIX shared memory is
``multiprocessing.shared_memory``; this module does not cover it.

How the usual ways of opening a segment map onto :class:`Segment`:

====================  =============================  ====================================
PHP ``shmop_open``    C ``shmget`` / ``shmat``       ipclab
====================  =============================  ====================================
``"c"`` create        ``IPC_CREAT | 0600``           ``Segment(key, size)``
``"n"`` new only      ``IPC_CREAT | IPC_EXCL``       ``Segment(key, size, exclusive=True)``
``"w"`` read/write    ``shmget(key, 0, 0)``          ``Segment(key, create=False)``
``"a"`` read only     ``shmat(.., SHM_RDONLY)``      ``Segment(key, create=False, readonly=True)``
(none)                ``IPC_PRIVATE``                ``Segment(None, size)`` (fresh key)
====================  =============================  ====================================
"""

from __future__ import annotations

import pickle

import sysv_ipc

from . import _sysv, keys
from ._check import check_int
from .errors import IPCLabError, LimitError, ObjectGoneError


def max_size() -> int:
    """Return the largest segment this machine allows: SHMMAX (/proc/sys/kernel/shmmax)."""
    return _sysv.kernel_limit("shmmax")[0]


class Segment:
    """A SysV shared memory segment attached to this process (a context manager).

    ``with Segment(None, 4096) as seg:`` creates a segment with a fresh private
    key, and detaches (and, because it created it, removes) it at the end of
    the block.  ``close()`` only detaches; ``remove()`` marks the segment for
    removal: the kernel frees it once the last process has detached, and until
    then processes already attached go on using it.  Forked children inherit
    the attachment.  New segments are filled with zero bytes.

    Raises (constructor):
        TypeError, ValueError: a bad key, size, mode or flag; size missing when
            creating; size beyond SHMMAX; or larger than an existing segment.
        FileExistsError: exclusive=True and a segment with this key exists.
        ObjectGoneError: create=False and no segment has this key.
        PermissionError: the segment exists but its mode does not let you in.
        LimitError: the kernel has no room for it (SHMALL, SHMMNI, memory).
    """

    def __init__(self, key=None, size: int | None = None, *, create: bool = True,
                 mode: int = 0o600, exclusive: bool = False, readonly: bool = False):
        mode = _sysv.check_mode(mode)
        self.readonly = _sysv.check_flag(readonly, "readonly")
        create = _sysv.check_flag(create, "create")
        exclusive = _sysv.check_flag(exclusive, "exclusive")
        if size is not None:
            check_int(size, "size")
            if not 1 <= size <= max_size():
                raise ValueError(f"size must be between 1 and {max_size()} bytes (SHMMAX), "
                                 f"got {size!r}")
        if readonly and create:
            raise ValueError("readonly=True attaches an existing segment (PHP mode 'a'); "
                             "pass create=False with it")
        self._want = size
        self._guard = None  # memoryview that every view() exports from
        opening_only = create and size is None  # "c" with no size: fine if it exists
        if opening_only and (key is None or exclusive):
            raise ValueError("size is required to create a new segment, got size=None")
        try:
            self._shm, self.created = _sysv.open_object(
                "shm", lambda k, flags: self._make(k, flags, mode), key,
                create=create and not opening_only, exclusive=exclusive)
        except ObjectGoneError:
            if not opening_only:
                raise
            raise ValueError(f"size is required to create a segment (no segment has key "
                             f"{_sysv.hexkey(keys.resolve_key(key))} yet), got size=None") \
                from None
        self.key, self.id, self.size = self._shm.key, self._shm.id, self._shm.size
        self.mode = mode if self.created else self._shm.mode & 0o777
        self.removed = False

    def _make(self, key, flags, mode):
        creating = bool(flags & sysv_ipc.IPC_CREAT)
        ask = mode if creating else 0o400 if self.readonly else 0o600
        try:
            shm = sysv_ipc.SharedMemory(key, flags, ask, self._want or 0 if creating else 0,
                                        b"\0")
        except (sysv_ipc.ExistentialError, sysv_ipc.PermissionsError):
            raise
        except MemoryError:
            raise LimitError(f"no room for a {self._want}-byte segment: the kernel's SHMALL "
                             f"or this machine's memory is exhausted") from None
        except sysv_ipc.Error as e:
            raise LimitError(f"cannot create the segment: {e} (SHMMNI segments at most?)") \
                from None
        if self._want is not None and shm.size < self._want:
            shm.detach()
            raise ValueError(f"the segment with key {_sysv.hexkey(key)} already exists with "
                             f"{shm.size} bytes, fewer than size={self._want}; open it with "
                             f"size=None")
        if self.readonly:
            shm.detach()
            shm.attach(None, sysv_ipc.SHM_RDONLY)
        return shm

    # -- reading and writing -------------------------------------------------------------

    def _span(self, offset, count, what: str) -> tuple[int, int]:
        if self._shm is None:
            raise ObjectGoneError("this segment handle is closed (detached); open it again")
        size = self.size
        if type(offset) is int and 0 <= offset <= size:  # the usual case, checked cheaply
            if count is None:
                return offset, size - offset
            if type(count) is int and 0 <= count <= size - offset:
                return offset, count
        offset = check_int(offset, "offset", low=0)
        if offset > self.size:
            raise ValueError(f"offset must be between 0 and the segment's size {self.size}, "
                             f"got {offset}")
        count = self.size - offset if count is None else check_int(count, "count", low=0)
        if offset + count > self.size:
            raise ValueError(f"cannot {what} {count} bytes at offset {offset}: past the end of "
                             f"the {self.size}-byte segment (at most {self.size - offset} fit)")
        return offset, count

    def read(self, offset: int = 0, count: int | None = None) -> bytes:
        """Return a copy of ``count`` bytes from ``offset`` (default: to the end).

        Raises:
            TypeError, ValueError: bad offset or count, or a range past the end.
            ObjectGoneError: the handle is closed.
        """
        offset, count = self._span(offset, count, "read")
        return bytes(self._memory()[offset:offset + count])

    def write(self, data, offset: int = 0) -> int:
        """Copy ``data`` (bytes-like; a str is encoded UTF-8) to ``offset``; return its length.

        Raises:
            TypeError: data is not bytes-like or str.
            ValueError: bad offset, or data would run past the end.
            PermissionError: the segment is attached read-only.
            ObjectGoneError: the handle is closed.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like or str, got {type(data).__name__}")
        data = memoryview(data).cast("B") if isinstance(data, memoryview) else data
        offset, _ = self._span(offset, len(data), "write")
        if self.readonly:
            raise PermissionError("this segment is attached read-only (readonly=True)")
        end = offset + len(data)
        if end > offset:
            self._memory()[offset:end] = data
        return len(data)

    def view(self, offset: int = 0, count: int | None = None) -> memoryview:
        """Return a zero-copy, writable memoryview of the segment's bytes (read-only if readonly).

        Writes through the view land in shared memory directly.  Release the
        view (``view.release()`` or ``del``) before :meth:`close`: a view that
        outlived the attachment would point at unmapped memory, so ``close``
        refuses while one is alive.

        Raises:
            as :meth:`read`.
        """
        offset, count = self._span(offset, count, "view")
        # PickleBuffer is only used as a counting wrapper (nothing is pickled): each view
        # holds an export of the guard, so guard.release() fails while any view is alive.
        return memoryview(pickle.PickleBuffer(self._memory()))[offset:offset + count]

    def _memory(self) -> memoryview:
        """The guard: a memoryview of the whole attachment that read, write and view go
        through (sysv_ipc's own read and write would ask shmctl(IPC_STAT) for the size
        on every call; the size cannot change while attached)."""
        if self._guard is None:
            whole = memoryview(self._shm)
            self._guard = whole.toreadonly() if self.readonly else whole
        return self._guard

    # -- lifetime ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._shm is None

    @property
    def attached(self) -> int:
        """How many processes have the segment attached now (shm_nattch)."""
        if self._shm is None:
            raise ObjectGoneError("this segment handle is closed")
        return self._shm.number_attached

    def remove(self) -> None:
        """Mark the segment for removal (IPC_RMID); attached processes keep it until they detach.

        Removing twice is fine.

        Raises:
            PermissionError: it belongs to another user.
        """
        if self.removed:
            return
        _sysv.remove("shm", self.id, f"the segment with key {_sysv.hexkey(self.key)}")
        self.removed = True

    def close(self) -> None:
        """Detach from this process (shmdt); closing twice is fine.

        Raises:
            IPCLabError: a view from :meth:`view` is still alive.
        """
        if self._shm is None:
            return
        if self._guard is not None:
            try:
                self._guard.release()
            except BufferError:
                raise IPCLabError("a view of this segment is still in use: call .release() "
                                  "on it (or del it) before closing; using it after the "
                                  "segment is detached would crash the process") from None
            self._guard = None
        try:
            self._shm.detach()
        except sysv_ipc.NotAttachedError:
            pass
        self._shm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        finally:
            if self.created:
                self.remove()

    def __repr__(self) -> str:
        state = ("closed" if self._shm is None else "read-only" if self.readonly else "attached")
        removed = ", removed" if self.removed else ""
        return f"<Segment key={_sysv.hexkey(self.key)} size={self.size} {state}{removed}>"
