"""Session-wide leak check: after the whole suite (unit tests and every notebook run
by nbval), no SysV object created during the run and no child process of the
test session may remain.  A leak fails the run even when every test passed."""

from ipclab import leaks

_before = set()


def pytest_sessionstart(session):
    _before.update(leaks.sysv_ids())


def pytest_sessionfinish(session, exitstatus):
    objects = leaks.new_sysv(_before)
    kids = leaks.settle_children()
    if objects or kids:
        report = leaks.describe(objects, kids)
        leaks.kill_children(kids)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_sep("=", "LEAK CHECK FAILED: left behind by this test run", red=True)
            reporter.write_line(report)
        session.exitstatus = 1
