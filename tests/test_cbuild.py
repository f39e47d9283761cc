"""Tests for ipclab.cbuild and the C program it builds: compiler, cache, errors, and a C
process and Python children incrementing one shared counter under one semaphore."""

import os
import stat
import subprocess
import sys
import time

import pytest
from _helpers import alive, reap, start_child

from ipclab import cbuild
from ipclab.cbuild import BuildError
from ipclab.sem import Mutex
from ipclab.shm import Segment

pytestmark = pytest.mark.timeout(60)
needs_cc = pytest.mark.skipif(cbuild.compiler() is None,
                              reason="no C compiler (cc, gcc or clang) on PATH")
GOOD = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache for each test, so nothing from a real ~/.cache is reused."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ipclab" / "bin"


@pytest.fixture
def counter_program():
    if cbuild.compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    return cbuild.build(cbuild.source("shm_counter.c"))


def write(path, text):
    path.write_text(text)
    return path


@needs_cc
def test_compiler_is_an_executable_and_cc_is_honoured(monkeypatch, tmp_path):
    found = cbuild.compiler()
    assert os.path.isabs(found) and os.access(found, os.X_OK)
    fake = write(tmp_path / "mycc", "#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    assert cbuild.compiler() == str(fake)
    monkeypatch.setenv("CC", "no-such-compiler-here")  # not found: fall back to the usual
    assert cbuild.compiler() == found


def test_no_compiler_means_none_and_no_build(monkeypatch, tmp_path, cache):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cbuild.compiler() is None
    assert cbuild.build(write(tmp_path / "hi.c", GOOD)) is None
    assert not cache.exists()


@needs_cc
def test_build_runs_and_is_reused_until_the_source_changes(tmp_path, cache):
    source = write(tmp_path / "hi.c", GOOD)
    program = cbuild.build(source)
    assert program.parent == cache and program.name.startswith("hi-")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(program.stat().st_mode) == 0o700
    run = subprocess.run([program], capture_output=True, text=True, timeout=10)
    assert (run.returncode, run.stdout) == (0, "hi\n")
    first = program.stat()
    again = cbuild.build(source)  # reused: the same file, not rewritten
    assert again == program
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    write(source, GOOD.replace("hi", "changed"))
    changed = cbuild.build(source, name="hi")
    assert changed != program and changed.name.startswith("hi-")
    assert subprocess.run([changed], capture_output=True, text=True, timeout=10).stdout == \
        "changed\n"
    assert [p.name for p in cache.iterdir()] == [changed.name]  # the old build is gone
    other = cbuild.build(write(tmp_path / "hi-there.c", GOOD))  # a name that starts alike
    assert sorted(p.name for p in cache.iterdir()) == sorted([changed.name, other.name])


@needs_cc
def test_a_compile_error_names_the_file_and_shows_the_compiler_messages(tmp_path, cache):
    source = write(tmp_path / "bad.c", "int main(void) { return undeclared_thing; }\n")
    with pytest.raises(BuildError) as info:
        cbuild.build(source)
    message = str(info.value)
    assert f"could not compile {source} (exit code" in message
    assert "undeclared_thing" in message and "error" in message
    assert list(cache.iterdir()) == []  # no half-built program left behind


def test_a_compiler_that_hangs_is_killed_with_its_helpers(monkeypatch, tmp_path, cache):
    pidfile = tmp_path / "helper.pid"
    slow = write(tmp_path / "slowcc", f"#!/bin/sh\nsleep 30 &\necho $! > {pidfile}\nwait\n")
    slow.chmod(0o755)
    monkeypatch.setenv("CC", str(slow))
    start = time.monotonic()
    with pytest.raises(BuildError, match=r"slowcc did not finish compiling hi.c within 0.5 s"):
        cbuild.build(write(tmp_path / "hi.c", GOOD), timeout=0.5)
    assert time.monotonic() - start < 10
    helper = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(helper):
        time.sleep(0.02)
    assert not alive(helper), "the compiler's own child was left running"
    assert list(cache.iterdir()) == []




def test_an_unsafe_cache_folder_is_refused(tmp_path, cache):
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    with pytest.raises(BuildError, match=r"must belong to you and be writable only by you.*0o777"):
        cbuild.cache_dir()


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((123,), {}, TypeError, "source_path must be a str or path of a .c file, got 123"),
    (("prog.py",), {}, ValueError, "must name a .c file, got 'prog.py'"),
    (("x.c",), {"name": "../evil"}, ValueError, "got '../evil'"),
    (("x.c",), {"name": ""}, ValueError, "got ''"),
    (("x.c",), {"name": 5}, ValueError, "got 5"),
    (("x.c",), {"timeout": 0}, ValueError, "timeout must be a number > 0, got 0"),
    (("/no/such/dir/x.c",), {}, FileNotFoundError, "no C source file at '/no/such/dir/x.c'"),
])
def test_build_refuses_bad_arguments(args, kwargs, error, words, cache):
    with pytest.raises(error) as info:
        cbuild.build(*args, **kwargs)
    assert words in str(info.value)
    assert not cache.exists()  # refused before touching the cache or running a compiler


def test_source_finds_shipped_programs_only():
    path = cbuild.source("shm_counter.c")
    assert path.is_file() and "semop" in path.read_text()
    with pytest.raises(FileNotFoundError, match=r"no C program 'nope.c'; it has \[.*'shm_coun"):
        cbuild.source("nope.c")
    with pytest.raises(FileNotFoundError):
        cbuild.source("../cbuild.py")
    with pytest.raises(TypeError, match="name must be a str"):
        cbuild.source(None)


def test_c_program_and_python_children_count_exactly_together(counter_program):
    n = 20_000
    with Segment(None, 8) as counter:
        lock = Mutex(None, timeout=20)
        try:
            def python_child():
                cells = counter.view(0, 8).cast("q")
                for _ in range(n):
                    with lock:
                        cells[0] += 1
                return 0

            c = subprocess.Popen([counter_program, str(counter.key), str(lock.key), str(n)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            pids = [start_child(python_child) for _ in range(2)]
            out, err = c.communicate(timeout=40)
            assert [reap(pid) for pid in pids] == [0, 0]
            assert (c.returncode, out, err) == (0, f"shm_counter: {n} increments done\n", "")
            total = int.from_bytes(counter.read(0, 8), sys.byteorder)
        finally:
            lock.remove()
    assert total == 3 * n


def test_c_program_uses_the_same_layout_and_key_forms(counter_program):
    with Segment(None, 16) as counter:
        lock = Mutex(None)
        try:
            counter.write((2**40).to_bytes(8, sys.byteorder))
            run = subprocess.run([counter_program, hex(counter.key), str(lock.key), "5"],
                                 capture_output=True, text=True, timeout=20)
            assert run.returncode == 0, run.stderr
            assert int.from_bytes(counter.read(0, 8), sys.byteorder) == 2**40 + 5
            assert counter.read(8, 8) == bytes(8)  # nothing written past the counter
            assert lock.value == 1  # released after each increment
        finally:
            lock.remove()


def test_c_program_errors(counter_program):
    def run(*args):
        done = subprocess.run([counter_program, *args], capture_output=True, text=True,
                              timeout=20)
        return done.returncode, done.stderr

    code, err = run()
    assert code == 2 and "usage:" in err and "SHM_KEY SEM_KEY COUNT" in err
    code, err = run("1", "2", "many")
    assert code == 2 and "COUNT must be a number between 0 and 1000000000, got 'many'" in err
    with Segment(None, 8) as gone:
        key = gone.key
    code, err = run(str(key), "1", "1")  # opens only: never creates
    assert code == 1 and f"shmget(0x{key:08x}): No such file or directory" in err
