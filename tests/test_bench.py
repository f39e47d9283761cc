"""ipclab.bench: every mechanism x implementation moves its data intact, the JSON schema,
the command line, wedged mechanisms killed and reported, nothing left behind.

No timing is asserted (figures are only checked to be positive and finite): the
targets are the benchmark's to report, not the tests'."""

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import types

import pytest

from ipclab import bench, diagnose
from ipclab.bench import command, mechanisms, runner, streams, sysv
from ipclab.bench.loops import Plan

pytestmark = pytest.mark.timeout(120)
REGISTRY = mechanisms.load()
TINY = Plan(repeats=1, iterations=20)
CPU = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
REQUIRED = {"mechanism", "impl", "size", "rtt_us", "MBps"}


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """FIFOs and socket files go to a private temporary folder, which must end up empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield
    assert os.listdir(folder) == [], "FIFO or socket folders were left behind"


def _shm_names():
    return {n for n in os.listdir("/dev/shm") if n.startswith("psm_")}


# -- every mechanism and implementation -------------------------------------------------


@pytest.mark.parametrize("mode", ["rtt", "tput"])
@pytest.mark.parametrize("size", [100, 70_000])  # 70 000 B: more than a pipe or socket buffer
@pytest.mark.parametrize("key", sorted(REGISTRY), ids="-".join)
def test_each_mechanism_delivers_verified_messages(key, size, mode):
    if mechanisms.limit(key[0], size):
        pytest.skip(mechanisms.limit(key[0], size))
    before = _shm_names()
    figure = runner.measure(REGISTRY[key], mode, size, plan=TINY, timeout=20,
                            cpu=CPU if mode == "rtt" else None, verify=True)
    assert figure.error is None
    assert math.isfinite(figure.value) and figure.value > 0
    assert figure.iterations == 20 and len(figure.samples) == 1
    assert figure.pinned is (True if mode == "rtt" and CPU is not None else None)
    assert _shm_names() <= before  # POSIX segments are unlinked


def test_registry_covers_the_issue():
    assert set(mechanisms.MECHANISMS) == {m for m, _ in REGISTRY}
    assert {i for _, i in REGISTRY} == {"ipclab", "bare"}
    for m in mechanisms.MECHANISMS:
        assert (m, "bare") in REGISTRY
        assert ((m, "ipclab") in REGISTRY) == (m not in mechanisms.NO_WRAPPER)


def _corrupting(base, side):
    class Corrupting(base):
        def endpoint(self, s):
            end = super().endpoint(s)
            if s != side:
                return end

            def send(data):
                data = bytearray(data)
                data[5] ^= 0xFF
                end.send(bytes(data))
            return end._replace(send=send)
    return Corrupting


@pytest.mark.parametrize("mode, side", [("rtt", "b"), ("tput", "a")])
@pytest.mark.parametrize("base", [streams.PipeBare, sysv.ShmIpclab, sysv.QueueBare])
def test_a_changed_payload_is_caught(base, mode, side):
    figure = runner.measure(_corrupting(base, side), mode, 64, plan=TINY, timeout=10,
                            verify=True)
    assert figure.value is None
    assert "message 0 arrived changed" in figure.error
    assert "first difference at byte 5" in figure.error


def test_unavailable_affinity_is_recorded_as_not_pinned():
    figure = runner.measure(streams.PipeBare, "rtt", 64, plan=TINY, timeout=10, cpu=4095)
    assert figure.error is None and figure.pinned is False


class _Told:
    """A Bench mixin: its forked sides ``tell`` short texts, which teardown (in the
    supervisor) collects into ``told``; ``last`` is the last instance torn down."""

    def setup(self):
        super().setup()
        self.told_pipe = os.pipe()

    def tell(self, text: str) -> None:
        os.write(self.told_pipe[1], text.encode())

    def teardown(self):
        super().teardown()
        os.close(self.told_pipe[1])
        os.set_blocking(self.told_pipe[0], False)  # a side still alive must not hang us
        try:
            self.told = os.read(self.told_pipe[0], 256).decode()
        except BlockingIOError:
            self.told = ""
        os.close(self.told_pipe[0])
        type(self).last = self


# -- every figure starts from the same allocator state ----------------------------------


def _mallinfo2():
    """glibc's mallinfo2() as a function returning its count of mmap'ed blocks, or None."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
                    "keepcost".split()]
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = Info
    return lambda: fn().hblks


def _mmaps_for(hblks, size: int) -> int:
    """How many new mmap'ed blocks a live ``size``-byte bytes object takes (0: from the heap)."""
    before = hblks()
    block = bytes(size)
    grew = hblks() - before
    del block
    return grew


@pytest.mark.skipif(_mallinfo2() is None, reason="needs glibc's mallinfo2")
def test_settle_malloc_makes_a_1_mib_buffer_come_from_the_heap():
    # In a fresh interpreter: a new process's first 1 MiB buffer is mmap'ed (page faults on
    # first touch), and after settle_malloc it is not; so whether it was did not depend on
    # what the supervisor freed before forking.
    code = ("from tests.test_bench import _mallinfo2, _mmaps_for\n"
            "from ipclab.bench import runner\n"
            "h = _mallinfo2()\n"
            "print(_mmaps_for(h, 1 << 20), end=' ')\n"
            "runner.settle_malloc()\n"
            "print(_mmaps_for(h, 1 << 20), _mmaps_for(h, runner.SETTLE_BYTES // 2))\n")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["1", "0", "0"]


@pytest.mark.skipif(_mallinfo2() is None, reason="needs glibc's mallinfo2")
@pytest.mark.parametrize("mode", ["rtt", "tput"])
def test_both_sides_of_a_figure_start_with_the_allocator_settled(mode):
    class Probing(_Told, streams.PipeBare):
        """A and B each say how many mmaps a 1 MiB buffer took when their end was made."""

        def endpoint(self, side):
            self.tell(f"{side}={_mmaps_for(_mallinfo2(), 1 << 20)} ")
            return super().endpoint(side)

    figure = runner.measure(Probing, mode, 64, plan=TINY, timeout=20)
    assert figure.error is None
    assert sorted(Probing.last.told.split()) == ["a=0", "b=0"]


# -- a wedged mechanism is killed and reported ------------------------------------------


def _hanging(base):
    class Hanging(_Told, base):
        """B tells its pid, then never answers."""

        def teardown(self):
            super().teardown()
            self.b_pid = int(self.told or 0)
            _hanging.last = self

        def endpoint(self, side):
            end = super().endpoint(side)
            if side == "b":
                self.tell(str(os.getpid()))
                time.sleep(3600)
            return end
    return Hanging


@pytest.mark.parametrize("base, call", [(streams.PipeBare, "read"), (sysv.QueueBare, "msgrcv"),
                                        (sysv.ShmBare, "semaphore set")])
def test_a_wedged_mechanism_is_killed_and_reported(base, call):
    start = time.monotonic()
    figure = runner.measure(_hanging(base), "rtt", 64, plan=TINY, timeout=1.0)
    assert time.monotonic() - start < 5
    assert figure.value is None
    assert figure.error.startswith("timed out after 1 s and was killed")
    assert f"{base.mechanism} bare A" in figure.error and call in figure.error  # from /proc
    b_pid = _hanging.last.b_pid
    deadline = time.monotonic() + 3  # B was killed with its group; init reaps it
    while (st := diagnose.proc_stat(b_pid)) and st[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert st is None or st[0] == "Z" and st[1] != os.getpid()
    # the SysV objects are gone too: the autouse leak fixture fails the test otherwise


def test_a_wedged_mechanism_shows_in_the_report_and_the_exit_code(monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, ("pipe", "bare"), _hanging(streams.PipeBare))
    code = bench.cli(["--quick", "--mechanism", "pipe", "--impl", "bare", "--size", "64",
                      "--timeout", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Failed:" in out and "pipe bare 64 B rtt: timed out after 1 s" in out
    assert "pipe bare 64 B tput: timed out after 1 s" in out


# -- the report and its JSON ------------------------------------------------------------


def test_json_schema(capsys):
    before = os.sched_getaffinity(0) if CPU is not None else None
    report = bench.run(quick=True, mechanisms=["pipe", "sysv_mq", "mp_queue"],
                       sizes=[64, 65536], progress=False, repeats=2)
    assert capsys.readouterr().err == ""  # no progress bar when asked for none
    data = json.loads(report.to_json())
    assert {"memcpy_MBps", "pinned", "results"} <= set(data)
    assert isinstance(data["memcpy_MBps"], float) and data["memcpy_MBps"] > 0
    assert data["pinned"] is (CPU is not None)
    if CPU is not None:
        assert os.sched_getaffinity(0) == before  # the caller's affinity is untouched
    seen = set()
    for row in data["results"]:
        assert REQUIRED <= set(row)
        assert row["mechanism"] in bench.MECHANISMS and row["impl"] in bench.IMPLS
        assert isinstance(row["size"], int)
        for key in ("rtt_us", "MBps"):
            assert isinstance(row[key], float) and row[key] > 0, row
            assert row[key] == statistics.median(row[f"{key}_samples"])
            assert row[f"{key}_min"] <= row[key] <= row[f"{key}_max"]
        seen.add((row["mechanism"], row["impl"], row["size"]))
    c = {"c"} if bench.c_reference()[0] else set()
    for size in (64, 65536):
        assert {i for m, i, s in seen if m == "pipe" and s == size} == {"ipclab", "bare"} | c
    assert {(i, s) for m, i, s in seen if m == "sysv_mq"} == {("ipclab", 64), ("bare", 64)} | \
        {(i, 64) for i in c}
    assert {(i, s) for m, i, s in seen if m == "mp_queue"} == {("bare", 64), ("bare", 65536)}
    notes = "\n".join(data["not_measured"])
    assert "sysv_mq at 64 KiB" in notes and "msgmax" in notes
    assert "ipclab rows for mp_queue: ipclab has no wrapper here" in notes
    if c:
        assert "c rows for mp_queue: no C reference for it" in notes
    table = report.table()
    assert table.splitlines()[0].startswith("ipclab bench --quick: latency: both processes "
                                            "pinned to CPU" if CPU is not None else "")
    assert "memory copy of a 1 MiB buffer" in table and "Targets" in table


def _figure(value):
    return runner.Figure.of([value], 1, True)


def test_table_ratios_and_targets_are_flagged():
    rows = [bench.Row("pipe", "ipclab", 64, _figure(11.0), _figure(90.0)),
            bench.Row("pipe", "bare", 64, _figure(10.0), _figure(100.0)),
            bench.Row("pipe", "c", 64, _figure(8.0), _figure(400.0)),
            bench.Row("sysv_shm", "ipclab", 1 << 20, None, _figure(30000.0)),
            bench.Row("sysv_shm", "bare", 1 << 20, None, _figure(20000.0))]
    report = bench.Report(rows=rows, memcpy=_figure(50000.0), pinned=True, cpu=1, repeats=1,
                          notes=["c rows for posix_shm: no C reference for it"])
    text = report.table()
    line = next(t for t in text.splitlines() if t.split()[:2] == ["pipe", "ipclab"])
    assert line.split()[-6:] == ["1.10", "✔", "1.11", "✘", "1.38", "✔"]
    assert "✘ pipe: 1.11 (MB/s at 64 B)" in text
    assert "✔ pipe 1.38" in text
    assert "✔ ipclab 30000 MB/s = 60%, bare 20000 MB/s = 40%" in text
    assert "pipe 1.25" in text  # bare against C, for reference
    assert "  - c rows for posix_shm: no C reference for it" in text
    assert report.to_dict()["results"][3]["rtt_us"] is None


def test_progress_bar_only_when_asked_or_on_a_terminal():
    class Stream(types.SimpleNamespace):
        def write(self, text):
            self.text += text

        def flush(self):
            pass

    quiet = Stream(text="", isatty=lambda: False)
    bar = bench.Progress(3, None, quiet)
    bar.step("x")
    bar.close()
    assert quiet.text == ""
    tty = Stream(text="", isatty=lambda: True)
    bar = bench.Progress(2, None, tty, width=4)
    bar.step("pipe bare 64 B rtt")
    bar.step("pipe bare 64 B tput")
    bar.close()
    assert "\r[....] 0/2 pipe bare 64 B rtt" in tty.text
    assert "\r[##..] 1/2 pipe bare 64 B tput" in tty.text
    assert tty.text.endswith("\r")


# -- the C reference --------------------------------------------------------------------


def test_c_rows_use_the_reference_and_pin_only_round_trips(monkeypatch):
    calls = []

    def fake_run(mechanism, size, *, iterations, mode, cpu, timeout, timed=False):
        calls.append((mechanism, size, mode, cpu, timed))
        return 5.0 if mode == "rtt" else 100.0
    fake = types.SimpleNamespace(MECHANISMS=("pipe",), run=fake_run)
    monkeypatch.setattr(bench, "c_reference", lambda wanted: (fake, None))
    report = bench.run(mechanisms=["pipe", "mp_pipe"], impls=["c"], sizes=[64], repeats=2,
                       progress=False, quick=True)
    (row,) = report.rows
    assert (row.impl, row.rtt.value, row.tput.value) == ("c", 5.0, 100.0)
    assert {c[3] for c in calls if c[2] == "rtt"} == {report.cpu}
    assert {c[3] for c in calls if c[2] == "tput"} == {None}
    assert "c rows for mp_pipe: no C reference for it" in report.notes
    assert not any(c[4] for c in calls) and report.c_timed == {}  # no ipclab row to explain


def test_the_timed_c_round_trip_is_measured_beside_ipclab_at_64_bytes(monkeypatch):
    calls = []

    def fake_run(mechanism, size, *, iterations, mode, cpu, timeout, timed=False):
        calls.append((mechanism, size, mode, cpu, timed))
        return (6.5 if timed else 5.0) if mode == "rtt" else 100.0
    fake = types.SimpleNamespace(MECHANISMS=("pipe",), run=fake_run)
    monkeypatch.setattr(bench, "c_reference", lambda wanted: (fake, None))
    report = bench.run(mechanisms=["pipe", "mp_pipe"], impls=["ipclab", "c"], sizes=[64, 4096],
                       repeats=1, progress=False, quick=True)
    assert {c for c in calls if c[4]} == {("pipe", 64, "rtt", report.cpu, True)}
    assert set(report.c_timed) == {"pipe"} and report.c_timed["pipe"].value == 6.5
    assert {r.impl for r in report.rows} == {"ipclab", "c"}  # a figure, not a row
    data = report.to_dict()
    assert data["c_timed_rtt_us"] == {"pipe": 6.5}
    assert {r["impl"] for r in data["results"]} == {"ipclab", "c"}
    ours = report.row("pipe", "ipclab", 64).rtt.value
    assert f"    pipe 1.30 (ipclab {ours / 6.5:.2f})" in report.table().splitlines()


def test_a_failed_timed_c_round_trip_is_reported():
    rows = [bench.Row("pipe", "c", 64, _figure(4.0), _figure(400.0))]
    report = bench.Report(rows=rows, c_timed={"pipe": runner.Figure(error="CRefError: boom")})
    assert report.failures() == ["pipe c --timed 64 B rtt: CRefError: boom"]
    assert report.to_dict()["c_timed_rtt_us"] == {}
    assert "costs C" not in report.table()


def test_no_c_reference_is_explained(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ipclab.cref", None)  # as if the module were missing
    assert bench.c_reference() == (None, "c rows: no C reference here (the module ipclab.cref "
                                         "is missing)")
    fake = types.SimpleNamespace(available=lambda: False)
    monkeypatch.setitem(sys.modules, "ipclab.cref", fake)
    monkeypatch.setattr("ipclab.cbuild.compiler", lambda: None)
    cref, why = bench.c_reference()
    assert cref is None and why == "c rows: no C compiler (cc, gcc or clang) on this machine"
    report = bench.run(quick=True, mechanisms=["pipe"], impls=["bare", "c"], sizes=[64],
                       repeats=1, progress=False)
    assert {r.impl for r in report.rows} == {"bare"}
    assert "  - c rows: no C compiler (cc, gcc or clang) on this machine" in report.table()


def test_the_real_c_reference_runs_when_there_is_a_compiler():
    if bench.c_reference()[0] is None:
        pytest.skip(bench.c_reference()[1])
    report = bench.run(quick=True, mechanisms=["socketpair"], impls=["c"], sizes=[64],
                       repeats=1, progress=False)
    (row,) = report.rows
    assert row.rtt.value > 0 and row.tput.value > 0 and not report.failures()


# -- the command line and argument errors -----------------------------------------------


def test_cli_writes_json_and_prints_the_table(tmp_path, capsys):
    path = tmp_path / "out.json"
    code = bench.cli(["--quick", "--mechanism", "socketpair", "--impl", "bare", "--size", "64",
                      "--repeats", "1", "--no-progress", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(path.read_text())
    assert [(r["mechanism"], r["impl"], r["size"]) for r in data["results"]] == \
        [("socketpair", "bare", 64)]
    assert "socketpair  bare  64 B" in out and out.rstrip().endswith(f"wrote {path}")


def test_cli_accepts_the_main_parsers_namespace(tmp_path, capsys):
    args = argparse.Namespace(quick=True, json=str(tmp_path / "no" / "x.json"))
    assert bench.cli(args) == 2
    assert "--json: the folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "size must be between 1 and 1048576 bytes (64, 64K, 1M, ...), got '0'"),
    (["--size", "2M"], "got '2M'"),
    (["--size", "lots"], "got 'lots'"),
    (["--mechanism", "pigeon"], "invalid choice: 'pigeon'"),
    (["--impl", "rust"], "invalid choice: 'rust'"),
    (["--json", "/no/such/folder/x.json"], "--json: the folder '/no/such/folder' does not exist"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.cli(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_folder_as_json(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.cli(["--json", str(tmp_path)])
    assert "--json must name a file" in capsys.readouterr().err


def test_cli_reports_bad_repeats_without_running(capsys):
    assert bench.cli(["--repeats", "0", "--no-progress"]) == 2
    assert "repeats must be between 1 and 100, got 0" in capsys.readouterr().err


def test_parse_size_units():
    assert [command.parse_size(t) for t in ("64", "64B", "64k", "64KiB", "1M", "1 MiB")] == \
        [64, 64, 65536, 65536, 1 << 20, 1 << 20]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"quick": "yes"}, TypeError, "quick must be True or False, got 'yes'"),
    ({"mechanisms": "pipe"}, TypeError, "mechanisms must be a list of names such as ['pipe'], "
                                        "got 'pipe'"),
    ({"mechanisms": ["pipe", "pigeon"]}, ValueError, "got ['pipe', 'pigeon']"),
    ({"mechanisms": []}, ValueError, "mechanisms must be a non-empty list"),
    ({"impls": ["rust"]}, ValueError, "impls must be a non-empty list of ipclab, bare, c"),
    ({"sizes": [0]}, ValueError, "size must be between 1 and 1048576, got 0"),
    ({"sizes": [(1 << 20) + 1]}, ValueError, "size must be between 1 and 1048576"),
    ({"sizes": 64}, TypeError, "sizes must be a non-empty list of ints"),
    ({"sizes": ["64"]}, TypeError, "size must be an int, got '64'"),
    ({"repeats": 0}, ValueError, "repeats must be between 1 and 100, got 0"),
    ({"timeout": 0}, ValueError, "timeout must be a number > 0, got 0"),
    ({"progress": "yes"}, TypeError, "progress must be True, False or None, got 'yes'"),
])
def test_run_checks_its_arguments_first(kwargs, error, message):
    start = time.monotonic()
    with pytest.raises(error) as caught:
        bench.run(**kwargs)
    assert message in str(caught.value)
    assert time.monotonic() - start < 0.5  # refused before measuring anything
