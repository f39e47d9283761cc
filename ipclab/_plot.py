"""Figures that show in a notebook without touching matplotlib's global state.

Plots are drawn on a :class:`matplotlib.figure.Figure` made directly, never
through pyplot: nothing global changes (no rcParams, no registered figures),
and a figure made in a loop is freed like any object.  Such a figure has no
printer in IPython until pyplot's inline backend is active, so it would show
only ``<Figure size ...>``; the subclass below gives it ``_repr_png_``.
matplotlib is imported on first use only.
"""

from __future__ import annotations

import functools
import io


@functools.cache
def _figure_class():
    from matplotlib.figure import Figure as _Base

    class Figure(_Base):
        """A matplotlib Figure that IPython displays as a PNG."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return Figure


def new_figure(**kwargs):
    """Return a new notebook-friendly Figure; ``kwargs`` go to ``Figure`` (figsize, layout)."""
    return _figure_class()(**kwargs)
