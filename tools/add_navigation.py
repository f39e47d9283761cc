"""Put a navigation cell (previous | contents | next) last in each numbered notebook.

    python tools/add_navigation.py [--check] [--dir notebooks]

Numbered notebooks are ``NN_title.ipynb``; each one's title is the ``# Title``
heading of its first markdown cell.  The cell is tagged ``navigation``, so a
second run replaces it rather than adding another.  ``--check`` writes nothing
and exits 1 if a notebook would change.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TAG = "navigation"
CONTENTS = "[Contents](../README.md#the-notebooks)"
NUMBERED = re.compile(r"(\d\d)_.+\.ipynb")


def title(nb: nbformat.NotebookNode, path: Path) -> str:
    """Return the ``# Title`` of the first markdown cell.

    Raises:
        ValueError: that cell has no such heading, or there is no markdown cell.
    """
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    for line in first.source.splitlines() if first else []:
        if line.startswith("# "):
            return line[2:].strip()
    raise ValueError(f"{path}: the first markdown cell must hold a '# Title' heading")


def _numbered(number: str, text: str) -> str:
    """``"01 Pipes"``, unless the title already starts with its number (``"01 · Pipes"``)."""
    return text if text.startswith(number) else f"{number} {text}"


def add_navigation(folder, *, check: bool = False) -> list[Path]:
    """Put the navigation cell last in every NN_title.ipynb of ``folder``; return those changed.

    Raises:
        ValueError: a notebook has no title (see :func:`title`) or is not JSON.
    """
    paths = sorted(p for p in Path(folder).glob("*.ipynb") if NUMBERED.fullmatch(p.name))
    notebooks = [nbformat.read(p, as_version=4) for p in paths]
    links = [f"[{_numbered(NUMBERED.fullmatch(p.name)[1], title(nb, p))}]({p.name})"
             for p, nb in zip(paths, notebooks, strict=True)]
    changed = []
    for i, (path, nb) in enumerate(zip(paths, notebooks, strict=True)):
        parts = [f"< {links[i - 1]}"] if i else []
        parts += [CONTENTS] + ([f"{links[i + 1]} >"] if i + 1 < len(links) else [])
        before = nbformat.writes(nb)
        old = [c for c in nb.cells if TAG in c.metadata.get("tags", [])]
        cell = old[0] if old else nbformat.v4.new_markdown_cell(metadata={"tags": [TAG]})
        if not old:
            cell["id"] = TAG  # a fixed id: the first run gives the same bytes everywhere
            if nb.nbformat_minor < 5:  # cell ids came with nbformat 4.5
                del cell["id"]
        cell.source = " | ".join(parts)
        nb.cells = [c for c in nb.cells if TAG not in c.metadata.get("tags", [])] + [cell]
        if nbformat.writes(nb) != before:
            changed.append(path)
            if not check:
                nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook would change")
    parser.add_argument("--dir", type=Path, default=ROOT / "notebooks", help="notebook folder")
    args = parser.parse_args(argv)
    try:
        changed = add_navigation(args.dir, check=args.check)
    except (OSError, ValueError) as exc:
        print(f"add_navigation: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"{path}: {'navigation out of date' if args.check else 'navigation updated'}")
    if args.check and changed:
        print("run: python tools/add_navigation.py", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
