"""Session-wide leak check: after the whole suite (unit tests and every notebook run
by nbval), no SysV object created during the run, no child process of the
test session and no TCP listener or bound UDP socket of this user that was not
there at the start may remain.  A leak fails the run even when every test passed."""

import time

from ipclab import leaks

_before = set()
_listening = set()


def pytest_sessionstart(session):
    _before.update(leaks.sysv_ids())
    _listening.update(leaks.listening())


def pytest_sessionfinish(session, exitstatus):
    objects = leaks.new_sysv(_before)
    kids = leaks.settle_children()
    listeners = _settle_listeners()
    if objects or kids or listeners:
        report = leaks.describe(objects, kids, listeners=listeners)
        leaks.kill_children(kids)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_sep("=", "LEAK CHECK FAILED: left behind by this test run", red=True)
            reporter.write_line(report)
        session.exitstatus = 1


def _settle_listeners(timeout: float = 5.0):
    """The new listeners still there after up to ``timeout`` s (a kernel's go as it exits)."""
    deadline = time.monotonic() + timeout
    while (left := leaks.listening() - _listening) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
