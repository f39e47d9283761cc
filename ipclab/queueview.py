"""Look into a SysV message queue without taking its messages: :func:`peek` and a widget.

:func:`peek` calls msgrcv(2) with Linux's ``MSG_COPY`` flag (through ctypes;
sysv_ipc cannot pass it), which copies the message at a position instead of
taking it.  SysV has no other way to read a message and leave it, so every
copy is a snapshot made one message at a time: while other processes send or
receive, a message can be missed or seen twice.  ``MSG_COPY`` exists since
Linux 3.8 on kernels built with ``CONFIG_CHECKPOINT_RESTORE`` (the common
distributions); elsewhere :func:`peek` raises and the viewer shows only how
many messages and bytes are waiting (msg_qnum, msg_cbytes).

:func:`queue_viewer` returns an ipywidgets panel with a Send button (text and
type), a Receive button (type; it never waits) and the table of waiting
messages grouped by type, made with :func:`peek` after every button press.
ipywidgets is imported only when a viewer is made; a viewer's stored output in
a notebook is its short repr, and ``str(viewer)`` gives its table as text.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import html

from . import _mqwait, mq
from ._check import check_int
from .errors import IPCLabError, ObjectGoneError

_MSG_COPY, _IPC_NOWAIT = 0o40000, 0o4000  # <linux/msg.h>, <linux/ipc.h>
_msgrcv = None


def _lib_msgrcv():
    """Load msgrcv from the C library on first use (importing ipclab must not touch it)."""
    global _msgrcv
    if _msgrcv is None:
        fn = ctypes.CDLL(None, use_errno=True).msgrcv
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long,
                       ctypes.c_int]
        fn.restype = ctypes.c_ssize_t
        _msgrcv = fn
    return _msgrcv


def peek(queue: mq.Queue) -> list[tuple[bytes, int]]:
    """Return copies of ``queue``'s waiting messages as ``(data, type)``, oldest first.

    Nothing is taken from the queue (see the module docstring for the caveat).

    Raises:
        TypeError: queue is not an :class:`ipclab.mq.Queue`.
        ObjectGoneError: the queue was removed, or the handle is closed.
        PermissionError: this user may not read the queue.
        IPCLabError: this kernel has no ``MSG_COPY``.
    """
    if not isinstance(queue, mq.Queue):
        raise TypeError(f"queue must be an ipclab.mq.Queue, got {queue!r}")
    ident, limit, most = queue._handle().id, mq.max_message(), queue.max_bytes
    head = ctypes.sizeof(ctypes.c_long)  # struct msgbuf { long mtype; char mtext[]; }
    buf = ctypes.create_string_buffer(head + limit)
    found: list[tuple[bytes, int]] = []
    while len(found) <= most:  # a queue holds at most max_bytes messages
        n = _lib_msgrcv()(ident, buf, limit, len(found), _MSG_COPY | _IPC_NOWAIT)
        if n >= 0:
            found.append((buf.raw[head:head + n], ctypes.c_long.from_buffer(buf).value))
            continue
        err = ctypes.get_errno()
        if err == errno.ENOMSG:  # no message at that position: the end
            return found
        if err in (errno.EIDRM, errno.EINVAL):
            raise ObjectGoneError(queue._gone())
        if err == errno.EACCES:
            raise PermissionError(err, f"{queue!r}: this user may not read it")
        raise IPCLabError(f"msgrcv(MSG_COPY) failed with {errno.errorcode.get(err, err)}: "
                          f"this kernel cannot copy a message without taking it")
    return found


def _show(data: bytes, width: int = 40) -> str:
    text = repr(data)
    return text if len(text) <= width else text[: width - 3] + "..."


NOTE = ("The table is a snapshot taken after each button press, copied with msgrcv(MSG_COPY), "
        "which takes nothing from the queue. Messages that other processes send or receive "
        "appear when you press Refresh; one that moves while the copy is made may be missed "
        "or shown twice.")


def queue_viewer(queue: mq.Queue, *, shown: int = 5):
    """Return a viewer of ``queue`` (an ipywidgets ``VBox``): send, receive, messages by type.

    Its parts and state are attributes, so code (and tests) can drive it:
    ``text``/``send_type``/``send_button`` send a message and
    ``receive_type``/``receive_button`` take one (neither ever waits; taken
    messages are appended to ``received``); ``refresh_button`` copies the
    waiting messages again.  ``last`` says what the last action did (or its
    error), ``groups`` maps each type to its waiting messages as of that
    action, listed in ``lines`` (at most ``shown`` per type); ``str(viewer)``
    is both, as text.

    Raises:
        TypeError, ValueError: queue is not a Queue, or shown is not an int >= 1.
        ModuleNotFoundError: ipywidgets is not installed.
    """
    if not isinstance(queue, mq.Queue):
        raise TypeError(f"queue must be an ipclab.mq.Queue, got {queue!r}")
    return _viewer_class()(queue, check_int(shown, "shown", low=1))


@functools.cache
def _viewer_class():
    import ipywidgets as w  # late: only a viewer needs it

    class QueueViewer(w.VBox):
        """See :func:`queue_viewer`."""

        def __init__(self, queue: mq.Queue, shown: int):
            self.text = w.Text(description="message", placeholder="text to send")
            self.send_type = w.BoundedIntText(value=1, min=1, max=mq.MAX_TYPE,
                                              description="type")
            self.send_button = w.Button(description="Send")
            self.receive_type = w.BoundedIntText(value=0, min=-mq.MAX_TYPE - 1,
                                                 max=mq.MAX_TYPE, description="type")
            self.receive_button = w.Button(description="Receive")
            self.refresh_button = w.Button(description="Refresh")
            self.status, self.table = w.HTML(), w.HTML()
            super().__init__([
                w.HBox([self.text, self.send_type, self.send_button]),
                w.HBox([self.receive_type, self.receive_button, self.refresh_button]),
                self.status, self.table, w.HTML(f"<small>{html.escape(NOTE)}</small>")])
            self.queue, self.shown = queue, shown
            self.received: list[tuple[bytes, int]] = []
            self.groups: dict[int, list[bytes]] = {}
            self.send_button.on_click(lambda _: self._act(self._send))
            self.receive_button.on_click(lambda _: self._act(self._receive))
            self.refresh_button.on_click(lambda _: self._act(lambda: "refreshed"))
            self._act(lambda: "ready")

        def _send(self) -> str:
            self.queue.send(self.text.value, self.send_type.value, block=False)
            return f"sent {_show(self.text.value.encode())} as type {self.send_type.value}"

        def _receive(self) -> str:
            data, got = self.queue.receive(self.receive_type.value, block=False)
            self.received.append((data, got))
            return f"received {_show(data)} of type {got}"

        def _act(self, action) -> None:
            """Run ``action``, show what it said (or its error), then copy the queue again."""
            try:
                said = action()
            except (OSError, IPCLabError, ValueError, TypeError) as e:
                text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                said = f"{type(e).__name__}: {text}"
            self.status.value = f"<b>{html.escape(said)}</b>"
            self.last = said
            self.refresh()

        def refresh(self) -> None:
            """Copy the waiting messages into ``groups`` and the table."""
            self.groups = {}
            try:
                messages = peek(self.queue)
            except ObjectGoneError as e:
                self.lines = [str(e)]
            except (IPCLabError, PermissionError) as e:  # no MSG_COPY: counts only
                self.lines = [self._counts(), f"(they cannot be shown without taking them: {e})"]
            else:
                for data, kind in messages:
                    self.groups.setdefault(kind, []).append(data)
                self.lines = [f"{_mqwait.messages_phrase(len(messages))} waiting"]
                for kind in sorted(self.groups):
                    group = self.groups[kind]
                    more = f" (+{len(group) - self.shown} more)" if len(group) > self.shown else ""
                    self.lines.append(f"type {kind} ({len(group)}): "
                                      + ", ".join(_show(d) for d in group[: self.shown]) + more)
            self.table.value = f"<pre>{html.escape(chr(10).join(self.lines))}</pre>"

        def _counts(self) -> str:
            try:
                count = _mqwait.messages_phrase(self.queue.count)
                return f"{count} waiting ({self.queue.bytes} bytes)"
            except (OSError, IPCLabError) as e:
                return str(e)

        def __str__(self) -> str:
            return "\n".join([self.last, *self.lines])

        def __repr__(self) -> str:
            return f"<QueueViewer of {self.queue!r}>"  # the stored output: short and stable

    return QueueViewer
