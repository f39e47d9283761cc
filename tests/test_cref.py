"""Tests for ipclab.cref and the C program it builds (ipclab/c/pingpong.c): every mechanism
in both modes, large messages, argument errors on both sides, the program's failures, its
watchdog and signal cleanup, and that nothing stays behind (SysV objects and children: the
autouse leak fixture; files: every test runs with a private TMPDIR that must end up empty)."""

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from _helpers import alive

from ipclab import cbuild, cref, leaks, mq
from ipclab.errors import IPCTimeoutError, LimitError

pytestmark = pytest.mark.timeout(120)
CPU = min(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The C reference, built once for this module into a private cache."""
    if cbuild.compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield cref.program()


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch):
    """A TMPDIR of the test's own, which must be empty at the end (no FIFO, socket, folder)."""
    folder = Path(tempfile.mkdtemp(prefix="cref-"))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    shutil.rmtree(folder)
    if left:
        pytest.fail(f"the test left files in TMPDIR: {left}", pytrace=False)


def script(folder, name, text):
    """A shell script standing in for the C program."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o700)
    return path




@pytest.mark.parametrize("mode", ["rtt", "tput"])
@pytest.mark.parametrize("mechanism", cref.MECHANISMS)
def test_every_mechanism_and_mode_gives_a_positive_number(program, mechanism, mode):
    cpu = CPU if mode == "rtt" else None  # latency pinned to one CPU, as the benchmark does
    value = cref.run(mechanism, 100, iterations=200, mode=mode, cpu=cpu, timeout=30)
    assert isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("mode", ["rtt", "tput"])
@pytest.mark.parametrize("mechanism", cref.MECHANISMS)
def test_messages_larger_than_any_kernel_buffer_arrive_whole(program, mechanism, mode):
    # 300 kB outgrows a pipe (64 kB) and a socket buffer, so reads and writes come in
    # parts; sysv_mq takes whole messages, at most msgmax.  The program checks the first
    # echo (rtt) or message (tput) byte for byte and fails if it differs.
    size = mq.max_message() if mechanism == "sysv_mq" else 300_000
    value = cref.run(mechanism, size, iterations=5, mode=mode, timeout=30)
    assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("mode", ["rtt", "tput"])
@pytest.mark.parametrize("mechanism", cref.MECHANISMS)
def test_timed_waits_work_on_every_mechanism_and_mode(program, mechanism, mode):
    cpu = CPU if mode == "rtt" else None
    value = cref.run(mechanism, 100, iterations=200, mode=mode, cpu=cpu, timeout=30, timed=True)
    assert isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("mechanism, words", [
    ("pipe", "poll: nothing to read for 1 s"),
    ("fifo", "poll: nothing to read for 1 s"),
    ("socketpair", "read: nothing arrived for 1 s (SO_RCVTIMEO)"),
    ("tcp", "read: nothing arrived for 1 s (SO_RCVTIMEO)"),
    ("sysv_mq", "msgrcv: nothing changed in the queue for 1 s"),
    ("sysv_shm", "semtimedop(-1): the semaphore stayed at 0 for 1 s"),
])
def test_a_timed_wait_ends_when_the_other_side_stops_answering(program, mechanism, words):
    # The child is stopped (SIGSTOP) mid-run: only the bound on the parent's wait, named
    # in the message, can end the run (the watchdog is 60 s away), and it cleans up.
    env = dict(os.environ, PINGPONG_WAIT="1", PINGPONG_TIMEOUT="60")
    with subprocess.Popen([program, "--timed", mechanism, "64", "1000000000", "rtt"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as run:
        children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
        deadline = time.monotonic() + 10
        while not children.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.01)
        child = int(children.read_text().split()[0])
        time.sleep(0.05)  # into the round trips
        os.kill(child, signal.SIGSTOP)
        start = time.monotonic()
        out, err = run.communicate(timeout=30)
        took = time.monotonic() - start
    assert (run.returncode, out) == (4, "")
    assert err == f"pingpong: {words}\n"
    assert 0.5 < took < 20
    assert not alive(child)  # killed and reaped by the parent on its way out


def test_the_program_prints_exactly_one_line(program):
    for mode, word in cref.MODES.items():
        done = subprocess.run([program, "socketpair", "64", "50", mode, str(CPU)],
                              capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stderr) == (0, "")
        assert re.fullmatch(rf"{word} [0-9]+\.[0-9]{{3}}\n", done.stdout), done.stdout


@pytest.mark.parametrize("args, env, words", [
    ([], {}, "usage: pingpong [--timed] MECHANISM SIZE ITERATIONS MODE [CPU]"),
    (["--timed"], {}, "usage: pingpong [--timed] MECHANISM SIZE ITERATIONS MODE [CPU]"),
    (["bogus", "1", "1", "rtt"], {},
     "unknown MECHANISM 'bogus'; use one of pipe, fifo, socketpair, unix, tcp, sysv_mq, "
     "sysv_shm"),
    (["pipe", "0", "1", "rtt"], {}, "SIZE must be a whole number between 1 and 67108864, got '0'"),
    (["pipe", "1", "1e3", "rtt"], {},
     "ITERATIONS must be a whole number between 1 and 1000000000, got '1e3'"),
    (["pipe", "1", "1", "both"], {}, "MODE must be rtt or tput, got 'both'"),
    (["pipe", "1", "1", "rtt", "-1"], {}, "CPU must be a whole number between 0 and 1023"),
    (["pipe", "1", "1", "rtt"], {"PINGPONG_TIMEOUT": "0"},
     "PINGPONG_TIMEOUT must be a whole number between 1 and 86400, got '0'"),
    (["--timed", "pipe", "1", "1", "rtt"], {"PINGPONG_WAIT": "1.5"},
     "PINGPONG_WAIT must be a whole number between 1 and 86400, got '1.5'"),
])
def test_the_program_refuses_bad_arguments_with_a_clear_message(program, args, env, words):
    done = subprocess.run([program, *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **env))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("pingpong: ") and words in done.stderr


def test_the_program_names_the_call_when_it_cannot_pin(program):
    if 1023 in os.sched_getaffinity(0):
        pytest.skip("this process may run on CPU 1023")
    done = subprocess.run([program, "pipe", "1", "1", "rtt", "1023"], capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "")
    assert "sched_setaffinity(CPU 1023): this process may not run on that CPU" in done.stderr


@pytest.mark.parametrize("kwargs, error, words", [
    ({"mechanism": "bogus"}, ValueError,
     "mechanism must be one of pipe, fifo, socketpair, unix, tcp, sysv_mq, sysv_shm, got 'bogus'"),
    ({"mechanism": None}, ValueError, "got None"),
    ({"size": 0}, ValueError, "size must be between 1 and 67108864, got 0"),
    ({"size": cref.MAX_SIZE + 1}, ValueError, "got 67108865"),
    ({"size": 1.5}, TypeError, "size must be an int, got 1.5"),
    ({"size": True}, TypeError, "size must be an int, got True"),
    ({"iterations": 0}, ValueError, "iterations must be between 1 and 1000000000, got 0"),
    ({"iterations": "10"}, TypeError, "iterations must be an int, got '10'"),
    ({"mode": "both"}, ValueError,
     "mode must be 'rtt' (round trips) or 'tput' (one-way throughput), got 'both'"),
    ({"cpu": -1}, ValueError, "cpu must be >= 0, got -1"),
    ({"cpu": "0"}, TypeError, "cpu must be an int, got '0'"),
    ({"cpu": 100_000}, ValueError, "cpu must be None or one of the CPUs this process may run "
                                   "on ["),
    ({"timeout": 0}, ValueError, "timeout must be a number > 0, got 0"),
    ({"timeout": None}, TypeError, "timeout must be a number > 0, got None"),
    ({"timed": 1}, TypeError, "timed must be True or False, got 1"),
])
def test_run_refuses_bad_arguments_before_building(kwargs, error, words, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    call = {"mechanism": "pipe", "size": 100, "iterations": 10, **kwargs}
    with pytest.raises(error) as info:
        cref.run(call.pop("mechanism"), call.pop("size"), **call)
    assert words in str(info.value)
    assert not (tmp_path / "cache").exists()  # refused before compiling anything


def test_no_compiler_means_unavailable_and_a_clear_build_error(monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cref.available() is False
    with pytest.raises(cbuild.BuildError, match=r"no C compiler .* check cref.available\(\)"):
        cref.run("pipe", 100, iterations=10)


def test_available_when_there_is_a_compiler(program):
    assert cref.available() is True


def test_a_size_the_machine_refuses_is_a_limit_error(program):
    too_big = mq.max_message() + 1
    with pytest.raises(LimitError) as info:
        cref.run("sysv_mq", too_big, iterations=1)
    assert str(info.value).startswith(f"pingpong sysv_mq {too_big} 1 rtt: pingpong: SIZE must be "
                                      f"at most")
    assert f"msgmax {mq.max_message()}" in str(info.value)


@pytest.mark.parametrize("mechanism", ["fifo", "unix"])
def test_a_failed_call_is_named_in_the_error(program, mechanism, monkeypatch, private_tmp):
    monkeypatch.setenv("TMPDIR", str(private_tmp / "missing"))
    with pytest.raises(cref.CRefError) as info:
        cref.run(mechanism, 1, iterations=1)
    assert str(info.value) == (f"pingpong {mechanism} 1 1 rtt failed (exit code 1): "
                               f"pingpong: mkdtemp: No such file or directory")


def test_a_socket_path_too_long_is_explained_and_its_folder_removed(program, monkeypatch,
                                                                     private_tmp):
    deep = private_tmp / ("d" * 90)
    deep.mkdir()
    monkeypatch.setenv("TMPDIR", str(deep))
    with pytest.raises(cref.CRefError, match=r"is longer than 107 bytes: set TMPDIR to a "
                                             r"shorter folder"):
        cref.run("unix", 1, iterations=1)
    assert list(deep.iterdir()) == []  # the mkdtemp folder went on the error path too
    deep.rmdir()


@pytest.mark.parametrize("mechanism, mode", [("sysv_mq", "rtt"), ("sysv_shm", "tput"),
                                             ("fifo", "rtt")])
def test_the_watchdog_ends_a_run_that_takes_too_long(program, mechanism, mode):
    with pytest.raises(IPCTimeoutError) as info:
        cref.run(mechanism, 1, iterations=cref.MAX_ITERATIONS, mode=mode, timeout=1)
    # The program's own alarm spoke (a kill from Python says "and was killed").
    assert str(info.value) == (f"pingpong {mechanism} 1 {cref.MAX_ITERATIONS} {mode} did not "
                               f"finish within 1 s: pingpong: {mechanism} {mode} did not finish "
                               f"within 1 s (watchdog alarm); the child was killed")


@pytest.mark.parametrize("mechanism, kind", [("sysv_mq", "msg"), ("sysv_shm", "sem")])
def test_sigterm_to_the_group_removes_the_queue_and_semaphores(program, mechanism, kind):
    before = leaks.sysv_ids()
    with subprocess.Popen([program, mechanism, "1", str(cref.MAX_ITERATIONS), "rtt"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as run:
        try:
            deadline = time.monotonic() + 20  # wait until its object exists: mid-run
            while not any(k == kind for k, _ in leaks.sysv_ids() - before):
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.01)
            os.killpg(run.pid, signal.SIGTERM)
            out, err = run.communicate(timeout=20)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    assert (run.returncode, out, err) == (5, "", "pingpong: stopped by SIGTERM\n")
    assert leaks.sysv_ids() - before == set()


def test_a_child_that_dies_makes_the_parent_fail_naming_the_call(program):
    with subprocess.Popen([program, "pipe", "1", str(cref.MAX_ITERATIONS), "rtt"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as run:
        try:
            deadline = time.monotonic() + 20
            while not (kids := leaks.children(run.pid)):
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.01)
            os.kill(kids[0][0], signal.SIGKILL)
            out, err = run.communicate(timeout=20)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    assert (run.returncode, out) == (1, "")
    assert re.fullmatch(r"pingpong: (write: Broken pipe|read: end of file after 0 of 1 bytes "
                        r"\(the other process closed its end\))\n", err), err


def test_a_program_deaf_to_its_watchdog_is_killed_with_its_child(monkeypatch, tmp_path):
    pidfile = tmp_path / "helper.pid"
    stuck = script(tmp_path, "stuck", f"trap '' TERM\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    monkeypatch.setattr(cref, "program", lambda: stuck)
    monkeypatch.setattr(cref, "GRACE", 0.5)
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError, match=r"^pingpong pipe 1 1 rtt did not finish within "
                                              r"0.5 s and was killed$"):
        cref.run("pipe", 1, iterations=1, timeout=0.5)
    assert time.monotonic() - start < 10
    helper = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(helper):
        time.sleep(0.02)
    assert not alive(helper), "the program's own child was left running"


@pytest.mark.parametrize("body, error", [
    ("echo 'rtt_us 0.000'\n", r"printed 'rtt_us 0.000\\n', expected one line 'rtt_us <number "
                              r"> 0>'$"),
    ("echo 'MBps 12.5'\n", r"printed 'MBps 12.5\\n', expected one line 'rtt_us"),
    ("echo 'rtt_us 1.0'; echo 'rtt_us 2.0'\n", r"printed 'rtt_us 1.0\\nrtt_us 2.0\\n'"),
    ("echo 'rtt_us nan'; echo odd >&2\n", r"printed 'rtt_us nan\\n'.*; stderr: odd$"),
    ("echo 'pingpong: boom' >&2; exit 1\n", r"^pingpong pipe 1 1 rtt failed \(exit code 1\): "
                                            r"pingpong: boom$"),
    ("exit 7\n", r"failed \(exit code 7\): \(nothing on stderr\)$"),
    ("kill -KILL $$\n", r"^pingpong pipe 1 1 rtt was killed by SIGKILL: "),
])
def test_a_failure_or_odd_output_is_a_cref_error(body, error, monkeypatch, tmp_path):
    fake = script(tmp_path, "fake", body)
    monkeypatch.setattr(cref, "program", lambda: fake)
    with pytest.raises(cref.CRefError, match=error):
        cref.run("pipe", 1, iterations=1)
