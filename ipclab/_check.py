"""Argument checks shared by every ipclab module.

Each check raises before any system call, naming the argument, what is
allowed, and the value received, so a student reads what to change.
"""

from __future__ import annotations

import math
import numbers


def check_timeout(timeout, name: str = "timeout", *, allow_none: bool = True):
    """Return ``timeout`` as a float (or None).

    Raises:
        TypeError: not a real number (bool is refused too).
        ValueError: not finite, or <= 0.
    """
    if timeout is None and allow_none:
        return None
    allowed = "a number > 0" + (" or None" if allow_none else "")
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{name} must be {allowed}, got {timeout!r}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be {allowed}, got {timeout!r}")
    return value


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an int within [low, high].

    Raises:
        TypeError: not an int (bool is refused).
        ValueError: outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            rng = f">= {low}"
        elif low is None:
            rng = f"<= {high}"
        else:
            rng = f"between {low} and {high}"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return value


def check_fd(fd, name: str = "fd") -> int:
    """Return ``fd`` if it is a non-negative int (an open descriptor is not checked).

    Raises:
        TypeError, ValueError: as :func:`check_int`.
    """
    return check_int(fd, name, low=0)


def check_callable(fn, name: str = "fn"):
    """Return ``fn`` if it can be called.

    Raises:
        TypeError: it cannot.
    """
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {fn!r}")
    return fn


def check_bytes(data, name: str = "data") -> bytes:
    """Return ``data`` as bytes; str is encoded UTF-8.

    Raises:
        TypeError: neither bytes-like nor str.
    """
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{name} must be bytes or str, got {type(data).__name__} {data!r:.60}")
