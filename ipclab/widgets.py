"""Interactive explorers for the notebooks, built with ipywidgets.

Makes no system call itself: :func:`race_explorer` drives :func:`ipclab.race.run_race`
(shmget(2)/shmat(2), semop(2), fork(2) in children) from sliders and a button.
ipywidgets and matplotlib are imported on first use, so importing this module
is cheap and changes nothing.  Everything a widget shows can be computed
without widgets (``race.run_race`` and ``race.plot``), which is what the
notebooks' checked outputs use; a widget's stored output is only its repr.

A run happens in the kernel while the button is pressed: the kernel is busy
meanwhile (the button says "Running..."), and ``run_race``'s timeout bounds
how long that can be.  Not handled: running in the background.
"""

from __future__ import annotations

import base64
import functools
import io

from . import race
from ._check import check_timeout

__all__ = ["race_explorer"]

PLOTTED_RUNS = 8  # the plot shows the last runs only, so its bars stay readable


def race_explorer(timeout: float = 60.0):
    """Return a widget to run the lost-update race with chosen settings and compare runs.

    The returned ipywidgets ``VBox`` keeps its controls and state as attributes,
    so code (and tests) can drive it: ``processes``, ``iterations``, ``work``
    (IntSliders), ``lock`` (Checkbox "use the Mutex"), ``run_button``,
    ``clear_button``, ``output`` (an Output area), ``results`` (the
    :class:`~ipclab.race.RaceResult` of each run), ``errors`` (the messages of
    failed runs; the output area shows the last one if the last run failed),
    and the methods ``run()`` and ``clear()`` that the buttons call.  Each run
    is limited to ``timeout`` seconds.

    Raises:
        TypeError, ValueError: timeout is not a number > 0.
    """
    timeout = check_timeout(timeout, allow_none=False)
    return _explorer_class()(timeout)


@functools.cache
def _explorer_class():
    import ipywidgets as w

    class RaceExplorer(w.VBox):
        """Sliders, a Run and a Clear button, and an output area with a line per run and a plot."""

        def __init__(self, timeout: float):
            wide = {"description_width": "initial"}
            self.timeout = timeout
            self.results: list[race.RaceResult] = []
            self.errors: list[str] = []
            self.processes = w.IntSlider(4, min=1, max=8, description="processes", style=wide)
            self.iterations = w.IntSlider(10_000, min=1_000, max=50_000, step=1_000,
                                          description="increments each", style=wide)
            self.work = w.IntSlider(0, min=0, max=1_000, step=10, style=wide,
                                    description="work inside the critical section")
            self.lock = w.Checkbox(False, description="use the Mutex", indent=False)
            self.run_button = w.Button(description="Run", button_style="primary",
                                       tooltip="run the race with these settings")
            self.clear_button = w.Button(description="Clear", tooltip="forget all runs")
            self.output = w.Output()
            self.run_button.on_click(lambda _: self.run())
            self.clear_button.on_click(lambda _: self.clear())
            super().__init__([
                w.HBox([self.processes, self.iterations]),
                w.HBox([self.work, self.lock]),
                w.HBox([self.run_button, self.clear_button]),
                self.output,
            ])

        def run(self) -> race.RaceResult | None:
            """Run the race with the current settings; show and return its result (None on
            failure, whose message is shown in the output area instead)."""
            self.run_button.disabled, self.run_button.description = True, "Running..."
            try:
                result = race.run_race(self.processes.value, self.iterations.value,
                                       lock=self.lock.value, work=self.work.value,
                                       timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - shown as a message, not a traceback
                result = None
                self.errors.append(f"the run failed: {type(e).__name__}: {e}")
            else:
                self.results.append(result)
            finally:
                self.run_button.disabled, self.run_button.description = False, "Run"
            self._show(result)
            return result

        def clear(self) -> None:
            """Forget every run and empty the output area."""
            self.results.clear()
            self.errors.clear()
            self.output.outputs = ()

        def _show(self, last) -> None:
            # Outputs are set directly (not with `with self.output:`), in one update, so the
            # area does not flicker and the widget works outside a running kernel too.
            lines = [f"run {i}: {r} in {r.seconds:.2f} s" for i, r in enumerate(self.results, 1)]
            outputs = [_stream("stdout", "\n".join(lines) + "\n")] if lines else []
            if last is None and self.errors:
                outputs.append(_stream("stderr", self.errors[-1] + "\n"))
            if self.results:
                outputs.append(_png(race.plot(self.results[-PLOTTED_RUNS:])))
            self.output.outputs = tuple(outputs)

    return RaceExplorer


def _stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def _png(fig) -> dict:
    """A display_data output holding the figure as a PNG (nbformat stores it in base64)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                     "text/plain": "<plot of the runs>"}}
