"""Tests for ipclab.queueview: peek (msgrcv MSG_COPY) and the ipywidgets queue viewer."""

import ctypes
import errno
import subprocess
import sys

import ipywidgets
import pytest

from ipclab import mq, proc, queueview
from ipclab.errors import IPCLabError, ObjectGoneError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def no_msg_copy(monkeypatch):
    """Pretend the kernel was built without CONFIG_CHECKPOINT_RESTORE."""
    def msgrcv(*args):
        ctypes.set_errno(errno.ENOSYS)
        return -1
    monkeypatch.setattr(queueview, "_msgrcv", msgrcv)


# --- peek -----------------------------------------------------------------------------------

def test_peek_copies_every_message_in_order_and_takes_none(queue):
    assert queueview.peek(queue) == []
    sent = [(b"a", 3), (b"", 1), (b"c" * mq.max_message(), 2), (b"d", 3)]
    for data, kind in sent:
        queue.send(data, kind)
    assert queueview.peek(queue) == sent
    assert queueview.peek(queue) == sent
    assert queue.count == 4
    assert [queue.receive(timeout=1) for _ in sent] == sent


def test_peek_sees_messages_another_process_sent(queue):
    assert proc.run(lambda: [queue.send(f"m{i}", i) for i in (2, 1)], show=False).ok
    assert queueview.peek(queue) == [(b"m2", 2), (b"m1", 1)]


def test_peek_refuses_what_is_not_a_live_queue(queue):
    with pytest.raises(TypeError, match="queue must be an ipclab.mq.Queue, got 3"):
        queueview.peek(3)
    gone = mq.Queue()
    gone.remove()
    with pytest.raises(ObjectGoneError, match="was removed"):
        queueview.peek(gone)
    other = mq.Queue(queue.key, create=False)
    other.close()
    with pytest.raises(ObjectGoneError, match="is closed"):
        queueview.peek(other)


def test_peek_without_msg_copy_says_so(queue, no_msg_copy):
    with pytest.raises(IPCLabError, match="ENOSYS: this kernel cannot copy a message"):
        queueview.peek(queue)


# --- the viewer -----------------------------------------------------------------------------

def test_importing_queueview_does_not_import_ipywidgets():
    code = "import sys, ipclab.queueview; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "False"


def test_send_and_receive_buttons_and_the_table_grouped_by_type(queue):
    viewer = queueview.queue_viewer(queue)
    assert str(viewer) == "ready\n0 messages waiting"
    for text, kind in [("hello", 1), ("urgent", 5), ("again", 1)]:
        viewer.text.value, viewer.send_type.value = text, kind
        viewer.send_button.click()
    assert viewer.groups == {1: [b"hello", b"again"], 5: [b"urgent"]}
    assert str(viewer) == ("sent b'again' as type 1\n3 messages waiting\n"
                           "type 1 (2): b'hello', b'again'\ntype 5 (1): b'urgent'")
    assert "type 5 (1): b&#x27;urgent&#x27;" in viewer.table.value
    viewer.receive_type.value = 5
    viewer.receive_button.click()
    assert viewer.received == [(b"urgent", 5)] and viewer.last == "received b'urgent' of type 5"
    assert queue.count == 2 and viewer.groups == {1: [b"hello", b"again"]}


def test_the_viewer_shows_errors_instead_of_raising_and_never_waits(queue):
    viewer = queueview.queue_viewer(queue)
    viewer.receive_type.value = 7
    viewer.receive_button.click()
    assert viewer.last == (f"BlockingIOError: <Queue 0x{queue.key:08x}>: no message of type 7 "
                           f"is waiting (block=False)")
    queue.max_bytes = 4
    viewer.text.value = "too long"
    viewer.send_button.click()
    assert viewer.last.startswith("LimitError: ") and "could never fit" in viewer.last
    assert viewer.received == [] and queue.count == 0


def test_the_table_changes_only_on_refresh_and_lists_a_few_per_type(queue):
    viewer = queueview.queue_viewer(queue, shown=2)
    assert proc.run(lambda: [queue.send(f"w{i}", 2) for i in range(4)], show=False).ok
    assert viewer.groups == {}
    viewer.refresh_button.click()
    assert viewer.last == "refreshed"
    assert viewer.lines == ["4 messages waiting", "type 2 (4): b'w0', b'w1' (+2 more)"]
    queue.remove()
    viewer.refresh_button.click()
    assert viewer.lines == [f"message queue 0x{queue.key:08x} was removed (IPC_RMID); its "
                            f"messages are gone"]


def test_without_msg_copy_the_viewer_shows_counts_only(queue, no_msg_copy):
    queue.send(b"abc")
    viewer = queueview.queue_viewer(queue)
    assert viewer.groups == {}
    assert viewer.lines[0] == "1 message waiting (3 bytes)"
    assert viewer.lines[1].startswith("(they cannot be shown without taking them: ")


def test_the_viewer_displays_as_a_widget_with_a_short_text(queue):
    viewer = queueview.queue_viewer(queue)
    bundle = viewer._repr_mimebundle_()
    assert bundle["text/plain"] == f"<QueueViewer of <Queue 0x{queue.key:08x}>>"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "MSG_COPY" in viewer.children[-1].value
    assert isinstance(viewer, ipywidgets.VBox)


def test_viewer_arguments_are_checked(queue):
    with pytest.raises(TypeError, match="queue must be an ipclab.mq.Queue, got 'q'"):
        queueview.queue_viewer("q")
    with pytest.raises(ValueError, match="shown must be >= 1, got 0"):
        queueview.queue_viewer(queue, shown=0)
