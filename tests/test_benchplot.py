"""Tests for ipclab.benchplot: what is drawn from a Report (a real small run and hand-made
ones), failed figures left out, the memcpy ceiling, no global state changed, bad input."""

import sys

import pytest

from ipclab import bench, benchplot
from ipclab.bench.report import Report, Row
from ipclab.bench.runner import Figure

pytestmark = pytest.mark.timeout(60)
matplotlib = pytest.importorskip("matplotlib")


def fig(value, spread=0.1):
    return Figure(value, value * (1 - spread), value * (1 + spread), [value], 10)


def report(memcpy=50_000.0):
    """pipe and sysv_shm, ipclab and bare, at 64 B and 1 MiB; shm bare 1 MiB tput failed."""
    rows = []
    for mechanism, base in (("pipe", 10.0), ("sysv_shm", 20.0)):
        for impl, factor in (("ipclab", 2.0), ("bare", 1.0), ("c", 0.5)):
            for size, grow in ((64, 1), (1 << 20, 100)):
                rows.append(Row(mechanism, impl, size, fig(base * factor * grow),
                                fig(size / (base * factor * grow))))
    failed = next(r for r in rows if (r.mechanism, r.impl, r.size) == ("sysv_shm", "bare", 1 << 20))
    failed.tput = Figure(error="timed out")
    return Report(rows=rows, memcpy=None if memcpy is None else fig(memcpy), pinned=True, cpu=0)


def lines(ax):
    """{label: (x data, y data)} of the lines drawn, without the ceiling."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.get_lines() if not line.get_label().startswith("memory copy")}


def test_a_real_quick_run_draws_one_line_per_mechanism_and_impl():
    measured = bench.run(quick=True, mechanisms=["pipe", "socketpair"], impls=["ipclab", "bare"],
                         sizes=[64, 4096], repeats=1, progress=False)
    assert measured.failures() == []
    figure = benchplot.plot(measured, title="two mechanisms")
    latency, throughput = figure.axes
    expected = {"pipe ipclab", "pipe bare", "socketpair ipclab", "socketpair bare"}
    for ax in (latency, throughput):
        assert set(lines(ax)) == expected
        assert all(x == [64, 4096] for x, _ in lines(ax).values())
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        assert [t.get_text() for t in ax.get_xticklabels()] == ["64 B", "4 KiB"]
    row = measured.row("pipe", "bare", 4096)
    assert lines(latency)["pipe bare"][1][1] == row.rtt.value  # the median is what is drawn
    assert lines(throughput)["pipe bare"][1][1] == row.tput.value
    ceiling = [line for line in throughput.get_lines() if line.get_label().startswith("memory")]
    assert [line.get_ydata()[0] for line in ceiling] == [measured.memcpy.value]
    assert figure._suptitle.get_text() == "two mechanisms"


def test_styles_distinguish_impls_and_colours_distinguish_mechanisms():
    ax = benchplot.draw(report(), "rtt", impls=["ipclab", "bare", "c"]).axes[0]
    drawn = {line.get_label(): line for line in ax.get_lines()}
    assert [drawn[f"pipe {impl}"].get_linestyle() for impl in ("ipclab", "bare", "c")] == \
        ["-", "--", ":"]
    assert drawn["pipe bare"].get_color() == drawn["pipe c"].get_color()
    assert drawn["pipe bare"].get_color() != drawn["sysv_shm bare"].get_color()
    assert ax.get_ylabel().startswith("round trip (µs")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"{m} {i}" for m in ("pipe", "sysv_shm") for i in ("ipclab", "bare", "c")]
    assert benchplot.draw(report(), "rtt", legend=False).axes[0].get_legend() is None


def test_only_the_impls_asked_for_are_drawn_and_failed_figures_are_left_out():
    tput = lines(benchplot.draw(report(), "tput", impls=["bare"]).axes[0])
    assert set(tput) == {"pipe bare", "sysv_shm bare"}
    assert tput["sysv_shm bare"][0] == [64]  # its 1 MiB figure failed
    assert tput["pipe bare"][0] == [64, 1 << 20]
    rtt = lines(benchplot.draw(report(), "rtt", impls=["bare"]).axes[0])
    assert rtt["sysv_shm bare"][0] == [64, 1 << 20]  # only the failed mode is missing


def test_only_the_mechanisms_asked_for_are_drawn():
    figure = benchplot.plot(report(), impls=["bare", "c"], mechanisms=["sysv_shm"])
    for ax in figure.axes:
        assert set(lines(ax)) == {"sysv_shm bare", "sysv_shm c"}
    assert set(lines(benchplot.draw(report(), "rtt", mechanisms=("pipe",)).axes[0])) == \
        {"pipe ipclab", "pipe bare"}


def test_the_ceiling_is_drawn_on_throughput_only_and_only_when_measured():
    def ceilings(figure):
        return [line for line in figure.axes[0].get_lines()
                if line.get_label() == "memory copy of 1 MiB (ceiling)"]
    assert len(ceilings(benchplot.draw(report(), "tput"))) == 1
    assert ceilings(benchplot.draw(report(), "rtt")) == []
    assert ceilings(benchplot.draw(report(memcpy=None), "tput")) == []


def test_draw_uses_a_given_axes_and_plot_shares_one_legend():
    from matplotlib.figure import Figure as MplFigure

    host = MplFigure()
    ax = host.add_subplot()
    assert benchplot.draw(report(), "tput", ax) is host
    both = benchplot.plot(report())
    labels = [t.get_text() for t in both.legends[0].get_texts()]
    assert labels == ["pipe ipclab", "pipe bare", "sysv_shm ipclab", "sysv_shm bare",
                      "memory copy of 1 MiB (ceiling)"]
    assert all(ax.get_legend() is None for ax in both.axes)


def test_no_global_state_changes_and_a_notebook_can_show_it():
    before = dict(matplotlib.rcParams)
    figure = benchplot.plot(report())
    assert dict(matplotlib.rcParams) == before
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []  # no figure registered with pyplot
    assert figure._repr_png_().startswith(b"\x89PNG")


def test_bad_input_is_refused_with_the_value_shown():
    with pytest.raises(TypeError, match=r"report must be an ipclab.bench.Report .*got \{"):
        benchplot.plot({"rows": []})
    with pytest.raises(ValueError, match=r"mode must be 'rtt' or 'tput', got 'latency'"):
        benchplot.draw(report(), "latency")
    with pytest.raises(TypeError, match=r"impls must be a non-empty list .*got 'bare'"):
        benchplot.draw(report(), "rtt", impls="bare")
    with pytest.raises(TypeError, match=r"impls must be a non-empty list .*got \[\]"):
        benchplot.plot(report(), impls=[])
    with pytest.raises(ValueError, match=r"impls must be chosen from ipclab, bare, c; "
                                         r"got \['python'\]"):
        benchplot.draw(report(), "rtt", impls=["python"])
    with pytest.raises(TypeError, match=r"mechanisms must be None or a non-empty list .*"
                                        r"got 'pipe'"):
        benchplot.draw(report(), "rtt", mechanisms="pipe")
    with pytest.raises(ValueError, match=r"mechanisms must be chosen from pipe, fifo, .*; "
                                         r"got \['shm'\]"):
        benchplot.plot(report(), mechanisms=["shm"])
    with pytest.raises(ValueError, match=r"no measured latency figures for impls \['ipclab', "
                                         r"'bare'\] and mechanisms \['tcp'\]"):
        benchplot.draw(report(), "rtt", mechanisms=["tcp"])
    with pytest.raises(TypeError, match="legend must be True or False, got 'right'"):
        benchplot.draw(report(), "rtt", legend="right")
    with pytest.raises(TypeError, match="title must be a str or None, got 7"):
        benchplot.plot(report(), title=7)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes or None, got 'axes'"):
        benchplot.draw(report(), "rtt", ax="axes")
    with pytest.raises(ValueError, match=r"no measured latency figures for impls \['c'\]"):
        benchplot.draw(Report(rows=[Row("pipe", "bare", 64, fig(5.0), fig(10.0))]), "rtt",
                       impls=["c"])
    with pytest.raises(ValueError, match=r"no measured latency figures"):
        benchplot.plot(Report())
