"""Pass an open file descriptor to another process over an AF_UNIX socket.

Wraps ``sendmsg(2)`` and ``recvmsg(2)`` with an ``SCM_RIGHTS`` control
message (what ``socket.send_fds``/``socket.recv_fds`` do).  The kernel does
not send a number: it installs a *new* descriptor in the receiver that refers
to the same open file description as the sender's, so both share one file
offset and one set of status flags, exactly as after ``fork`` or ``dup``.  The
receiver may get a different number; the sender may close its copy at once.

Each descriptor rides on a short message (at least one byte: on a stream
socket the kernel drops control messages sent with no data).  On a stream,
send nothing else on that socket meanwhile, or use a "seqpacket" pair, which
keeps the message whole.  Not handled: several descriptors per message,
``SCM_CREDENTIALS``.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket

from ._check import check_bytes, check_int, check_timeout
from .errors import IPCLabError, IPCTimeoutError, LimitError
from .sockpair import DEFAULT_TIMEOUT, _explain

__all__ = ["MAX_NOTE", "recv_fd", "send_fd"]

MAX_NOTE = 1024  # bytes of message that may go with a descriptor


def _check(sock, timeout) -> float:
    """Check that ``sock`` is an open AF_UNIX socket; return ``timeout``, or if None the
    socket's own, or 5 s."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, got {sock!r:.80}")
    if sock.fileno() == -1:
        raise ValueError(f"sock is closed: {sock!r}")
    if sock.family != socket.AF_UNIX:
        raise ValueError(f"sock must be AF_UNIX (SCM_RIGHTS exists only there), "
                         f"got {sock.family!r}")
    return (sock.gettimeout() or DEFAULT_TIMEOUT) if timeout is None else check_timeout(timeout)


def _call(sock, name: str, timeout: float, *args):
    """``socket.socket.<name>(sock, *args)`` waiting at most ``timeout`` s, then restoring
    the socket's own timeout; a timeout raises an explained IPCTimeoutError."""
    old = sock.gettimeout()
    try:
        sock.settimeout(timeout)
        return getattr(socket.socket, name)(sock, *args)
    except (TimeoutError, BlockingIOError):  # Python's timeout, or a sockpair.Socket's (EAGAIN)
        raise IPCTimeoutError(*_explain(sock, "read" if name.startswith("recv") else "write",
                                        timeout)) from None
    finally:
        sock.settimeout(old)


def send_fd(sock, fd, message=b"fd", *, timeout: float | None = None) -> None:
    """Send the open descriptor ``fd`` (an int, or an object with ``fileno()``) over ``sock``.

    ``message`` (1 to 1024 bytes; str as UTF-8) travels with it: a name, say.
    ``timeout``: None means the socket's own (else 5 s).

    Raises:
        IPCTimeoutError: the socket's buffer stayed full (nobody reads the other end).
        BrokenPipeError: every copy of the other end is closed.
        TypeError, ValueError: ``sock`` not an open AF_UNIX socket; ``fd`` not an open
            descriptor; ``message`` empty or too long; bad ``timeout``.
    """
    timeout = _check(sock, timeout)
    if not isinstance(fd, int) and hasattr(fd, "fileno"):
        fd = fd.fileno()
    check_int(fd, "fd", low=0)
    data = check_bytes(message, "message")
    if not 1 <= len(data) <= MAX_NOTE:
        raise ValueError(f"message must be 1 to {MAX_NOTE} bytes, got {len(data)} bytes")
    try:
        os.fstat(fd)
    except OSError:
        raise ValueError(f"fd must be an open file descriptor, got {fd!r} (closed)") from None
    fds = array.array("i", [fd])
    _call(sock, "sendmsg", timeout, [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])


def recv_fd(sock, *, timeout: float | None = None) -> tuple[int, bytes]:
    """Receive one descriptor sent by :func:`send_fd`; return ``(fd, message)``.

    The new descriptor is close-on-exec, like every descriptor Python opens;
    close it (``os.close``) when done.  ``timeout``: None means the socket's own
    (else 5 s).

    Raises:
        EOFError: every copy of the other end was closed; no descriptor came.
        IPCLabError: a message came without a descriptor, or with more than one
            (the extra ones are closed).
        LimitError: the message was longer than 1024 bytes (the kernel cut it).
        IPCTimeoutError: nothing came in time; says who holds the other end.
        TypeError, ValueError: ``sock`` not an open AF_UNIX socket; bad ``timeout``.
    """
    timeout = _check(sock, timeout)
    fds = array.array("i")
    space = socket.CMSG_SPACE(4 * fds.itemsize)  # room for a few: extras are detected
    # MSG_CMSG_CLOEXEC: the new descriptor is not inherited by programs we exec.
    data, ancillary, flags, _ = _call(sock, "recvmsg", timeout, MAX_NOTE, space,
                                      socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    problem = None
    if flags & socket.MSG_CTRUNC:
        problem = IPCLabError("more descriptors came than fit; the kernel closed the rest")
    elif flags & socket.MSG_TRUNC:
        problem = LimitError(f"the message was longer than {MAX_NOTE} bytes and was cut")
    elif len(fds) != 1:
        if not fds and not data:
            raise EOFError("end of file: every copy of the other end was closed "
                           "before a descriptor came")
        problem = IPCLabError(f"expected one descriptor with the message {data[:60]!r}, "
                              f"got {len(fds)}")
    if problem is not None:
        for extra in fds:
            with contextlib.suppress(OSError):
                os.close(extra)
        raise problem
    return fds[0], data
