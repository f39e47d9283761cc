"""The ``bench`` command: arguments, the run, the table on stdout, JSON to a file.

Wraps nothing but argparse and writing the report.  The progress bar goes to
stderr (only on a terminal, unless --no-progress); the exit code is 0, or 1
when some figure could not be measured (a mechanism timed out or crashed).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

_SIZE = re.compile(r"(\d+)\s*(b|k|kib|m|mib)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Turn "64", "64K", "64KiB", "1M" or "1MiB" into bytes (1 to 1 MiB).

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    from . import MAX_SIZE

    match = _SIZE.fullmatch(text.strip())
    value = None
    if match:
        unit = (match.group(2) or "b").lower()[0]
        value = int(match.group(1)) * {"b": 1, "k": 1024, "m": 1 << 20}[unit]
    if value is None or not 1 <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"size must be between 1 and {MAX_SIZE} bytes "
                                         f"(64, 64K, 1M, ...), got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the bench options to ``p`` (also used by ``python -m ipclab bench``)."""
    from . import DEFAULT_TIMEOUT, IMPLS, MECHANISMS

    p.add_argument("--quick", action="store_true",
                   help="sizes 64 B, 64 KiB, 1 MiB and 3 short repeats (under 30 s)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--mechanism", action="append", choices=MECHANISMS, metavar="NAME",
                   help=f"only this mechanism (repeatable): {', '.join(MECHANISMS)}")
    p.add_argument("--impl", action="append", choices=IMPLS,
                   help="only this implementation (repeatable)")
    p.add_argument("--size", action="append", type=parse_size, metavar="BYTES",
                   help="only this message size, 1 B to 1 MiB, e.g. 64, 64K, 1M (repeatable)")
    p.add_argument("--repeats", type=int, help="repeats per figure (default 7, --quick 3)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds per figure before its processes are killed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog="python -m ipclab bench",
        description="Measure IPC round trips and throughput: ipclab, bare Python and C."))


def _json_problem(path) -> str | None:
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--json must name a file, got the folder {path!r}"
    if not os.path.isdir(folder):
        return f"--json: the folder {folder!r} does not exist"
    return None


def main(args=None) -> int:
    """Run the command; ``args``: a Namespace from any parser with these options, or a list.

    Raises:
        SystemExit: (2) bad arguments, when ``args`` is a list (argparse's way).
    """
    parser = None
    if args is None or isinstance(args, (list, tuple)):
        parser = build_parser()
        args = parser.parse_args(args)
    problem = _json_problem(getattr(args, "json", None))
    if problem is not None:
        if parser is not None:
            parser.error(problem)
        print(f"ipclab bench: error: {problem}", file=sys.stderr)
        return 2
    from . import DEFAULT_TIMEOUT, run

    try:
        report = run(quick=getattr(args, "quick", False),
                     mechanisms=getattr(args, "mechanism", None),
                     sizes=getattr(args, "size", None),
                     progress=False if getattr(args, "no_progress", False) else None,
                     impls=getattr(args, "impl", None), repeats=getattr(args, "repeats", None),
                     timeout=getattr(args, "timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError) as e:
        print(f"ipclab bench: error: {e}", file=sys.stderr)
        return 2
    print(report.table(), end="")
    if getattr(args, "json", None):
        report.to_json(args.json)
        print(f"wrote {args.json}")
    return 1 if report.failures() else 0
