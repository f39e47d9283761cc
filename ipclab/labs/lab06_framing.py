"""Lab 06 checks of ``send_msg`` and ``recv_msg``: the wire format, partial reads, end of file."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import struct
import termios
import time

from .. import proc
from .lab06_base import HEADER, MAX_MESSAGE, SAMPLES, WAIT, _check, _frame, _pair, _waiting
from .support import outcome

# -- send_msg -------------------------------------------------------------------------------

def _wire(send_msg):
    a, b = _pair()
    with a, b:
        for obj in SAMPLES:
            send_msg(a, obj)
            raw = _waiting(b)
            assert len(raw) >= 4, f"send_msg({obj!r}) sent {raw!r}, not even the 4-byte length"
            size, body = HEADER.unpack(raw[:4])[0], raw[4:]
            if size != len(body):
                if struct.unpack("<I", raw[:4])[0] == len(body):
                    raise AssertionError("the length is little-endian: use struct.pack('!I', n)")
                raise AssertionError(f"send_msg({obj!r}): the length says {size} bytes, "
                                     f"{len(body)} followed (one call, one frame)")
            try:
                got = json.loads(body.decode("utf-8"))
            except ValueError:
                raise AssertionError(f"the body is not UTF-8 JSON: {body[:30]!r}") from None
            assert got == obj, f"the body decodes to {got!r}, expected {obj!r}"


def _big() -> dict:
    return {"text": "x" * (1 << 20)}  # 1 MiB: more than a socket buffer holds


def _read_all(mine, other):
    """(In a reader child.) Read ``mine`` to end of file; return (bytes, announced, whole)."""
    other.close()
    raw = bytearray()
    while chunk := mine.recv(1 << 16):
        raw += chunk
    size = HEADER.unpack(raw[:4])[0] if len(raw) >= 4 else None
    return len(raw), size, size == len(raw) - 4 and json.loads(raw[4:]) == _big()


def _big_send(send_msg):
    a, b = _pair(5)
    with proc.Family(8, show=False) as family:
        family.fork(_read_all, b, a, label="reader")
        b.close()
        try:
            send_msg(a, _big())
        finally:
            a.close()  # end of file for the reader, whatever happened
    got, size, whole = outcome(family.results[0])
    assert size is None or got - 4 >= size, \
        f"the reader got {got - 4} of the {size} bytes announced: send() may send only part " \
        f"of what it is given (it returns how much); sendall sends it all"
    assert whole, "the 1 MiB message did not arrive as one frame of it"


def _too_big(send_msg):
    a, b = _pair(2)
    with a, b:
        try:
            send_msg(a, "x" * MAX_MESSAGE)
        except ValueError:
            pass
        except TimeoutError:
            raise AssertionError("send_msg tried to send it (and waited for room)") from None
        else:
            raise AssertionError("send_msg sent a body over MAX_MESSAGE bytes")
        left = _waiting(b)
        assert not left, f"{len(left)} byte(s) were sent before the ValueError: check first"


def send_msg_checks(send_msg):
    """Return the checks of ``send_msg(sock, obj)``."""
    def c(name, body, hint):
        return _check(name, functools.partial(body, send_msg), hint, label="send_msg")
    return [
        c("the bytes sent: a 4-byte big-endian length, then that much UTF-8 JSON", _wire,
          "struct.pack('!I', len(body)) + body, body = json.dumps(obj).encode('utf-8')"),
        c("a 1 MiB message arrives whole", _big_send,
          "sock.send may send only part of a large message: use sock.sendall"),
        c("a body over MAX_MESSAGE is refused with ValueError, nothing sent", _too_big,
          "measure the encoded body and raise before sending anything"),
    ]


# -- recv_msg -------------------------------------------------------------------------------

def _recv(recv_msg, sock):
    try:
        return recv_msg(sock)
    except TimeoutError:
        raise AssertionError(f"recv_msg waited {sock.gettimeout():g} s for bytes that never "
                             f"came: read exactly 4 bytes, then exactly the length") from None


def _read_back(recv_msg, together: bool):
    a, b = _pair()
    with a, b:
        if together:
            b.sendall(b"".join(map(_frame, SAMPLES)))
        for obj in SAMPLES:
            if not together:
                b.sendall(_frame(obj))
            got = _recv(recv_msg, a)
            assert got == obj, f"recv_msg returned {got!r:.60}, expected {obj!r}"


def _unread(sock) -> int:
    """Bytes ``sock`` sent that its peer has not read yet (ioctl SIOCOUTQ on AF_UNIX)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def _feed(mine, other, data: bytes, chunk: int | None):
    """(In a feeder child.) Send ``data``: all at once, or ``chunk`` bytes at a time, each
    piece sent only once the reader has taken the one before, so that no single recv can
    return more than ``chunk`` bytes (a fast reader on another CPU could otherwise get
    even 1 MiB in one recv while the sender keeps the queue filled)."""
    other.close()
    if chunk is None:
        mine.sendall(data)
        return
    for i in range(0, len(data), chunk):
        mine.sendall(data[i:i + chunk])
        deadline = time.monotonic() + WAIT
        while _unread(mine) and time.monotonic() < deadline:
            time.sleep(0.0005)


@contextlib.contextmanager
def _feeding(data: bytes, chunk: int | None):
    mine, theirs = _pair(5)
    with proc.Family(8, show=False) as family:
        family.fork(_feed, theirs, mine, data, chunk, label="feeder")
        theirs.close()
        try:
            yield mine
        finally:
            mine.close()  # a feeder still waiting for us gets EPIPE and ends


def _fed(recv_msg, messages, chunk: int | None):
    with _feeding(b"".join(map(_frame, messages)), chunk) as sock:
        got = [_recv(recv_msg, sock) for _ in messages]
    assert got == messages, f"recv_msg returned {got!r:.80}, expected {messages!r:.80}"


def _eof(recv_msg):
    for sent, where in [(b"", "before a frame"), (HEADER.pack(10)[:2], "inside the length"),
                        (HEADER.pack(10) + b"[1,", "inside the body")]:
        a, b = _pair()
        with a, b:
            b.sendall(sent)
            b.close()
            try:
                got = recv_msg(a)
            except EOFError:
                continue
            except (NotImplementedError, AssertionError):
                raise
            except Exception as e:  # noqa: BLE001 - what it raised is the verdict
                raise AssertionError(f"at end of file {where}, recv_msg raised "
                                     f"{type(e).__name__}: {e} instead of EOFError") from None
            raise AssertionError(f"at end of file {where}, recv_msg returned {got!r:.40} "
                                 f"instead of raising EOFError")


def _hostile(recv_msg):
    a, b = _pair(2)
    with a, b:
        b.sendall(HEADER.pack(MAX_MESSAGE + 1) + b"[1]")
        try:
            got = recv_msg(a)
        except ValueError:
            return
        except TimeoutError:
            raise AssertionError(f"recv_msg waited for the {MAX_MESSAGE + 1} bytes announced "
                                 f"instead of refusing them") from None
        raise AssertionError(f"recv_msg returned {got!r:.40} for a frame announcing "
                             f"{MAX_MESSAGE + 1} bytes")


def recv_msg_checks(recv_msg):
    """Return the checks of ``recv_msg(sock)``."""
    def c(name, body, *args, hint=""):
        return _check(name, functools.partial(body, recv_msg, *args), hint, guard=5,
                      label="recv_msg")
    loop = "recv(n) returns at most n bytes, maybe fewer: loop until you have them all"
    return [
        c("frames are read back as their objects (JSON, UTF-8)", _read_back, False),
        c("frames sent together come out one at a time", _read_back, True,
          hint="read exactly 4 bytes, then exactly as many as they say: never more"),
        c("a frame arriving one byte at a time", _fed, [{"id": 1, "text": "héllo ✓"},
                                                         [1, 2, 3]], 1, hint=loop),
        c("a 1 MiB message", _fed, [_big()], 64 * 1024, hint=loop),
        c("end of file: EOFError between frames and inside one", _eof,
          hint="recv returns b'' at end of file (forever): raise EOFError, never return a part"),
        c("a length over MAX_MESSAGE is refused with ValueError", _hostile,
          hint="check the length before reading the body: a broken peer could announce 4 GiB"),
    ]
