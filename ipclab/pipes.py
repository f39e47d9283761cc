"""Pipes and FIFOs with timeouts that explain themselves.

Wraps ``pipe(2)``, ``read(2)``, ``write(2)``, ``poll(2)`` (through
:mod:`selectors`), ``fcntl(2)`` F_GETPIPE_SZ and ``mkfifo(3)``.  Every wait
here has a timeout; when it fires, the :class:`~ipclab.errors.IPCTimeoutError`
says who still holds the other end of the pipe (see :mod:`ipclab.diagnose`),
which is almost always why the wait never ends.

The notebooks call ``os.pipe``/``os.read``/``os.write`` themselves: these
helpers are the plumbing around them, not a replacement.  Not handled:
Windows, and pipes of other users' processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import shutil
import tempfile
import time

from . import diagnose
from ._check import check_bytes, check_fd, check_int, check_timeout
from .errors import IPCTimeoutError

DEFAULT_TIMEOUT = 5.0


def capacity() -> int:
    """Measure how many bytes a new pipe holds before a write would block, on this machine.

    Fills a fresh pipe in non-blocking mode until the kernel answers EAGAIN.
    """
    r, w = os.pipe()
    try:
        os.set_blocking(w, False)
        total, chunk = 0, b"x" * 4096
        while chunk:
            try:
                total += os.write(w, chunk)
            except BlockingIOError:
                chunk = chunk[: len(chunk) // 2]  # top up the last, partly filled page
        return total
    finally:
        os.close(r)
        os.close(w)


def configured_capacity(fd: int) -> int:
    """Return the pipe buffer size the kernel reports for ``fd`` (fcntl F_GETPIPE_SZ).

    Raises:
        OSError: ``fd`` is not a pipe.
    """
    return fcntl.fcntl(check_fd(fd), 1032)  # F_GETPIPE_SZ (fcntl.F_GETPIPE_SZ on 3.10+)


def max_capacity() -> int:
    """Return /proc/sys/fs/pipe-max-size: the most F_SETPIPE_SZ may ask for without privilege."""
    with open("/proc/sys/fs/pipe-max-size") as f:
        return int(f.read())


def _wait(fd: int, event, deadline: float, what) -> None:
    """Wait until ``fd`` is ready for ``event``, or raise a diagnosed timeout."""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, event)
        while not sel.select(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                op = "read" if event == selectors.EVENT_READ else "write"
                me = os.getpid()
                who = diagnose.label(me)
                raise IPCTimeoutError(
                    f"{what() if callable(what) else what} timed out",
                    [f"{who} waited to {op} on {diagnose.fd_report(me, fd, op)}"])


def read_all(fd: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Read ``fd`` until end of file (every write end closed); return all the bytes.

    Raises:
        IPCTimeoutError: no end of file within ``timeout`` seconds; says who holds a write end.
        TypeError, ValueError: bad ``fd`` or ``timeout``.
    """
    check_fd(fd)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    parts = []
    while True:
        _wait(fd, selectors.EVENT_READ, deadline, f"read_all(fd {fd}) waiting for end of file")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def read_exactly(fd: int, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Read exactly ``n`` bytes from ``fd`` (a read may return fewer, so loop).

    Raises:
        EOFError: end of file came first; the message says how many bytes arrived.
        IPCTimeoutError: not all ``n`` bytes within ``timeout``.
        TypeError, ValueError: bad arguments.
    """
    check_fd(fd)
    check_int(n, "n", low=0)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    buf = bytearray()
    while len(buf) < n:
        _wait(fd, selectors.EVENT_READ, deadline, f"read_exactly(fd {fd}, {n})")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError(f"end of file after {len(buf)} of {n} bytes on fd {fd}")
        buf += chunk
    return bytes(buf)


def write_all(fd: int, data, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Write all of ``data`` (bytes, or str as UTF-8) to ``fd``; return the byte count.

    Raises:
        IPCTimeoutError: the pipe stayed full for ``timeout`` seconds (nobody reads).
        BrokenPipeError: nobody holds the read end any more.
        TypeError, ValueError: bad arguments.
    """
    check_fd(fd)
    data = check_bytes(data)
    view = memoryview(data)
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)  # a blocking write of a big buffer could wait past the deadline
    try:
        while view:
            left = len(view)
            _wait(fd, selectors.EVENT_WRITE, deadline,
                  lambda left=left: f"write_all(fd {fd}) after {len(data) - left} "
                                    f"of {len(data)} bytes")
            with contextlib.suppress(BlockingIOError):
                view = view[os.write(fd, view):]
    finally:
        os.set_blocking(fd, was_blocking)
    return len(data)


@contextlib.contextmanager
def fifo(name: str = "fifo"):
    """Make a named pipe (mode 0600) in a new private directory; yield its path; remove both.

    Raises:
        ValueError: ``name`` is empty or contains "/".
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"name must be a file name without '/', got {name!r}")
    folder = tempfile.mkdtemp(prefix="ipclab-")
    path = os.path.join(folder, name)
    try:
        os.mkfifo(path, 0o600)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def open_fifo(path: str, mode: str, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Open a FIFO for "r" or "w" and return a blocking fd; wait at most ``timeout`` for a peer.

    A plain ``open`` of a FIFO blocks until the other end is opened too.  For
    reading we open non-blocking (that never waits) and then wait until a
    writer has written (or come and gone); for writing we retry while the
    kernel answers ENXIO (no reader yet).

    Raises:
        IPCTimeoutError: no process opened the other end in time.
        ValueError: ``mode`` is not "r" or "w".
    """
    if mode not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
    deadline = time.monotonic() + check_timeout(timeout, allow_none=False)
    while True:
        try:
            fd = os.open(path, (os.O_RDONLY if mode == "r" else os.O_WRONLY) | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() >= deadline:
                if e.errno == errno.ENXIO:
                    raise IPCTimeoutError(
                        f"open_fifo({path!r}, 'w'): no process opened it for reading "
                        f"within {timeout:g} s") from None
                raise
            time.sleep(0.01)
    if mode == "r":
        # Linux reports a FIFO readable only once a writer has written or come and gone,
        # never for "no writer yet", so this waits for the peer without busy polling.
        try:
            _wait(fd, selectors.EVENT_READ, deadline,
                  f"open_fifo({path!r}, 'r') waiting for a writer")
        except BaseException:
            os.close(fd)
            raise
    os.set_blocking(fd, True)
    return fd
