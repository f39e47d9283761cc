"""Lab 06's hidden checks: what the grader adds to the visible checks of framing and the pool.

The visible checks (:mod:`ipclab.labs.lab06_framing`, ``lab06_worker``,
``lab06_pool``) try each rule once.  These add what a careful grader tries, each
allowed by the lab's instructions, and each failed by a mistake that passes the
visible checks:

- ``send_msg``: a body of exactly ``MAX_MESSAGE`` bytes is sent (one more is refused:
  ``>=`` is off by one), to a reader in another process; an object JSON cannot carry
  raises and sends nothing (no ``default=str``).
- ``recv_msg``: three frames cut at every byte, each piece read before the next is
  sent (ioctl(2) ``TIOCOUTQ`` on the sender); a frame of exactly ``MAX_MESSAGE``
  bytes; two sockets read in turns (a buffer shared by every socket mixes them); end
  of file at every byte of a frame.
- ``start_worker``: ``fn`` calling ``sys.exit`` (the worker must not come back into
  the caller: ``os._exit`` in a ``finally``); 50 requests pipelined, then 1 MiB each
  way; eight workers closed in a scrambled order, each ending alone.
- ``pool_map``: a slow job while the others go to the free worker (a pool working in
  batches waits for it); every worker dying during its job, by exit(2) and by
  SIGKILL; no fork(2) for no items, two for two items (``os.register_at_fork``);
  items from a generator; negative worker counts; 1 MiB items and results.

Each check runs under the visible checks' supervisor (a process group, a subreaper,
killpg(2) and waitpid(2) at the end), built by :func:`ipclab.labs.lab06_base._check`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time

from ... import diagnose, proc
from ...grading.parts import Part, hide
from ..lab06_base import (
    HEADER,
    MAX_MESSAGE,
    RETURNED,
    WAIT,
    WorkerError,
    _check,
    _frame,
    _pair,
    _unframe,
    _waiting,
)
from ..lab06_framing import _recv, _unread, recv_msg_checks, send_msg_checks
from ..lab06_pool import _no_workers_left, _returned, _run_pool, _scratch, pool_checks
from ..lab06_worker import _how, _Workers, worker_checks
from ..scorecard import run_checks
from ..support import outcome

LARGEST = "x" * (MAX_MESSAGE - 2)  # as JSON (with its quotes): exactly MAX_MESSAGE bytes
CUT = [{"id": 1, "text": "h\u00e9llo \u2713"}, [1, 2.5, None], ""]


def _read_largest(mine, other):
    """(In a reader child.) Read ``mine`` to end of file; return (announced, received, whole)."""
    other.close()
    raw = bytearray()
    while chunk := mine.recv(1 << 20):
        raw += chunk
    size = HEADER.unpack(raw[:4])[0] if len(raw) >= 4 else None
    return size, len(raw) - 4, raw[4:] == f'"{LARGEST}"'.encode()


def _largest_sent(send_msg):
    a, b = _pair(10)
    with proc.Family(12, show=False) as family:
        family.fork(_read_largest, b, a, label="reader")
        b.close()
        try:
            send_msg(a, LARGEST)
        except ValueError as e:
            raise AssertionError(f"send_msg refused a body of exactly MAX_MESSAGE bytes ({e}):"
                                 f" only a longer one is over") from None
        finally:
            a.close()  # end of file for the reader, whatever happened
    size, got, whole = outcome(family.results[0])
    assert (size, got, whole) == (MAX_MESSAGE, MAX_MESSAGE, True), \
        f"the reader got {got} bytes announced as {size}, expected one frame of {MAX_MESSAGE}"
    a, b = _pair(2)
    with a, b:
        try:
            send_msg(a, LARGEST + "x")
        except ValueError:
            return
        except TimeoutError:
            raise AssertionError("send_msg tried to send a body of MAX_MESSAGE + 1 bytes (and "
                                 "waited for room)") from None
        raise AssertionError("send_msg sent a body of MAX_MESSAGE + 1 bytes")


def _not_json(send_msg):
    for obj in [{"a set": {1, 2}}, b"bytes"]:
        a, b = _pair(2)
        with a, b:
            try:
                send_msg(a, obj)
            except (TypeError, ValueError):
                pass
            else:
                raise AssertionError(f"send_msg({obj!r}) returned: JSON cannot carry it, so "
                                     f"it must raise (json.dumps raises TypeError)")
            sent = _waiting(b)
            assert not sent, f"send_msg({obj!r}) sent {len(sent)} byte(s) before failing"


def send_msg_hidden(send_msg):
    """Return the hidden checks of ``send_msg``."""
    def c(name, body, hint, guard=6.0):
        return _check(name, functools.partial(body, send_msg), hint, guard, label="send_msg")
    return [
        c("a body of exactly MAX_MESSAGE bytes is sent, one more refused", _largest_sent,
          "refuse len(body) > MAX_MESSAGE, not >=", guard=14.0),
        c("an object JSON cannot carry raises, and nothing is sent", _not_json,
          "let json.dumps raise (no default=str): encode before sending anything"),
    ]


# -- recv_msg -------------------------------------------------------------------------------

def _pieces(mine, other, pieces):
    """(In a feeder child.) Send each piece once the reader has taken the one before."""
    other.close()
    for piece in pieces:
        mine.sendall(piece)
        _drained(mine)


def _drained(sock):
    """Wait (up to WAIT s) until the peer has read everything sent on ``sock``."""
    deadline = time.monotonic() + WAIT
    while _unread(sock) and time.monotonic() < deadline:
        time.sleep(0.0005)


@contextlib.contextmanager
def _fed(pieces, timeout: float):
    mine, theirs = _pair(timeout)
    with proc.Family(timeout + 3, show=False) as family:
        family.fork(_pieces, theirs, mine, pieces, label="feeder")
        theirs.close()
        try:
            yield mine
        finally:
            mine.close()  # a feeder still waiting for us gets EPIPE and ends


def _every_cut(recv_msg):
    stream = b"".join(map(_frame, CUT))
    with _fed([p for i in range(1, len(stream)) for p in (stream[:i], stream[i:])], 5) as sock:
        for i in range(1, len(stream)):
            got = [_recv(recv_msg, sock) for _ in CUT]
            assert got == CUT, f"the frames {CUT!r:.60}, cut after byte {i}, came back as " \
                               f"{got!r:.80}"


def _largest_read(recv_msg):
    with _fed([HEADER.pack(MAX_MESSAGE) + f'"{LARGEST}"'.encode()], 10) as sock:
        try:
            got = _recv(recv_msg, sock)
        except ValueError as e:
            raise AssertionError(f"recv_msg refused a frame of exactly MAX_MESSAGE bytes ({e}):"
                                 f" only a longer one is over") from None
    assert got == LARGEST, f"recv_msg returned {got!r:.40}, expected the {MAX_MESSAGE}-byte " \
                           f"frame's string"


def _two_sockets(recv_msg):
    (a1, b1), (a2, b2) = _pair(), _pair()
    with a1, b1, a2, b2:
        b1.sendall(b"".join(_frame(f"one {i}") for i in range(3)))
        b2.sendall(b"".join(_frame(f"two {i}") for i in range(3)))
        for sock, want in [(a1, "one 0"), (a2, "two 0"), (a2, "two 1"), (a1, "one 1"),
                           (a1, "one 2"), (a2, "two 2")]:
            got = _recv(recv_msg, sock)
            assert got == want, f"reading two sockets in turns, recv_msg returned {got!r}, " \
                                f"expected {want!r}"


def _eof_everywhere(recv_msg):
    frame = _frame(CUT[0])
    for i in range(1, len(frame)):
        a, b = _pair(2)
        with a, b:
            b.sendall(frame[:i])
            b.close()
            try:
                got = recv_msg(a)
            except EOFError:
                continue
            except (NotImplementedError, AssertionError):
                raise
            except Exception as e:  # noqa: BLE001 - TimeoutError: it waited for more
                raise AssertionError(f"at end of file after byte {i} of a {len(frame)}-byte "
                                     f"frame, recv_msg raised {type(e).__name__} instead of "
                                     f"EOFError") from None
            raise AssertionError(f"at end of file after byte {i} of a {len(frame)}-byte frame, "
                                 f"recv_msg returned {got!r:.40} instead of raising EOFError")


def recv_msg_hidden(recv_msg):
    """Return the hidden checks of ``recv_msg``."""
    def c(name, body, hint, guard=6.0):
        return _check(name, functools.partial(body, recv_msg), hint, guard, label="recv_msg")
    loop = "recv(n) returns at most n bytes, maybe fewer: loop until you have them all"
    return [
        c("frames cut at every byte come out whole", _every_cut, loop),
        c("a frame of exactly MAX_MESSAGE bytes is read", _largest_read,
          "refuse a length > MAX_MESSAGE, not >=", guard=14.0),
        c("two sockets read in turns: each frame from its own socket", _two_sockets,
          "read exactly what one frame needs from the socket given, and keep nothing"),
        c("end of file after any byte of a frame raises EOFError", _eof_everywhere,
          "recv returns b'' at end of file: raise EOFError wherever it comes"),
    ]


# -- start_worker ---------------------------------------------------------------------------

def _exits(_):
    sys.exit(3)


def _start(w, fn, siblings=()):
    """``w.start``; a worker whose exception escapes start_worker ends here, never further."""
    me = os.getpid()
    try:
        return w.start(fn, siblings)
    except BaseException:
        if os.getpid() != me:
            os._exit(RETURNED)
        raise


def _replies(w, pid, sock, count):
    try:
        return [_unframe(sock) for _ in range(count)]
    except TimeoutError:
        raise AssertionError(f"no reply within {WAIT:g} s: "
                             f"{diagnose.where(pid, w.labels)}") from None
    except (EOFError, ConnectionError):
        return None


def worker_hidden(start_worker):
    """Return the hidden checks of ``start_worker``."""
    def sys_exit():
        with _Workers(start_worker) as w:
            pid, sock = _start(w, _exits)
            sock.sendall(_frame("bye"))
            reply = _replies(w, pid, sock, 1)
            if reply is not None:  # it caught SystemExit too: fine, if it goes on
                assert reply[0].get("ok") is False, f"fn raised SystemExit, the reply was " \
                                                    f"{reply[0]!r:.60}"
                assert w.ask(pid, sock, "x") == {"ok": False, "error": "SystemExit: 3"}
                return
            status = w.ended(pid)
            assert status is not None, "the worker closed its socket, yet still runs"
            assert not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == RETURNED), \
                f"after fn called sys.exit, the worker {_how(status)}"

    def pipelined():
        with _Workers(start_worker) as w:
            pid, sock = _start(w, str.upper)
            requests = [f"request {i} \u2713" for i in range(50)]
            sock.sendall(b"".join(map(_frame, requests)))
            got = _replies(w, pid, sock, len(requests))
            assert got == [{"ok": True, "result": r.upper()} for r in requests], \
                f"50 requests sent at once got the replies {got!r:.80}"
            big = "y\u00e9" * (1 << 19)
            frame = _frame(big)  # in 64 KiB pieces, each read before the next is sent: a
            try:  # reader on another CPU could get the whole of it in one recv
                for at in range(0, len(frame), 1 << 16):
                    sock.sendall(frame[at:at + (1 << 16)])
                    _drained(sock)
            except (BrokenPipeError, ConnectionResetError):
                raise AssertionError("the worker closed its socket in the middle of a 1 MiB "
                                     "request, sent in 64 KiB pieces") from None
            assert _replies(w, pid, sock, 1) == [{"ok": True, "result": big.upper()}], \
                "a 1 MiB request did not get its 1 MiB reply"

    def eight():
        with _Workers(start_worker) as w:
            started = []
            for _ in range(8):
                started.append(_start(w, str.upper, [s for _, s in started]))
            left = list(range(8))
            for k in (3, 0, 7, 5, 1, 6, 2, 4):
                pid, sock = started[k]
                copies = w.still_open(sock)
                sock.close()
                w.must_end(pid, copies)
                left.remove(k)
                for j in left:
                    assert w.ask(*started[j], "a") == {"ok": True, "result": "A"}, \
                        f"worker {j + 1} broke when worker {k + 1} ended"

    def c(name, body, hint=""):
        return _check(name, body, hint, label="start_worker")
    return [
        c("fn calling sys.exit never brings the worker back into the caller", sys_exit,
          "SystemExit is no Exception: end the child with os._exit in a finally"),
        c("50 requests sent at once, then 1 MiB each way, answered in order", pipelined,
          "in the worker: recv_msg, fn, send_msg, one request at a time"),
        c("8 workers: closing any one's socket ends that one alone", eight,
          "close every socket of siblings in the child"),
    ]


# -- pool_map -------------------------------------------------------------------------------

def _slow_first(fd, others, x):
    """Item 0 waits (3 s at most) until the ``others`` jobs are done; says if they were."""
    if x:
        os.write(fd, b".")
        return x
    deadline = time.monotonic() + 3.0
    while os.fstat(fd).st_size < others and time.monotonic() < deadline:
        time.sleep(0.002)
    return os.fstat(fd).st_size >= others


def _dies(x):
    if x % 2:
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def _square(x):
    return x * x


def _forks() -> list:
    counted = []
    os.register_at_fork(after_in_parent=lambda: counted.append(1))  # in the check's process
    return counted


def pool_hidden(pool_map):
    """Return the hidden checks of ``pool_map``."""
    def slow_job():
        with _scratch() as fd:
            got = _returned(pool_map, functools.partial(_slow_first, fd, 12), list(range(13)), 2)
        assert got[1:] == list(range(1, 13)), f"results {got!r:.80}"
        assert got[0] is True, "the 12 quick jobs waited for the slow one: give a worker its " \
                               "next job as soon as it replies"

    def all_die():
        got = _returned(pool_map, _dies, list(range(7)), 3)
        wrong = [i for i, g in enumerate(got) if not isinstance(g, WorkerError)]
        assert not wrong, f"item {wrong[0]}: {got[wrong[0]]!r:.40}, expected a WorkerError " \
                          f"(every worker died)"
        _no_workers_left()

    def forks():
        counted = _forks()
        assert _returned(pool_map, str.upper, [], 8) == [], "no items: expected []"
        assert not counted, f"pool_map forked {len(counted)} time(s) for no items"
        assert _returned(pool_map, str.upper, ["a", "b"], 8) == ["A", "B"]
        assert len(counted) == 2, f"pool_map forked {len(counted)} times for 2 items, " \
                                  f"workers=8: start min(workers, len(items)) workers"

    def iterables():
        for items, what in [((x for x in range(10)), "a generator"), (tuple(range(10)),
                                                                       "a tuple")]:
            value, error, _, _ = _run_pool(pool_map, _square, items, 3)
            assert error is None, f"items from {what}: pool_map raised " \
                                  f"{type(error).__name__}: {error}"
            assert value == [x * x for x in range(10)], f"items from {what}: pool_map " \
                                                        f"returned {value!r:.80}"

    def negative():
        counted = _forks()
        for workers in (-1, -4):
            value, error, _, _ = _run_pool(pool_map, str.upper, ["a"], workers)
            assert isinstance(error, ValueError), f"workers={workers}: expected ValueError, " \
                "got " + (f"{type(error).__name__}: {error}" if error else f"{value!r:.40}")
        assert not counted, "pool_map forked before refusing workers < 1"

    def big():
        items = ["z\u00e9" * (1 << 19) + str(i) for i in range(6)]
        got = _returned(pool_map, str.upper, items, 2)
        wrong = [i for i, (g, item) in enumerate(zip(got, items, strict=True))
                 if g != item.upper()]
        assert not wrong, f"item {wrong[0]}: {got[wrong[0]]!r:.40}, expected its upper case"

    def c(name, body, hint=""):
        return _check(name, body, hint, 8.0, label="pool_map")
    return [
        c("a slow job holds up no other: the rest go to the free worker", slow_job,
          "do not wait for a batch: when a worker replies, send it the next item"),
        c("every worker dies (exit, SIGKILL): each job a WorkerError, no hang", all_die,
          "jobs left when no worker is left get a WorkerError too"),
        c("no worker for no items, one per item when fewer than workers", forks,
          "start min(workers, len(items)) workers"),
        c("items from a generator or a tuple", iterables, "items = list(items) first"),
        c("a negative number of workers is refused with ValueError", negative,
          "refuse workers < 1, before forking"),
        c("1 MiB items and results pass through", big),
    ]


# -- the parts ------------------------------------------------------------------------------

def _part(title, visible, hidden):
    return Part(title, (title,), lambda fn: run_checks(title, visible(fn) + hide(hidden(fn)),
                                                       show=False))


PARTS = [
    _part("send_msg", send_msg_checks, send_msg_hidden),
    _part("recv_msg", recv_msg_checks, recv_msg_hidden),
    _part("start_worker", worker_checks, worker_hidden),
    _part("pool_map", pool_checks, pool_hidden),
]
__all__ = ["PARTS", "pool_hidden", "recv_msg_hidden", "send_msg_hidden", "worker_hidden"]
