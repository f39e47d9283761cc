"""The loops A and B run: round trips, one-way streams, warm-up and timing.

No system call of its own: each loop calls an :class:`.mechanisms.Endpoint`'s
``send``/``recv`` as tightly as Python allows (one Python call per message
and side), and times whole batches with ``time.perf_counter_ns``.  With
``verify`` every message carries its index (:func:`.mechanisms.payload`) and
the receiver compares it byte for byte; verified runs are for tests, not timing.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from .mechanisms import ACK, ACK_ME, DATA, STOP, payload

MAX_ITERATIONS = 1_000_000


class Plan(NamedTuple):
    """How long to measure: ``repeats`` batches of about ``batch_s`` seconds each, after a
    warm-up of about ``warm_s``; or exactly ``iterations`` per batch (for tests)."""

    repeats: int = 5
    batch_s: float = 0.02
    warm_s: float = 0.01
    iterations: int | None = None


class PayloadError(AssertionError):
    """A verified run received something other than what was sent."""


def _check(got, index: int, expected: bytes) -> None:
    if got != expected:
        got = bytes(got)
        pairs = enumerate(zip(got, expected, strict=False))
        where = next((i for i, (a, b) in pairs if a != b), min(len(got), len(expected)))
        raise PayloadError(f"message {index} arrived changed: {len(got)} bytes, expected "
                           f"{len(expected)}, first difference at byte {where}")


def echo(end, size: int, verify: bool) -> None:
    """B's side of the round trips: send back each message until STOP."""
    send, recv, index = end.send, end.recv, 0
    while True:
        m = recv(size)
        if m[0] == STOP:
            return
        if verify:
            _check(m, index, payload(size, index))
            index += 1
        send(m)


def drain(end, size: int, verify: bool) -> None:
    """B's side of the one-way stream: take messages, answer ACK_ME with ACK, end at STOP."""
    send, recv, index = end.send, end.recv, 0
    while True:
        m = recv(size)
        flag = m[0]
        if verify and flag != STOP:
            _check(m, index, payload(size, index, flag))
            index += 1
        if flag == DATA:
            continue
        if flag != ACK_ME:
            return
        send(ACK)


def rtt(end, size: int, plan: Plan, verify: bool) -> tuple[list[float], int]:
    """A's round trips: return (µs per round trip of each batch, iterations per batch)."""
    send, recv = end.send, end.recv
    msg, count = payload(size, 0), [0]

    def step(k):
        if verify:
            for _ in range(k):
                m = payload(size, count[0])
                send(m)
                _check(recv(size), count[0], m)
                count[0] += 1
        else:
            for _ in range(k):
                send(msg)
                recv(size)
    n = calibrate(step, plan)
    samples = [ns / n / 1e3 for ns in timed(step, n, plan.repeats)]
    send(payload(size, 0, STOP))
    return samples, n


def tput(end, size: int, plan: Plan, verify: bool) -> tuple[list[float], int]:
    """A's one-way stream: return (MB/s of each batch, messages per batch).

    A batch is k messages, the last marked ACK_ME, and ends when B's ACK arrives.
    """
    send, recv = end.send, end.recv
    msg, last, count = payload(size, 0), payload(size, 0, ACK_ME), [0]

    def step(k):
        if verify:
            for i in range(k):
                send(payload(size, count[0], ACK_ME if i == k - 1 else DATA))
                count[0] += 1
        else:
            for _ in range(k - 1):
                send(msg)
            send(last)
        if bytes(recv(1)) != ACK:
            raise PayloadError("the acknowledgement arrived changed")
    n = calibrate(step, plan)
    samples = [size * n * 1e3 / ns for ns in timed(step, n, plan.repeats)]
    send(payload(size, 0, STOP))
    return samples, n


def calibrate(step, plan: Plan) -> int:
    """Warm up by running ``step(k)`` for k = 1, 2, 4, ... until one call takes
    ``plan.warm_s``; return the k that fills ``plan.batch_s`` (or ``plan.iterations``)."""
    if plan.iterations:
        step(min(2, plan.iterations))
        return plan.iterations
    k = 1
    while True:
        start = time.perf_counter_ns()
        step(k)
        ns = time.perf_counter_ns() - start
        if ns >= plan.warm_s * 1e9 or k >= MAX_ITERATIONS:
            return max(1, min(MAX_ITERATIONS, round(k * plan.batch_s * 1e9 / max(ns, 1))))
        k *= 2


def timed(step, n: int, repeats: int) -> list[int]:
    """Run ``step(n)`` ``repeats`` times; return the nanoseconds each took."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        step(n)
        samples.append(time.perf_counter_ns() - start)
    return samples
