"""Pipes and FIFOs for the benchmark: two one-way byte streams, one per direction.

``ipclab`` goes through :func:`ipclab.pipes.write_all` and
:func:`~ipclab.pipes.read_exactly` (FIFOs made by :func:`ipclab.pipes.fifo` and opened
with :func:`ipclab.pipes.open_fifo`); ``bare`` is the same exchange with blocking
``os.read``/``os.write`` and no timeouts: pipe(2), mkfifo(3), open(2), read(2),
write(2).  The FIFOs live in private folders (mode 0700) that the supervisor removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from .. import pipes
from .mechanisms import Bench, Endpoint, private_dir, register


def _os_write_all(fd: int, data) -> None:
    done = os.write(fd, data)
    if done < len(data):
        view = memoryview(data)
        while done < len(view):
            done += os.write(fd, view[done:])


def _os_read_exactly(fd: int, n: int):
    data = os.read(fd, n)
    if len(data) == n:
        return data
    buf = bytearray(data)
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError(f"end of file after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class _Fds(Bench):
    """Two one-way byte streams (pipes or FIFOs): read fd ``r``, write fd ``w`` per side."""

    def ends(self, r: int, w: int) -> Endpoint:
        def close():
            os.close(r)
            os.close(w)
        if self.impl == "bare":
            return Endpoint(lambda d: _os_write_all(w, d), lambda n: _os_read_exactly(r, n),
                            close)
        t = self.timeout
        return Endpoint(lambda d: pipes.write_all(w, d, t),
                        lambda n: pipes.read_exactly(r, n, t), close)


class _Pipe(_Fds):
    mechanism = "pipe"

    def prepare(self):
        self.ab, self.ba = os.pipe(), os.pipe()

    def endpoint(self, side):
        r, w = (self.ba[0], self.ab[1]) if side == "a" else (self.ab[0], self.ba[1])
        for fd in (*self.ab, *self.ba):
            if fd not in (r, w):
                os.close(fd)
        return self.ends(r, w)


@register
class PipeIpclab(_Pipe):
    impl = "ipclab"


@register
class PipeBare(_Pipe):
    impl = "bare"


@register
class FifoIpclab(_Fds):
    mechanism, impl = "fifo", "ipclab"

    def setup(self):
        self._stack = contextlib.ExitStack()
        self.ab = self._stack.enter_context(pipes.fifo("to-b"))
        self.ba = self._stack.enter_context(pipes.fifo("to-a"))

    def teardown(self):
        self._stack.close()

    def endpoint(self, side):
        # open_fifo(.., "r") returns once the writer has written: each side says hello.
        t = self.timeout
        if side == "a":
            w = pipes.open_fifo(self.ab, "w", t)
            pipes.write_all(w, b"h", t)
            r = pipes.open_fifo(self.ba, "r", t)
            pipes.read_exactly(r, 1, t)
        else:
            r = pipes.open_fifo(self.ab, "r", t)
            pipes.read_exactly(r, 1, t)
            w = pipes.open_fifo(self.ba, "w", t)
            pipes.write_all(w, b"h", t)
        return self.ends(r, w)


@register
class FifoBare(_Fds):
    mechanism, impl = "fifo", "bare"

    def setup(self):
        self.dir = private_dir()
        self.ab, self.ba = (os.path.join(self.dir, n) for n in ("to-b", "to-a"))
        os.mkfifo(self.ab, 0o600)
        os.mkfifo(self.ba, 0o600)

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def endpoint(self, side):
        if side == "a":  # blocking opens meet in the same order on both sides
            w, r = os.open(self.ab, os.O_WRONLY), os.open(self.ba, os.O_RDONLY)
        else:
            r, w = os.open(self.ab, os.O_RDONLY), os.open(self.ba, os.O_WRONLY)
        return self.ends(r, w)
