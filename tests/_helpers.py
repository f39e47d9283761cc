"""Small helpers shared by the unit tests (imported as ``_helpers``)."""

import os
import traceback

import sysv_ipc


def start_child(fn) -> int:
    """Fork, run ``fn()`` in the child (its return value is the exit code); return the pid.

    The child always ends with ``os._exit``; reap it with :func:`reap`.
    """
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def reap(pid) -> int:
    """Wait for ``pid``; return its exit code (minus the signal number if killed)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def remove_quietly(obj):
    """Remove a sysv_ipc object that may already be gone."""
    try:
        obj.remove()
    except sysv_ipc.ExistentialError:
        pass
