"""Tests for ipclab.widgets: the race explorer driven by code, as a student's clicks would."""

import ipywidgets
import pytest

from ipclab import widgets

pytestmark = pytest.mark.timeout(60)


def texts(explorer, stream="stdout"):
    return "".join(o["text"] for o in explorer.output.outputs
                   if o["output_type"] == "stream" and o["name"] == stream)


def images(explorer):
    return [o for o in explorer.output.outputs if o["output_type"] == "display_data"]


def test_the_explorer_has_its_controls_with_the_documented_ranges():
    explorer = widgets.race_explorer()
    assert isinstance(explorer, ipywidgets.VBox)
    p, i, w = explorer.processes, explorer.iterations, explorer.work
    assert (p.value, p.min, p.max) == (4, 1, 8)
    assert (i.value, i.min, i.max, i.step) == (10_000, 1_000, 50_000, 1_000)
    assert (w.value, w.min, w.max) == (0, 0, 1_000)
    assert explorer.lock.value is False and explorer.lock.description == "use the Mutex"
    assert explorer.run_button.description == "Run"
    assert explorer.clear_button.description == "Clear"
    assert explorer.results == [] and explorer.output.outputs == ()


def test_clicking_run_records_each_result_and_shows_it_with_a_plot():
    explorer = widgets.race_explorer()
    states = []
    explorer.run_button.observe(lambda change: states.append(change["new"]), "disabled")
    explorer.processes.value, explorer.iterations.value = 2, 1_000
    explorer.lock.value = True
    explorer.run_button.click()
    assert len(explorer.results) == 1
    first = explorer.results[0]
    assert (first.processes, first.iterations, first.lock, first.lost) == (2, 1_000, True, 0)
    assert texts(explorer).startswith(f"run 1: {first} in ")
    assert states == [True, False]  # disabled while running, usable again after
    assert explorer.run_button.description == "Run"

    explorer.lock.value = False
    explorer.processes.value = 4
    explorer.run_button.click()
    second = explorer.results[1]
    assert (second.processes, second.lock) == (4, False) and second.lost > 0
    assert f"run 2: {second} in " in texts(explorer)
    assert f"run 1: {first} in " in texts(explorer)  # all runs so far
    [plot] = images(explorer)  # one plot of all runs, replaced at each run
    assert plot["data"]["image/png"].startswith("iVBORw0KGgo")  # base64 of "\x89PNG"


def test_a_failed_run_shows_a_readable_message_and_records_nothing():
    explorer = widgets.race_explorer(timeout=0.3)
    explorer.processes.value, explorer.iterations.value = 2, 50_000
    explorer.lock.value, explorer.work.value = True, 1_000
    assert explorer.run() is None
    assert explorer.results == [] and len(explorer.errors) == 1
    message = texts(explorer, "stderr")
    assert message.startswith("the run failed: IPCTimeoutError: the race of 2 x 50,000 "
                              "increments did not finish within 0.3 s")
    assert "Traceback" not in message
    assert images(explorer) == []
    assert explorer.run_button.disabled is False

    explorer.timeout = 60.0  # a later good run replaces the message
    explorer.iterations.value, explorer.work.value = 1_000, 0
    assert explorer.run() is explorer.results[0]
    assert texts(explorer, "stderr") == "" and len(images(explorer)) == 1


def test_clear_forgets_every_run():
    explorer = widgets.race_explorer()
    explorer.processes.value, explorer.iterations.value = 1, 1_000
    explorer.run_button.click()
    assert len(explorer.results) == 1 and explorer.output.outputs
    explorer.clear_button.click()
    assert explorer.results == [] and explorer.errors == []
    assert explorer.output.outputs == ()
    explorer.run_button.click()
    assert texts(explorer).startswith("run 1: ")


def test_the_timeout_is_checked():
    with pytest.raises(ValueError, match="timeout must be a number > 0, got 0"):
        widgets.race_explorer(timeout=0)
    with pytest.raises(TypeError, match="timeout must be a number > 0, got '5'"):
        widgets.race_explorer(timeout="5")
