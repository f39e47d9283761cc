"""SysV message queues: whole typed messages, selective receive, priorities, timed waits.

Wraps msgget(2), msgsnd(2), msgrcv(2) and msgctl(2) (``IPC_STAT``, ``IPC_SET``,
``IPC_RMID``) through ``sysv_ipc.MessageQueue``; :attr:`Queue.bytes` (msg_cbytes,
which sysv_ipc lacks) is read from /proc/sysvipc/msg.  To look at waiting
messages without taking them, see :func:`ipclab.queueview.peek`.

Payloads are raw bytes, so C and PHP programs exchange messages with Python on
the same key: PHP's ``msg_get_queue($key)``, ``msg_send($q, $type, $bytes,
false)`` (PHP serializes unless the 4th argument is false) and ``msg_receive``
are ``Queue(key)``, :meth:`Queue.send` and :meth:`Queue.receive`.
:meth:`Queue.send_json`/:meth:`Queue.receive_json` opt in to JSON.  Nothing here
unpickles: anyone allowed to write to a queue could send a pickle that runs code.

Timed waits poll msgsnd/msgrcv with ``IPC_NOWAIT`` (sysv_ipc cannot block with
a timeout); how, and what that costs, is in :mod:`ipclab._mqwait`.

Not handled: ``MSG_NOERROR`` (truncating), ``MSG_EXCEPT``, and POSIX queues (mq_open(3)).
"""

from __future__ import annotations

import errno
import json
import os

import sysv_ipc

from . import _mqwait, _sysv
from ._check import check_bytes, check_int, check_timeout
from .errors import LimitError, ObjectGoneError

MAX_TYPE = 2**31 - 1  # sysv_ipc passes the type as a C int (PIDs fit)
_exact = type  # the builtin: send and receive have an argument named type


def max_message() -> int:
    """Return the largest message this machine allows: MSGMAX (/proc/sys/kernel/msgmax)."""
    return _sysv.kernel_limit("msgmax")[0]


def max_queue() -> int:
    """Return the bytes a new queue holds: MSGMNB (/proc/sys/kernel/msgmnb)."""
    return _sysv.kernel_limit("msgmnb")[0]


def _check_type(value, sending: bool) -> int:
    if sending:
        allowed = (f"an int between 1 and {MAX_TYPE} (msgsnd needs a positive type; 0 and "
                   f"negative types only select messages in receive)")
    else:
        allowed = (f"an int between {-MAX_TYPE - 1} and {MAX_TYPE} (0: the first message; "
                   f"n > 0: the first of type n; n < 0: the lowest type up to |n|)")
    try:
        return check_int(value, "type", low=1 if sending else -MAX_TYPE - 1, high=MAX_TYPE)
    except (TypeError, ValueError) as e:
        raise e.__class__(f"type must be {allowed}, got {value!r}") from None


class Queue:
    """A SysV message queue (a context manager that removes the queue if it created it).

    ``timeout`` is the default wait of :meth:`send` and :meth:`receive`; None
    waits forever.  The queue lives until :meth:`remove` (or, if this process
    created it, until the process exits normally: see :mod:`ipclab.keys`).

    Raises (constructor):
        TypeError, ValueError: a bad key, mode, flag or timeout.
        FileExistsError: exclusive=True and a queue with this key exists.
        ObjectGoneError: create=False and no queue has this key.
        PermissionError: the queue exists but its mode does not let you in.
    """

    def __init__(self, key=None, *, create: bool = True, mode: int = 0o600,
                 exclusive: bool = False, timeout: float | None = 60.0):
        mode = _sysv.check_mode(mode)
        self.timeout = check_timeout(timeout)
        self._msgmax = max_message()

        def make(k, flags):
            return sysv_ipc.MessageQueue(k, flags, mode if flags else 0o600,
                                         max_message_size=self._msgmax)

        self._q, self.created = _sysv.open_object("msg", make, key, create=create,
                                                  exclusive=exclusive)
        self.key, self.id = self._q.key, self._q.id
        self.name = key if isinstance(key, str) else _sysv.hexkey(self.key)
        self._label = repr(key) if isinstance(key, str) else self.name
        self.removed = False
        self._yield_first = 0  # see receive

    # -- sending and receiving -----------------------------------------------------------

    def send(self, data, type: int = 1, *, block: bool = True,
             timeout: float | None = None) -> None:
        """Put ``data`` (bytes; a str is encoded UTF-8) on the queue as one message of ``type``.

        A full queue makes it wait up to ``timeout`` s (default: the handle's
        timeout), or with ``block=False`` fail at once.

        Raises:
            TypeError, ValueError: bad data, type, block or timeout.
            LimitError: data is longer than MSGMAX, or than the queue's max_bytes.
            BlockingIOError: block=False and the queue is full.
            IPCTimeoutError: still full after ``timeout`` seconds (says who last received).
            ObjectGoneError: the queue was removed (before or while waiting), or handle closed.
        """
        # Fast paths for the usual exact types (the general checks raise the same messages).
        if _exact(data) is not bytes:
            data = check_bytes(data)
        if _exact(type) is not int or not 0 < type <= MAX_TYPE:
            type = _check_type(type, sending=True)
        wait = self.timeout if block is True and timeout is None else self._wait(block, timeout)
        q = self._q
        if q is None:
            self._handle()
        if len(data) > self._msgmax:
            raise LimitError(f"a message holds at most {self._msgmax} bytes on this machine "
                             f"(MSGMAX, /proc/sys/kernel/msgmax), got {len(data)}")
        # The first try is made here (positional arguments: block, type): usually the only one.
        try:
            return q.send(data, False, type)
        except sysv_ipc.BusyError:
            pass
        except (sysv_ipc.Error, OSError) as e:
            _mqwait.explain(self, e, "send")
            raise
        _mqwait.poll(self, lambda: q.send(data, False, type), wait, "send", len(data))

    def receive(self, type: int = 0, *, timeout: float | None = None,
                block: bool = True) -> tuple[bytes, int]:
        """Take the first message that ``type`` selects; return ``(data, its type)``.

        ``type`` 0 takes the oldest message, n > 0 the oldest of type n, and
        n < 0 the oldest of the lowest type up to |n| (so types are priorities).
        An empty queue makes it wait up to ``timeout`` s (default: the handle's).

        Raises:
            TypeError, ValueError: bad type, block or timeout.
            BlockingIOError: block=False and no such message is waiting.
            IPCTimeoutError: none arrived within ``timeout`` seconds.
            ObjectGoneError: the queue was removed (before or while waiting), or handle closed.
        """
        if _exact(type) is not int or not -MAX_TYPE - 1 <= type <= MAX_TYPE:
            type = _check_type(type, sending=False)
        wait = self.timeout if block is True and timeout is None else self._wait(block, timeout)
        q = self._q
        if q is None:
            self._handle()
        # After a receive that found nothing (a ping-pong: the reply is not there yet) the
        # next one first yields the CPU, so a peer on this CPU that is ready to answer does
        # so before the first try; a failed try costs a BusyError.  Every 8th such receive
        # tries first instead: when that finds a message, messages are waiting (a stream),
        # and receives try first again.
        probe = self._yield_first
        if probe and wait != 0.0:
            self._yield_first = probe + 1
            if probe & 7:
                os.sched_yield()
        try:  # the first try, as in send
            got = q.receive(False, type)
        except sysv_ipc.BusyError:
            self._yield_first = self._yield_first or 1
        except (sysv_ipc.Error, OSError) as e:
            _mqwait.explain(self, e, "receive")
            raise
        else:
            if probe and not probe & 7:
                self._yield_first = 0
            return got
        return _mqwait.poll(self, lambda: q.receive(False, type), wait, "receive", type)

    def send_json(self, obj, type: int = 1, **options) -> None:
        """Send ``obj`` as compact UTF-8 JSON; ``options`` as for :meth:`send`.

        Raises:
            TypeError: obj cannot be written as JSON.
            others: as :meth:`send`.
        """
        try:
            data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"obj must be made of dict, list, str, int, float, bool and None "
                            f"to be sent as JSON: {e}") from None
        self.send(data, type, **options)

    def receive_json(self, type: int = 0, **options) -> tuple[object, int]:
        """Take a message as for :meth:`receive` and decode it as JSON: ``(obj, type)``.

        Raises:
            ValueError: the message taken is not UTF-8 JSON (it is gone from the queue).
            others: as :meth:`receive`.
        """
        data, got = self.receive(type, **options)
        try:
            return json.loads(data), got
        except ValueError:
            raise ValueError(f"the message of type {got} taken from {self!r} is not JSON: "
                             f"{data[:40]!r}") from None

    def _wait(self, block, timeout) -> float | None:
        """Return how long to wait: 0 for block=False, None for ever."""
        if not _sysv.check_flag(block, "block"):
            if timeout is not None:
                raise ValueError(f"timeout only applies when block=True, got block=False "
                                 f"with timeout={timeout!r}")
            return 0.0
        return self.timeout if timeout is None else check_timeout(timeout)

    # -- what is in the queue ------------------------------------------------------------

    def _stat(self, attribute: str):
        try:
            return getattr(self._handle(), attribute)
        except sysv_ipc.ExistentialError:
            raise ObjectGoneError(self._gone()) from None

    @property
    def count(self) -> int:
        """How many messages are waiting (msg_qnum)."""
        return self._stat("current_messages")

    @property
    def bytes(self) -> int:
        """How many bytes of messages are waiting (msg_cbytes, from /proc/sysvipc/msg)."""
        self._handle()
        with open("/proc/sysvipc/msg") as f:
            header, *rows = (line.split() for line in f)
        for row in rows:
            if int(row[header.index("msqid")]) == self.id:
                return int(row[header.index("cbytes")])
        raise ObjectGoneError(self._gone())

    @property
    def max_bytes(self) -> int:
        """How many bytes the queue holds (msg_qbytes, MSGMNB when created); may be lowered.

        The kernel also counts every message as (at least) one byte of it, so
        at most ``max_bytes`` messages fit, however short.
        """
        return self._stat("max_size")

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        value = check_int(value, "max_bytes", low=1)
        try:
            self._handle().max_size = value  # msgctl(IPC_SET)
        except sysv_ipc.PermissionsError:
            raise PermissionError(errno.EPERM, f"max_bytes can be set only by the queue's "
                                  f"owner, and above MSGMNB ({max_queue()}) only with "
                                  f"CAP_SYS_RESOURCE, got {value}") from None
        except sysv_ipc.ExistentialError:
            raise ObjectGoneError(self._gone()) from None

    # -- lifetime ------------------------------------------------------------------------

    def _handle(self):
        if self._q is None:
            raise ObjectGoneError(self._gone() if self.removed else
                                  f"this handle of message queue {self._label} is closed")
        return self._q

    def _gone(self) -> str:
        return f"message queue {self._label} was removed (IPC_RMID); its messages are gone"

    @property
    def closed(self) -> bool:
        return self._q is None

    def close(self) -> None:
        """Forget the handle (the queue stays: see :meth:`remove`); closing twice is fine."""
        self._q = None

    def remove(self) -> None:
        """Remove the queue and its messages (IPC_RMID); waiting processes fail.  Twice is fine.

        Raises:
            PermissionError: it belongs to another user.
        """
        if not self.removed:
            _sysv.remove("msg", self.id, repr(self))
        self.removed, self._q = True, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.created:
            self.remove()
        self.close()

    def __repr__(self) -> str:
        state = " removed" if self.removed else " closed" if self._q is None else ""
        return f"<Queue {self._label}{state}>"

