"""A JupyterLab server for the browser test: started apart from the user's Jupyter, always stopped.

``LabServer(workdir)`` runs ``python -m jupyterlab`` (this interpreter's, so the repo's venv)
headless on 127.0.0.1, port 0 (the server picks a free port and writes it to its info
file), with a random token, serving ``workdir/root``.  Its config, data, runtime,
settings, workspaces and IPython dirs are under ``workdir`` too, so the user's own
Jupyter is neither read nor changed.  ``stop()`` shuts the kernels down through the
REST API (each kernel gets a shutdown request and exits normally, so ipclab's registry
removes its SysV objects), then sends SIGTERM to the server, then SIGKILL to its process
group, reaps it, and kills any process that was below it and is still there (a kernel
runs in a session of its own).  Nothing here waits without a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ipclab import leaks

# JupyterLab user settings: every cell stays in the page (no windowing, so the test sees all
# outputs), and no toast about news or updates covers the notebook.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}
# No terminals (they would start shells), and no search for language servers (it runs
# `npm prefix --global`, which writes to ~/.npm).
SERVER_CONFIG = {"ServerApp": {"terminals_enabled": False},
                 "LanguageServerManager": {"autodetect": False}}


class LabServer:
    """``jupyter lab`` for one test; ``url(path)`` gives an address with the token."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.runtime = self.workdir / "runtime"
        self.log_path = self.workdir / "jupyter.log"
        self.token = secrets.token_hex(24)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until its REST API answers.

        Raises:
            RuntimeError: the server exited or did not answer within ``timeout`` s
                (the message ends with its log).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        settings = self.workdir / "settings"
        for name, values in SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        config = self.workdir / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG))
        env = dict(os.environ,
                   JUPYTER_CONFIG_DIR=str(config),
                   JUPYTER_DATA_DIR=str(self.workdir / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.runtime),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.workdir / "workspaces"),
                   IPYTHONDIR=str(self.workdir / "ipython"),
                   JUPYTER_PLATFORM_DIRS="1")
        env.pop("JUPYTER_PATH", None)  # kernels and extensions come from the venv only
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the test reads models
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")  # a file, not a pipe: a full pipe would block it
        # A session of its own, so stop() can signal the whole group.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log()}")
            if self.port is None:
                self.port = self._port_from_info_file()
            elif self._answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:g} s:\n{self.log()}")

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def api(self, path: str, method: str = "GET", timeout: float = 30.0):
        """Call the REST API; return the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(self.url(path), method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def log(self, tail: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-tail:]
        return "(no log)"

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Stop the kernels and the server; return the pids that had to be killed.

        Safe to call twice and after a failed start.
        """
        if self.proc is None:
            return []
        below = _descendants(self.proc.pid)  # the kernels (their own sessions) and their children
        if self.proc.poll() is None and self.port is not None:
            with contextlib.suppress(OSError, ValueError):
                for kernel in self.api("api/kernels", timeout=10):
                    self.api(f"api/kernels/{kernel['id']}", method="DELETE", timeout=timeout)
            below |= _descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()  # the server shuts down any kernel left, then exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):  # a helper the server left in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        killed = [pid for pid, start in sorted(below) if _kill_if_same(pid, start)]
        _wait_gone(below, 10.0)
        self._log.close()
        self.proc = None
        return killed

    def _port_from_info_file(self) -> int | None:
        info = self.runtime / f"jpserver-{self.proc.pid}.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return int(json.loads(info.read_text())["port"])
        return None

    def _answers(self) -> bool:
        try:
            self.api("api/status", timeout=5)
        except OSError:  # refused, reset, timed out, HTTP error: not ready yet
            return False
        return True


def _start_time(pid: int) -> str | None:
    """The start time of a live process (field 22 of /proc/PID/stat: a pid may be reused);
    None when there is no such process, or only its zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _descendants(pid: int) -> set[tuple[int, str]]:
    found, todo = set(), [pid]
    while todo:
        for child, _ in leaks.children(todo.pop()):
            start = _start_time(child)
            if start is not None:
                found.add((child, start))
                todo.append(child)
    return found


def _kill_if_same(pid: int, start: str) -> bool:
    if _start_time(pid) != start:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
        return True
    return False


def _wait_gone(processes, timeout: float) -> None:
    """Wait until none of the (pid, start) processes exists (init reaps the orphans)."""
    deadline = time.monotonic() + timeout
    while any(_start_time(p) == s for p, s in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
