"""ipclab.fdpass: an open descriptor crosses to another process over AF_UNIX (SCM_RIGHTS)."""

import os
import socket
import time

import pytest

from ipclab import fdpass, pipes, proc, sockpair
from ipclab.errors import IPCLabError, IPCTimeoutError, LimitError

pytestmark = pytest.mark.timeout(30)


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.mark.parametrize("kind", ["stream", "seqpacket"])
def test_a_pipe_made_after_fork_reaches_the_child_which_writes_to_it(kind):
    parent_end, child_end = sockpair.pair(kind, timeout=5)

    def child():
        parent_end.close()
        fd, name = fdpass.recv_fd(child_end)
        os.write(fd, b"written by the child into " + name)
        os.close(fd)
        return "done"

    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)
        child_end.close()
        r, w = os.pipe()  # made after fork: the child cannot have inherited it
        try:
            fdpass.send_fd(parent_end, w, b"the parent's pipe")
            os.close(w)  # our copy: the child's copy is now the only write end
            assert pipes.read_all(r, timeout=5) == b"written by the child into the parent's pipe"
        finally:
            os.close(r)
    assert family.results[0].value == "done"


def test_a_file_passed_to_a_child_shares_its_offset(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789")
    parent_end, child_end = sockpair.pair("seqpacket", timeout=5)

    def child():
        parent_end.close()
        fd, _ = fdpass.recv_fd(child_end)
        try:
            return [os.read(fd, 3).decode(), os.get_inheritable(fd)]
        finally:
            os.close(fd)

    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)
        child_end.close()
        with open(path, "rb", buffering=0) as f:  # opened after fork: not inherited
            assert f.read(4) == b"0123"
            fdpass.send_fd(parent_end, f, "file")  # a file object works; str is UTF-8
            assert parent_end.recv(1) == b""  # the child is done
            assert f.read() == b"789"  # the child's read moved our offset too
    assert family.results[0].value == ["456", False]  # and its new fd is close-on-exec


def test_a_child_sends_the_parent_a_file_it_opened(tmp_path):
    path = tmp_path / "from-child.txt"
    path.write_text("opened by the child")
    parent_end, child_end = sockpair.pair(timeout=5)

    def child():
        parent_end.close()
        fd = os.open(path, os.O_RDONLY)
        fdpass.send_fd(child_end, fd, b"from-child.txt")
        os.close(fd)  # the descriptor in flight stays valid

    with parent_end, child_end, proc.Family(timeout=5, show=False) as family:
        family.fork(child)
        child_end.close()
        fd, name = fdpass.recv_fd(parent_end)
        try:
            assert name == b"from-child.txt"
            assert os.read(fd, 100) == b"opened by the child"
        finally:
            os.close(fd)
    assert family.results[0].ok


def test_recv_fd_times_out_with_the_explanation():
    with sockpair.pair(timeout=5) as (a, b):
        start = time.monotonic()
        with pytest.raises(IPCTimeoutError) as info:
            fdpass.recv_fd(b, timeout=0.3)
        assert 0.25 < time.monotonic() - start < 3 and b.gettimeout() == 5
        assert "nothing was written to the other end" in str(info.value)
        assert f"still open in: parent (fd {a.fileno()})" in str(info.value)


def test_a_socket_that_pair_did_not_make_still_gets_the_explanation():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(IPCTimeoutError) as info:
            fdpass.recv_fd(b, timeout=0.2)
        assert "nothing was written to the other end" in str(info.value)
        assert "still open in" not in str(info.value)  # its other end is unknown to ipclab
        assert b.gettimeout() is None  # restored


def test_recv_fd_reports_end_of_file_and_messages_without_one_descriptor():
    with sockpair.pair("seqpacket", timeout=2) as (a, b):
        a.sendall(b"no descriptor here")
        with pytest.raises(IPCLabError, match=r"expected one descriptor with the message "
                                              r"b'no descriptor here', got 0"):
            fdpass.recv_fd(b)
        a.sendall(b"x" * 2000)
        with pytest.raises(LimitError, match="longer than 1024 bytes"):
            fdpass.recv_fd(b)
        before = _open_fds()
        socket.send_fds(a, [b"two"], [0, 1])
        with pytest.raises(IPCLabError, match="got 2"):
            fdpass.recv_fd(b)
        assert _open_fds() == before  # the unwanted descriptors were closed
        a.close()
        with pytest.raises(EOFError, match="every copy of the other end was closed"):
            fdpass.recv_fd(b)


def test_too_many_descriptors_are_closed_by_the_kernel_and_reported():
    with sockpair.pair("seqpacket", timeout=2) as (a, b):
        before = _open_fds()
        socket.send_fds(a, [b"many"], [0] * 8)
        with pytest.raises(IPCLabError, match="more descriptors came than fit"):
            fdpass.recv_fd(b)
        assert _open_fds() == before


def test_send_fd_checks_its_arguments():
    with sockpair.pair() as (a, b):
        with pytest.raises(TypeError, match="sock must be a socket.socket, got 'a'"):
            fdpass.send_fd("a", 0)
        with pytest.raises(ValueError, match="fd must be >= 0, got -1"):
            fdpass.send_fd(a, -1)
        with pytest.raises(TypeError, match="fd must be an int, got '0'"):
            fdpass.send_fd(a, "0")
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(ValueError, match=rf"fd must be an open file descriptor, got {r} "):
            fdpass.send_fd(a, r)
        with pytest.raises(ValueError, match="message must be 1 to 1024 bytes, got 0 bytes"):
            fdpass.send_fd(a, 0, b"")
        with pytest.raises(ValueError, match="message must be 1 to 1024 bytes, got 1025 bytes"):
            fdpass.send_fd(a, 0, b"x" * 1025)
        with pytest.raises(TypeError, match="message must be bytes or str, got int 5"):
            fdpass.send_fd(a, 0, 5)
        with pytest.raises(ValueError, match="timeout must be a number > 0 or None, got 0"):
            fdpass.send_fd(a, 0, timeout=0)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing was sent by the refused calls
            b.recv(10)
    with pytest.raises(ValueError, match="sock is closed"):
        fdpass.send_fd(a, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(ValueError, match=r"sock must be AF_UNIX \(SCM_RIGHTS exists only "
                                             r"there\), got <AddressFamily.AF_INET"):
            fdpass.send_fd(tcp, 0)


def test_recv_fd_checks_its_arguments():
    with pytest.raises(TypeError, match="sock must be a socket.socket, got None"):
        fdpass.recv_fd(None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="sock must be AF_UNIX"):
            fdpass.recv_fd(udp)
    with sockpair.pair() as (a, _):
        with pytest.raises(TypeError, match="timeout must be a number > 0 or None, got '1'"):
            fdpass.recv_fd(a, timeout="1")
    with pytest.raises(ValueError, match="sock is closed"):
        fdpass.recv_fd(a)
