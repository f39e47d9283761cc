"""Python and the seeds' PHP (shmop + sysvsem) meet on the same keys.

Skipped when the ``php`` command (with shmop and sysvsem) is missing; CI
installs Debian's php-cli (see .ci/run) so these always run there.
"""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ipclab import keys, proc
from ipclab.sem import Mutex
from ipclab.shm import Segment

PHP_DIR = Path(__file__).resolve().parent / "php"
pytestmark = pytest.mark.timeout(120)


def _php_modules() -> set[str]:
    if not shutil.which("php"):
        return set()
    out = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30).stdout
    return set(out.split())


needs_php = pytest.mark.skipif(not {"shmop", "sysvsem"} <= _php_modules(),
                               reason="php with the shmop and sysvsem modules is not installed")


def php(script: str, *args, timeout: float = 60) -> str:
    done = subprocess.run(["php", str(PHP_DIR / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_php
def test_php_shmop_modes_on_a_segment_python_made():
    with Segment(keys.user_key("test-php-modes"), 100) as seg:
        seg.write(b"from Python")
        out = php("shmop_modes.php", seg.key)
        assert out.splitlines() == [
            "a read: from Python",
            "a write: refused",
            "w size: 100",
            "c opened existing: yes",
            "n on existing: refused",
        ]
        assert seg.read(16, 12) == b"PHP was here"


def _python_increments(i, seg, lock, n):
    view = seg.view(0, 8)
    for _ in range(n):
        with lock:
            (x,) = struct.unpack_from("<Q", view)
            struct.pack_into("<Q", view, 0, x + 1)
    view.release()


@needs_php
def test_php_mutex_protocol_and_python_mutex_share_one_lock():
    """PHP's sem_get creates a set of 3; Python opens it (semaphore 0) and both count exactly."""
    key = keys.user_key("test-php-mutex")
    with Segment(key, 8) as seg:
        first = subprocess.run(["php", str(PHP_DIR / "counter.php"), str(key), "1"],
                               capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr  # PHP has now created the semaphore set
        lock = Mutex(key, create=False, timeout=30)
        try:
            assert not lock.created and lock.value == 1
            with proc.Family(timeout=90, show=False) as family:
                runner = subprocess.Popen(["php", str(PHP_DIR / "counter.php"), str(key),
                                           "20000"], stdout=subprocess.PIPE, text=True)
                for i in range(2):
                    family.fork(_python_increments, i, seg, lock, 10_000)
                out, _ = runner.communicate(timeout=90)
            assert runner.returncode == 0 and out == "php done\n"
            assert all(r.ok for r in family.results), [r.outcome() for r in family.results]
            assert struct.unpack("<Q", seg.read(0, 8))[0] == 1 + 20_000 + 2 * 10_000
        finally:
            lock.remove()
