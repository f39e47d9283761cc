"""Fixtures shared by the unit tests.  Every test is checked for leaks: a SysV
object that appeared during it, a child process or an open socket it left fails
that test (at teardown).  Left children are killed; SysV objects are reported, not removed
(they might not be ours), and later tests compare against their own start.
Run the unit tests alone on a machine: a concurrent run of the same user shows
up here as a leak."""

import pytest

from ipclab import leaks, mq


@pytest.fixture(autouse=True, scope="session")
def event_loop_made_once():
    """nbclient runs kernels through the thread's asyncio event loop, made on first use and
    kept for the life of the process, with its self-pipe socketpair.  Make it before any
    test looks, so the one loop a notebook run needs is not counted as a test's leak."""
    from jupyter_core.utils import ensure_event_loop

    ensure_event_loop()


@pytest.fixture(autouse=True)
def no_leaks(event_loop_made_once):
    before, sockets_before = leaks.sysv_ids(), leaks.open_sockets()
    yield
    objects = leaks.new_sysv(before)
    kids = leaks.settle_children(timeout=2.0)
    sockets = leaks.new_sockets(sockets_before)
    if objects or kids or sockets:
        report = leaks.describe(objects, kids, sockets)
        leaks.kill_children(kids)
        pytest.fail(f"the test left behind:\n{report}", pytrace=False)


@pytest.fixture
def queue():
    """A fresh private message queue with a 5 s default timeout, removed after the test."""
    q = mq.Queue(timeout=5)
    yield q
    q.remove()
