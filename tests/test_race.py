"""Tests for ipclab.race: exact locked counts, lost updates every unlocked run, timeouts, plots."""

import subprocess
import sys
import time

import pytest

from ipclab import race
from ipclab.errors import IPCTimeoutError

pytestmark = pytest.mark.timeout(60)


def test_locked_runs_are_exact_every_time():
    for _ in range(3):
        result = race.run_race(4, 2_000, lock=True)
        assert (result.expected, result.actual, result.lost) == (8_000, 8_000, 0)
        assert result.lock is True and result.seconds > 0


def test_unlocked_runs_with_the_defaults_lose_updates_every_time():
    for _ in range(5):  # the "every run"; evidence over many more runs in the report
        result = race.run_race()
        assert (result.processes, result.iterations, result.lock, result.work) == (4, 10_000,
                                                                                   False, 0)
        assert result.expected == 40_000
        assert 0 < result.actual < result.expected  # a stale write only ever lowers the count
        assert result.lost == result.expected - result.actual


def test_work_inside_the_critical_section_still_races_and_the_lock_still_fixes_it():
    unlocked, locked = race.compare(2, 500, work=200)
    assert (unlocked.lock, locked.lock) == (False, True)
    assert (unlocked.work, locked.work) == (200, 200)
    assert unlocked.lost > 0 and locked.lost == 0


def test_one_process_alone_loses_nothing_without_a_lock():
    result = race.run_race(1, 5_000)
    assert (result.actual, result.lost) == (5_000, 0)


def test_the_result_reads_as_a_sentence():
    result = race.RaceResult(4, 10_000, False, 0, 40_000, 23_117, 0.25)
    assert result.lost == 16_883
    assert str(result) == ("4 processes x 10,000 increments, no lock: "
                           "expected 40,000, got 23,117 (16,883 lost)")
    one = race.RaceResult(1, 1, True, 50, 1, 1, 0.01)
    assert str(one) == ("1 process x 1 increment, work 50, with the Mutex: "
                        "expected 1, got 1 (0 lost)")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"processes": 0}, ValueError, "processes must be between 1 and 64, got 0"),
    ({"processes": 65}, ValueError, "processes must be between 1 and 64, got 65"),
    ({"processes": 2.0}, TypeError, "processes must be an int, got 2.0"),
    ({"processes": True}, TypeError, "processes must be an int, got True"),
    ({"iterations": 0}, ValueError, "iterations must be between 1 and 10000000, got 0"),
    ({"iterations": 10_000_001}, ValueError, "iterations must be between 1 and 10000000"),
    ({"iterations": "10"}, TypeError, "iterations must be an int, got '10'"),
    ({"work": -1}, ValueError, "work must be between 0 and 1000000, got -1"),
    ({"work": 1_000_001}, ValueError, "work must be between 0 and 1000000, got 1000001"),
    ({"lock": 1}, TypeError, "lock must be True or False, got 1"),
    ({"lock": None}, TypeError, "lock must be True or False, got None"),
    ({"timeout": 0}, ValueError, "timeout must be a number > 0, got 0"),
    ({"timeout": None}, TypeError, "timeout must be a number > 0, got None"),
])
def test_bad_arguments_are_refused_before_anything_is_made(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        race.run_race(**kwargs)


def test_compare_checks_its_arguments_too():
    with pytest.raises(ValueError, match="processes must be between 1 and 64, got 100"):
        race.compare(100)


@pytest.mark.parametrize("lock", [False, True])
def test_a_race_that_outlives_its_timeout_is_stopped_with_a_clear_error(lock):
    start = time.monotonic()
    with pytest.raises(IPCTimeoutError) as info:
        race.run_race(2, 10_000_000, lock=lock, timeout=0.5)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith("the race of 2 x 10,000,000 increments did not finish within "
                              "0.5 s; its children were stopped")
    assert "child 1" in message and "child 2" in message
    assert isinstance(info.value, TimeoutError) and len(info.value.diagnosis) == 2
    # the leak fixture checks that the segment and both semaphore sets are gone, and the
    # children reaped


def test_plot_draws_expected_and_actual_bars_and_touches_no_global_state():
    import matplotlib
    from matplotlib._pylab_helpers import Gcf
    from matplotlib.figure import Figure

    results = [race.RaceResult(4, 10_000, False, 0, 40_000, 23_117, 0.2),
               race.RaceResult(4, 10_000, True, 0, 40_000, 40_000, 1.5)]
    rc_before, figures_before = dict(matplotlib.rcParams), Gcf.get_num_fig_managers()
    for _ in range(3):  # as in a loop in a notebook
        fig = race.plot(results)
    assert isinstance(fig, Figure)
    assert Gcf.get_num_fig_managers() == figures_before  # pyplot knows nothing of it
    assert dict(matplotlib.rcParams) == rc_before
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [40_000, 40_000, 23_117, 40_000]
    assert [t.get_text() for t in ax.texts] == ["16,883 lost", "0 lost"]
    assert fig._repr_png_().startswith(b"\x89PNG")  # how a notebook shows it, once


def test_plot_into_a_given_axes_and_of_a_single_result():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    result = race.RaceResult(2, 100, False, 0, 200, 150, 0.01)
    assert race.plot(result, ax=ax) is fig
    assert [t.get_text() for t in ax.texts] == ["50 lost"]


def test_plot_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="at least one RaceResult"):
        race.plot([])
    with pytest.raises(TypeError, match="results must be RaceResult objects, got 3"):
        race.plot([3])


def test_importing_race_and_widgets_loads_neither_matplotlib_nor_ipywidgets():
    code = ("import sys, ipclab.race, ipclab.widgets; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'ipywidgets'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "[]"
