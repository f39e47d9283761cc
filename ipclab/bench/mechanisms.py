"""What every benchmarked mechanism provides, the wire protocol, and the registry.

Only mkdtemp(3) here (:func:`private_dir`).  The modules :mod:`.streams` (pipe,
FIFO), :mod:`.sockets` (socketpair, Unix and TCP sockets), :mod:`.sysv` (SysV
message queues and shared memory) and :mod:`.stdlib` (POSIX shared memory,
``multiprocessing`` pipes and queues) implement :class:`Bench` twice: ``ipclab``
through ipclab's helpers, ``bare`` with the direct os/socket/sysv_ipc calls
those helpers wrap (``bare`` only where ipclab has no wrapper).

A :class:`Bench` lives in three processes.  The benchmark process (the
supervisor) calls :meth:`Bench.setup` for what could outlive a killed run
(SysV objects, FIFO and socket files) and :meth:`Bench.teardown` to remove it,
always.  The measuring process A calls :meth:`Bench.prepare` (descriptors,
listeners) and forks the echoing process B; each then calls
:meth:`Bench.endpoint` and exchanges messages of ``size`` bytes.  Byte 0 of
each message says what the receiver does with it (:data:`DATA`,
:data:`ACK_ME`: answer :data:`ACK`, :data:`STOP`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import NamedTuple

MECHANISMS = ("pipe", "fifo", "socketpair", "unix", "tcp", "sysv_mq", "sysv_shm",
              "posix_shm", "mp_pipe", "mp_queue")
IMPLS = ("ipclab", "bare", "c")
DATA, ACK_ME, STOP = 0, 1, 2  # byte 0 of a message
ACK = b"\x06"  # the 1-byte answer to ACK_ME
NO_WRAPPER = ("posix_shm", "mp_pipe", "mp_queue")  # ipclab has no helper for these


class Endpoint(NamedTuple):
    """One side of an exchange: ``send(data)``, ``recv(n) -> bytes-like``, ``close()``.

    What ``recv`` returns may be a view valid only until the next ``recv``
    (shared memory hands out its slot, not a copy).
    """

    send: Callable
    recv: Callable
    close: Callable = lambda: None


class Bench:
    """One mechanism through one implementation; see the module docstring for the lifecycle."""

    mechanism = ""
    impl = ""

    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout  # for ipclab's helpers; the supervisor kills a little later

    def setup(self) -> None:
        """In the supervisor, before anything forks: objects that outlive processes."""

    def teardown(self) -> None:
        """In the supervisor, always: remove what :meth:`setup` made."""

    def prepare(self) -> None:
        """In A, before it forks B: descriptors both inherit."""

    def endpoint(self, side: str) -> Endpoint:
        """In A (``side == "a"``) or B (``"b"``), after the fork."""
        raise NotImplementedError

    def finish(self) -> None:
        """In A, always, after B was reaped: release what :meth:`prepare` made."""


REGISTRY: dict[tuple[str, str], type[Bench]] = {}


def register(cls: type[Bench]) -> type[Bench]:
    """Class decorator: make ``cls`` the implementation of (cls.mechanism, cls.impl)."""
    REGISTRY[(cls.mechanism, cls.impl)] = cls
    return cls


def load() -> dict[tuple[str, str], type[Bench]]:
    """Import the implementation modules (once) and return the registry."""
    from . import sockets, stdlib, streams, sysv  # noqa: F401 - they register themselves

    return REGISTRY


def limit(mechanism: str, size: int) -> str | None:
    """Why ``mechanism`` cannot carry ``size``-byte messages on this machine, or None."""
    if mechanism == "sysv_mq":
        from .. import mq

        most = min(mq.max_message(), mq.max_queue())
        if size > most:
            return (f"a message queue carries at most {most} B per message on this machine "
                    f"(msgmax {mq.max_message()}, msgmnb {mq.max_queue()})")
    return None


def private_dir() -> str:
    """A new private folder (mode 0700) for FIFOs and socket files; the caller removes it."""
    return tempfile.mkdtemp(prefix="ipclab-bench-")


def payload(size: int, index: int, flag: int = DATA) -> bytes:
    """The ``index``-th message of a verified run: ``flag``, then bytes that depend on index."""
    seed = index.to_bytes(8, "little") + bytes(range(1, 248))  # 255 bytes: shifts each round
    return bytes([flag]) + (seed * ((size - 1) // len(seed) + 1))[:size - 1]


class Ring:
    """Slots of shared memory handed over with two counting semaphores, "free" and "full".

    The writer takes a free slot, copies into it and gives it to the reader as
    full; the reader gets the slot itself (a memoryview: zero-copy) and gives
    it back as free on its next :meth:`recv`.  With several slots the two
    sides overlap.  The four callables are the semaphores' take and give.
    """

    def __init__(self, slots, take_free, give_free, take_full, give_full):
        for slot in slots:  # map every page now (a read fault), not in the timed loops
            for offset in range(0, len(slot), 4096):
                slot[offset]  # noqa: B018
        self.slots, self.k = slots, len(slots)
        self.take_free, self.give_free = take_free, give_free
        self.take_full, self.give_full = take_full, give_full
        self.w = self.r = 0
        self.held = False

    def send(self, data) -> None:
        self.take_free()
        slot = self.slots[self.w]
        if len(data) == len(slot):
            slot[:] = data
        else:
            slot[:len(data)] = data
        self.w = (self.w + 1) % self.k
        self.give_full()

    def recv(self, n: int):
        if self.held:
            self.give_free()
        self.take_full()
        slot = self.slots[self.r]
        self.r, self.held = (self.r + 1) % self.k, True
        return slot if n == len(slot) else slot[:n]

    def release(self) -> None:
        """Release the slot views (before the memory is closed)."""
        for slot in self.slots:
            slot.release()


def slot_count(size: int) -> int:
    """Slots per direction of a shared-memory ring: at least 2, at most 16, <= 4 MiB in all."""
    return max(2, min(16, (4 << 20) // size))
