"""What the lab checks share: cleanup that survives a killed check, and running elsewhere.

Each check runs in a forked child that the scorecard kills when it hangs
(:mod:`ipclab.labs.scorecard`), and a killed process never runs ipclab's
exit-time cleanup (the :mod:`ipclab.keys` registry acts only at a normal exit).
So nothing here relies on ``atexit``; instead:

- :class:`Segments` and :func:`fresh_queue` make the IPC objects a check hands
  to the student's code in the process that outlives it, and remove them
  (shmctl(2) / msgctl(2) ``IPC_RMID``) when the ``with`` block ends, whatever
  happened inside;
- :func:`run_tracked` records every SysV object a check or its children
  register through ``ipclab.keys.register`` and removes the ones still there
  before the next check and after the last (shmctl/semctl ``IPC_RMID``);
- :func:`elsewhere`, :func:`by_key` and :func:`guarded` run the student's code
  in another process (fork(2); :func:`guarded` in a new process group, setpgid(2))
  and turn what went wrong there into a failed check; :func:`tidy` fails a
  call that leaves a child process or an open file descriptor behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time

from .. import keys, leaks, mq, proc, shm, sysvinfo
from .scorecard import Check, _verdict, run_checks

# -- objects the checks hand out, removed by the grading process ---------------------------


class Segments:
    """Fresh segments for the checks, removed on leaving the ``with`` block whatever happened.

    Raises (``new``):
        as :class:`ipclab.shm.Segment`.
    """

    def __init__(self):
        self._made: list[shm.Segment] = []

    def new(self, size: int) -> shm.Segment:
        seg = shm.Segment(None, size)
        self._made.append(seg)
        return seg

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        made, self._made = self._made, []
        for seg in made:  # marked first: each is freed at its last detach, whatever follows
            seg.remove()
        for seg in made:
            seg.close()


@contextlib.contextmanager
def fresh_queue(timeout: float, max_bytes: int | None = None):
    """Yield a new private :class:`ipclab.mq.Queue`, removed at the end whatever happened.

    Raises:
        as :class:`ipclab.mq.Queue` and its ``max_bytes`` setter.
    """
    q = mq.Queue(timeout=timeout)
    try:
        if max_bytes:
            q.max_bytes = max_bytes
        yield q
    finally:
        q.remove()


def drain(q) -> list[tuple[object, int]]:
    """Take every waiting message (JSON) without waiting; return them as (object, type)."""
    found = []
    while True:
        try:
            found.append(q.receive_json(block=False))
        except BlockingIOError:
            return found
        except ValueError as e:
            raise AssertionError(f"a message is not JSON: {e}") from None


# -- objects the checks' own processes make ------------------------------------------------

made: list[tuple[str, int, int]] = []  # (kind, id, key) registered in this process, tracked


class _Reclaim:
    """Record the SysV objects the checks create, and remove those still left."""

    def __init__(self):
        self.fd, path = tempfile.mkstemp(prefix="ipclab-tracked-")
        os.unlink(path)  # only our descriptor (and our children's copies) reach it
        fcntl.fcntl(self.fd, fcntl.F_SETFL, os.O_APPEND)  # one line per write, whole

    def wrap(self, check: Check) -> Check:
        def run():
            self.sweep()  # what an earlier, killed check left
            self._record_in_this_process()
            return check.run()
        return Check(check.name, run, check.hint, check.timeout, check.points)

    def _record_in_this_process(self) -> None:
        register = keys.register

        def recording(kind, ident, key):
            register(kind, ident, key)
            made.append((kind, ident, key))
            os.write(self.fd, f"{kind} {ident} {key}\n".encode())
        keys.register = recording  # only in the check's child: it ends with os._exit

    def _recorded(self) -> set[tuple[str, int, int]]:
        text = os.pread(self.fd, os.fstat(self.fd).st_size, 0).decode()
        return {(kind, int(ident), int(key)) for kind, ident, key in
                (line.split() for line in text.splitlines())}

    def sweep(self) -> None:
        recorded = self._recorded()
        for obj in sysvinfo.list_objects():
            if (obj.kind, obj.id, obj.key) in recorded:
                sysvinfo.remove(obj)

    def close(self, settle: float = 2.0) -> None:
        """Sweep; then wait (at most ``settle`` s) for the removed segments to go away."""
        try:
            self.sweep()
            # A removed segment lives on, with key 0, until its last process detaches, and
            # processes the scorecard has just killed may still be exiting.
            ids = {ident for kind, ident, _ in self._recorded() if kind == "shm"}
            deadline = time.monotonic() + settle
            while (any(o.kind == "shm" and o.id in ids for o in sysvinfo.list_objects())
                   and time.monotonic() < deadline):
                time.sleep(0.01)
        finally:
            os.close(self.fd)


def run_tracked(title: str, checks, *, show: bool = True):
    """Run ``checks`` as :func:`run_checks` does, then remove every object they made.

    Only objects made through ipclab (``ipclab.keys.register``) are recorded:
    those the student's code merely opened, or made without ipclab, are never removed.

    Raises:
        as :func:`ipclab.labs.scorecard.run_checks`.
    """
    reclaim = _Reclaim()
    try:
        return run_checks(title, [reclaim.wrap(c) for c in checks], show=show)
    finally:
        reclaim.close()


def left_over(objects) -> str:
    """Say which of ``objects`` (from :data:`made`) still exist; a removed segment is gone."""
    alive = {(o.kind, o.id, o.key) for o in sysvinfo.list_objects()}
    names = {"shm": "shared memory segment", "sem": "semaphore set"}
    return ", ".join(names.get(m[0], m[0]) for m in objects if m in alive)


# -- running the student's code elsewhere ---------------------------------------------------

def tidy(fn, *args, fds: bool = False, reap: str = "wait for them"):
    """Call ``fn(*args)``; fail if it left a child process (or, with ``fds``, a descriptor)."""
    before = _fds() if fds else set()
    value = fn(*args)
    kids = leaks.children()
    assert not kids, f"{len(kids)} child process(es) left running or unreaped ({reap})"
    extra = _fds() - before if fds else set()
    assert not extra, f"{len(extra)} file descriptor(s) left open (close every pipe end)"
    return value


def _fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def elsewhere(fn, *args):
    """Run ``fn(*args)`` in another process; return its value, or fail with what it did."""
    result = proc.run(fn, *args, timeout=5, show=False)
    if result.ok:
        return result.value
    if result.error and result.error["type"] == "NotImplementedError":
        raise NotImplementedError()
    raise AssertionError(f"in another process, your code {result.outcome()}")


def by_key(seg, fn, *args):
    """Call ``fn(handle, *args)`` in another process, on a handle opened by ``seg``'s key."""
    return elsewhere(lambda: fn(shm.Segment(seg.key, create=False), *args))


def outcome(result):
    """Return a child's value, or fail the check with what went wrong in it."""
    if result.error and result.error["type"] == "NotImplementedError":
        raise NotImplementedError()
    if not result.ok:
        raise AssertionError(f"{result.label}: {_verdict(result)}")
    return result.value


def guarded(timeout: float, fn, *args, label: str):
    """Run ``fn(*args)`` in a child of its own process group; return what it returned."""
    with proc.Family(timeout, show=False, new_group=True) as family:
        family.fork(tidy, fn, *args, label=label)
    return outcome(family.results[0])


def all_ok(results) -> None:
    """Fail with the first of ``results`` (:class:`ipclab.proc.ChildResult`) that went wrong."""
    for r in results:
        assert r.ok, f"{r.label} {r.outcome()}"


def times_out(call, what: str, wait: float) -> None:
    """Assert that ``call()`` raises TimeoutError, and not before ``wait`` s (less 20 %)."""
    start = time.monotonic()
    try:
        call()
    except TimeoutError:
        took = time.monotonic() - start
        assert took >= wait * 0.8, f"{what} raised TimeoutError after {took:.2f} s, before " \
                                   f"its timeout={wait:g} s"
        return
    raise AssertionError(f"{what} returned instead of waiting and raising TimeoutError after "
                         f"timeout={wait:g} s")
