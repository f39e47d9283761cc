"""The errors ipclab raises, in one small hierarchy.

Every ipclab error derives from :class:`IPCLabError`, so a notebook can catch
them all at once.  Argument errors are plain ``ValueError``/``TypeError``
raised before any system call; they name the argument, what is allowed and the
value received (``"timeout must be a number > 0 or None, got -1"``).
"""

from __future__ import annotations


class IPCLabError(Exception):
    """Base class of every error ipclab raises on purpose."""


class IPCTimeoutError(IPCLabError, TimeoutError):
    """A blocking operation did not finish within its timeout.

    ``diagnosis`` holds, when ipclab could read it from /proc, a sentence per
    process saying where it was blocked (see :mod:`ipclab.diagnose`).
    """

    def __init__(self, message: str, diagnosis: list[str] | None = None):
        self.diagnosis = list(diagnosis or [])
        if self.diagnosis:
            message = message + "\n" + "\n".join("  " + line for line in self.diagnosis)
        super().__init__(message)


class ChildError(IPCLabError):
    """A forked child failed: it raised, was killed, or exited with an error.

    ``results`` holds the :class:`ipclab.proc.ChildResult` of every child of
    the group, so the caller can still read what the others returned.
    """

    def __init__(self, message: str, results=()):
        self.results = list(results)
        super().__init__(message)


class ObjectGoneError(IPCLabError):
    """A SysV IPC object (or a closed handle) no longer exists."""


class LimitError(IPCLabError):
    """A request exceeds a limit of this machine (size, count, capacity)."""


class ProtocolError(IPCLabError):
    """The peer broke the framing or the protocol: a line or message over its
    bound, a connection closed in the middle of a frame, an unexpected reply."""
