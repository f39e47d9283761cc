"""Run one submission: its code cells in a fresh, limited kernel, then the lab's checks.

Each attempt starts a kernel through :mod:`ipclab.grading.sandbox` (process,
core and file-size limits, a pids cgroup where one can be made; as root, the
unprivileged ``--user`` when it can run Python) in a new
temporary directory, runs the student's code cells one by one with nbclient
(each cell interrupted with SIGINT after ``cell_timeout``; the cells together
stopped after ``timeout``), stops what the cells left running
(:mod:`ipclab.grading.strays`), then runs the grading cell
(:mod:`ipclab.grading.incell`).  A cell that ends the kernel (os._exit, a
crash) or cannot be interrupted costs that cell: the next attempt, in a fresh
kernel, runs the notebook without it.  After the last attempt every process
of the submission is killed and the SysV objects it made are removed.

The student's own check cells (``lab03.check_barrier(Barrier)``) are not run:
the grading cell runs the same checks, and hidden ones.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import nbformat
from jupyter_client import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets import List, Unicode

from . import cgroup, strays

#: From the most to the least serious; a submission's status is the most serious it earned.
STATUSES = ("invalid", "crashed", "limit", "timeout", "error", "leftover", "ok")
ATTEMPTS = 3
_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass(frozen=True)
class Options:
    """How to grade: the lab, time limits (seconds), the process limit, the user to run as."""

    lab: str
    timeout: float = 300.0
    cell_timeout: float = 60.0
    max_processes: int = 256
    user: str | None = None
    check_time: float = 900.0


@dataclass
class Outcome:
    """What grading one submission gave: per-part check lines, and what happened."""

    submission: str
    parts: list = field(default_factory=list)  # [{"title", "lines": [[name, pts, got, why]]}]
    events: list = field(default_factory=list)  # [(status, reason)]

    def note(self, status: str, reason: str) -> None:
        if (status, reason) not in self.events:
            self.events.append((status, reason))

    @property
    def status(self) -> str:
        return min((s for s, _ in self.events), key=STATUSES.index, default="ok")

    @property
    def reason(self) -> str:
        return "; ".join(r for _, r in self.events)


class _SandboxKernel(AsyncKernelManager):
    """A kernel manager that starts the kernel through :mod:`ipclab.grading.sandbox`."""

    sandbox = List(Unicode())

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        return [sys.executable, "-m", "ipclab.grading.sandbox", *self.sandbox, "--", *cmd]


def is_check_cell(source: str) -> bool:
    """True if every statement of ``source`` is a call ``labNN.check_...(...)``."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
        and isinstance(s.value.func, ast.Attribute) and s.value.func.attr.startswith("check_")
        and isinstance(s.value.func.value, ast.Name) and s.value.func.value.id.startswith("lab")
        for s in body)


def _cell_error(cell) -> str:
    """``ename: evalue`` of a cell's first error output, or ""."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = re.sub(r"\(\S+\.py, line (\d+)\)", r"(line \1)", out.get("evalue", ""))
            value = (value.splitlines() or [""])[0]
            return f"{out.get('ename', 'Error')}: {value}"[:200]
    return ""


def _commands(killed) -> str:
    names = sorted({cmd for _, cmd in killed})
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


class Submission:
    """Grade one notebook; :meth:`grade` returns its :class:`Outcome`."""

    def __init__(self, path: str, options: Options, grading_cell):
        self.path, self.options, self.grading_cell = path, options, grading_cell
        self.outcome = Outcome(path)
        self.user = pwd.getpwnam(options.user) if options.user else None
        self.uid = self.user.pw_uid if self.user else os.getuid()

    def grade(self) -> Outcome:
        try:
            nb = nbformat.read(self.path, as_version=4)
            cells = [c.source for c in nb.cells if c.cell_type == "code"]
        except Exception as e:  # noqa: BLE001 - any unreadable file is a graded outcome
            self.outcome.note("invalid", f"not a notebook this grader can read ({type(e).__name__}:"
                                         f" {str(e)[:120]})")
            return self.outcome
        before = strays.sysv_snapshot(self.uid)
        skip: set = set()
        try:
            for _ in range(ATTEMPTS):
                crashed = asyncio.run(self._attempt(cells, skip))
                if crashed is None:
                    break
                skip.add(crashed)
            else:
                self.outcome.note("crashed", f"the kernel ended {ATTEMPTS} times: not graded")
        finally:
            killed = strays.stop()
            if killed:
                self.outcome.note("leftover", f"{len(killed)} process(es) still running at the end "
                                              f"were killed ({_commands(killed)})")
            objects = strays.remove_new_sysv(before, self.uid)
            if objects:
                self.outcome.note("leftover", f"left {len(objects)} SysV object(s) behind "
                                              f"({', '.join(sorted(set(objects)))}): removed")
        return self.outcome

    # -- one attempt in a fresh kernel ---------------------------------------------------------

    def _workdir(self) -> str:
        work = tempfile.mkdtemp(prefix="ipclab-grade-")
        for sub in ("tmp", ".ipython", ".mpl"):
            os.mkdir(os.path.join(work, sub), 0o700)
        if self.user:
            for d in (work, *(os.path.join(work, s) for s in ("tmp", ".ipython", ".mpl"))):
                os.chown(d, self.user.pw_uid, self.user.pw_gid)
        return work

    def _env(self, work: str) -> dict:
        env = {k: os.environ[k] for k in _ENV if k in os.environ}
        env.update(HOME=work, TMPDIR=os.path.join(work, "tmp"), PYTHONDONTWRITEBYTECODE="1",
                   IPYTHONDIR=os.path.join(work, ".ipython"),
                   MPLCONFIGDIR=os.path.join(work, ".mpl"))
        return env

    async def _attempt(self, cells, skip):
        """Run the notebook once; return the number of the cell that ended the kernel, or None."""
        work = self._workdir()
        group = cgroup.create(self.options.max_processes)
        try:
            return await self._run(cells, skip, work, group)
        finally:
            cgroup.remove(group)
            shutil.rmtree(work, ignore_errors=True)

    async def _run(self, cells, skip, work, group):
        opt, outcome = self.options, self.outcome
        result_path = os.path.join(work, f"result-{secrets.token_hex(8)}.json")
        connection = os.path.join(work, "kernel.json")
        sandbox = ["--nproc", str(opt.max_processes), "--connection-file", connection]
        if self.user:
            sandbox += ["--user", self.user.pw_name]
        if group:
            sandbox += ["--cgroup", group]
        km = _SandboxKernel(kernel_name="python3", connection_file=connection, sandbox=sandbox)
        numbered = [(n, src) for n, src in enumerate(cells, 1) if n not in skip
                    and not is_check_cell(src)]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for _, src in numbered]
                                      + [nbformat.v4.new_code_cell(self.grading_cell(result_path))])
        grading = nb.cells[-1]
        client = NotebookClient(nb, km=km, interrupt_on_timeout=True, allow_errors=True,
                                startup_timeout=60, record_timing=False,
                                timeout_func=lambda cell: int(opt.check_time if cell is grading
                                                              else opt.cell_timeout))
        for n in sorted(skip):
            outcome.note("crashed", f"code cell {n} ended the kernel or could not be stopped: "
                                    f"graded without it")
        deadline = time.monotonic() + opt.timeout
        async with client.async_setup_kernel(cwd=work, env=self._env(work), cleanup_kc=True,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            kernel, refusals = km.provisioner.process.pid, 0
            for index, (number, _) in enumerate(numbered):
                if time.monotonic() > deadline:
                    outcome.note("timeout", f"the cells took more than {opt.timeout:g} s in all: "
                                            f"code cell {number} and later were not run")
                    break
                cell = nb.cells[index]
                started = time.monotonic()
                try:
                    await asyncio.wait_for(client.async_execute_cell(cell, index),
                                           opt.cell_timeout + 10)
                except (DeadKernelError, asyncio.TimeoutError):
                    return number
                error = _cell_error(cell)
                if time.monotonic() - started >= opt.cell_timeout:
                    outcome.note("timeout", f"code cell {number} ran longer than "
                                            f"{opt.cell_timeout:g} s and was interrupted")
                elif error:
                    outcome.note("error", f"code cell {number} raised {error}")
                refused = cgroup.refusals(group)
                if (refused > refusals or "Resource temporarily unavailable" in error
                        or len(strays.strays({kernel})) >= opt.max_processes // 2):
                    killed = strays.stop({kernel})
                    outcome.note("limit", f"code cell {number} tried to start more processes than "
                                          f"the limit ({opt.max_processes}, a fork bomb?): "
                                          f"stopped there; {len(killed)} left running were killed")
                refusals = refused
            killed = strays.stop({kernel})
            if killed:
                outcome.note("leftover", f"the notebook left {len(killed)} process(es) running "
                                         f"({_commands(killed)}): they were killed")
            try:
                await asyncio.wait_for(client.async_execute_cell(nb.cells[-1], len(numbered)),
                                       opt.check_time)
            except (DeadKernelError, asyncio.TimeoutError) as e:
                outcome.note("crashed", "the checks could not finish: "
                             + ("the kernel died" if isinstance(e, DeadKernelError)
                                else f"they took more than {opt.check_time:g} s"))
        self._read_result(result_path, nb.cells[-1])
        return None

    def _read_result(self, result_path, cell) -> None:
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            error = _cell_error(cell)
            self.outcome.note("crashed", "the checks did not run" + (f": {error}" if error else ""))
            return
        self.outcome.parts = result["parts"]
        for name in result["missing"]:
            self.outcome.note("error", f"{name} is not defined (its cell was deleted or failed)")
