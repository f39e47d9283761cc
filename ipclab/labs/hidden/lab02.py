"""The grader's parts of lab 02 (shared memory): the visible checks plus hidden ones.

The visible checks (:mod:`ipclab.labs.lab02`) write each record once onto
zero bytes, with plain names and float scores, from one process at a time,
and read only rings the student's own code wrote.  The hidden ones add what
the documented layout promises beyond that:

- a record is its 24 bytes and nothing else: a shorter name overwrites a
  longer one entirely (the NUL padding is written too), and processes
  writing *their own* records at the same moment do not undo each other's
  (code that reads, changes and writes back the whole segment does);
- names keep their spaces (the padding is NULs only; ``strip()`` is wrong),
  emoji and the empty name round-trip; an int score is a valid score, and
  ``inf``, ``-0.0`` and ``nan`` are doubles like any other;
- a ring of one slot (48 bytes) is a ring; the counter is 8 bytes (``'<Q'``)
  and keeps counting past 2**32; a ring that another program wrote in the
  documented layout (junk in the unused bytes 8..23) is read and extended;
- ``ring_append`` puts the record in its slot *before* it counts it, so a
  reader running at the same time never sees a counted record that is not
  there yet (one writer, one reader, no lock needed for that).

System calls: shmget(2), shmat(2) (each reader and writer opens the segment
by its key in its own process, fork(2)), waitid(2) (``WNOWAIT``: to watch a
writer end without reaping it), and shmctl(2) ``IPC_RMID`` when the part
ends: the segments are made and removed by the grading process
(:class:`ipclab.labs.support.Segments`), whatever the student's code does.
"""

from __future__ import annotations

import math
import os

from ... import proc, shm
from ...grading.parts import Part, hide
from ..lab02 import COUNTER, RECORD, _same, record_checks, ring_checks
from ..scorecard import Check, run_checks
from ..support import Segments, by_key, elsewhere, outcome

OWN = 4  # processes that write their own record at the same moment
ROUNDS = 3000  # how many times each of them does
APPENDS = 10_000  # records the writer appends while a reader reads (the ring never wraps)


def hidden_record_checks(put_record, get_record, segments: Segments) -> list[Check]:
    """The hidden checks of ``put_record``/``get_record``, on segments from ``segments``."""
    ten = [segments.new(10 * RECORD.size) for _ in range(3)]
    own = segments.new(OWN * RECORD.size)
    names = [" ada ", "  ", "", "🙂🙂🙂🙂", "naïve café", "tab\there"]

    def spaces_and_emoji():
        def write(seg):
            for i, name in enumerate(names):
                put_record(seg, i, name, float(i))
        elsewhere(write, ten[0])
        _same(by_key(ten[0], lambda seg: [get_record(seg, i) for i in range(len(names))]),
              [(name, float(i)) for i, name in enumerate(names)],
              "another process's get_record(seg, 0..5)")

    def shorter_name():
        seg = ten[1]
        put_record(seg, 1, "abcdefghijklmnop", 1.5)
        put_record(seg, 1, "ab", 2.5)
        _same(get_record(seg, 1), ("ab", 2.5), "get_record(seg, 1) after 'abcdefghijklmnop'")
        got = seg.read(RECORD.size, RECORD.size)
        assert got == RECORD.pack(b"ab", 2.5), f"record 1's bytes are {got!r}, expected " \
                                               f"{RECORD.pack(b'ab', 2.5)!r}"

    def scores():
        seg = ten[2]
        values = [7, 2**53, -0.0, math.inf, -math.inf, math.nan, 5e-324]
        for i, score in enumerate(values):
            put_record(seg, i, f"s{i}", score)
        for i, score in enumerate(values):
            name, got = get_record(seg, i)
            assert name == f"s{i}" and isinstance(got, float), \
                f"get_record(seg, {i}) returned {(name, got)!r}, expected ('s{i}', a float)"
            same = math.isnan(got) if math.isnan(score) else (
                got == score and math.copysign(1, got) == math.copysign(1, score))
            assert same, f"put_record(seg, {i}, 's{i}', {score!r}) read back as {got!r}"

    def own_records():
        def writer(w):
            seg = shm.Segment(own.key, create=False)
            for k in range(ROUNDS):
                if k:
                    got = tuple(get_record(seg, w))
                    assert got == (f"w{w}", k - 1.0), \
                        f"record {w} holds {got!r} between two writes of its only writer, " \
                        f"expected {(f'w{w}', k - 1.0)!r}: put_record changed other records"
                put_record(seg, w, f"w{w}", float(k))
        with proc.Family(15, show=False) as family:
            for w in range(OWN):
                family.fork(writer, w, label=f"writer {w}")
        for result in family.results:
            outcome(result)
        _same([get_record(own, w) for w in range(OWN)],
              [(f"w{w}", ROUNDS - 1.0) for w in range(OWN)], "get_record(seg, 0..3) at the end")

    return [
        Check("names keep their spaces; emoji and the empty name round-trip", spaces_and_emoji,
              "the padding is NULs only: rstrip(b'\\0'), never strip()"),
        Check("a shorter name overwrites a longer one entirely", shorter_name,
              "write all 24 bytes: RECORD.pack pads the name with NULs"),
        Check("int scores, -0.0, inf and nan are stored as doubles", scores,
              "an int is a valid score; struct's 'd' stores any float"),
        Check(f"{OWN} processes write their own record at the same time", own_records,
              "write only the record's 24 bytes, never the whole segment back", timeout=20),
    ]


def hidden_ring_checks(ring_append, ring_latest, segments: Segments) -> list[Check]:
    """The hidden checks of ``ring_append``/``ring_latest``, on segments from ``segments``."""
    one = segments.new(2 * RECORD.size)
    far = segments.new(5 * RECORD.size)
    foreign = segments.new(5 * RECORD.size)
    shared = segments.new((1 + APPENDS) * RECORD.size)

    def append(seg, batch):
        for name, score in batch:
            ring_append(seg, name, score)

    def one_slot():
        elsewhere(append, one, [(f"r{i}", float(i)) for i in range(5)])
        _same(by_key(one, ring_latest, 3), [("r4", 4.0)], "ring_latest(seg, 3) of a 48-byte ring")
        count = COUNTER.unpack(one.read(0, COUNTER.size))[0]
        assert count == 5, f"bytes 0..7 hold {count} as '<Q', expected 5 (records appended)"

    def past_2_32():
        start = 2**32 - 2
        far.write(COUNTER.pack(start), 0)  # as if that many were appended before
        batch = [(f"n{i}", float(i)) for i in range(start, start + 4)]
        elsewhere(append, far, batch)
        _same(by_key(far, ring_latest, 4), batch, f"ring_latest(seg, 4) after {start + 4}")
        count = COUNTER.unpack(far.read(0, COUNTER.size))[0]
        assert count == start + 4, f"bytes 0..7 hold {count} as '<Q', expected {start + 4}"

    def written_elsewhere():
        records = [(f"c{i}", i + 0.5) for i in range(8)]
        foreign.write(COUNTER.pack(7) + b"\xff" * 16, 0)  # bytes 8..23: unused, not zero
        for i in range(3, 7):  # record i in slot i % 4, as a C program would put it
            foreign.write(RECORD.pack(records[i][0].encode(), records[i][1]),
                          (1 + i % 4) * RECORD.size)
        _same(by_key(foreign, ring_latest, 9), records[3:7], "ring_latest(seg, 9) of a ring "
              "with count 7 written by another program")
        elsewhere(append, foreign, records[7:])
        _same(by_key(foreign, ring_latest, 2), records[6:], "ring_latest(seg, 2) after one more")

    def reader_meanwhile():
        batch = [(f"c{i}", float(i)) for i in range(APPENDS)]
        number = {record: i for i, record in enumerate(batch)}

        def complete(got):  # [], [c0], or two records appended one after the other
            i = number.get(got[0], -1) if got else 0
            return i >= 0 and got == batch[i:i + 2][:len(got)] and (len(got) == 2 or i == 0)

        seen = 0
        with proc.Family(15, show=False) as family:
            pid = family.fork(lambda: append(shm.Segment(shared.key, create=False), batch),
                              label="writer")
            while True:  # read while the writer appends; a last time once it has ended
                ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                got = [tuple(r) for r in ring_latest(shared, 2)]
                assert complete(got), f"a reader got {got!r:.100} while another process " \
                                      f"appended: a record counted before it was written?"
                seen += 1
                if ended:
                    break
        outcome(family.results[0])
        _same(ring_latest(shared, 2), batch[-2:], f"ring_latest(seg, 2) after {APPENDS}")
        assert seen, "never read"

    return [
        Check("a ring of one slot (48 bytes) keeps the newest record", one_slot,
              "N = seg.size // 24 - 1 slots; refuse only N < 1"),
        Check("the counter is 8 bytes and counts past 2**32", past_2_32,
              "read and write it with COUNTER ('<Q')"),
        Check("a ring written by another program is read and extended", written_elsewhere,
              "everything follows from count: bytes 8..23 are unused"),
        Check("a reader running while a writer appends sees only complete records",
              reader_meanwhile, "put the record in its slot, then add 1 to count", timeout=20),
    ]


def record_part(put_record, get_record, segments: Segments) -> list[Check]:
    """The checks of the records part: the visible ones, then the hidden ones."""
    return (record_checks(put_record, get_record, segments)
            + hide(hidden_record_checks(put_record, get_record, segments)))


def ring_part(ring_append, ring_latest, segments: Segments) -> list[Check]:
    """The checks of the ring part: the visible ones, then the hidden ones."""
    return (ring_checks(ring_append, ring_latest, segments)
            + hide(hidden_ring_checks(ring_append, ring_latest, segments)))


def _run(title, part):
    def run(*objects):
        with Segments() as segments:
            return run_checks(title, part(*objects, segments), show=False)
    return run


PARTS = [
    Part("put_record / get_record", ("put_record", "get_record"),
         _run("put_record / get_record", record_part)),
    Part("ring_append / ring_latest", ("ring_append", "ring_latest"),
         _run("ring_append / ring_latest", ring_part)),
]
