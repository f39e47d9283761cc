"""The child's side of :mod:`ipclab.proc`, and what the parent makes of it.

Wraps ``dup2(2)`` and ``_exit(2)``.  The result crosses a pipe as a pickle:
the pipe is made by the parent just before ``fork`` and only the parent and
its own child (a copy of the same program, run by the same user) ever hold
it, so its bytes are as trusted as the parent's own memory.  Never unpickle
bytes from any other source.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sys
import traceback
from dataclasses import dataclass, field

_CRASH = 70  # exit code when the child could not even report (EX_SOFTWARE)


def describe_status(status: int) -> str:
    """Turn a raw ``waitpid`` status into words: "exited with code 3", "killed by SIGKILL (9)".

    Raises:
        TypeError: ``status`` is not an int.
    """
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int from os.waitpid, got {status!r}")
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"killed by {name} ({sig}){core}"
    if os.WIFSTOPPED(status):
        return f"stopped by {signal.Signals(os.WSTOPSIG(status)).name}"
    return f"unknown wait status {status:#x}"


@dataclass
class ChildResult:
    """What became of one child: its output, return value or error, and exit status."""

    label: str
    pid: int
    status: int | None
    stdout: str = ""
    stderr: str = ""
    value: object = None
    error: dict | None = None  # {"type", "message", "where", "traceback"} if it raised
    exited_via: str | None = None  # "return", "exit", "exception", or None: no report
    timed_out: bool = False
    timeout: float | None = None
    diagnosis: str = field(default="", repr=False)

    @property
    def returncode(self) -> int | None:
        """Exit code, or minus the signal number, like ``subprocess``; None if not reaped."""
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    @property
    def ok(self) -> bool:
        """True if the child returned normally (exit code 0, in time)."""
        return not self.timed_out and self.returncode == 0 and self.error is None

    @property
    def traceback(self) -> str:
        return (self.error or {}).get("traceback", "")

    def outcome(self) -> str:
        """One sentence: how this child ended."""
        if self.timed_out:
            text = f"timed out after {self.timeout:g} s and was killed"
            return text + (f": {self.diagnosis}" if self.diagnosis else "")
        if self.error:
            err = self.error
            return f"raised {err['type']}: {err['message']}" + (
                f" (in {err['where']})" if err.get("where") else "")
        if self.status is None:
            return "was not reaped"
        text = describe_status(self.status)
        if self.exited_via is None and os.WIFEXITED(self.status):
            text += " without returning (os._exit or exec in the function?)"
        return text

    def show(self) -> None:
        """Print the child's output, labelled, then how it ended if it failed."""
        for stream, text in ((sys.stdout, self.stdout), (sys.stderr, self.stderr)):
            for line in text.splitlines():
                print(f"[{self.label}] {line}", file=stream)
        if not self.ok:
            print(f"[{self.label}] {self.outcome()}", file=sys.stderr)

    def __repr__(self) -> str:
        if self.ok and self.exited_via == "return":
            return f"<{self.label}: exited with code 0, returned {self.value!r:.60}>"
        return f"<{self.label}: {self.outcome()}>"


def _error_info(exc: BaseException) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].name}(), line {frames[-1].lineno}" if frames else ""
    return {"type": type(exc).__name__, "message": str(exc), "where": where,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def _exit_code(code) -> int:
    """Mirror what the interpreter does with ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _text_stream(fd: int):
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def child_main(fn, args, kwargs, fds, new_group: bool):
    """Run ``fn`` in the freshly forked child and end with ``os._exit``; never returns."""
    out_w, err_w, res_w = fds
    code = _CRASH
    try:
        if new_group:
            os.setpgid(0, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd in (out_w, err_w, null):
            os.close(fd)
        # New streams over fds 1 and 2: the kernel's own streams are never touched.
        sys.stdout, sys.stderr = _text_stream(1), _text_stream(2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        try:
            payload = ("return", fn(*args, **kwargs), None)
            code = 0
        except SystemExit as e:
            code = _exit_code(e.code)
            payload = ("exit", None, None)
        except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
            code = 1
            payload = ("exception", None, _error_info(e))
        try:
            data = pickle.dumps(payload)
        except Exception as e:  # noqa: BLE001
            code = 1
            data = pickle.dumps(("exception", None, {
                "type": type(e).__name__, "where": "",
                "message": f"the return value cannot be sent to the parent: {e}",
                "traceback": ""}))
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(res_w, view):]
    except BaseException:  # noqa: BLE001
        with contextlib.suppress(Exception):
            os.write(2, b"ipclab: the child could not report its result\n")
    finally:
        os._exit(code)


def decode_payload(data: bytes):
    """Return (how it ended, value, error info) from the child's report; empty if none."""
    if not data:
        return None, None, None
    try:
        kind, value, error = pickle.loads(data)  # trusted: our own child (module docstring)
    except Exception as e:  # noqa: BLE001 - a truncated report, e.g. killed mid-write
        return None, None, {"type": type(e).__name__, "where": "", "traceback": "",
                            "message": "the child's report was cut short"}
    return kind, value, error
