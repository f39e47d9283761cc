"""Checks for lab 01 (pipes): a hand-built pipeline, and request/reply over two pipes.

The student writes ``run_pipeline(commands, data=b"")`` with ``pipe(2)``,
``fork(2)``, ``dup2(2)`` and ``execvp(3)``, and ``ask_child(handler,
requests)`` with two pipes.  Every check runs the student's function with real
processes inside a child (see :mod:`ipclab.labs.scorecard`), and also checks
that it leaves no child process and no open pipe end behind.
"""

from __future__ import annotations

import os

from .scorecard import Check, run_checks
from .support import tidy


def _tidy(call):
    """Run ``call()`` and assert it left no child, zombie or open descriptor behind."""
    return tidy(call, fds=True, reap="call waitpid")


def _expect(fn, commands, data, output, statuses):
    got = _tidy(lambda: fn(commands, data))
    assert isinstance(got, tuple) and len(got) == 2, \
        f"expected (output, statuses), got {got!r:.80}"
    assert got[0] == output, f"output {got[0]!r:.80}, expected {output!r:.80}"
    assert list(got[1]) == statuses, f"statuses {got[1]!r}, expected {statuses!r}"


def pipeline_checks(run_pipeline):
    """Return the checks of ``run_pipeline(commands, data=b"") -> (bytes, list[int])``."""
    big = bytes(range(256)) * 4096  # 1 MiB: more than a pipe holds

    def empty_refused():
        try:
            run_pipeline([], b"")
        except ValueError:
            return
        raise AssertionError("run_pipeline([]) should raise ValueError")

    return [
        Check("one command: echo hello",
              lambda: _expect(run_pipeline, [["echo", "hello"]], b"", b"hello\n", [0]),
              "fork, exec the command with its stdout on a pipe, read that pipe to its end"),
        Check("two commands: printf | sort",
              lambda: _expect(run_pipeline, [["printf", "b\\na\\n"], ["sort"]], b"",
                              b"a\nb\n", [0, 0]),
              "each child dup2()s its pipe ends onto 0 and 1, then closes ALL pipe fds"),
        Check("three commands fed with input: tr | sort | uniq",
              lambda: _expect(run_pipeline, [["tr", "a-z", "A-Z"], ["sort"], ["uniq"]],
                              b"pear\napple\npear\n", b"APPLE\nPEAR\n", [0, 0, 0]),
              "the first command's stdin is a pipe the data is written into"),
        Check("exit statuses come back in order",
              lambda: _expect(run_pipeline, [["sh", "-c", "cat; exit 3"], ["false"], ["true"]],
                              b"x", b"", [3, 1, 0]),
              "os.waitpid each child; os.waitstatus_to_exitcode(status)"),
        Check("a missing command gives status 127, like the shell",
              lambda: _expect(run_pipeline, [["no-such-command-ipclab"]], b"", b"", [127]),
              "if exec fails the child must os._exit(127), never go on running Python"),
        Check("1 MiB through cat | cat without a deadlock",
              lambda: _expect(run_pipeline, [["cat"], ["cat"]], big, big, [0, 0]),
              "a pipe holds only ~64 KiB: write the input from another process (or with "
              "select) while you read the output", timeout=15),
        Check("an empty pipeline is refused with ValueError", empty_refused,
              "check the arguments before forking"),
    ]


def request_reply_checks(ask_child):
    """Return the checks of ``ask_child(handler, requests) -> list[str]``."""
    def expect(handler, requests, replies):
        got = _tidy(lambda: ask_child(handler, requests))
        assert isinstance(got, list), f"expected a list of replies, got {got!r:.80}"
        assert got == replies, f"replies {got!r:.100}, expected {replies!r:.100}"

    def in_the_child():
        me = os.getpid()
        got = _tidy(lambda: ask_child(lambda s: str(os.getpid()), ["a", "b"]))
        assert len(set(got)) == 1 and got[0] != str(me), \
            "the handler must run in the one child, not in the parent"

    words = [f"word {i}" for i in range(500)]
    return [
        Check("three requests, echoed", lambda: expect(str, ["a", "b", "c"], ["a", "b", "c"]),
              "write one line, read one line, for each request"),
        Check("replies are the handler's", lambda: expect(str.upper, ["ping", "pong"],
                                                          ["PING", "PONG"])),
        Check("500 requests in order",
              lambda: expect(lambda s: s[::-1], words, [w[::-1] for w in words]),
              "flush after each write, or the other side waits for bytes still in your buffer"),
        Check("the handler runs in one child process", in_the_child),
        Check("no requests: no replies, and the child still ends",
              lambda: expect(str, [], []), timeout=5,
              hint="the child ends at end of file: close its unused write end, and the "
                   "parent's write end when done"),
    ]


def check_run_pipeline(run_pipeline):
    """Print the scorecard of ``run_pipeline`` and return it."""
    return run_checks("run_pipeline", pipeline_checks(run_pipeline))


def check_ask_child(ask_child):
    """Print the scorecard of ``ask_child`` and return it."""
    return run_checks("ask_child", request_reply_checks(ask_child))
