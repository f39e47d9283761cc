"""Pipes and FIFOs with timeouts that explain themselves.

Wraps ``pipe(2)``, ``read(2)``, ``write(2)``, ``preadv2(2)``/``pwritev2(2)`` (RWF_NOWAIT),
``poll(2)``, ``fcntl(2)`` (F_GETPIPE_SZ, O_NONBLOCK) and ``mkfifo(3)``.  Every
wait here has a timeout; when it fires, the :class:`~ipclab.errors.IPCTimeoutError`
says who still holds the other end of the pipe (see :mod:`ipclab.diagnose`),
which is almost always why the wait never ends.

The notebooks call ``os.pipe``/``os.read``/``os.write`` themselves: these
helpers are the plumbing around them, not a replacement, and add little (a
read is a poll and a read, or a single ``preadv2`` on a pipe whose bytes keep
arriving before they are asked for; a write that fits is one system call).  Not
handled: Windows; pipes of other users' processes; two processes reading one
pipe at once (one may take the bytes the other's poll saw, and the other's read
then waits without a timeout); and where RWF_NOWAIT is refused (FIFOs, kernels
before 6.4), two processes writing to one full pipe at once (see write_all).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import select
import shutil
import tempfile
import time

from . import diagnose
from ._check import check_bytes, check_fd, check_int, check_timeout
from .errors import IPCTimeoutError

DEFAULT_TIMEOUT = 5.0
_IN, _OUT, _PIPE_BUF = select.POLLIN, select.POLLOUT, select.PIPE_BUF
_INF = math.inf
_WRITE_WHAT = "write_all(fd {}) after {} of {} bytes"
# pwritev2(2) with RWF_NOWAIT fails with EAGAIN instead of blocking, like O_NONBLOCK but for this
# one call: O_NONBLOCK is a flag of the open file description, shared by every process holding
# it (forked, or passed over a socket), so setting it even briefly can make another process's
# plain write fail.  Linux 6.4+ takes RWF_NOWAIT on pipe(2) pipes; FIFOs (still in 6.18), other
# files and older kernels refuse it (EOPNOTSUPP), and write_all then goes the portable way.
# Refusing fd numbers are remembered so that small writes skip the refusal.
_NOWAIT = getattr(os, "RWF_NOWAIT", 0) if hasattr(os, "pwritev") else 0
_NOWAIT_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ESPIPE)
_NOWAIT_REFUSED: set[int] = set()
# Reads take RWF_NOWAIT too (preadv2): one system call when the bytes are already there (a
# stream), where poll + read takes two.  When they are not (a ping-pong: the reply is still
# to come) the failed try costs a third and an exception (1.1 µs here), so only an fd whose
# last read found its bytes waiting tries first; every 256th read on another fd probes, to
# notice a stream.  Tried with every 8th and 32nd: ping-pongs took 3-10% longer.  Also tried:
# sched_yield(2) before the first try, as ipclab.mq does, so that a peer on this CPU answers
# first.  A 64 B ping-pong pinned to one CPU then took 5.7 µs in 1 run of 6 (poll + read:
# 6.8-7.0, a blocking read: 5.1-5.2) and about 10 µs in the other 5, where 40% of the tries
# failed (likely: once either side has slept, EEVDF often does not hand the CPU over on a
# yield; not checked in the scheduler).  Not kept.
_EAGER: set[int] = set()
_EAGER_MAX = 65536  # above this the copy dominates, and the bytes rarely wait whole
_reads = 0


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


def _wait(fd: int, event: int, deadline: float, what: str, *args) -> None:
    """Wait until ``fd`` is ready for ``event`` (POLLIN or POLLOUT), or raise a diagnosed timeout.

    ``what.format(*args)`` names the call in the message, formatted only on a timeout.
    """
    # A poll object holds no kernel resource (an epoll selector costs three more system calls
    # per wait), and Python retries poll(2) after EINTR with the time that is left.
    poller = select.poll()
    poller.register(fd, event)
    while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000.0):
        if time.monotonic() >= deadline:
            op = "read" if event == _IN else "write"
            me = os.getpid()
            who = diagnose.label(me)
            raise IPCTimeoutError(
                f"{what.format(*args)} timed out",
                [f"{who} waited to {op} on {diagnose.fd_report(me, fd, op)}"])


# The argument checks test the usual exact types first (`type(x) is int` costs a tenth of
# `isinstance(x, numbers.Integral)`); anything else takes the full check in ipclab._check,
# which raises with its own message.

def read_all(fd: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Read ``fd`` until end of file (every write end closed); return all the bytes.

    Raises:
        IPCTimeoutError: no end of file within ``timeout`` seconds; says who holds a write end.
        TypeError, ValueError: bad ``fd`` or ``timeout``.
    """
    if type(fd) is not int or fd < 0:
        check_fd(fd)
    if type(timeout) is not float or not 0.0 < timeout < _INF:
        timeout = check_timeout(timeout, allow_none=False)
    deadline = time.monotonic() + timeout
    parts = []
    while True:
        _wait(fd, _IN, deadline, "read_all(fd {}) waiting for end of file", fd)
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
    if type(fd) is not int or fd < 0:
        check_fd(fd)
    if type(n) is not int or n < 0:
        check_int(n, "n", low=0)
    if type(timeout) is not float or not 0.0 < timeout < _INF:
        timeout = check_timeout(timeout, allow_none=False)
    if n == 0:
        return b""
    chunk = None
    if fd in _EAGER and n <= _EAGER_MAX:
        chunk = _read_nowait(fd, n)
        if chunk is None:
            _EAGER.discard(fd)
    else:
        global _reads
        _reads += 1
        if not _reads & 255 and _NOWAIT and n <= _EAGER_MAX and fd not in _NOWAIT_REFUSED:
            chunk = _read_nowait(fd, n)
            if chunk is not None:
                _EAGER.add(fd)
    if chunk is not None:  # read without waiting: all of it, or the first part
        return chunk if len(chunk) == n else _read_rest(fd, n, chunk, time.monotonic() + timeout)
    # A pipe has no read timeout, so poll(2) first; then read(2) returns at once with what is
    # there, or b"" at end of file.  The first round is inlined: it is usually the only one.
    poller = select.poll()
    poller.register(fd, _IN)
    deadline = time.monotonic() + timeout
    if poller.poll(timeout * 1000.0):
        chunk = os.read(fd, n)
        if len(chunk) == n:
            return chunk
    return _read_rest(fd, n, chunk, deadline)


def _read_rest(fd: int, n: int, chunk, deadline: float) -> bytes:
    """read_exactly's loop, after a first read that returned ``chunk`` (None: none yet)."""
    parts, got = [], 0
    while True:
        if chunk is not None:
            if not chunk:
                raise EOFError(f"end of file after {got} of {n} bytes on fd {fd}")
            parts.append(chunk)
            got += len(chunk)
            if got == n:
                return b"".join(parts)
        _wait(fd, _IN, deadline, "read_exactly(fd {}, {})", fd, n)
        chunk = os.read(fd, n - got)


def write_all(fd: int, data, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Write all of ``data`` (bytes, or str as UTF-8) to ``fd``; return the byte count.

    Waits in poll(2) while the pipe is full, never in write(2), so the timeout holds; except
    where RWF_NOWAIT is refused (FIFOs, kernels before 6.4): there a write of up to PIPE_BUF
    bytes may wait in write(2) if another writer takes the room poll saw, and a bigger one
    sets O_NONBLOCK meanwhile, which every holder of the open file sees.

    Raises:
        IPCTimeoutError: the pipe stayed full for ``timeout`` seconds (nobody reads).
        BrokenPipeError: nobody holds the read end any more.
        TypeError, ValueError: bad arguments.
    """
    if type(fd) is not int or fd < 0:
        check_fd(fd)
    if type(data) is not bytes:
        data = check_bytes(data)
    if type(timeout) is not float or not 0.0 < timeout < _INF:
        timeout = check_timeout(timeout, allow_none=False)
    # A blocking write(2) may wait for the reader for ever, so never start one that can block:
    # above PIPE_BUF (4096) bytes a pipe takes what fits and the loop waits for room.
    size, view, deadline = len(data), data, None
    if _NOWAIT and (size > _PIPE_BUF or fd not in _NOWAIT_REFUSED):
        done = _write_nowait(fd, data)
        if done == size:
            return size  # the usual case: it fitted, one system call, no wait
        if done is not None:  # the pipe is full, or took part of a big write
            deadline, view = time.monotonic() + timeout, memoryview(data)[done:]
            while True:
                _wait(fd, _OUT, deadline, _WRITE_WHAT, fd, size - len(view), size)
                done = _write_nowait(fd, view)
                if not done:  # poll saw room, yet nothing went in: another writer was
                    break     # faster, or this is not a pipe.  Go on the portable way.
                view = view[done:]
                if not view:
                    return size
    if len(view) <= _PIPE_BUF:
        # With room for one more page, a write of at most PIPE_BUF bytes goes in whole at once
        # (POSIX makes it atomic), so poll(2) with no timeout tells that it will not block.
        # Only another writer taking that room between poll and write can make it wait.
        poller = select.poll()
        poller.register(fd, _OUT)
        while view:
            if not poller.poll(0):
                deadline = deadline or time.monotonic() + timeout
                _wait(fd, _OUT, deadline, _WRITE_WHAT, fd, size - len(view), size)
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:  # fd is non-blocking already and another writer was faster
                pass
        return size
    # Big writes to FIFOs or on kernels without RWF_NOWAIT for pipes: set O_NONBLOCK for the
    # duration, as ipclab always did, though other holders of the open file see it meanwhile.
    deadline, view = deadline or time.monotonic() + timeout, memoryview(view)
    was_blocking = os.get_blocking(fd)
    if was_blocking:
        os.set_blocking(fd, False)
    try:
        while view:
            with contextlib.suppress(BlockingIOError):
                view = view[os.write(fd, view):]
            if view:
                _wait(fd, _OUT, deadline, _WRITE_WHAT, fd, size - len(view), size)
    finally:
        if was_blocking:
            os.set_blocking(fd, True)
    return size


def _read_nowait(fd: int, n: int) -> bytes | None:
    """Read up to ``n`` bytes of what ``fd`` holds now (RWF_NOWAIT): b"" at end of file,
    None when nothing is waiting or the fd refuses RWF_NOWAIT (then it is remembered)."""
    buf = bytearray(n)
    try:
        got = os.preadv(fd, (buf,), -1, _NOWAIT)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno not in _NOWAIT_UNSUPPORTED:
            raise
        _NOWAIT_REFUSED.add(fd)
        return None
    return bytes(buf) if got == n else bytes(buf[:got])


def _write_nowait(fd: int, data) -> int | None:
    """Write what fits into ``fd`` now, never waiting (RWF_NOWAIT); None if not supported."""
    try:
        return os.pwritev(fd, (data,), -1, _NOWAIT)  # offset -1: at the file position
    except BlockingIOError:
        return 0
    except OSError as e:
        if e.errno not in _NOWAIT_UNSUPPORTED:
            raise
        _NOWAIT_REFUSED.add(fd)  # if the number is reused, small writes take the poll way
        return None


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
            _wait(fd, _IN, deadline, "open_fifo({!r}, 'r') waiting for a writer", path)
        except BaseException:
            os.close(fd)
            raise
    os.set_blocking(fd, True)
    return fd
