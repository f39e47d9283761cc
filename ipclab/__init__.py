"""ipclab: helpers for a course on Unix inter-process communication.

Importing ipclab changes no global state; each submodule is imported on
first use so that ``import ipclab`` stays cheap:

- :mod:`ipclab.proc`     fork children safely (from a script or a notebook)
- :mod:`ipclab.diagnose` say where a blocked process is waiting, from /proc
- :mod:`ipclab.pipes`    pipes and FIFOs with timeouts
- :mod:`ipclab.keys`     per-user SysV keys, the registry of what we created
- :mod:`ipclab.sysvinfo` this user's SysV objects (status and clean)
- :mod:`ipclab.semwait`  semop(2) with a timeout that really fires
- :mod:`ipclab.shm`      SysV shared memory segments
- :mod:`ipclab.sem`      SysV semaphores and a Mutex
- :mod:`ipclab.race`     lost updates in shared memory, with and without a Mutex
- :mod:`ipclab.timeline` who was inside a critical section when, recorded and plotted
- :mod:`ipclab.cbuild`   compile the course's small C programs on the fly
- :mod:`ipclab.widgets`  ipywidgets explorers for the notebooks
- :mod:`ipclab.mq`       SysV message queues: typed messages, priorities, timed waits
- :mod:`ipclab.queueview` look into a queue (MSG_COPY) and a queue viewer widget
- :mod:`ipclab.framing`  lines and length-prefixed messages on a byte stream, bounded
- :mod:`ipclab.net`      TCP/UDP sockets: listen, connect, what this machine supports
- :mod:`ipclab.bufserver` the seeds' store-and-forward server, for many clients at once
- :mod:`ipclab.bufclient` its client, and the server run as a background process
- :mod:`ipclab.sockpair`  socketpairs whose timeouts explain who still holds the other end
- :mod:`ipclab.workers`   a pool of forked workers, each on its own socketpair
- :mod:`ipclab.fdpass`    pass an open file descriptor to another process (SCM_RIGHTS)
- :mod:`ipclab.bench`    latency and throughput of every mechanism: ipclab, bare Python, C
- :mod:`ipclab.cref`     the benchmark's C reference ping-pong (ipclab/c/pingpong.c)
- :mod:`ipclab.benchplot` notebook 07's plots of a benchmark report
- :mod:`ipclab.labs`     lab checks and the lab generator
"""

from __future__ import annotations

import importlib

from .errors import (
    ChildError,
    IPCLabError,
    IPCTimeoutError,
    LimitError,
    ObjectGoneError,
    ProtocolError,
)

__version__ = "0.1.0"

_SUBMODULES = {"proc", "diagnose", "pipes", "keys", "sysvinfo", "semwait", "shm", "sem", "race",
               "timeline", "cbuild", "widgets", "mq", "queueview", "framing", "net", "bufserver",
               "bufclient", "sockpair", "workers", "fdpass", "cref", "bench", "benchplot",
               "labs"}

__all__ = [
    "ChildError",
    "IPCLabError",
    "IPCTimeoutError",
    "LimitError",
    "ObjectGoneError",
    "ProtocolError",
    "__version__",
    *sorted(_SUBMODULES),
]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ipclab' has no attribute {name!r}")
