"""The ipclab command line: ``python -m ipclab COMMAND`` (also installed as ``ipclab``).

Each command lives in the module of its mechanism; this file only parses
arguments and hands them on.
"""

from __future__ import annotations

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipclab", description="Helpers for the ipclab course on Unix IPC."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("status", help="list this user's SysV IPC objects (like ipcs)")
    p.add_argument("--all-users", action="store_true", help="show every user's objects")

    p = sub.add_parser("clean", help="remove this user's SysV IPC objects (like ipcrm)")
    p.add_argument("-n", "--dry-run", action="store_true", help="only say what would go")
    p.add_argument("--kind", choices=["shm", "sem", "msg"], action="append",
                   help="only objects of this kind (repeatable)")
    p.add_argument("--key", type=lambda s: int(s, 0), action="append",
                   help="only the object with this key (0x... or decimal; repeatable)")

    p = sub.add_parser("key", help="print the per-user key ipclab derives from NAME")
    p.add_argument("name")

    p = sub.add_parser("labs", help="generate labs/ from solutions/")
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 if labs/ differs from what would be generated")
    p.add_argument("--execute", action="store_true",
                   help="run the generated labs and store their outputs")
    p.add_argument("--solutions", default="solutions", help="source folder")
    p.add_argument("--labs", default="labs", help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command in ("status", "clean", "key"):
        from . import sysvinfo

        return sysvinfo.cli(args)
    if args.command == "labs":
        from .labs import generate

        return generate.cli(args)
    raise AssertionError(args.command)  # argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
