"""Checks for lab 03 (mutual exclusion): a bounded buffer for many processes, and a barrier.

The student writes ``BoundedBuffer(slots, item_size)`` (``put``, ``get``,
``remove``) and ``Barrier(n)`` (``wait``, ``remove``) from
:class:`ipclab.shm.Segment`, :class:`ipclab.sem.Semaphore` and
:class:`ipclab.sem.Mutex`.  The checks run them with real processes (fork(2),
semtimedop(2) underneath) and judge only behaviour.

Cleanup: a check runs in a child that is killed if it hangs, and a killed
process never runs ipclab's exit-time cleanup, so the checks run under
:func:`ipclab.labs.support.run_tracked`: every object made through ipclab in a
check or its children is recorded, and removed (shmctl/semctl ``IPC_RMID``)
before the next check and after the last.  Objects the student's code merely
opened, or made without ipclab, are not recorded, so never removed.
"""

from __future__ import annotations

import collections
import os
import time

from .. import proc
from .._check import check_callable
from .scorecard import Check
from .support import all_ok, left_over, made, run_tracked, times_out

# -- helpers run inside the checks ---------------------------------------------------------

def _produce(buf, items, timeout=3.0):
    for item in items:
        buf.put(item, timeout=timeout)


def _consume(buf, count, timeout=3.0):
    """Get ``count`` items; return (items, what stopped us early or None)."""
    got = []
    try:
        for _ in range(count):
            got.append(buf.get(timeout=timeout))
    except Exception as e:  # noqa: BLE001 - reported by the check
        return got, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    return got, None


# -- Part A: the bounded buffer --------------------------------------------------------------

def buffer_checks(BoundedBuffer):
    """Return the checks of ``BoundedBuffer(slots, item_size)`` with put/get/remove."""
    def one_process():
        items = [bytes((n + i) % 256 for i in range(n)) for n in range(17)]
        with BoundedBuffer(4, 16) as buf:
            for start in range(0, len(items), 3):
                chunk = items[start:start + 3]
                for item in chunk:
                    buf.put(item, timeout=1)
                got = [buf.get(timeout=1) for _ in chunk]
                assert got == chunk, f"put {chunk!r:.70}, got back {got!r:.70}"

    def too_long():
        with BoundedBuffer(2, 8) as buf:
            try:
                buf.put(b"123456789", timeout=1)
            except ValueError:
                pass
            else:
                raise AssertionError("put() of 9 bytes into item_size=8 did not raise ValueError")
            for item in (b"abcdefgh", b"ijklmnop"):
                buf.put(item, timeout=1)  # both slots must still be free
            got = [buf.get(timeout=1), buf.get(timeout=1)]
            assert got == [b"abcdefgh", b"ijklmnop"], f"got {got!r}"

    def timeouts():
        with BoundedBuffer(2, 8) as buf:
            times_out(lambda: buf.get(timeout=0.3), "get() on an empty buffer", 0.3)
            buf.put(b"first", timeout=1)
            buf.put(b"second", timeout=1)
            times_out(lambda: buf.put(b"third", timeout=0.3), "put() on a full buffer", 0.3)
            got = [buf.get(timeout=1), buf.get(timeout=1)]
            assert got == [b"first", b"second"], f"expected [b'first', b'second'], got {got!r}"

    def pair():
        items = [b"item %d" % i for i in range(1000)]
        with BoundedBuffer(4, 16) as buf, proc.Family(8, show=False) as family:
            family.fork(_produce, buf, items, label="producer")
            got, error = _consume(buf, len(items))
        all_ok(family.results)
        assert error is None, f"the consumer stopped after {len(got)} items: {error}"
        assert got == items, "the items came out in another order, or changed"

    def many(producers=4, consumers=4, each=750):
        items = {p: [b"%d:%d:" % (p, i) + b"." * (i % 8) for i in range(each)]
                 for p in range(1, producers + 1)}
        with BoundedBuffer(8, 16) as buf, proc.Family(15, show=False) as family:
            for p in items:
                family.fork(_produce, buf, items[p], label=f"producer {p}")
            for c in range(1, consumers + 1):
                family.fork(_consume, buf, each, label=f"consumer {c}")
        got = {r.label: r.value or ([], r.outcome()) for r in family.results
               if r.label.startswith("consumer")}
        counts = collections.Counter(i for its, _ in got.values() for i in its)
        expected = {i for its in items.values() for i in its}
        for item, n in counts.items():
            assert item in expected, f"an item no producer put came out: {item!r}"
            assert n == 1, f"{item!r} came out {n} times"
        for label, (its, error) in got.items():
            assert error is None, f"{label} stopped after {len(its)} of {each} items (items " \
                                  f"lost?): {error}"
        all_ok(family.results)
        for label, (its, _) in got.items():
            last = {}
            for item in its:
                p, i = (int(x) for x in item.split(b":")[:2])
                assert i > last.get(p, -1), f"{label} got producer {p}'s item {i} after " \
                                            f"its item {last[p]}"
                last[p] = i

    def survives_exit():
        with BoundedBuffer(4, 8) as buf:
            all_ok([proc.run(_produce, buf, [b"a", b"b", b"c", b"d"], show=False)])
            times_out(lambda: buf.put(b"x", timeout=0.3),
                      "after a producer process filled all 4 slots and exited, put()", 0.3)
            r = proc.run(_consume, buf, 2, show=False)
            all_ok([r])
            assert r.value == ([b"a", b"b"], None), \
                f"a consumer process should get [b'a', b'b'], got {r.value!r}"
            for item in (b"e", b"f"):  # the slots it freed stay free after it exits
                buf.put(item, timeout=1)
            got, error = _consume(buf, 4, timeout=1)
            assert got == [b"c", b"d", b"e", b"f"], \
                f"expected [b'c', b'd', b'e', b'f'], got {got!r}" + (f" ({error})" if error else "")
            times_out(lambda: buf.get(timeout=0.3), "get() on the emptied buffer", 0.3)

    def removes():
        for how in ("remove()", "with"):
            made.clear()
            if how == "with":
                with BoundedBuffer(2, 8) as buf:
                    buf.put(b"x", timeout=1)
            else:
                buf = BoundedBuffer(2, 8)
                buf.put(b"x", timeout=1)
                buf.remove()
            assert made, "BoundedBuffer made no object with ipclab.shm / ipclab.sem"
            left = left_over(list(made))
            assert not left, f"after {how}, still there: {left}"

    undo = ("the empty/full semaphores are taken by one process and given by another: "
            "do not use SEM_UNDO (undo=True) on them")
    return [
        Check("one process: items of 0 to 16 bytes come back in order", one_process,
              "store each item's length in its slot; next_put and next_get go round the ring",
              timeout=5),
        Check("an item longer than item_size is refused with ValueError", too_long,
              "check before taking a free slot, or the slot is lost", timeout=5),
        Check("get() on an empty and put() on a full buffer raise TimeoutError", timeouts,
              "wait on the semaphores with acquire(timeout); never overwrite a full slot",
              timeout=5),
        Check("a producer and a consumer process: 1000 items through 4 slots", pair,
              "the other process sees only what is in the segment: keep the positions there",
              timeout=10),
        Check("4 producers, 4 consumers, 3000 items: none lost, none twice, in order", many,
              "two producers must never read the same next_put (nor two consumers the same "
              "next_get): hold the Mutex while you read and move a position", timeout=20),
        Check("items and free slots outlive the process that made them", survives_exit, undo,
              timeout=10),
        Check("remove() and `with` remove every object the buffer made", removes,
              "remove the segment and every semaphore set", timeout=5),
    ]


def check_bounded_buffer(BoundedBuffer):
    """Print the scorecard of ``BoundedBuffer`` and return it.

    Raises:
        TypeError: ``BoundedBuffer`` is not callable.
    """
    check_callable(BoundedBuffer, "BoundedBuffer")
    return run_tracked("BoundedBuffer", buffer_checks(BoundedBuffer))


# -- Part B: the barrier ------------------------------------------------------------------------

def _arrive_and_leave(barrier, me, rounds, late, fd):
    """Wait at ``barrier`` ``rounds`` times; log "A round me" before and "L round me" after."""
    for r in range(rounds):
        delay = late(r, me)
        if delay:
            time.sleep(delay)
        os.write(fd, b"A %d %d\n" % (r, me))  # one write of < PIPE_BUF bytes: never mixed
        barrier.wait(timeout=2)
        os.write(fd, b"L %d %d\n" % (r, me))


def _meet(Barrier, n, rounds, late):
    """Run ``n`` processes through ``rounds`` rounds; fail on the first one that passed early."""
    r, w = os.pipe()
    try:
        with Barrier(n) as barrier, proc.Family(6, show=False) as family:
            for me in range(1, n + 1):
                family.fork(_arrive_and_leave, barrier, me, rounds, late, w,
                            label=f"process {me}")
        os.set_blocking(r, False)
        try:  # one read takes it all: 100 rounds log under 8 KiB, less than a pipe holds
            log = os.read(r, 1 << 16)
        except BlockingIOError:
            log = b""
    finally:
        os.close(r)
        os.close(w)
    judge_rounds(log, n, family.results)


def judge_rounds(log: bytes, n: int, results) -> None:
    """Fail on the first of ``n`` processes that passed a round before all had arrived, or
    that never left one; ``log`` holds their "A round me" / "L round me" lines and
    ``results`` their :class:`ipclab.proc` results, labelled "process ME"."""
    arrived = collections.defaultdict(set)  # round -> processes that arrived in it
    inside = {}  # process -> the round it arrived in and has not left yet
    for kind, rnd, me in (line.split() for line in log.decode().splitlines()):
        rnd, me = int(rnd), int(me)
        if kind == "A":
            arrived[rnd].add(me)
            inside[me] = rnd
        elif len(arrived[rnd]) < n:
            absent = min(set(range(1, n + 1)) - arrived[rnd])
            raise AssertionError(f"process {me} passed wait() in round {rnd + 1} before "
                                 f"process {absent} had arrived")
        else:
            del inside[me]
    for result in results:
        me = int(result.label.split()[1])
        if not result.ok and me in inside:
            raise AssertionError(f"process {me} never left round {inside[me] + 1}, although "
                                 f"{len(arrived[inside[me]])} of {n} processes had arrived: "
                                 f"its wait() {result.outcome().splitlines()[0]}")
    all_ok(results)


def _alone(barrier):
    try:
        barrier.wait(timeout=0.5)
    except TimeoutError:
        return "timed out"
    return "passed"


def barrier_checks(Barrier):
    """Return the checks of ``Barrier(n)`` with wait(timeout)/remove."""
    def first_round():
        _meet(Barrier, 4, 1, lambda r, me: 0.3 if me == 4 else 0)

    def many_rounds():
        _meet(Barrier, 4, 100, lambda r, me: 0.002 if me == r % 4 + 1 else 0)

    def missing():
        with Barrier(3) as barrier, proc.Family(4, show=False) as family:
            for me in (1, 2):
                family.fork(_alone, barrier, label=f"process {me}")
        all_ok(family.results)
        for r in family.results:
            assert r.value == "timed out", \
                f"{r.label}'s wait() returned although only 2 of 3 processes arrived"

    def removes():
        made.clear()
        with Barrier(2):
            pass
        assert made, "Barrier made no object with ipclab.shm / ipclab.sem"
        left = left_over(list(made))
        assert not left, f"after `with`, still there: {left}"

    return [
        Check("nobody passes before the last of 4 processes arrives", first_round,
              "count the arrivals (in shared memory, under the Mutex); only the n-th "
              "arrival opens the gate, for all n", timeout=10),
        Check("4 processes, 100 rounds: nobody passes a round before all arrived", many_rounds,
              "one gate is not enough when the barrier is reused: a fast process comes back "
              "and takes a pass meant for a slow one; close a second gate behind everybody, "
              "opened by the last one through the first", timeout=10),
        Check("a process that never comes: wait() raises TimeoutError", missing,
              "pass the timeout to every acquire in wait()", timeout=8),
        Check("`with` removes every object the barrier made", removes,
              "remove the segment and every semaphore set", timeout=5),
    ]


def check_barrier(Barrier):
    """Print the scorecard of ``Barrier`` and return it.

    Raises:
        TypeError: ``Barrier`` is not callable.
    """
    check_callable(Barrier, "Barrier")
    return run_tracked("Barrier", barrier_checks(Barrier))
