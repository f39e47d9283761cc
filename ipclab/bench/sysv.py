"""SysV message queues and shared memory for the benchmark.

``ipclab`` goes through :class:`ipclab.mq.Queue` (``send``/``receive``) and
:class:`ipclab.shm.Segment` (``view``: zero-copy slots) handed over with
:class:`ipclab.sem.Semaphore` (``acquire``/``release``, which wait in
semtimedop(2) through ctypes).  ``bare`` uses ``sysv_ipc`` directly: msgsnd(2)
and msgrcv(2) that block without a timeout, ``memoryview(SharedMemory)`` and
semop(2).  Every object is created by the supervisor, private (IPC_PRIVATE or
a fresh random key) and mode 0600, and removed by it whatever happens; a
process blocked on an object that is removed wakes up with EIDRM.

The queue carries both directions on one queue: type 1 to B, type 2 to A.
Shared memory holds two rings (A to B, B to A) of :func:`.mechanisms.slot_count`
slots of ``size`` bytes each (see :class:`.mechanisms.Ring`).
"""

from __future__ import annotations

import sysv_ipc

from .. import mq, sem, shm
from .mechanisms import Bench, Endpoint, Ring, register, slot_count

_PRIVATE = sysv_ipc.IPC_PRIVATE


class _Queue(Bench):
    mechanism = "sysv_mq"

    def endpoint(self, side):
        out, into = (1, 2) if side == "a" else (2, 1)
        return self.ends(out, into)


@register
class QueueIpclab(_Queue):
    impl = "ipclab"

    def setup(self):
        self.q = mq.Queue(None, timeout=self.timeout)

    def teardown(self):
        self.q.remove()

    def ends(self, out, into):
        q = self.q
        return Endpoint(lambda d: q.send(d, out), lambda n: q.receive(into)[0])


@register
class QueueBare(_Queue):
    impl = "bare"

    def setup(self):
        self.q = sysv_ipc.MessageQueue(_PRIVATE, sysv_ipc.IPC_CREX, 0o600,
                                       max_message_size=mq.max_message())

    def teardown(self):
        self.q.remove()

    def ends(self, out, into):
        q = self.q
        return Endpoint(lambda d: q.send(d, type=out), lambda n: q.receive(type=into)[0])


class _Shm(Bench):
    """Two rings in one segment; ``self.sems`` = free/full for A->B, then for B->A."""

    mechanism = "sysv_shm"

    def endpoint(self, side):
        k, size = slot_count(self.size), self.size
        views = [self.view(i * size, size) for i in range(2 * k)]
        rings = [Ring(views[d * k:(d + 1) * k], *self.handoff(d)) for d in (0, 1)]
        out, into = rings if side == "a" else rings[::-1]
        return Endpoint(out.send, into.recv)


@register
class ShmIpclab(_Shm):
    impl = "ipclab"

    def setup(self):
        k, t = slot_count(self.size), self.timeout
        self.seg = shm.Segment(None, 2 * k * self.size)
        self.sems = [sem.Semaphore(None, value, timeout=t) for value in (k, 0, k, 0)]

    def teardown(self):
        for s in self.sems:
            s.remove()
        self.seg.close()
        self.seg.remove()

    def view(self, offset, count):
        return self.seg.view(offset, count)

    def handoff(self, d):
        free, full = self.sems[2 * d:2 * d + 2]
        return free.acquire, free.release, full.acquire, full.release


@register
class ShmBare(_Shm):
    impl = "bare"

    def setup(self):
        k = slot_count(self.size)
        self.mem = sysv_ipc.SharedMemory(_PRIVATE, sysv_ipc.IPC_CREX, 0o600, 2 * k * self.size)
        self.sems = [sysv_ipc.Semaphore(_PRIVATE, sysv_ipc.IPC_CREX, 0o600, value)
                     for value in (k, 0, k, 0)]

    def teardown(self):
        for s in self.sems:
            s.remove()
        self.mem.detach()
        self.mem.remove()

    def view(self, offset, count):
        return memoryview(self.mem)[offset:offset + count]

    def handoff(self, d):
        free, full = self.sems[2 * d:2 * d + 2]
        return free.acquire, free.release, full.acquire, full.release
