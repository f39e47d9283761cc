"""ipclab.pipes: every wait has a timeout, and a timeout names who holds the other end."""

import hashlib
import os
import signal
import time

import pytest

from ipclab import diagnose, pipes, proc
from ipclab.errors import IPCTimeoutError

pytestmark = pytest.mark.timeout(30)


def _kernel_takes_nowait_on_pipes() -> bool:
    r, w = os.pipe()
    try:
        return bool(pipes._NOWAIT) and os.pwritev(w, [b"x"], -1, pipes._NOWAIT) == 1
    except OSError:
        return False
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture(params=["nowait", "portable"])
def write_way(request, monkeypatch):
    """write_all with RWF_NOWAIT (Linux 6.4+ pipes), and the way FIFOs and older kernels take."""
    monkeypatch.setattr(pipes, "_NOWAIT_REFUSED", set())
    monkeypatch.setattr(pipes, "_EAGER", set())  # reads try first only where _NOWAIT is set
    if request.param == "portable":
        monkeypatch.setattr(pipes, "_NOWAIT", 0)
    elif not _kernel_takes_nowait_on_pipes():
        pytest.skip("this kernel refuses RWF_NOWAIT on pipes (before Linux 6.4)")
    return request.param


_WAITS = {"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2"}


def _until_polling(pid: int, timeout: float = 5.0) -> bool:
    """Wait until ``pid`` sleeps waiting for a descriptor; False if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = diagnose.syscall(pid)
        if call and call[0] in _WAITS:
            return True
        time.sleep(0.001)
    return False


def _signal_pending(pid: int, signum: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd", "ShdPnd"))]
    return any(mask & (1 << (signum - 1)) for mask in masks)


def _full_pipe(fds) -> int:
    """Fill the pipe fds["w"] (read end fds["r"]) to the brim; return how many bytes it holds."""
    size = pipes.configured_capacity(fds["w"])
    assert os.write(fds["w"], b"x" * size) == size
    return size


@pytest.fixture
def pipe():
    r, w = os.pipe()
    fds = {"r": r, "w": w}
    yield fds
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass


def test_capacity_is_measured_and_matches_the_kernel(pipe):
    measured = pipes.capacity()
    assert measured == pipes.configured_capacity(pipe["r"])
    assert measured % 4096 == 0 and measured <= pipes.max_capacity()


def test_read_all_returns_everything_once_every_write_end_is_closed(pipe):
    def writer():
        for i in range(3):
            os.write(pipe["w"], b"part %d;" % i)
    with proc.Family(timeout=5, show=False) as family:
        family.fork(writer)
        os.close(pipe.pop("w"))  # the parent's write end: without this, no end of file
        data = pipes.read_all(pipe["r"], timeout=5)
    assert data == b"part 0;part 1;part 2;" and family.results[0].ok


def test_read_all_timeout_names_the_forgotten_write_end(pipe):
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        pipes.read_all(pipe["r"], timeout=0.3)
    assert 0.25 < time.monotonic() - start < 3
    assert f"parent waited to read on fd {pipe['r']} (pipe:[" in str(info.value)
    assert f"the write end of that pipe is still open in: parent (fd {pipe['w']})" in str(
        info.value)


def test_write_all_timeout_says_the_pipe_is_full_and_how_far_it_got(pipe, write_way):
    with pytest.raises(IPCTimeoutError) as info:
        pipes.write_all(pipe["w"], b"x" * (pipes.capacity() + 10), timeout=0.3)
    message = str(info.value)
    assert f"after {pipes.capacity()} of {pipes.capacity() + 10} bytes" in message
    assert f"the pipe is full; its read end is open in: parent (fd {pipe['r']})" in message
    assert os.get_blocking(pipe["w"])  # restored


@pytest.mark.parametrize("data", ["text is encoded", b"x" * 100_000])
def test_write_all_to_a_pipe_nobody_reads_is_a_broken_pipe(pipe, write_way, data):
    os.close(pipe.pop("r"))
    with pytest.raises(BrokenPipeError):
        pipes.write_all(pipe["w"], data, timeout=1)
    assert os.get_blocking(pipe["w"])


def test_a_small_write_to_a_full_pipe_times_out_with_the_same_explanation(pipe, write_way):
    _full_pipe(pipe)
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        pipes.write_all(pipe["w"], b"0123456789", timeout=0.3)
    assert 0.25 < time.monotonic() - start < 3
    message = str(info.value)
    assert message.startswith(f"write_all(fd {pipe['w']}) after 0 of 10 bytes timed out")
    assert f"parent waited to write on fd {pipe['w']} (pipe:[" in message
    assert f"the pipe is full; its read end is open in: parent (fd {pipe['r']})" in message
    assert os.get_blocking(pipe["w"])


def _message(i: int, n: int) -> bytes:
    """``n`` bytes that differ from message to message and from place to place."""
    return (bytes(range(i, 251)) + bytes(range(i))) * (n // 251) + bytes(range(n % 251))


def _read_and_digest(r, sizes):
    """A child's side: read messages of ``sizes`` with read_exactly; return their digests."""
    return [hashlib.sha256(pipes.read_exactly(r, n, timeout=10)).hexdigest() for n in sizes]


@pytest.mark.parametrize("sizes", [[1, 64, 4096, 4097], [1 << 20, 3, 200_000]])
def test_write_all_gets_everything_across_partial_writes_and_a_full_pipe(pipe, write_way, sizes):
    messages = [_message(i, n) for i, n in enumerate(sizes)]
    with proc.Family(timeout=20, show=False) as family:
        family.fork(_read_and_digest, pipe["r"], sizes)
        for m in messages:
            assert pipes.write_all(pipe["w"], m, timeout=10) == len(m)
    assert family.results[0].value == [hashlib.sha256(m).hexdigest() for m in messages]
    assert os.get_blocking(pipe["w"])


def _flag_seen_while_the_parent_waits(fds, size):
    """A child sharing the parent's open write end: is it still blocking while the parent
    waits in write_all?  Then drain the pipe so the parent's write can finish."""
    parent = os.getppid()
    polling = _until_polling(parent)
    blocking = os.get_blocking(fds["w"])
    pipes.read_exactly(fds["r"], pipes.configured_capacity(fds["r"]) + size, timeout=10)
    return polling, blocking


def _left_blocking(write_way, size) -> bool:
    """What other holders see: without RWF_NOWAIT a big write sets O_NONBLOCK meanwhile."""
    return write_way == "nowait" or size <= 4096


@pytest.mark.parametrize("size", [10, 100_000])
def test_write_all_leaves_o_nonblock_alone_for_other_holders_while_it_waits(pipe, write_way,
                                                                            size):
    _full_pipe(pipe)
    with proc.Family(timeout=20, show=False) as family:
        family.fork(_flag_seen_while_the_parent_waits, pipe, size)
        assert pipes.write_all(pipe["w"], b"y" * size, timeout=10) == size
    assert family.results[0].value == (True, _left_blocking(write_way, size))
    assert os.get_blocking(pipe["w"])


def test_read_exactly_loops_over_short_reads_and_reports_early_eof(pipe):
    os.write(pipe["w"], b"abc")
    os.write(pipe["w"], b"def")
    assert pipes.read_exactly(pipe["r"], 5) == b"abcde"
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError, match="end of file after 1 of 4 bytes"):
        pipes.read_exactly(pipe["r"], 4)


def test_read_exactly_of_nothing_and_end_of_file_before_the_first_byte(pipe):
    assert pipes.read_exactly(pipe["r"], 0) == b""
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError, match=f"end of file after 0 of 4 bytes on fd {pipe['r']}$"):
        pipes.read_exactly(pipe["r"], 4)


def test_read_exactly_timeout_after_some_bytes_names_the_call_and_the_write_end(pipe):
    os.write(pipe["w"], b"abc")
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        pipes.read_exactly(pipe["r"], 5, timeout=0.3)
    assert 0.25 < time.monotonic() - start < 3
    message = str(info.value)
    assert message.startswith(f"read_exactly(fd {pipe['r']}, 5) timed out")
    assert f"parent waited to read on fd {pipe['r']} (pipe:[" in message
    assert f"the write end of that pipe is still open in: parent (fd {pipe['w']})" in message


def _kernel_reads_pipes_nowait() -> bool:
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        return bool(pipes._NOWAIT) and os.preadv(r, [bytearray(1)], -1, pipes._NOWAIT) == 1
    except OSError:
        return False
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def eager(monkeypatch):
    """Counts poll objects made (read_exactly's poll-first way); the next read probes."""
    if not _kernel_reads_pipes_nowait():
        pytest.skip("this kernel refuses RWF_NOWAIT on pipe reads")
    polls, real = [], pipes.select.poll

    def counted():
        polls.append(1)
        return real()
    monkeypatch.setattr(pipes.select, "poll", counted)
    monkeypatch.setattr(pipes, "_EAGER", set())
    monkeypatch.setattr(pipes, "_NOWAIT_REFUSED", set())
    monkeypatch.setattr(pipes, "_reads", 255)  # the next read that would poll probes instead
    return polls


def test_a_stream_is_read_without_poll_and_a_wait_polls_again_with_its_timeout(pipe, eager):
    for i in range(3):
        os.write(pipe["w"], _message(i, 64))
    assert [pipes.read_exactly(pipe["r"], 64) for i in range(3)] == [
        _message(i, 64) for i in range(3)]
    assert eager == [] and pipe["r"] in pipes._EAGER  # the probe found bytes: no poll at all
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError, match=rf"^read_exactly\(fd {pipe['r']}, 64\) timed out"):
        pipes.read_exactly(pipe["r"], 64, timeout=0.3)  # nothing waits: poll, with the timeout
    assert 0.25 < time.monotonic() - start < 3
    assert eager and pipe["r"] not in pipes._EAGER
    polls = len(eager)
    os.write(pipe["w"], b"next")
    assert pipes.read_exactly(pipe["r"], 4) == b"next"  # poll first again, and it works
    assert len(eager) == polls + 1


def test_a_read_that_tried_first_waits_for_the_rest_and_reports_early_eof(pipe, eager):
    os.write(pipe["w"], b"abc")
    with proc.Family(timeout=10, show=False) as family:
        family.fork(_write_in_pieces_while_the_parent_waits, pipe["w"], [b"de"])
        assert pipes.read_exactly(pipe["r"], 5, timeout=5) == b"abcde"
    assert family.results[0].ok and pipe["r"] in pipes._EAGER
    os.write(pipe["w"], b"fg")
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError, match=f"^end of file after 2 of 4 bytes on fd {pipe['r']}$"):
        pipes.read_exactly(pipe["r"], 4)
    with pytest.raises(EOFError, match="^end of file after 0 of 1 bytes"):
        pipes.read_exactly(pipe["r"], 1)


def test_a_fifo_that_refuses_reads_without_waiting_is_polled_as_before(eager):
    with pipes.fifo() as path:
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        w = os.open(path, os.O_WRONLY)
        try:
            os.set_blocking(r, True)
            os.write(w, b"one" + b"two")
            assert pipes.read_exactly(r, 3) == b"one"
            refused = r in pipes._NOWAIT_REFUSED
            assert refused != (r in pipes._EAGER)  # either way it was remembered
            assert pipes.read_exactly(r, 3) == b"two"
            assert len(eager) == (2 if refused else 0)
        finally:
            os.close(r)
            os.close(w)


def _write_in_pieces_while_the_parent_waits(w, pieces):
    for piece in pieces:
        assert _until_polling(os.getppid())
        os.write(w, piece)


def test_read_exactly_waits_for_each_piece_as_it_comes(pipe):
    with proc.Family(timeout=10, show=False) as family:
        family.fork(_write_in_pieces_while_the_parent_waits, pipe["w"], [b"abc", b"de", b"fghi"])
        assert pipes.read_exactly(pipe["r"], 9, timeout=5) == b"abcdefghi"
    assert family.results[0].ok


def _interrupt_then_write(w):
    parent = os.getppid()
    assert _until_polling(parent)
    os.kill(parent, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while _signal_pending(parent, signal.SIGUSR1) and time.monotonic() < deadline:
        time.sleep(0.001)
    os.write(w, b"after the signal")


def test_a_signal_during_the_wait_runs_its_handler_and_the_read_goes_on(pipe):
    caught = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    try:
        with proc.Family(timeout=10, show=False) as family:
            family.fork(_interrupt_then_write, pipe["w"])
            assert pipes.read_exactly(pipe["r"], 16, timeout=5) == b"after the signal"
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert caught == [signal.SIGUSR1] and family.results[0].ok


def test_fifo_between_two_processes_and_cleanup():
    with pipes.fifo("chan") as path:
        assert os.path.basename(path) == "chan"
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"

        def writer():
            fd = pipes.open_fifo(path, "w", timeout=5)
            os.write(fd, b"through the fifo")
            os.close(fd)
        with proc.Family(timeout=5, show=False) as family:
            family.fork(writer)
            fd = pipes.open_fifo(path, "r", timeout=5)
            data = pipes.read_all(fd)
            os.close(fd)
    assert data == b"through the fifo" and family.results[0].ok
    assert not os.path.exists(os.path.dirname(path))


def _fifo_writer(path, sizes):
    fd = pipes.open_fifo(path, "w", timeout=5)
    for i, n in enumerate(sizes):
        pipes.write_all(fd, _message(i, n), timeout=10)
    os.close(fd)


def test_write_all_to_a_fifo_small_and_big(write_way):
    sizes = [64, 4096, 300_000, 1]
    with pipes.fifo("chan") as path:
        with proc.Family(timeout=20, show=False) as family:
            family.fork(_fifo_writer, path, sizes)
            fd = pipes.open_fifo(path, "r", timeout=5)
            got = [pipes.read_exactly(fd, n, timeout=10) for n in sizes]
            assert pipes.read_all(fd, timeout=5) == b""
            os.close(fd)
    assert family.results[0].ok
    assert got == [_message(i, n) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("size", [10, 100_000])
def test_an_fd_number_first_a_fifo_then_a_pipe_writes_as_well(write_way, size):
    with pipes.fifo() as path:
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        w = os.open(path, os.O_WRONLY)
        assert pipes.write_all(w, b"fifo", timeout=1) == 4  # RWF_NOWAIT refused on FIFOs
        assert os.read(r, 4) == b"fifo"
        os.close(w)
        os.close(r)
    r2, w2 = os.pipe()
    fds = {"r": r2, "w": w2}
    try:
        assert (fds["r"], fds["w"]) == (r, w)  # the lowest free numbers: the FIFO's
        _full_pipe(fds)
        with proc.Family(timeout=20, show=False) as family:
            family.fork(_flag_seen_while_the_parent_waits, fds, size)
            assert pipes.write_all(fds["w"], b"y" * size, timeout=10) == size
        assert family.results[0].value == (True, _left_blocking(write_way, size))
    finally:
        os.close(fds["r"])
        os.close(fds["w"])


@pytest.mark.parametrize("mode, words", [("r", "waiting for a writer timed out"),
                                         ("w", "no process opened it for reading")])
def test_open_fifo_without_a_peer_times_out(mode, words):
    with pipes.fifo() as path:
        with pytest.raises(IPCTimeoutError, match=words):
            pipes.open_fifo(path, mode, timeout=0.2)


@pytest.mark.parametrize("call, error, words", [
    (lambda: pipes.read_all(-1), ValueError, "fd must be >= 0, got -1"),
    (lambda: pipes.read_all("3"), TypeError, "fd must be an int"),
    (lambda: pipes.read_all(0, timeout=None), TypeError, "timeout must be a number > 0"),
    (lambda: pipes.read_exactly(0, -2), ValueError, "n must be >= 0, got -2"),
    (lambda: pipes.read_exactly(True, 1), TypeError, "fd must be an int, got True"),
    (lambda: pipes.read_exactly(0, 2.0), TypeError, "n must be an int, got 2.0"),
    (lambda: pipes.read_exactly(0, 1, 0.0), ValueError, r"timeout must be a number > 0, got 0.0"),
    (lambda: pipes.read_exactly(0, 1, -1), ValueError, r"timeout must be a number > 0, got -1"),
    (lambda: pipes.read_exactly(0, 1, float("nan")), ValueError, "got nan"),
    (lambda: pipes.read_exactly(0, 1, float("inf")), ValueError, "got inf"),
    (lambda: pipes.read_exactly(0, 1, "5"), TypeError, "timeout must be a number > 0, got '5'"),
    (lambda: pipes.write_all(-3, b"x"), ValueError, "fd must be >= 0, got -3"),
    (lambda: pipes.write_all(1, b"x", True), TypeError, "timeout must be a number > 0, got True"),
    (lambda: pipes.write_all(1, 12), TypeError, "data must be bytes or str"),
    (lambda: pipes.open_fifo("/nonexistent", "rw"), ValueError, "mode must be 'r' or 'w'"),
    (lambda: pipes.fifo("a/b").__enter__(), ValueError, "without '/'"),
])
def test_bad_arguments_say_what_is_allowed(call, error, words):
    with pytest.raises(error, match=words):
        call()
