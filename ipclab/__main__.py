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

    p = sub.add_parser("serve", help="run the seeds' store-and-forward line server")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    p.add_argument("--max-line", type=int, default=65536, help="longest line accepted, bytes")
    p.add_argument("--max-clients", type=int, default=256, help="clients served at once")
    p.add_argument("--idle-timeout", type=float, default=300.0,
                   help="close a client silent this many seconds")
    p.add_argument("--stop-on-stdin", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("client", help="talk to a buffer server: print greeting and replies")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="server port")
    p.add_argument("--send", action="append", metavar="TEXT",
                   help="a line to store (repeatable; none: only read the greeting)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer")

    from .bench.command import add_arguments as bench_arguments

    bench_arguments(sub.add_parser("bench", help="measure IPC latency and throughput: "
                                                 "ipclab, bare Python and C"))

    p = sub.add_parser("grade", help="grade lab submissions: run each notebook in a limited "
                                     "kernel, then the lab's visible and hidden checks")
    p.add_argument("--lab", required=True, help="the lab, as its notebook: lab03_mutex, ...")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="a student's notebook, or a folder of them")
    p.add_argument("--out", help="write one row per submission to this CSV (and its .json)")
    p.add_argument("--json", help="write the rows with every check's detail to this JSON file")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds a notebook's cells may take in all (default 300)")
    p.add_argument("--cell-timeout", type=float, default=60.0,
                   help="seconds one cell may take before it is interrupted (default 60)")
    p.add_argument("--max-processes", type=int, default=256,
                   help="processes and threads a submission may start (default 256)")
    p.add_argument("--user", help="as root: run submissions as this user (default nobody)")

    p = sub.add_parser("nbgrader", help="export solutions/ as nbgrader source assignments")
    p.add_argument("--out", required=True, metavar="COURSE_DIR",
                   help="nbgrader course folder; notebooks go to COURSE_DIR/source/LAB/")
    p.add_argument("--solutions", default="solutions", help="source folder")
    p.add_argument("--lab", action="append", help="only this lab (repeatable; default: all)")

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
    if args.command in ("serve", "client"):
        from . import bufclient

        return bufclient.serve_cli(args) if args.command == "serve" else bufclient.client_cli(args)
    if args.command == "nbgrader":
        from .labs import nbgrader

        return nbgrader.cli(args)
    if args.command == "grade":
        from . import grading

        return grading.cli(args)
    if args.command == "bench":
        from . import bench

        return bench.cli(args)
    if args.command == "labs":
        from .labs import generate

        return generate.cli(args)
    raise AssertionError(args.command)  # argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
