"""ipclab.proc behaves the same inside a real Jupyter kernel (run through nbclient)."""

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.timeout(180)

CELLS = [
    "import os, sys, threading\nfrom ipclab import proc\nprint('unflushed', end='')",
    # a kernel always has several threads: the reason for the 3.12 fork warning
    "print(threading.active_count() > 1)",
    "def hello(i):\n    print('hello', i)\n    print('warn', i, file=sys.stderr)\n"
    "    os.system('echo exec')\n    return i\nproc.run_many(hello, 3)",
    "r, w = os.pipe()\ndef reader():\n    os.close(w)\n    return os.read(r, 1) + os.read(r, 1)\n"
    "with proc.Family(timeout=1) as fam:\n    fam.fork(reader)\nos.close(r); os.close(w)",
    "def ret():\n    sys.exit(0)\nproc.run(ret)",
    "from ipclab import leaks\nprint(leaks.children())",
]


def _outputs(cell):
    found = {}
    for out in cell.outputs:
        key = out.get("name") or out["output_type"]
        found[key] = found.get(key, "") + (out.get("text") or out["data"]["text/plain"])
    return found


def test_children_behave_in_a_kernel_as_in_a_script():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    outs = [_outputs(c) for c in nb.cells]
    assert outs[0] == {"stdout": "unflushed"}  # printed once, not again by a child
    assert outs[1]["stdout"] == "True\n"
    assert outs[2]["stdout"] == "".join(f"[child {i}] hello {i}\n[child {i}] exec\n"
                                        for i in (1, 2, 3))
    assert outs[2]["stderr"] == "[child 1] warn 1\n[child 2] warn 2\n[child 3] warn 3\n"
    assert "<child 3: exited with code 0, returned 3>" in outs[2]["execute_result"]
    assert "stdout" not in outs[3]
    assert "timed out after 1 s and was killed: child 1 blocked in read on fd" in outs[3]["stderr"]
    assert "the write end of that pipe is still open in: parent (fd" in outs[3]["stderr"]
    # sys.exit in the child ends the child only: the kernel goes on and runs the next cell
    assert outs[4]["execute_result"] == "<child 1: exited with code 0>"
    assert outs[5]["stdout"] == "[]\n"  # no child, no zombie left in the kernel
