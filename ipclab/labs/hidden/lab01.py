"""The grader's parts of lab 01 (pipes): the visible checks plus hidden ones.

The visible checks (:mod:`ipclab.labs.lab01`) run short pipelines, one of them
with 1 MiB of data, and a few hundred small requests.  They never run a
command that reads an empty input, one that exits without reading its input,
an endless producer, a command killed by a signal, or output that comes in
pieces; and they never send a request longer than a pipe holds, or more
requests than a pipe holds.  Those are where the classic pipe mistakes hide:

- an end of a pipe still open somewhere (the feeder keeping the read end of
  its own pipe, the parent keeping an inner read end or the input's write
  end): somebody waits for an end of file, or an EPIPE, that never comes;
- the input written before the output is read, even through an enlarged
  pipe (``fcntl F_SETPIPE_SZ``): a long pipeline holds only so much;
- commands run one after another instead of at once: ``yes | head`` never ends;
- ``os.WEXITSTATUS`` instead of ``os.waitstatus_to_exitcode``: a killed
  command's status is lost;
- a short ``read(2)`` taken for the end of the output; one ``read`` taken
  for one whole line; ``str.strip`` eating a request's spaces; all the
  requests written before any reply is read;
- a handler that raises, which kills the child: the parent must see end of
  file and end, not wait for a reply forever.

System calls: pipe(2), fork(2), dup2(2), execve(2), read(2), write(2)
(EPIPE), close(2), waitpid(2), waitid(2), kill(2), as the student's code
makes them.  Every hidden check also fails a call that leaves a child or a
descriptor behind (:func:`ipclab.labs.support.tidy`), as the visible ones do.
"""

from __future__ import annotations

import random
import time

from ... import leaks
from ...grading.parts import Part, hide
from ..lab01 import _expect, _tidy, pipeline_checks, request_reply_checks
from ..scorecard import Check, run_checks

BIG = 1 << 20  # 1 MiB: more than a pipe holds
LONG = 4 * BIG + 7  # more than six stages hold, even with a 1 MiB first pipe


def _binary(size: int) -> bytes:
    return random.Random(1).randbytes(size)  # every byte value, NULs too; the same every run


def _upper(data: bytes) -> bytes:
    return data.translate(bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz",
                                          b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def hidden_pipeline_checks(run_pipeline) -> list[Check]:
    """The hidden checks of ``run_pipeline(commands, data=b"")``."""
    def empty_input():
        _expect(run_pipeline, [["cat"]], b"", b"", [0])
        _expect(run_pipeline, [["wc", "-c"]], b"", b"0\n", [0])

    def unread_input():
        big = bytes(range(256)) * (BIG // 256)
        _expect(run_pipeline, [["true"]], big, b"", [0])
        _expect(run_pipeline, [["head", "-c", "5"], ["cat"]], big, big[:5], [0, 0])

    def stops_reading():
        got = _tidy(lambda: run_pipeline([["yes"], ["head", "-n", "3"]], b""))
        assert isinstance(got, tuple) and len(got) == 2, \
            f"expected (output, statuses), got {got!r:.80}"
        assert got[0] == b"y\ny\ny\n", f"output {got[0]!r:.80}, expected b'y\\ny\\ny\\n'"
        statuses = list(got[1])
        assert len(statuses) == 2 and statuses[1] == 0 and statuses[0] != 0, \
            f"statuses {statuses!r}, expected [yes's: not 0 (SIGPIPE or EPIPE), 0]"

    def six_stages():
        data = _binary(LONG)
        stages = [["cat"], ["tr", "a-z", "A-Z"], ["cat"], ["cat"], ["cat"], ["cat"]]
        _expect(run_pipeline, stages, data, _upper(data), [0] * 6)

    def in_pieces():
        _expect(run_pipeline, [["sh", "-c", "printf one; sleep 0.2; printf two"]], b"",
                b"onetwo", [0])

    def killed():
        _expect(run_pipeline, [["sh", "-c", "kill -KILL $$"], ["cat"]], b"", b"", [-9, 0])

    return [
        Check("empty input: cat and wc -c see end of file at once", empty_input,
              "with no data, the first pipe's write end must still be closed", timeout=5),
        Check("a command that never reads its input: true, head -c 5", unread_input,
              "the feeder must close every pipe end but the one it writes (its pipe's read "
              "end too) to get EPIPE when nobody reads; then it ends quietly", timeout=5),
        Check("yes | head -n 3 ends once head has exited", stops_reading,
              "run the commands at once, and close every inner pipe end in the parent "
              "before waiting", timeout=5),
        Check("six stages move 4 MiB of binary data in and out", six_stages,
              "write the input from another process while you read the output", timeout=20),
        Check("output written in pieces is read to end of file", in_pieces,
              "a short read is not the end: read until os.read returns b''", timeout=5),
        Check("a command killed by SIGKILL has status -9", killed,
              "os.waitstatus_to_exitcode(status), not os.WEXITSTATUS", timeout=5),
    ]


def hidden_request_reply_checks(ask_child) -> list[Check]:
    """The hidden checks of ``ask_child(handler, requests)``."""
    def expect(handler, requests, replies):
        got = _tidy(lambda: ask_child(handler, requests))
        assert isinstance(got, list), f"expected a list of replies, got {got!r:.80}"
        if got != replies:  # say where: the lists are long
            n = min(len(got), len(replies))
            i = next((i for i in range(n) if got[i] != replies[i]), n)
            mine = repr(got[i])[:60] if i < len(got) else "missing"
            want = repr(replies[i])[:60] if i < len(replies) else "none"
            raise AssertionError(f"{len(got)} replies, expected {len(replies)}; reply {i} is "
                                 f"{mine}, expected {want}")

    def large():
        requests = [c * 100_000 for c in "abc"]
        expect(lambda s: s + s.upper(), requests, [r + r.upper() for r in requests])

    def many():
        requests = [f"request {i}" for i in range(20_000)]
        expect(lambda s: s[::-1], requests, [r[::-1] for r in requests])

    def spaces():
        requests = ["", " ", "  two  ", "\ttab", "end "]
        expect(lambda s: f"[{s}]", requests, [f"[{r}]" for r in requests])

    def handler_raises():
        expect(str, ["first"], ["first"])  # it works at all

        def handler(request):
            if request == "boom":
                raise ValueError("the handler failed")
            return request
        try:
            ask_child(handler, ["a", "boom", "c"])
        except Exception:  # noqa: BLE001 - raising is a fine way to end, hanging is not
            pass
        deadline = time.monotonic() + 2  # a child that is ending may take a moment
        while (running := [pid for pid, state in leaks.children() if state != "Z"]) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running, f"{len(running)} child process(es) still running after ask_child"

    return [
        Check("100 KiB requests, 200 KiB replies", large,
              "a line can take many reads: readline() on a file object, not one os.read",
              timeout=5),
        Check("20 000 requests: more than a pipe holds either way", many,
              "read each reply before sending the next request", timeout=10),
        Check("blank and space-padded requests keep their spaces", spaces,
              "remove only the newline: line.rstrip('\\n'), not strip()", timeout=5),
        Check("a handler that raises: ask_child ends instead of hanging", handler_raises,
              "when the child dies the parent must read end of file: close the parent's "
              "copy of the reply pipe's write end right after fork", timeout=5),
    ]


def pipeline_part(run_pipeline) -> list[Check]:
    """The checks of the ``run_pipeline`` part: the visible ones, then the hidden ones."""
    return pipeline_checks(run_pipeline) + hide(hidden_pipeline_checks(run_pipeline))


def request_reply_part(ask_child) -> list[Check]:
    """The checks of the ``ask_child`` part: the visible ones, then the hidden ones."""
    return request_reply_checks(ask_child) + hide(hidden_request_reply_checks(ask_child))


PARTS = [
    Part("run_pipeline", ("run_pipeline",),
         lambda run_pipeline: run_checks("run_pipeline", pipeline_part(run_pipeline),
                                         show=False)),
    Part("ask_child", ("ask_child",),
         lambda ask_child: run_checks("ask_child", request_reply_part(ask_child), show=False)),
]
