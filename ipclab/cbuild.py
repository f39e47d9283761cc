"""Compile the course's small C programs, once, into a private per-user cache.

Runs the system C compiler (``cc``, ``gcc`` or ``clang``, found on PATH; ``$CC``
first if set) through fork(2)/execve(2) (``subprocess.Popen``, with a timeout,
in its own process group so a timeout kills the compiler's helpers too), and
uses mkdir(2), chmod(2), rename(2) and unlink(2) for the cache.  A program is
built into ``$XDG_CACHE_HOME/ipclab/bin`` (default ``~/.cache/ipclab/bin``;
mode 0700, refused if another user could write to it) under a name that
carries a hash of its source: an unchanged source is reused, an edited one is
rebuilt and the build of the earlier version deleted.  The compiler writes to
a temporary name that is renamed into place, so two builds at once never see
half a program.  Not handled: compiler flags in ``$CC``, and cross compiling.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from ._check import check_timeout
from .errors import IPCLabError

COMPILERS = ("cc", "gcc", "clang")
FLAGS = ("-O2", "-Wall")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_BUILT = re.compile(r"[0-9a-f]{16}")  # the source hash that ends a built program's name


class BuildError(IPCLabError):
    """The C compiler failed, timed out, or the cache folder is not safe to use."""


def source(name: str) -> Path:
    """Return the path of a C program shipped with ipclab (``ipclab/c/<name>``).

    Raises:
        TypeError: name is not a str.
        FileNotFoundError: ipclab ships no such file.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'shm_counter.c', got {name!r}")
    folder = Path(__file__).resolve().parent / "c"
    path = folder / name
    if path.parent != folder or not path.is_file():
        shipped = sorted(p.name for p in folder.glob("*.c"))
        raise FileNotFoundError(f"ipclab ships no C program {name!r}; it has {shipped}")
    return path


def compiler() -> str | None:
    """Return the path of the C compiler to use ($CC, then cc, gcc, clang), or None."""
    wanted = os.environ.get("CC", "").strip()
    for name in ((wanted,) if wanted else ()) + COMPILERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def cache_dir() -> Path:
    """Return this user's build folder, made mode 0700 if missing.

    Raises:
        BuildError: it exists but belongs to another user or others may write to it.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "ipclab" / "bin"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BuildError(f"the build folder {folder} must belong to you and be writable "
                         f"only by you (mode 0700), got owner uid {st.st_uid} and mode "
                         f"{stat.S_IMODE(st.st_mode):#o}")
    return folder


def build(source_path, name: str | None = None, *, timeout: float = 60.0) -> Path | None:
    """Compile one C file into the cache and return the program's path; None if no compiler.

    ``name`` defaults to the file's stem.  A program already built from the
    same source bytes is returned without compiling again.

    Raises:
        TypeError, ValueError: a bad path, name or timeout.
        FileNotFoundError: the source does not exist.
        BuildError: the compiler failed (its messages are included) or ran
            longer than ``timeout`` seconds; or the cache folder is unsafe.
    """
    if not isinstance(source_path, (str, os.PathLike)):
        raise TypeError(f"source_path must be a str or path of a .c file, got {source_path!r}")
    path = Path(source_path)
    if path.suffix != ".c":
        raise ValueError(f"source_path must name a .c file, got {str(path)!r}")
    name = path.stem if name is None else name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name must be 1-64 letters, digits, '_', '-' or '.', not starting "
                         f"with '.' or '-', got {name!r}")
    timeout = check_timeout(timeout, allow_none=False)
    try:
        code = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no C source file at {str(path)!r}") from None
    cc = compiler()
    if cc is None:
        return None
    target = cache_dir() / f"{name}-{hashlib.sha256(code).hexdigest()[:16]}"
    if os.access(target, os.X_OK):
        return target
    fd, partial = tempfile.mkstemp(prefix=f".{name}-", dir=target.parent)
    os.close(fd)
    try:
        returncode, messages = _compile([cc, *FLAGS, "-o", partial, str(path)], timeout)
        if returncode is None:
            raise BuildError(f"{cc} did not finish compiling {path.name} within "
                             f"{timeout:g} s; it was killed")
        if returncode != 0:
            raise BuildError(f"{cc} could not compile {path} (exit code {returncode}):\n"
                             f"{messages.strip()}")
        os.chmod(partial, 0o700)
        os.replace(partial, target)
        for old in target.parent.glob(f"{name}-*"):  # builds of earlier versions of the source
            if old != target and _BUILT.fullmatch(old.name[len(name) + 1:]):
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _compile(command: list[str], timeout: float) -> tuple[int | None, str]:
    """Run the compiler in its own process group; return (exit code or None if killed, output).

    The compiler driver starts helpers (cc1, as, ld); on a timeout the whole
    group is killed, so none of them is left running.
    """
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as run:
        try:
            output, _ = run.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
            return None, ""
    return run.returncode, output
