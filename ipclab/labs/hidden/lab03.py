"""The grader's parts of lab 03 (mutual exclusion): the visible checks plus hidden ones.

The visible checks (:mod:`ipclab.labs.lab03`) run one buffer at a time, with
at most 4 producers and 4 consumers on 8 slots, short items without NUL
bytes, and barriers of 3 or 4 processes that live as long as the barrier.
The hidden ones add what the lab's text promises beyond that:

- the crowd: 8 producers and 8 consumers through 2, then 8 slots, 12000
  full-size items each time, while two processes wake every 100 µs and
  preempt whoever runs at a random point, as a busy machine does.  A buffer
  with no Mutex around its positions hands one slot to two processes in every
  run, on one CPU too; a lock made of a flag tested then set does whenever two
  processes really run at once (two CPUs; on one it almost never fails);
- items of 0 bytes, of exactly ``item_size`` bytes (300: a length above 255),
  with NUL bytes anywhere; a ring of 300 slots (positions above 255); two
  buffers at once (each makes its own objects, key None); ``get``/``put``
  that time out while another process waits lose and duplicate nothing;
- barriers of 1, 2 and 8 processes, 150 rounds with random lateness; new
  processes using a barrier after the first ones exited (the gates must not
  use SEM_UNDO, or the kernel hands out passes at exit); ``wait(timeout)``
  waits the whole timeout.

System calls: fork(2), shmget(2)/shmat(2), semget(2)/semtimedop(2) (through
the student's code), pipe(2) and select(2) (the log of who passed when, and
the preempting processes' 100 µs sleeps).  Every object made through ipclab
is removed (shmctl/semctl ``IPC_RMID``) by :func:`ipclab.labs.support.run_tracked`.
"""

from __future__ import annotations

import collections
import os
import random
import select
import time

from ... import proc
from ..._check import check_callable
from ...grading.parts import Part, hide
from ..lab03 import (
    _arrive_and_leave,
    _consume,
    _produce,
    barrier_checks,
    buffer_checks,
    judge_rounds,
)
from ..scorecard import Check
from ..support import all_ok, outcome, run_tracked, times_out

PRODUCERS = CONSUMERS = 8
EACH = 1500  # items per producer in the crowd
SIZE = 64  # the crowd's item_size


def _item(p: int, i: int) -> bytes:
    return (b"%d:%d:" % (p, i) * SIZE)[:SIZE]


def _jostle(r: int) -> None:
    """Wake every 100 µs until ``r`` is readable (30 s at most): each wake-up preempts."""
    end = time.monotonic() + 30
    while time.monotonic() < end and not select.select([r], [], [], 1e-4)[0]:
        pass


def _crowd(BoundedBuffer, slots) -> None:
    items = {p: [_item(p, i) for i in range(EACH)] for p in range(1, PRODUCERS + 1)}
    r, w = os.pipe()
    try:
        with BoundedBuffer(slots, SIZE) as buf, proc.Family(40, show=False) as jostlers:
            for j in (1, 2):
                jostlers.fork(_jostle, r, label=f"jostler {j}")
            try:
                with proc.Family(30, show=False) as crowd:
                    for p in items:
                        crowd.fork(_produce, buf, items[p], 5.0, label=f"producer {p}")
                    for c in range(1, CONSUMERS + 1):
                        crowd.fork(_consume, buf, EACH, 5.0, label=f"consumer {c}")
            finally:
                os.write(w, b"x")
    finally:
        os.close(r)
        os.close(w)
    got = {res.label: res.value or ([], res.outcome()) for res in crowd.results
           if res.label.startswith("consumer")}
    _judge(got, crowd.results, slots)


def _who(item: bytes):
    """The (producer, index) of a crowd item, or None if no producer put it."""
    try:
        p, i = (int(x) for x in item.split(b":")[:2])
    except ValueError:
        return None
    return (p, i) if 1 <= p <= PRODUCERS and 0 <= i < EACH and item == _item(p, i) else None


def _judge(got, results, slots) -> None:
    counts = collections.Counter(item for its, _ in got.values() for item in its)
    for item, n in counts.items():
        assert _who(item), f"an item came out changed, or no producer put it: {item!r:.40}"
        p, i = _who(item)
        assert n == 1, f"producer {p}'s item {i} came out {n} times ({slots} slots)"
    for label, (its, error) in got.items():
        assert error is None, f"{label} stopped after {len(its)} of {EACH} items: {error}"
    all_ok(results)
    for label, (its, _) in got.items():
        last = {}
        for p, i in map(_who, its):
            assert i > last.get(p, -1), f"{label} got producer {p}'s item {i} after its " \
                                        f"item {last[p]}"
            last[p] = i


def _through(BoundedBuffer, slots, item_size, items) -> None:
    """Items put by another process come out whole, in order."""
    with BoundedBuffer(slots, item_size) as buf, proc.Family(10, show=False) as family:
        family.fork(_produce, buf, items, label="producer")
        got, error = _consume(buf, len(items))
    all_ok(family.results)
    for k, (want, item) in enumerate(zip(items, got, strict=False)):
        assert item == want, f"item {k} of {len(items)} (put by another process): put " \
                             f"{want!r:.50}, got {item!r:.50}"
    assert error is None, f"the consumer stopped after {len(got)} items: {error}"


def _get_or_time_out(buf, timeout):
    start = time.monotonic()
    try:
        return buf.get(timeout=timeout)
    except TimeoutError:
        return "early" if time.monotonic() - start < 0.8 * timeout else "timed out"


def _put_or_time_out(buf, item, timeout):
    try:
        buf.put(item, timeout=timeout)
    except TimeoutError:
        return "timed out"
    return item


def hidden_buffer_checks(BoundedBuffer) -> list[Check]:
    """The hidden checks of ``BoundedBuffer(slots, item_size)``."""
    def crowd():
        for slots in (2, 8):
            _crowd(BoundedBuffer, slots)

    def odd_items():
        _through(BoundedBuffer, 3, 300, [b"", b"\0", b"\0" * 300, b"x" * 300, b"ab\0\0",
                                         b"\0\0cd", bytes(range(256)) + b"\0" * 44, b""])
        _through(BoundedBuffer, 1, 1, [b"", b"\0", b"\xff", b"", b"a", b"\0"])

    def wide_ring():
        with BoundedBuffer(300, 3) as buf:
            for lap in (0, 1):
                items = [b"%03d" % i for i in range(300)]
                for item in items:
                    buf.put(item, timeout=1)
                got = [buf.get(timeout=1) for _ in items]
                assert got == items, f"lap {lap + 1} of a 300-slot ring: the items came " \
                                     f"back changed or in another order"

    def two_at_once():
        with BoundedBuffer(2, 8) as a, BoundedBuffer(2, 8) as b:
            a.put(b"in a", timeout=1)
            try:
                got = b.get(timeout=0.3)
            except TimeoutError:
                pass
            else:
                raise AssertionError(f"the second buffer's get() returned {got!r}, put into "
                                     f"the first one")
            b.put(b"in b", timeout=1)
            got = [a.get(timeout=1), b.get(timeout=1)]
            assert got == [b"in a", b"in b"], f"expected [b'in a', b'in b'], got {got!r}"

    def timeouts_while_waiting():
        with BoundedBuffer(2, 8) as buf:
            with proc.Family(10, show=False) as waiting:
                for c in (1, 2):
                    waiting.fork(_get_or_time_out, buf, 2.0, label=f"consumer {c}")
                time.sleep(0.3)
                buf.put(b"one", timeout=1)
            got = sorted(repr(outcome(res)) for res in waiting.results)
            assert got == ["'timed out'", "b'one'"], f"two consumers waited for one item " \
                f"for 2 s: expected one to get it and the other to time out, got {got}"
            buf.put(b"a", timeout=1)
            buf.put(b"b", timeout=1)  # both slots free again
            with proc.Family(10, show=False) as waiting:
                for p in (1, 2):
                    waiting.fork(_put_or_time_out, buf, b"p%d" % p, 2.0, label=f"producer {p}")
                time.sleep(0.3)
                first = buf.get(timeout=1)
            done = [outcome(res) for res in waiting.results]
            assert sorted(map(repr, done)) in (["'timed out'", "b'p1'"], ["'timed out'",
                                                                          "b'p2'"]), \
                f"two producers waited for one free slot for 2 s: expected one to fill it " \
                f"and the other to time out, got {done}"
            got = [first, buf.get(timeout=1), buf.get(timeout=1)]
            put = next(x for x in done if x != "timed out")
            assert got == [b"a", b"b", put], f"expected [b'a', b'b', {put!r}], got {got!r}"
            times_out(lambda: buf.get(timeout=0.3), "get() on the emptied buffer", 0.3)

    return [
        Check(f"{PRODUCERS} producers, {CONSUMERS} consumers, 2 then 8 slots, preempted at "
              f"random: none lost, none twice", crowd,
              "hold the Mutex from reading a position to writing it back", timeout=45),
        Check("items of 0 and of item_size (300) bytes, with NUL bytes, come back whole",
              odd_items, "the length goes in the slot's first 4 bytes: never strip NULs",
              timeout=15),
        Check("a ring of 300 slots, round twice", wide_ring,
              "keep next_put and next_get as 4-byte ints (INDEX)", timeout=10),
        Check("two buffers at once share nothing", two_at_once,
              "make new objects for each buffer: key None", timeout=5),
        Check("a get() or put() that times out while another waits loses nothing",
              timeouts_while_waiting, "take a slot or an item only once you can use it",
              timeout=15),
    ]


# -- Part B: the barrier ------------------------------------------------------------------------

def _gone(pid: int, wait: float = 5.0) -> None:
    """Return once process ``pid`` has exited (a zombie counts), or after ``wait`` s."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return
        except OSError:  # gone (reaped) before or while we read
            return
        time.sleep(0.005)


def _take_part(barrier, me, rounds, late, fd, after):
    _arrive_and_leave(barrier, me, rounds, late, fd)
    if after:
        _gone(after)  # the first to leave is the one that opened the gate


def _gathering(barrier, n, rounds, late, *, last_leaves_first=False, timeout=20):
    """Run ``n`` processes through ``rounds`` rounds of ``barrier``; fail on the first that
    passed early.  With ``last_leaves_first``, process ``n`` exits before the others do."""
    r, w = os.pipe()
    try:
        with proc.Family(timeout, show=False) as family:
            pids = {}
            for me in range(n, 0, -1):
                after = pids.get(n) if last_leaves_first else None
                pids[me] = family.fork(_take_part, barrier, me, rounds, late, w, after,
                                       label=f"process {me}")
        os.set_blocking(r, False)
        log = b""
        try:
            while chunk := os.read(r, 1 << 16):
                log += chunk
        except BlockingIOError:
            pass
    finally:
        os.close(r)
        os.close(w)
    judge_rounds(log, n, family.results)


def hidden_barrier_checks(Barrier) -> list[Check]:
    """The hidden checks of ``Barrier(n)``."""
    rng = random.Random(3)
    late = {(r, rng.randint(1, 8)): rng.choice((0.001, 0.003, 0.02 * (r % 25 == 0)))
            for r in range(150) for _ in range(2)}

    def eight():
        with Barrier(8) as barrier:
            _gathering(barrier, 8, 150, lambda r, me: late.get((r, me), 0))

    def small():
        with Barrier(1) as barrier:
            for _ in range(50):
                barrier.wait(timeout=1)
        with Barrier(2) as barrier:
            _gathering(barrier, 2, 100, lambda r, me: 0.002 if me == r % 2 + 1 and r % 10 == 0
                       else 0)

    def generations():
        with Barrier(3) as barrier:
            for _ in range(3):  # process 3 comes last, opens the gate, and leaves first
                _gathering(barrier, 3, 1, lambda r, me: 0.2 if me == 3 else 0,
                           last_leaves_first=True, timeout=10)

    def whole_timeout():
        with Barrier(2) as barrier:
            times_out(lambda: barrier.wait(timeout=2), "wait(timeout=2) with 1 of 2 processes "
                      "arrived", 2)

    return [
        Check("8 processes, 150 rounds, late at random: nobody passes early", eight,
              "two gates, each released n times by the last process through the one before",
              timeout=30),
        Check("barriers of 1 and 2 processes", small,
              "the n-th arrival opens the gate, even when n is 1", timeout=25),
        Check("processes that come after others exited", generations,
              "the gates are taken by one process and given by another: no SEM_UNDO "
              "(undo=True) on them", timeout=35),
        Check("wait(timeout) waits the whole timeout", whole_timeout,
              "pass wait()'s timeout to every acquire", timeout=8),
    ]


def _buffer_part(BoundedBuffer):
    check_callable(BoundedBuffer, "BoundedBuffer")
    return run_tracked("BoundedBuffer", buffer_checks(BoundedBuffer)
                       + hide(hidden_buffer_checks(BoundedBuffer)), show=False)


def _barrier_part(Barrier):
    check_callable(Barrier, "Barrier")
    return run_tracked("Barrier", barrier_checks(Barrier) + hide(hidden_barrier_checks(Barrier)),
                       show=False)


PARTS = [
    Part("BoundedBuffer", ("BoundedBuffer",), _buffer_part),
    Part("Barrier", ("Barrier",), _barrier_part),
]
