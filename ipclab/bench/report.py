"""The benchmark's results: a table with ratios and targets, JSON, and a progress bar.

No system call beyond writing to the given streams and files.  Ratios are
*cost* ratios, so that 1.10 always means "10% slower": round-trip times
divided (ipclab / bare), throughputs the other way round (bare / ipclab).
Targets are reported with ✔/✘, never asserted: a slow machine is not a bug.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

MIB = 1 << 20


def size_text(n: int) -> str:
    """64 -> "64 B", 65536 -> "64 KiB", 1048576 -> "1 MiB"."""
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _figure_text(f) -> str:
    if f is None:
        return ""
    if f.value is None:
        return "failed"
    return f"{_num(f.value)} ±{_num((f.high - f.low) / 2)}"


@dataclass
class Row:
    """The figures of one mechanism, implementation and message size (None: not measured)."""

    mechanism: str
    impl: str
    size: int
    rtt: object = None  # runner.Figure: µs per round trip
    tput: object = None  # runner.Figure: MB/s one way

    def to_dict(self) -> dict:
        d = {"mechanism": self.mechanism, "impl": self.impl, "size": self.size,
             "rtt_us": None, "MBps": None}
        for key, f in (("rtt_us", self.rtt), ("MBps", self.tput)):
            if f is None:
                continue
            if f.value is None:
                d[f"{key}_error"] = f.error
                continue
            d.update({key: f.value, f"{key}_min": f.low, f"{key}_max": f.high,
                      f"{key}_iterations": f.iterations, f"{key}_samples": f.samples})
        return d


@dataclass
class Report:
    """What :func:`ipclab.bench.run` measured; ``table()`` to read, ``to_json()`` to keep."""

    rows: list = field(default_factory=list)
    memcpy: object = None  # runner.Figure, MB/s copying a 1 MiB buffer
    pinned: bool = False
    cpu: int | None = None
    quick: bool = False
    repeats: int = 0
    notes: list = field(default_factory=list)  # why some rows are absent
    c_timed: dict = field(default_factory=dict)  # mechanism -> Figure: 64 B rtt, pingpong --timed
    elapsed: float = 0.0

    def row(self, mechanism: str, impl: str, size: int) -> Row | None:
        return next((r for r in self.rows if (r.mechanism, r.impl, r.size) ==
                     (mechanism, impl, size)), None)

    def failures(self) -> list[str]:
        """One line per figure that could not be measured (timed out, crashed)."""
        return [f"{r.mechanism} {r.impl} {size_text(r.size)} {mode}: {f.error}"
                for r in self.rows for mode, f in (("rtt", r.rtt), ("tput", r.tput))
                if f is not None and f.value is None] + [
            f"{m} c --timed 64 B rtt: {f.error}" for m, f in self.c_timed.items()
            if f.value is None]

    def ratio(self, row: Row, mode: str, against: str) -> float | None:
        """Cost ratio of ``row`` against impl ``against`` at the same size (None: no pair)."""
        other = self.row(row.mechanism, against, row.size)
        mine, theirs = (getattr(x, mode, None) if x else None for x in (row, other))
        if mine is None or theirs is None or mine.value is None or theirs.value is None:
            return None
        return mine.value / theirs.value if mode == "rtt" else theirs.value / mine.value

    def to_dict(self) -> dict:
        return {
            "memcpy_MBps": self.memcpy.value if self.memcpy else None,
            "memcpy_size": MIB,
            "memcpy_MBps_min": self.memcpy.low if self.memcpy else None,
            "memcpy_MBps_max": self.memcpy.high if self.memcpy else None,
            "pinned": self.pinned,
            "cpu": self.cpu,
            "quick": self.quick,
            "repeats": self.repeats,
            "units": {"rtt_us": "microseconds per round trip (median of the repeats)",
                      "MBps": "10^6 bytes per second one way (median of the repeats)",
                      "c_timed_rtt_us": "the C reference's 64 B round trip with every wait "
                                        "bounded as ipclab bounds it (pingpong --timed)"},
            "results": [r.to_dict() for r in self.rows],
            "c_timed_rtt_us": {m: f.value for m, f in self.c_timed.items()
                               if f.value is not None},
            "not_measured": list(self.notes),
            "failures": self.failures(),
            "elapsed_s": round(self.elapsed, 3),
        }

    def to_json(self, path=None) -> str:
        """The report as JSON text; also written to ``path`` if given.

        Raises:
            OSError: ``path`` cannot be written.
        """
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def table(self) -> str:
        """The results as a text table, then the targets, what was not measured and why."""
        from .targets import summary, table_lines

        return "\n".join(table_lines(self) + summary(self)) + "\n"


class Progress:
    """A one-line text progress bar on ``stream`` (default stderr), redrawn with ``\\r``.

    ``enabled=None`` shows it only when the stream is a terminal.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream=None, width: int = 28):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled, self.total, self.width, self.done = enabled, max(total, 1), width, 0

    def step(self, label: str) -> None:
        """Say what is being measured now (call before each item)."""
        if self.enabled:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label:<40.40}")
            self.stream.flush()
        self.done += 1

    def close(self) -> None:
        """Clear the line."""
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self.stream.flush()

