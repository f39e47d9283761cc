"""The standard library's mechanisms for the benchmark, ``bare`` only.

ipclab has no wrapper for these (the course uses them as they are), so there
is no ``ipclab`` row to compare: POSIX shared memory
(``multiprocessing.shared_memory``: shm_open(3), mmap(2)) handed over with
``multiprocessing`` semaphores (sem_open(3) family, futexes), and
``multiprocessing.Pipe`` (a socketpair(2) with 4-byte length prefixes) and
``multiprocessing.Queue`` (a pipe, a lock and a feeder thread that pickles;
the pickles are the library's own, between our two processes).  Everything is
made in A (fork start method, see :func:`ipclab.proc.fork_context`); the
segment is unlinked by A, and if A is killed, by multiprocessing's resource
tracker.
"""

from __future__ import annotations

from multiprocessing import shared_memory

from .. import proc
from .mechanisms import Bench, Endpoint, Ring, register, slot_count


@register
class PosixShmBare(Bench):
    mechanism, impl = "posix_shm", "bare"

    def prepare(self):
        ctx, k = proc.fork_context(), slot_count(self.size)
        self.mem = shared_memory.SharedMemory(create=True, size=2 * k * self.size)
        self.sems = [ctx.Semaphore(value) for value in (k, 0, k, 0)]

    def endpoint(self, side):
        k, size = slot_count(self.size), self.size
        views = [self.mem.buf[i * size:(i + 1) * size] for i in range(2 * k)]
        rings = []
        for d in (0, 1):
            free, full = self.sems[2 * d:2 * d + 2]
            rings.append(Ring(views[d * k:(d + 1) * k], free.acquire, free.release,
                              full.acquire, full.release))
        out, into = rings if side == "a" else rings[::-1]
        return Endpoint(out.send, into.recv)

    def finish(self):
        if hasattr(self, "mem"):
            self.mem.unlink()  # the mapping goes with the process


@register
class MpPipeBare(Bench):
    mechanism, impl = "mp_pipe", "bare"

    def prepare(self):
        self.ends = proc.fork_context().Pipe()

    def endpoint(self, side):
        mine, other = self.ends if side == "a" else self.ends[::-1]
        other.close()
        return Endpoint(mine.send_bytes, lambda n: mine.recv_bytes(), mine.close)


@register
class MpQueueBare(Bench):
    mechanism, impl = "mp_queue", "bare"

    def prepare(self):
        ctx = proc.fork_context()
        self.queues = ctx.Queue(), ctx.Queue()

    def endpoint(self, side):
        out, into = self.queues if side == "a" else self.queues[::-1]

        def close():  # the feeder thread must have written everything before we exit
            out.close()
            out.join_thread()
        return Endpoint(out.put, lambda n: into.get(), close)
