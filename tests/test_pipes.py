"""ipclab.pipes: every wait has a timeout, and a timeout names who holds the other end."""

import os
import time

import pytest

from ipclab import pipes, proc
from ipclab.errors import IPCTimeoutError

pytestmark = pytest.mark.timeout(30)


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


def test_write_all_timeout_says_the_pipe_is_full_and_how_far_it_got(pipe):
    with pytest.raises(IPCTimeoutError) as info:
        pipes.write_all(pipe["w"], b"x" * (pipes.capacity() + 10), timeout=0.3)
    message = str(info.value)
    assert f"after {pipes.capacity()} of {pipes.capacity() + 10} bytes" in message
    assert f"the pipe is full; its read end is open in: parent (fd {pipe['r']})" in message
    assert os.get_blocking(pipe["w"])  # restored


def test_write_all_to_a_pipe_nobody_reads_is_a_broken_pipe(pipe):
    os.close(pipe.pop("r"))
    with pytest.raises(BrokenPipeError):
        pipes.write_all(pipe["w"], "text is encoded", timeout=1)


def test_read_exactly_loops_over_short_reads_and_reports_early_eof(pipe):
    os.write(pipe["w"], b"abc")
    os.write(pipe["w"], b"def")
    assert pipes.read_exactly(pipe["r"], 5) == b"abcde"
    os.close(pipe.pop("w"))
    with pytest.raises(EOFError, match="end of file after 1 of 4 bytes"):
        pipes.read_exactly(pipe["r"], 4)


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
    (lambda: pipes.write_all(1, 12), TypeError, "data must be bytes or str"),
    (lambda: pipes.open_fifo("/nonexistent", "rw"), ValueError, "mode must be 'r' or 'w'"),
    (lambda: pipes.fifo("a/b").__enter__(), ValueError, "without '/'"),
])
def test_bad_arguments_say_what_is_allowed(call, error, words):
    with pytest.raises(error, match=words):
        call()
