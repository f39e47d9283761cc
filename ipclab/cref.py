"""The C reference of the benchmark: the same round trips and streams, without Python.

Builds ``ipclab/c/pingpong.c`` with :mod:`ipclab.cbuild` (once per version of the
source, into a private per-user cache) and runs it through fork(2)/execve(2)
(``subprocess.Popen``, in a session of its own so that a timeout reaches both of
its processes with killpg(2): SIGTERM, which it cleans up after, then SIGKILL).
The program forks a child and measures, between the two, pipe(2), mkfifo(3)
FIFOs, socketpair(2), AF_UNIX and TCP (127.0.0.1, TCP_NODELAY) stream sockets
(socket(2), bind(2), listen(2), connect(2), accept(2)), msgsnd(2)/msgrcv(2) on a
msgget(2) queue, and a shmget(2) segment handed over with semop(2), moving the
bytes with read(2)/write(2) or memcpy; sched_setaffinity(2) pins both processes to
one CPU when asked.  It prints one line (``rtt_us 12.345`` or ``MBps 1234.567``),
read here.  Its own watchdog (alarm(2), ``$PINGPONG_TIMEOUT``) is set to the
timeout, so a stuck run ends with a message and with its queue and semaphores removed.
With ``timed=True`` it bounds every wait the way ipclab's helpers do (poll(2) before
each read(2) of a pipe, SO_RCVTIMEO, semtimedop(2), msgrcv(2) ``IPC_NOWAIT`` retried
after sched_yield(2)), which measures what a timeout on every wait costs in C.

Not handled: other mechanisms than :data:`MECHANISMS`, and machines without a C
compiler (:func:`available` says so; :func:`run` then raises BuildError).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
from pathlib import Path

from . import cbuild
from ._check import check_int, check_timeout
from .errors import IPCLabError, IPCTimeoutError, LimitError

MECHANISMS = ("pipe", "fifo", "socketpair", "unix", "tcp", "sysv_mq", "sysv_shm")
MODES = {"rtt": "rtt_us", "tput": "MBps"}   # mode -> the word the program prints
MAX_SIZE = 64 * 1024 * 1024
MAX_ITERATIONS = 10**9
GRACE = 5.0   # seconds allowed past the timeout for the program's own watchdog to report
_LINE = re.compile(r"(rtt_us|MBps) ([0-9]+(?:\.[0-9]+)?)\n")


class CRefError(IPCLabError):
    """The C reference program failed or printed something unexpected; the message
    holds the command and what the program wrote to stderr."""


def available() -> bool:
    """True if a C compiler is on PATH, so :func:`run` can build the program on first use."""
    return cbuild.compiler() is not None


def program(*, timeout: float = 60.0) -> Path:
    """Build the C reference (or reuse the cached build) and return its path.

    Raises:
        ValueError, TypeError: a bad timeout.
        ipclab.cbuild.BuildError: no C compiler on PATH, the compiler failed or ran
            longer than ``timeout`` seconds, or the cache folder is unsafe.
    """
    timeout = check_timeout(timeout, allow_none=False)
    built = cbuild.build(cbuild.source("pingpong.c"), timeout=timeout)
    if built is None:
        raise cbuild.BuildError("no C compiler (cc, gcc or clang) on PATH, so there is no C "
                                "reference; check cref.available() first")
    return built


def run(mechanism: str, size: int, *, iterations: int, mode: str = "rtt",
        cpu: int | None = None, timeout: float = 60.0, timed: bool = False) -> float:
    """Run the C reference once: the mean round trip in µs (``rtt``) or MB/s (``tput``).

    ``rtt``: the parent sends ``size`` bytes and the child echoes them, ``iterations``
    times after a short warm-up.  ``tput``: the parent sends ``iterations`` messages
    of ``size`` bytes one way and the child acknowledges the last; 1 MB = 1e6 bytes.
    ``cpu`` pins both processes to that CPU.  ``timeout`` bounds the run, not the
    first build (see :func:`program`).  ``timed``: bound every wait by ``timeout`` too,
    as ipclab's helpers do (``pingpong --timed``), to measure the price of that.

    Raises:
        TypeError, ValueError: a bad argument (checked before building or running).
        ipclab.cbuild.BuildError: no C compiler, or the program does not compile.
        LimitError: this machine refuses the size (sysv_mq: over msgmax or msgmnb).
        IPCTimeoutError: the run did not finish within ``timeout`` seconds.
        CRefError: the program failed (the message says which call) or printed
            something unexpected.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    size = check_int(size, "size", low=1, high=MAX_SIZE)
    iterations = check_int(iterations, "iterations", low=1, high=MAX_ITERATIONS)
    if mode not in MODES:
        raise ValueError(f"mode must be 'rtt' (round trips) or 'tput' (one-way throughput), "
                         f"got {mode!r}")
    if cpu is not None:
        cpu = check_int(cpu, "cpu", low=0)
        allowed = sorted(os.sched_getaffinity(0))
        if cpu not in allowed:
            raise ValueError(f"cpu must be None or one of the CPUs this process may run on "
                             f"{allowed}, got {cpu!r}")
    timeout = check_timeout(timeout, allow_none=False)
    if not isinstance(timed, bool):
        raise TypeError(f"timed must be True or False, got {timed!r}")
    args = (["--timed"] if timed else []) + [mechanism, str(size), str(iterations), mode] + (
        [str(cpu)] if cpu is not None else [])
    command = "pingpong " + " ".join(args)
    seconds = str(max(1, math.ceil(timeout)))
    env = dict(os.environ, PINGPONG_TIMEOUT=seconds, PINGPONG_WAIT=seconds)
    code, out, err = _execute([str(program()), *args], env, timeout + GRACE)
    if code is None:
        raise IPCTimeoutError(f"{command} did not finish within {timeout:g} s and was killed")
    problem = err.strip() or "(nothing on stderr)"
    if code == 3:
        raise LimitError(f"{command}: {problem}")
    if code == 4:
        raise IPCTimeoutError(f"{command} did not finish within {timeout:g} s: {problem}")
    if code != 0:
        if code < 0:
            raise CRefError(f"{command} was killed by {signal.Signals(-code).name}: {problem}")
        raise CRefError(f"{command} failed (exit code {code}): {problem}")
    found = _LINE.fullmatch(out)
    if not found or found[1] != MODES[mode] or not float(found[2]) > 0:
        raise CRefError(f"{command} printed {out!r}, expected one line '{MODES[mode]} <number "
                        f"> 0>'" + (f"; stderr: {problem}" if err.strip() else ""))
    return float(found[2])


def _execute(command: list[str], env: dict, timeout: float) -> tuple[int | None, str, str]:
    """Run ``command`` in its own session; (exit code, or None if it had to be killed, out, err).

    On a timeout the whole group gets SIGTERM (the program removes its queue and
    semaphores and reaps its child), then SIGKILL if it is still there 2 s later.
    """
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=wait)
                    break
            return None, "", ""
    return proc.returncode, out, err
