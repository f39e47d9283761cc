"""Re-execute notebooks in place and store their outputs, normalized for small diffs.

    python tools/execute_notebooks.py [FILE.ipynb ...]

Without files: every notebooks/*.ipynb and solutions/*.ipynb.  Each notebook
runs in a fresh "python3" kernel started in the notebook's folder, with 300 s
per cell; cells tagged ``raises-exception`` may raise.  labs/ is not run here:
it is generated from solutions/ and run by ``./course labs``.  A failing
notebook is left untouched and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from ipclab.labs.generate import NotebookExecutionError, execute_notebook, normalize

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path,
                        help="notebooks to run (default: notebooks/ and solutions/)")
    files = parser.parse_args(argv).files or sorted(
        [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("solutions/*.ipynb")])
    failed = 0
    for path in files:
        if path.resolve().parent == ROOT / "labs":
            print(f"{path}: labs/ is generated; run ./course labs instead", file=sys.stderr)
            failed += 1
            continue
        try:
            nb = nbformat.read(path, as_version=4)
            execute_notebook(nb, path.resolve().parent, timeout=CELL_TIMEOUT, name=str(path))
        except NotebookExecutionError as exc:  # names the notebook and the cell
            print(f"FAILED {exc}", file=sys.stderr)
            failed += 1
            continue
        except (OSError, ValueError) as exc:  # unreadable: missing, not JSON
            print(f"FAILED {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        nbformat.write(normalize(nb), path)
        print(f"{path}: executed", flush=True)
    if failed:
        print(f"{failed} of {len(files)} notebook(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
