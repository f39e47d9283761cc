"""Plots of a benchmark :class:`ipclab.bench.Report`: latency and throughput against size.

No system call: this only draws what :func:`ipclab.bench.run` measured, on
matplotlib Figures made with :func:`ipclab._plot.new_figure` (never through
pyplot, so nothing global changes and a notebook shows each figure once).
Both axes are logarithmic: sizes go from 64 B to 1 MiB and figures span four
orders of magnitude.  One colour per mechanism, one line style per
implementation (ipclab solid, bare dashed, C dotted); the shaded band around
a line is the spread of the repeats (lowest to highest), the line their
median.  The throughput panel draws the memory-copy ceiling as a horizontal
line.  Not handled: figures that failed (they are left out, the table says why).
"""

from __future__ import annotations

from . import _plot

STYLES = {"ipclab": "-", "bare": "--", "c": ":"}
PANELS = {"rtt": ("round trip (µs, lower is better)", "latency"),
          "tput": ("one way (MB/s, higher is better)", "throughput")}


def _check_report(report):
    from .bench import Report

    if not isinstance(report, Report):
        raise TypeError(f"report must be an ipclab.bench.Report (from ipclab.bench.run), "
                        f"got {report!r:.80}")
    return report


def _check_impls(impls) -> tuple[str, ...]:
    if isinstance(impls, str) or not isinstance(impls, (list, tuple)) or not impls:
        raise TypeError(f"impls must be a non-empty list of names such as ['ipclab', 'bare'], "
                        f"got {impls!r}")
    bad = [i for i in impls if i not in STYLES]
    if bad:
        raise ValueError(f"impls must be chosen from {', '.join(STYLES)}; got {impls!r}")
    return tuple(impls)


def _check_mechanisms(names):
    from .bench import MECHANISMS

    if names is None:
        return MECHANISMS
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise TypeError(f"mechanisms must be None or a non-empty list of names such as "
                        f"['pipe'], got {names!r}")
    if any(n not in MECHANISMS for n in names):
        raise ValueError(f"mechanisms must be chosen from {', '.join(MECHANISMS)}; got {names!r}")
    return tuple(names)


def _check_ax(ax):
    from matplotlib.axes import Axes

    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {ax!r}")
    return ax


def _series(report, mode: str, impls, mechanisms) -> dict:
    """{(mechanism, impl): [(size, median, low, high), ...]} of the measured figures."""
    found: dict = {}
    for r in report.rows:
        figure = getattr(r, mode)
        if (r.impl in impls and r.mechanism in mechanisms and figure is not None
                and figure.value is not None):
            found.setdefault((r.mechanism, r.impl), []).append(
                (r.size, figure.value, figure.low, figure.high))
    return {key: sorted(points) for key, points in found.items()}


def draw(report, mode: str, ax=None, *, impls=("ipclab", "bare"), mechanisms=None,
         legend: bool = True):
    """Draw ``mode`` ("rtt": µs per round trip, "tput": MB/s one way) against message size.

    Returns the matplotlib Figure (a new one when ``ax`` is None).  ``impls`` and
    ``mechanisms`` (None: all) choose the lines; ``legend`` puts the legend to
    the right of the axes.

    Raises:
        TypeError: ``report`` is not a Report, ``impls`` or ``mechanisms`` not a
            list, ``ax`` not an Axes, ``legend`` not a bool.
        ValueError: an unknown ``mode``, implementation or mechanism, or nothing
            measured to draw.
    """
    _check_report(report)
    if not isinstance(mode, str) or mode not in PANELS:
        raise ValueError(f"mode must be 'rtt' or 'tput', got {mode!r}")
    impls = _check_impls(impls)
    mechanisms = _check_mechanisms(mechanisms)
    _check_ax(ax)
    if not isinstance(legend, bool):
        raise TypeError(f"legend must be True or False, got {legend!r}")
    series = _series(report, mode, impls, mechanisms)
    if not series:
        raise ValueError(f"the report has no measured {PANELS[mode][1]} figures for impls "
                         f"{list(impls)!r} and mechanisms {list(mechanisms)!r} to draw")
    from matplotlib.ticker import NullLocator

    from .bench import MECHANISMS
    from .bench.report import size_text

    if ax is None:
        ax = _plot.new_figure(figsize=(8, 4), dpi=80, layout="constrained").add_subplot()
    for (mechanism, impl), points in sorted(series.items(), key=lambda kv: (
            MECHANISMS.index(kv[0][0]), tuple(STYLES).index(kv[0][1]))):
        colour = f"C{MECHANISMS.index(mechanism) % 10}"
        sizes, median, low, high = zip(*points, strict=True)
        ax.plot(sizes, median, STYLES[impl], color=colour, marker="o", markersize=3,
                label=f"{mechanism} {impl}")
        ax.fill_between(sizes, low, high, color=colour, alpha=0.15, linewidth=0)
    if mode == "tput" and report.memcpy is not None and report.memcpy.value is not None:
        ax.axhline(report.memcpy.value, color="black", linewidth=1.5,
                   label="memory copy of 1 MiB (ceiling)")
    sizes = sorted({size for points in series.values() for size, *_ in points})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [size_text(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())  # only the measured sizes are marked
    ax.set_xlabel("message size")
    ax.set_ylabel(PANELS[mode][0])
    ax.set_title(PANELS[mode][1])
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    return ax.figure


def plot(report, *, impls=("ipclab", "bare"), mechanisms=None, title: str | None = None):
    """Latency and throughput side by side, with one shared legend; return the Figure.

    Raises:
        TypeError: as :func:`draw`, or ``title`` is neither a str nor None.
        ValueError: as :func:`draw`.
    """
    _check_report(report)
    impls = _check_impls(impls)
    mechanisms = _check_mechanisms(mechanisms)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {title!r}")
    fig = _plot.new_figure(figsize=(11, 4.6), dpi=80, layout="constrained")
    left, right = fig.subplots(1, 2)
    draw(report, "rtt", left, impls=impls, mechanisms=mechanisms, legend=False)
    draw(report, "tput", right, impls=impls, mechanisms=mechanisms, legend=False)
    legend = {}  # label -> handle, each once, in drawing order
    for ax in (left, right):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside right center", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
