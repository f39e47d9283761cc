"""Checks for lab 06 (socketpair + fork): length-prefixed JSON messages, and a worker pool.

The student writes ``send_msg(sock, obj)`` and ``recv_msg(sock)`` (a frame is a
4-byte big-endian length, then that many bytes of UTF-8 JSON; never pickle),
``start_worker(fn, siblings=())`` (socketpair(2) and fork(2): a child that
answers requests until end of file) and ``pool_map(fn, items, workers=4,
timeout=10.0)`` (several such workers at once; results in input order, a
:class:`WorkerError` for a job that failed; every socket closed, every worker reaped).

Cleanup: each check runs its body in a grandchild of its own process group
(fork(2), setpgid(2)) with a timeout shorter than the check's.  The check's own
process is made the subreaper (prctl(2) ``PR_SET_CHILD_SUBREAPER``) of all the
student's code forks, so when the body ends, or is killed, whatever is left of
its group is killed (killpg(2)) and reaped there: no worker and no zombie
outlives a check, even on a machine whose init never reaps, and the sockets die
with their processes.  Checks judge behaviour only: the bytes on the wire,
replies, exit statuses, and the processes and descriptors a call leaves.
"""


from __future__ import annotations

from .lab06_base import HEADER, IDLE, MAX_MESSAGE, WorkerError
from .lab06_framing import recv_msg_checks, send_msg_checks
from .lab06_pool import Tried, pool_checks, try_pool
from .lab06_worker import worker_checks
from .scorecard import run_checks

__all__ = ["HEADER", "IDLE", "MAX_MESSAGE", "Tried", "WorkerError", "check_pool_map",
           "check_recv_msg", "check_send_msg", "check_start_worker", "pool_checks",
           "recv_msg_checks", "send_msg_checks", "try_pool", "worker_checks"]


def check_send_msg(send_msg):
    """Print the scorecard of ``send_msg`` and return it."""
    return run_checks("send_msg", send_msg_checks(send_msg))


def check_recv_msg(recv_msg):
    """Print the scorecard of ``recv_msg`` and return it."""
    return run_checks("recv_msg", recv_msg_checks(recv_msg))


def check_start_worker(start_worker):
    """Print the scorecard of ``start_worker`` and return it."""
    return run_checks("start_worker", worker_checks(start_worker))


def check_pool_map(pool_map):
    """Print the scorecard of ``pool_map`` and return it."""
    return run_checks("pool_map", pool_checks(pool_map))
