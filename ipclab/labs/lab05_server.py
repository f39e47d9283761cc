"""Lab 05's checks of ``serve_board(listener, stop) -> list``, the message board server.

Each check starts the student's server in a forked child on a fresh listener
(socket(2), bind(2) to 127.0.0.1 port 0, listen(2)) with a stop socketpair(2)
(:func:`ipclab.labs.lab05_harness.judge`), plays one scene with clients that
time out on every call, then sends the stop byte and reaps the server.  A crash
of the server is reported before what the clients saw; a server that does not
stop is killed and loses only the last check, which judges stopping: what
``serve_board`` returned and which sockets it left open.
"""

from __future__ import annotations

import random

from .lab05_clients import MAX_LINE
from .lab05_harness import GRACE, judge
from .scorecard import Check

CLIENTS = 64  # at once, in the first check


def _number(client, reply: bytes, request: str) -> int:
    word, _, n = reply.partition(b" ")
    assert word == b"OK" and n.isdigit(), \
        f"{client.name} sent {request!r} and got {reply!r:.60}, expected OK <number>"
    return int(n)


def _many(run):
    clients = [run.client(f"client {i}") for i in range(1, CLIENTS + 1)]
    for i, c in enumerate(clients, 1):  # a whole line, then half of the next one
        c.send(f"POST client {i} first\nPOST client {i} sec".encode())
    firsts = [_number(c, c.line(), f"POST client {i} first") for i, c in enumerate(clients, 1)]
    for c, n in zip(clients, firsts, strict=True):
        c.send(f"ond\nREAD {n}\n".encode())
    seconds = []
    for i, c in enumerate(clients, 1):
        seconds.append(_number(c, c.line(), f"POST client {i} second (sent in two pieces)"))
        c.expect_line(f"OK client {i} first".encode(), f" sent READ {firsts[i - 1]} and")
    numbers = sorted(firsts + seconds)
    assert numbers == list(range(1, 2 * CLIENTS + 1)), \
        f"the {2 * CLIENTS} POSTs got the numbers {numbers!r:.80}: each of 1..{2 * CLIENTS} once"
    for i, c in enumerate(clients, 1):
        c.send(f"READ {seconds[i - 1]}\nCOUNT\n".encode())
    for i, c in enumerate(clients, 1):
        c.expect_line(f"OK client {i} second".encode(), f" sent READ {seconds[i - 1]} and")
        c.expect_line(f"OK {2 * CLIENTS}".encode(), " sent COUNT and")


def _silent(run):
    silent = run.client("a client that sends nothing")
    half = run.client("a client that sent half a line")
    half.send(b"POST hal")
    talker = run.client("a third client")
    talker.expect("COUNT", b"OK 0")
    talker.expect("POST hello", b"OK 1")
    half.send(b"f\n")
    half.expect_line(b"OK 2", " finished its line 'POST half' and")
    silent.expect("READ 2", b"OK half")


def _garbage(run):
    rng = random.Random(7)  # random bytes, each line made invalid UTF-8 by a \xff
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(200))).replace(b"\n", b"")
             + b"\xff" for _ in range(20)]
    c = run.client("a client sending binary garbage")
    c.send(b"\n".join(lines) + b"\n\n")
    for _ in lines:
        c.expect_line(b"ERR not UTF-8")
    c.expect_line(b"ERR unknown command", " sent an empty line and")
    c.expect("COUNT", b"OK 0")
    run.client("another client").expect("POST still here", b"OK 1")


def _over_long(run):
    text = "y" * (MAX_LINE - len("POST "))
    fits = run.client(f"a client sending a line of {MAX_LINE} bytes")
    fits.expect("POST " + text, b"OK 1")
    long = run.client("a client sending an over-long line")
    long.send(b"POST " + b"x" * (4 * MAX_LINE))  # and never a b"\n"
    long.expect_line(b"ERR line too long")
    long.closed("after ERR line too long")
    fits.expect("COUNT", b"OK 1")
    fits.expect("READ 1", f"OK {text}".encode())


def _half_close(run):
    c = run.client("a client that shut down its sending side")
    c.send(b"POST bye\nCOUNT\nPOST unfinished")
    c.half_close()
    c.expect_line(b"OK 1")
    c.expect_line(b"OK 1", " sent COUNT and")
    rest = c.closed("recv returned b'' to it: the client has sent everything")
    assert not rest, f"{c.name} got {rest!r:.60} after its replies, expected nothing more"
    run.client("another client").expect("COUNT", b"OK 1")


def _reset(run):
    a = run.client("client 1")
    a.expect("POST boom", b"OK 1")
    a.reset()  # RST while the server waits for its next line
    b = run.client("client 2")
    b.send(b"COUNT\n" * 200)
    b.reset()  # RST with its replies unread
    run.settle(0, "connection(s) of clients that reset them (close a socket when recv or "
                  "send raises)")
    c = run.client("client 3")
    c.expect("COUNT", b"OK 1")
    c.expect("READ 1", b"OK boom")


def _flood_bytes() -> int:
    """Twice what the largest receive and send buffers of a TCP connection can hold."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            with open(f"/proc/sys/net/ipv4/{name}") as f:
                total += int(f.read().split()[2])
        except (OSError, ValueError, IndexError):
            total += 8 << 20
    return 2 * total


def _never_reads(run):
    hog = run.client("a client that never reads its replies")
    hog.expect("POST " + "m" * (MAX_LINE - 5), b"OK 1")
    hog.flood(b"READ 1\n" * 10_000, _flood_bytes())
    other = run.client("another client")
    other.expect("COUNT", b"OK 1")
    other.expect("POST still served", b"OK 2")


def _stops(run):
    run.client("client 1").expect("POST kept 1", b"OK 1")
    run.client("client 2").expect("POST kept 2", b"OK 2")


def _stopped(run) -> None:
    assert run.returned, f"serve_board did not return within {GRACE:g} s of the stop byte, " \
                         f"and was killed"
    report = run.report()
    left = (["the listener"] if report["listener_open"] else []) + (
        [f"{report['left_open']} client connection(s)"] if report["left_open"] else [])
    assert not left, f"after serve_board returned, still open: {', '.join(left)}"
    board = report["board"]
    assert board == ["kept 1", "kept 2"], f"serve_board returned {board!r:.80}, expected " \
                                          f"the board ['kept 1', 'kept 2']"


def serve_board_checks(serve_board):
    """Return the checks of ``serve_board(listener, stop) -> list``."""
    def scene(body):
        return lambda: judge(serve_board, body) and None

    def stops():
        _stopped(judge(serve_board, _stops))

    return [Check(name, run, hint, timeout=25) for name, run, hint in [
        (f"{CLIENTS} clients at once: every request answered, every message numbered once",
         scene(_many), "one selector for the listener and every connection; a LineBuffer "
         "per connection (requests may come several per recv, or cut in two)"),
        ("a silent client, and one that sent half a line, block nobody", scene(_silent),
         "call accept or recv only on a socket the selector says is ready, and never wait "
         "there for a whole line"),
        ("binary garbage gets ERR lines, and the connection stays open", scene(_garbage),
         "every line gets exactly one reply, whatever its bytes"),
        ("an over-long line gets ERR line too long, then the connection is closed",
         scene(_over_long), "catch LineTooLong: send b'ERR line too long\\n', unregister "
         "and close that connection"),
        ("a half-closed client gets its replies, then the server closes", scene(_half_close),
         "recv returning b'' means the client has sent everything: unregister and close "
         "its socket"),
        ("clients that reset their connection are closed, and the server goes on",
         scene(_reset), "recv and send raise OSError (ConnectionResetError, "
         "BrokenPipeError): close that connection and go on"),
        ("a client that never reads its replies does not block the others",
         scene(_never_reads), "make each connection non-blocking: sendall then raises "
         "BlockingIOError instead of waiting; close that client"),
        ("stop: serve_board returns the board, every socket closed", stops,
         "register stop with the selector; when it is ready, close every connection and "
         "the listener, and return the board"),
    ]]
