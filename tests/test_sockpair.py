"""ipclab.sockpair: socketpairs in one process and across fork, explained timeouts, a pool."""

import os
import re
import signal
import socket
import struct
import time

import pytest

from ipclab import diagnose, framing, leaks, proc, sockpair, workers
from ipclab.errors import ChildError, IPCTimeoutError, ObjectGoneError

pytestmark = pytest.mark.timeout(30)


def _raises_timeout(call, at_least, at_most=3.0) -> str:
    """Run ``call``; it must raise IPCTimeoutError after ``at_least`` s; return the message."""
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        call()
    assert at_least * 0.9 <= time.monotonic() - start < at_most
    return str(info.value)


# --- one process ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["stream", "seqpacket", "dgram"])
def test_each_end_reads_what_the_other_wrote_both_ways(kind):
    with sockpair.pair(kind, timeout=2) as (a, b):
        assert isinstance(a, sockpair.Socket) and a.family == socket.AF_UNIX
        assert a.type == sockpair.KINDS[kind] and a.gettimeout() == b.gettimeout() == 2
        a.sendall(b"ABCdef123\n")  # the seed's example
        assert b.recv(100) == b"ABCdef123\n"
        b.sendall(b"and back")
        assert a.recv(100) == b"and back"


def test_pair_indexes_like_the_php_array_and_close_is_safe_twice():
    sockets = sockpair.pair()
    sockets[0].sendall(b"x")
    assert sockets[1].recv(1) == b"x" and len(sockets) == 2
    sockets.close()
    sockets.close()
    assert sockets[0].fileno() == sockets[1].fileno() == -1
    with pytest.raises(OSError):
        sockets[0].sendall(b"a closed end fails loudly")


def test_stream_merges_sends_seqpacket_and_dgram_keep_them_whole():
    with sockpair.pair("stream") as (a, b):
        a.sendall(b"one")
        a.sendall(b"two")
        assert b.recv(100) == b"onetwo"  # a byte stream: the boundary is gone
    for kind in ("seqpacket", "dgram"):
        with sockpair.pair(kind) as (a, b):
            for word in (b"one", b"two", b"three"):
                a.sendall(word)
            assert b.recv(2) == b"on"  # too small a buffer: the rest of "one" is dropped
            assert [b.recv(100), b.recv(100)] == [b"two", b"three"]


def test_reading_an_end_nobody_wrote_to_times_out_with_the_explanation():
    with sockpair.pair(timeout=0.3) as (a, b):
        message = _raises_timeout(lambda: b.recv(10), 0.3)
        assert message.startswith(f"parent waited 0.3 s to read from fd {b.fileno()} (socket:[")
        assert "nothing was written to the other end" in message
        assert "never back to itself" in message
        assert f"the other end (socket:[{os.fstat(a.fileno()).st_ino}]) is still open in: " \
               f"parent (fd {a.fileno()})" in message


def test_what_an_end_writes_never_comes_back_to_it():
    with sockpair.pair(timeout=0.2) as (a, b):
        b.sendall(b"to the other end")  # the seed: writing to end 1 does not feed end 1
        _raises_timeout(lambda: b.recv(100), 0.2)
        assert a.recv(100) == b"to the other end"


def test_end_of_file_on_stream_and_seqpacket_but_never_on_dgram():
    for kind in ("stream", "seqpacket"):
        with sockpair.pair(kind, timeout=1) as (a, b):
            a.close()
            assert b.recv(10) == b""
    with sockpair.pair("dgram", timeout=0.2) as (a, b):
        a.close()
        message = _raises_timeout(lambda: b.recv(10), 0.2)
        assert "a datagram pair never reports end of file" in message
        assert "is still open in: no process of this family" in message


def test_a_full_buffer_times_out_on_write_and_says_nobody_reads():
    with sockpair.pair(timeout=0.3) as (a, b):
        message = _raises_timeout(lambda: a.sendall(b"x" * (16 << 20)), 0.3)
        assert f"parent waited 0.3 s to write to fd {a.fileno()}" in message
        assert "the buffer towards the other end is full because nobody reads" in message
        assert f"still open in: parent (fd {b.fileno()})" in message


# --- the timeout lives in the kernel ------------------------------------------------------

def _kernel_timeouts(sock) -> tuple[float, float]:
    """SO_RCVTIMEO and SO_SNDTIMEO of ``sock`` as the kernel holds them, in seconds."""
    def seconds(option):
        whole, micro = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
        return whole + micro / 1e6
    return seconds(socket.SO_RCVTIMEO), seconds(socket.SO_SNDTIMEO)


def test_an_end_is_blocking_and_its_timeout_is_kept_by_the_kernel():
    with sockpair.pair(timeout=2) as (a, b):
        assert os.get_blocking(a.fileno())  # no O_NONBLOCK: each call is one system call
        assert _kernel_timeouts(a) == (2.0, 2.0)  # (the kernel counts in clock ticks)
        assert (a.gettimeout(), a.timeout, a.getblocking()) == (2.0, 2.0, True)
        a.settimeout(0.25)
        assert _kernel_timeouts(a) == pytest.approx((0.25, 0.25), abs=0.011)
        assert a.gettimeout() == 0.25
        a.settimeout(None)  # blocking for ever, as on any socket
        assert _kernel_timeouts(a) == (0, 0) and (a.gettimeout(), a.getblocking()) == (None, True)
        a.setblocking(False)
        assert (a.gettimeout(), a.getblocking(), os.get_blocking(a.fileno())) == (0.0, False,
                                                                                   False)
        with pytest.raises(BlockingIOError):  # a non-blocking end: no data is no timeout
            a.recv(10)
        a.setblocking(True)
        assert a.gettimeout() is None and os.get_blocking(a.fileno())


def test_settimeout_refuses_what_a_plain_socket_refuses_with_the_same_words():
    with sockpair.pair(timeout=1) as (a, _), socket.socket() as plain:
        for bad in (-1, "x", float("nan"), 10**12):
            with pytest.raises(Exception) as expected:
                plain.settimeout(bad)
            with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
                a.settimeout(bad)
        assert a.gettimeout() == 1.0 and _kernel_timeouts(a) == (1.0, 1.0)  # unchanged


def test_a_dup_is_a_socket_with_the_same_explained_timeout():
    with sockpair.pair(timeout=0.2) as (a, b), b.dup() as copy:
        assert isinstance(copy, sockpair.Socket) and copy.gettimeout() == 0.2
        assert "nothing was written to the other end" in _raises_timeout(
            lambda: copy.recv(1), 0.2)
        a.sendall(b"x")
        assert b.recv(1) == b"x"


def test_every_way_to_read_times_out_with_the_explanation():
    with sockpair.pair("dgram", timeout=0.2) as (a, b):
        for call in (lambda: b.recv_into(bytearray(8)), lambda: b.recvfrom(8),
                     lambda: b.recvfrom_into(bytearray(8)), lambda: b.recvmsg(8),
                     lambda: b.recvmsg_into([bytearray(8)])):
            assert "a datagram pair never reports end of file" in _raises_timeout(call, 0.2)
        with pytest.raises(TypeError, match=r"sendto\(\) takes 2 or 3 arguments \(1 given\)"):
            a.sendto(b"x")


def test_msg_dontwait_still_waits_for_the_timeout_as_with_python_timeouts():
    with sockpair.pair(timeout=0.2) as (a, b):
        assert "nothing was written" in _raises_timeout(
            lambda: b.recv_into(bytearray(4), 4, socket.MSG_DONTWAIT), 0.2)
        a.sendall(b"late")
        assert b.recv(4, socket.MSG_DONTWAIT) == b"late"


def test_sendto_and_sendmsg_wait_and_explain_as_send_does(tmp_path):
    path = str(tmp_path / "dgram")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, \
            sockpair.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        receiver.bind(path)
        sender.settimeout(0.3)
        assert sender.sendto(b"to", path) == 2 and sender.sendto(b"and fro", 0, path) == 7
        assert [receiver.recv(10), receiver.recv(10)] == [b"to", b"and fro"]
        sender.connect(path)
        sender.setblocking(False)
        with pytest.raises(BlockingIOError):
            while True:  # fill the receiver's queue
                sender.sendmsg([b"x"])
        sender.settimeout(0.3)
        for call in (lambda: sender.sendmsg([b"y"]), lambda: sender.sendto(b"y", path)):
            assert f"waited 0.3 s to write to fd {sender.fileno()}" in _raises_timeout(call, 0.3)


def test_send_takes_what_fits_at_once_and_waits_only_when_nothing_fits():
    with sockpair.pair(timeout=0.3) as (a, b):
        start = time.monotonic()
        sent = a.send(b"x" * (16 << 20))  # as with Python's timeouts: part, and no waiting
        assert 0 < sent < 16 << 20 and time.monotonic() - start < 0.25
        message = _raises_timeout(lambda: a.send(b"y"), 0.3)  # no room at all: it waits
        assert "the buffer towards the other end is full because nobody reads" in message
        assert len(framing.recv_exactly(b, sent, timeout=2)) == sent
        assert a.send(b"y") == 1  # room again


def test_sendall_keeps_one_deadline_for_all_of_it():
    with sockpair.pair(timeout=0.5) as (a, b):
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError):  # part is queued first, then it waits
            a.sendall(b"x" * (16 << 20))
        assert 0.45 <= time.monotonic() - start < 0.9  # 0.5 s in all, not 0.5 s per send
        assert b.recv(5) == b"xxxxx"


def test_framing_may_set_other_timeouts_but_an_end_waits_its_own_afterwards():
    with sockpair.pair(timeout=0.6) as (a, b):
        with pytest.raises(IPCTimeoutError, match="timed out waiting for 1 bytes"):
            framing.recv_exactly(b, 1, timeout=0.1)  # SO_RCVTIMEO was 0.1 s for this call
        assert "waited 0.6 s to read" in _raises_timeout(lambda: b.recv(1), 0.6)
        framing.send_all(a, b"x", timeout=2)
        assert _kernel_timeouts(a)[1] == 2.0
        a.setblocking(False)  # and back to the end's own, right away
        assert _kernel_timeouts(a) == (0, 0) and b.recv(1) == b"x"


# --- parent and child ----------------------------------------------------------------------

def test_parent_and_child_talk_both_ways_after_closing_the_ends_they_do_not_use():
    parent_end, child_end = sockpair.pair(timeout=5)

    def child():
        parent_end.close()
        child_end.sendall("我是子進程".encode())
        return framing.recv_exactly(child_end, len("我是父級進程".encode())).decode()

    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)
        child_end.close()
        parent_end.sendall("我是父級進程".encode())
        assert framing.recv_exactly(parent_end, len("我是子進程".encode())) == \
            "我是子進程".encode()
        assert parent_end.recv(10) == b""  # the child exited: its only copy is closed
    assert family.results[0].value == "我是父級進程"


def test_no_end_of_file_while_the_parent_keeps_its_copy_of_the_childs_end():
    parent_end, child_end = sockpair.pair(timeout=0.5)

    def child():
        parent_end.close()
        child_end.sendall(b"bye")

    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)  # BUG on purpose: the parent never closes child_end
        assert parent_end.recv(10) == b"bye"
        message = _raises_timeout(lambda: parent_end.recv(10), 0.5)
        assert f"still open in: parent (fd {child_end.fileno()})" in message
        child_end.close()  # the fix: now every copy is closed
        assert parent_end.recv(10) == b""
    assert family.results[0].ok


def test_a_child_s_timeout_names_the_parent_holding_the_other_end():
    parent_end, child_end = sockpair.pair(timeout=0.3)

    def child():
        parent_end.close()
        try:
            child_end.recv(10)
        except IPCTimeoutError as e:
            return str(e)

    held, reads = parent_end.fileno(), child_end.fileno()
    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)
        child_end.close()
    message = family.results[0].value
    assert message.startswith(f"child 1 waited 0.3 s to read from fd {reads} ")
    assert message.endswith(f"is still open in: parent (fd {held})")


# --- the worker pool -----------------------------------------------------------------------

def square(x):
    return x * x


def picky(x):
    if x < 0:
        raise ValueError(f"no negatives, got {x}")
    if x == 99:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_pool_returns_results_in_job_order_for_many_jobs():
    with workers.WorkerPool(square, workers=4, timeout=20, show=False) as pool:
        assert pool.map(range(300)) == [x * x for x in range(300)]
        assert pool.map([]) == []
        assert pool.map(iter([3])) == [9]
    done = [r.value for r in pool.results]
    assert [r.label for r in pool.results] == ["worker 1", "worker 2", "worker 3", "worker 4"]
    assert sum(done) == 301 and all(n >= 1 for n in done)


def test_each_worker_holds_only_its_own_end():
    inherited = set(leaks.open_sockets().values())

    def my_sockets(_):
        return sorted(set(leaks.open_sockets().values()) - inherited)

    with workers.WorkerPool(my_sockets, workers=3, timeout=10, show=False) as pool:
        held = pool.map([0, 1, 2, 3, 4, 5])
    assert all(len(h) == 1 for h in held)
    assert len({h[0] for h in held}) == 3  # three workers, three different ends


def test_a_job_that_raises_is_named_and_the_pool_goes_on():
    with workers.WorkerPool(picky, workers=2, timeout=10, show=False) as pool:
        with pytest.raises(ChildError) as info:
            pool.map([1, -2, 3, -4])
        message = str(info.value)
        assert "raised ValueError: no negatives, got -2 (in picky(), line" in message
        assert message.startswith("worker ") and "on jobs[1] = -2" in message
        assert message.endswith("; 1 other job(s) failed too")
        assert pool.map([5, 6]) == [5, 6]
    assert all(r.ok for r in pool.results)


def test_a_killed_worker_is_reported_not_waited_for():
    start = time.monotonic()
    pool = workers.WorkerPool(picky, workers=2, timeout=20, show=False)
    with pool, pytest.raises(ChildError) as info:
        pool.map([1, 2, 99, 4])
    assert time.monotonic() - start < 10
    assert "died during jobs[2] = 99 (killed by SIGKILL (9)); the pool is closed" in str(
        info.value)
    assert [r.outcome() for r in info.value.results].count("killed by SIGKILL (9)") == 1
    with pytest.raises(ObjectGoneError, match="this WorkerPool is closed"):
        pool.map([1])
    pool.close()


def test_a_worker_killed_while_idle_is_found_at_the_next_map():
    with workers.WorkerPool(square, workers=2, timeout=10, show=False) as pool:
        os.kill(pool.pids["worker 2"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while diagnose.proc_stat(pool.pids["worker 2"])[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(ChildError, match=r"worker 2 died (before it got jobs\[1\] = 1|"
                                             r"while idle) \(killed by SIGKILL \(9\)\)"):
            pool.map([0, 1, 2])


def test_a_stuck_worker_times_out_with_where_it_waits():
    def stuck(x):
        time.sleep(60)

    pool = workers.WorkerPool(stuck, workers=1, timeout=1, show=False)
    start = time.monotonic()
    with pool, pytest.raises(IPCTimeoutError) as info:
        pool.map([1, 2])
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "WorkerPool.map: 2 of 2 jobs not done when the pool's 1 s ran out" in message
    assert "worker 1 is sleeping" in message
    assert pool.results[0].timed_out


def test_jobs_and_results_cross_as_json_never_pickle():
    with workers.WorkerPool(lambda job: job, workers=1, timeout=10, show=False) as pool:
        assert pool.map([(1, 2), {"a": None}, "text"]) == [[1, 2], {"a": None}, "text"]
        with pytest.raises(TypeError, match=r"jobs\[1\] = \{1, 2\} cannot be sent as JSON"):
            pool.map([1, {1, 2}])
        with pytest.raises(ValueError, match=r"jobs\[0\] is 70002 bytes as JSON, over 65536"):
            pool.map(["x" * 70000])
    with workers.WorkerPool(lambda job: {job}, workers=1, timeout=10, show=False) as pool:
        with pytest.raises(ChildError, match="worker 1 raised TypeError: Object of type set "
                                             "is not JSON serializable"):
            pool.map([1])
    with workers.WorkerPool(lambda n: "x" * n, workers=1, timeout=10, show=False) as pool:
        with pytest.raises(ChildError, match="the result is 70013 bytes as JSON, over 65536"):
            pool.map([70000])


def test_worker_output_is_labelled(capsys):
    def loud(x):
        print("got", x)
        return x

    with workers.WorkerPool(loud, workers=1, timeout=10) as pool:
        pool.map([1, 2])
    assert capsys.readouterr().out == "[worker 1] got 1\n[worker 1] got 2\n"
    assert repr(pool) == "<WorkerPool closed>"


# --- argument errors -----------------------------------------------------------------------

def test_pair_checks_its_arguments():
    with pytest.raises(ValueError, match=r"kind must be one of 'stream', 'seqpacket', 'dgram', "
                                         r"got 'tcp'"):
        sockpair.pair("tcp")
    with pytest.raises(ValueError, match="got <SocketKind.SOCK_STREAM: 1>"):
        sockpair.pair(socket.SOCK_STREAM)
    with pytest.raises(ValueError, match=r"timeout must be a number > 0, got 0"):
        sockpair.pair(timeout=0)
    with pytest.raises(TypeError, match=r"timeout must be a number > 0, got None"):
        sockpair.pair(timeout=None)


def test_worker_pool_checks_its_arguments():
    with pytest.raises(TypeError, match="fn must be callable, got 'square'"):
        workers.WorkerPool("square")
    with pytest.raises(ValueError, match="workers must be between 1 and 32, got 0"):
        workers.WorkerPool(square, 0)
    with pytest.raises(TypeError, match="workers must be an int, got 2.0"):
        workers.WorkerPool(square, 2.0)
    with pytest.raises(ValueError, match="timeout must be a number > 0, got 0"):
        workers.WorkerPool(square, timeout=0)
    with workers.WorkerPool(square, workers=1, timeout=10, show=False) as pool:
        with pytest.raises(TypeError, match="jobs must be an iterable of JSON values, got 'abc'"):
            pool.map("abc")
        with pytest.raises(TypeError, match="jobs must be an iterable of JSON values, got 5"):
            pool.map(5)
        assert pool.map([2]) == [4]  # nothing was sent: the pool is intact
    pool.close()  # safe twice
