"""Checks for lab 02 (shared memory): fixed-size records, and a ring of them.

The student writes ``put_record(seg, index, name, score)`` and ``get_record(seg,
index)``, which keep record ``index`` packed as :data:`RECORD` at offset
``24 * index`` of an :class:`ipclab.shm.Segment`, and ``ring_append(seg, name,
score)`` and ``ring_latest(seg, n)``, which keep a ring of such records: a
:data:`COUNTER` of the records appended so far in record 0, record number ``i``
in record ``1 + i % N``.  Writers and readers run in separate processes
(shmat(2) of the same key), so a value kept in an ordinary variable instead of
the segment fails.  The segments are made by the grading process before the
checks fork, and removed (shmctl(2) ``IPC_RMID``) after them
(:class:`ipclab.labs.support.Segments`), so a check that is killed, or code
that raises, leaves nothing behind.
"""

from __future__ import annotations

import struct

from .scorecard import Check, run_checks
from .support import Segments, by_key, elsewhere

RECORD = struct.Struct("<16sd")  # name: 16 bytes of UTF-8 padded with NULs; score: a double
COUNTER = struct.Struct("<Q")  # the ring's header: records appended so far
WRITERS = 10  # processes that take turns appending in the "many records" check


def _same(got, want, what: str):
    try:
        got = [tuple(r) for r in got] if isinstance(want, list) else tuple(got)
    except TypeError:
        raise AssertionError(f"{what} returned {got!r:.80}, expected {want!r:.80}") from None
    assert got == want, f"{what} returned {got!r:.120}, expected {want!r:.120}"


def _refused(call, kinds, what: str, seg=None):
    """Assert that ``call()`` raises one of ``kinds`` and leaves ``seg``'s bytes unchanged."""
    names = " or ".join(k.__name__ for k in kinds)
    before = seg.read() if seg else None
    try:
        call()
    except kinds:
        pass
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - any other error is the wrong answer
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}; expected {names}") from None
    else:
        raise AssertionError(f"{what} should raise {names}")
    if seg is not None:
        assert seg.read() == before, f"{what} changed the segment before raising: check first"


PEOPLE = [(0, "ada", 0.1), (1, "Zoë", -3.5), (3, "grace", 1e300)]
PEOPLE_READ = [("ada", 0.1), ("Zoë", -3.5), ("", 0.0), ("grace", 1e300)]


def record_checks(put_record, get_record, segments: Segments) -> list[Check]:
    """Return the checks of ``put_record``/``get_record``, on segments from ``segments``."""
    ten = [segments.new(10 * RECORD.size) for _ in range(6)]
    odd = segments.new(100)  # 4 records and 4 spare bytes

    def write_people(seg):
        for index, name, score in PEOPLE:
            put_record(seg, index, name, score)

    def read_four(seg):
        return [get_record(seg, i) for i in range(4)]

    def round_trip():
        write_people(ten[0])
        _same(read_four(ten[0]), PEOPLE_READ, "get_record(seg, 0..3)")

    def across_processes():
        elsewhere(write_people, ten[1])
        _same(by_key(ten[1], read_four), PEOPLE_READ, "another process's get_record(seg, 0..3)")

    def layout():
        seg = ten[2]
        put_record(seg, 2, "ada", 2.5)
        want = RECORD.pack(b"ada", 2.5)
        got = seg.read(2 * RECORD.size, RECORD.size)
        assert got == want, f"put_record(seg, 2, 'ada', 2.5) left bytes 48..71 as {got!r}, " \
                            f"expected {want!r}"
        assert seg.read(0, 48) + seg.read(72) == bytes(240 - 24), \
            "put_record(seg, 2, ...) wrote outside bytes 48..71"
        seg.write(RECORD.pack("Zoë".encode(), -1.25), 5 * RECORD.size)  # as a C program would
        _same(get_record(seg, 5), ("Zoë", -1.25), "get_record of a record packed '<16sd'")

    def every_slot():
        seg = ten[3]
        for i in range(10):
            put_record(seg, i, f"n{i}", float(i))
        put_record(seg, 5, "again", 55.0)
        want = [(f"n{i}", float(i)) for i in range(10)]
        want[5] = ("again", 55.0)
        _same([get_record(seg, i) for i in range(10)], want, "get_record(seg, 0..9)")
        put_record(odd, 3, "last", 3.0)
        _same(get_record(odd, 3), ("last", 3.0), "get_record(seg, 3) of a 100-byte segment")
        _refused(lambda: put_record(odd, 4, "x", 1.0), (ValueError,),
                 "put_record(seg, 4, ...) on a 100-byte segment (4 records fit)", odd)

    def name_bytes():
        seg = ten[4]
        put_record(seg, 0, "é" * 8, 1.0)
        _same(get_record(seg, 0), ("é" * 8, 1.0), "get_record of the 16-byte name 'éééééééé'")
        for name in ["x" * 17, "é" * 9, "a\0b"]:
            _refused(lambda name=name: put_record(seg, 1, name, 2.0), (ValueError,),
                     f"put_record(seg, 1, {name!r}, 2.0)", seg)

    def bad_arguments():
        seg = ten[5]
        write_people(seg)
        for call, kinds, what in [
            (lambda: put_record(seg, -1, "a", 1.0), (ValueError,), "put_record(seg, -1, ...)"),
            (lambda: put_record(seg, 10, "a", 1.0), (ValueError,), "put_record(seg, 10, ...)"),
            (lambda: get_record(seg, -1), (ValueError,), "get_record(seg, -1)"),
            (lambda: get_record(seg, 10), (ValueError,), "get_record(seg, 10)"),
            (lambda: put_record(seg, 0, b"ada", 1.0), (TypeError,), "put_record(.., b'ada', ..)"),
            (lambda: put_record(seg, 0, "a", "high"), (TypeError,), "put_record(.., 'high')"),
        ]:
            _refused(call, kinds, what, seg)

    return [
        Check("three records written and read back", round_trip,
              "record i is RECORD.pack(name bytes, score) at offset RECORD.size * i"),
        Check("written by one process, read by another that opened the key", across_processes,
              "keep everything in the segment, nothing in Python variables"),
        Check("the documented layout '<16sd' at offset 24 * index", layout,
              "'<' is little-endian; the name is UTF-8 padded with NUL bytes"),
        Check("every slot holds its own record, the last one too", every_slot,
              "a segment of size s holds s // 24 records"),
        Check("a name of 16 UTF-8 bytes fits; longer ones and NULs are refused", name_bytes,
              "struct's '16s' silently cuts longer names: check len(name.encode()) yourself"),
        Check("bad index, name or score refused before anything is written", bad_arguments,
              "check every argument first; a negative index must not count from the end"),
    ]


def ring_checks(ring_append, ring_latest, segments: Segments) -> list[Check]:
    """Return the checks of ``ring_append``/``ring_latest``, on segments from ``segments``."""
    four = [segments.new(5 * RECORD.size) for _ in range(5)]  # 4 slots each
    fifty = segments.new(51 * RECORD.size)
    tiny = [segments.new(RECORD.size), segments.new(2 * RECORD.size - 1)]
    records = [(f"r{i}", float(i)) for i in range(10)]

    def append(seg, batch):
        for name, score in batch:
            ring_append(seg, name, score)

    def empty():
        _same(ring_latest(four[0], 3), [], "ring_latest(seg, 3) of an empty ring")

    def a_few():
        elsewhere(append, four[1], records[:3])
        _same(by_key(four[1], ring_latest, 3), records[:3], "ring_latest(seg, 3) after 3 appends")
        _same(by_key(four[1], ring_latest, 2), records[1:3], "ring_latest(seg, 2) after 3 appends")
        _same(by_key(four[1], ring_latest, 0), [], "ring_latest(seg, 0)")

    def more_than_stored():
        elsewhere(append, four[2], records[:2])
        _same(by_key(four[2], ring_latest, 4), records[:2], "ring_latest(seg, 4) after 2 appends")

    def wraparound():
        seg = four[3]
        for done, stop in [(0, 4), (4, 5), (5, 10)]:
            elsewhere(append, seg, records[done:stop])
            kept = records[max(0, stop - 4):stop]
            _same(by_key(seg, ring_latest, 4), kept, f"ring_latest(seg, 4) after {stop} appends")
            _same(by_key(seg, ring_latest, 99), kept, f"ring_latest(seg, 99) after {stop} appends")
        _same(by_key(seg, ring_latest, 1), records[9:], "ring_latest(seg, 1) after 10 appends")

    def layout():
        seg = four[4]
        elsewhere(append, seg, records[:6])
        count = COUNTER.unpack(seg.read(0, COUNTER.size))[0]
        assert count == 6, f"bytes 0..7 hold {count} as '<Q', expected 6 (records appended)"
        for i in (4, 5, 2, 3):
            slot = i % 4
            got = seg.read((1 + slot) * RECORD.size, RECORD.size)
            assert got == RECORD.pack(b"r%d" % i, float(i)), \
                f"slot {slot} (bytes {(1 + slot) * 24}..) should hold record {i}, got {got!r}"

    def many_writers():
        per = 100
        for w in range(WRITERS):  # one after the other: no two write at once
            batch = [(f"w{w}-{k}", float(w * per + k)) for k in range(per)]
            by_key(fifty, append, batch)
        want = [(f"w{i // per}-{i % per}", float(i)) for i in range(WRITERS * per)][-50:]
        _same(by_key(fifty, ring_latest, 50), want, f"ring_latest(seg, 50) after {WRITERS * per}")
        count = COUNTER.unpack(fifty.read(0, COUNTER.size))[0]
        assert count == WRITERS * per, f"the counter is {count}, expected {WRITERS * per}"

    def bad_input():
        seg = four[0]
        _refused(lambda: ring_latest(seg, -1), (ValueError,), "ring_latest(seg, -1)")
        _refused(lambda: ring_latest(seg, "2"), (TypeError,), "ring_latest(seg, '2')")
        _refused(lambda: ring_append(seg, "x" * 17, 1.0), (ValueError,),
                 "ring_append(seg, 'xxxxxxxxxxxxxxxxx', 1.0)", seg)
        for small in tiny:
            _refused(lambda small=small: ring_append(small, "a", 1.0), (ValueError,),
                     f"ring_append on a {small.size}-byte segment (no room for a slot)", small)
            _refused(lambda small=small: ring_latest(small, 1), (ValueError,),
                     f"ring_latest on a {small.size}-byte segment (no room for a slot)")

    return [
        Check("an empty ring has no records", empty, "the counter starts at 0: a new segment "
              "is all zero bytes"),
        Check("three records written by one process, read by another, oldest first", a_few,
              "keep the counter in the segment, not in a Python variable"),
        Check("asking for more than are stored gives those stored", more_than_stored,
              "n = min(n, count, slots)"),
        Check("wraparound: 4 slots keep the newest 4 of 4, 5 and 10 records", wraparound,
              "record number i is in slot i % N; the newest n are numbers count-n .. count-1"),
        Check("the documented layout: counter in bytes 0..7, record i in slot i % N", layout,
              "slot k is record 1 + k in Part A's numbering"),
        Check(f"{WRITERS * 100} records from {WRITERS} processes in turn", many_writers,
              "each writer process opens the segment by key and appends 100 records",
              timeout=20),
        Check("bad input refused, nothing appended", bad_input,
              "check n and the segment's size before anything else"),
    ]


def check_records(put_record, get_record):
    """Print the scorecard of ``put_record``/``get_record`` and return it."""
    with Segments() as segments:
        return run_checks("put_record / get_record",
                          record_checks(put_record, get_record, segments))


def check_ring(ring_append, ring_latest):
    """Print the scorecard of ``ring_append``/``ring_latest`` and return it."""
    with Segments() as segments:
        return run_checks("ring_append / ring_latest",
                          ring_checks(ring_append, ring_latest, segments))
