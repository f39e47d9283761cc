"""What the grader checks in each lab: its parts, the names each needs, visible and hidden checks.

A lab's part is what one check cell of the student's notebook checks, e.g.
``lab03.check_bounded_buffer(BoundedBuffer)``.  The grader runs the same
checks the student sees, plus hidden ones the student version never runs
(edge cases and heavier loads), from :mod:`ipclab.labs.hidden`: one module per
lab (``hidden/lab03.py``) with a ``PARTS`` list of :class:`Part`.  No system
call here; the checks themselves run in forked children
(:mod:`ipclab.labs.scorecard`).

A name the notebook does not define (its cell deleted, or failed) is replaced
by :func:`missing`: a class that fails every check it is used in, saying so,
so every submission of a lab gets the same checks, columns and maximum.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass

from .._check import check_callable
from ..labs.scorecard import Check

#: The labs the grader knows, named as their notebooks (labs/<name>.ipynb).
LABS = ("lab01_pipes", "lab02_shared_memory", "lab03_mutex", "lab04_message_queues",
        "lab05_tcp", "lab06_socketpair")
#: What starts the name of a check the student's notebook never runs.
HIDDEN = "hidden: "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Part:
    """One part of a lab: ``run(*objects)`` runs its visible and hidden checks on them.

    ``title`` is the scorecard's title (as the lab's ``check_*`` prints it);
    ``needs`` the names the notebook must define, passed to ``run`` in that
    order; ``run`` returns a :class:`ipclab.labs.scorecard.Score` and prints
    nothing (``show=False``).
    """

    title: str
    needs: tuple
    run: object

    def __post_init__(self):
        if not isinstance(self.title, str) or not self.title:
            raise ValueError(f"title must be a non-empty str, got {self.title!r}")
        if (not isinstance(self.needs, tuple) or not self.needs
                or not all(isinstance(n, str) and _NAME.match(n) for n in self.needs)):
            raise ValueError(f"needs must be a non-empty tuple of Python names, got {self.needs!r}")
        check_callable(self.run, "run")


def hide(checks) -> list:
    """The same checks, each name starting with :data:`HIDDEN`.

    Raises:
        TypeError: ``checks`` holds something that is not a Check.
    """
    checks = list(checks)
    for c in checks:
        if not isinstance(c, Check):
            raise TypeError(f"checks must be Check objects, got {c!r}")
    return [dataclasses.replace(c, name=HIDDEN + c.name) for c in checks]


def check_lab(lab) -> str:
    """Return ``lab`` if the grader knows it.

    Raises:
        ValueError: it does not; the message lists the labs it knows.
    """
    if lab not in LABS:
        raise ValueError(f"unknown lab {lab!r}: choose one of {', '.join(LABS)}")
    return lab


def parts(lab: str) -> list:
    """The :class:`Part` list of ``lab`` (one of :data:`LABS`).

    Raises:
        ValueError: unknown lab.
    """
    module = importlib.import_module(f"ipclab.labs.hidden.{check_lab(lab)[:5]}")
    return list(module.PARTS)


class _Missing(type):
    """The metaclass of :func:`missing`'s stand-ins: their repr names what is missing."""

    def __repr__(cls):
        return f"<{cls.__name__} is not defined>"


def missing(name: str, why: str | None = None) -> type:
    """A stand-in for ``name`` that the notebook did not define (or that the checks refused).

    It is a class (so checks that want a class or a function accept it) whose
    every call raises AssertionError saying that ``name`` is not defined, or
    ``why``: each check using it fails with that reason.

    Raises:
        ValueError: ``name`` is not a Python name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a Python name, got {name!r}")
    if why is None:
        why = f"{name} is not defined: its cell is missing or failed (see the notebook's errors)"
    elif not isinstance(why, str):
        raise TypeError(f"why must be a str, got {why!r}")

    def fail(*args, **kwargs):
        raise AssertionError(why)

    return _Missing(name, (), {"__new__": fail, "__doc__": why})
