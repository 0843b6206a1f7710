"""The layout table of docs/layout.md, generated from the tree: one row per module of `sweep/` and `actors/`.

Each row is the first sentence of the module's docstring, so the table cannot omit a module or describe
one that moved. Regenerate after moving or adding modules (tests/test_layout.py fails until then):

    python docs/layout.py --write      # rewrite docs/layout.md
    python docs/layout.py              # print the table
    python docs/layout.py --check      # exit 1 if docs/layout.md is out of date
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "layout.md"
# the packages described module by module
PACKAGES = ("sweep", "actors")
# top-level folders that are not described by a package docstring (a Python package's row is its
# __init__ docstring)
FOLDERS = {
    "benchmarks": "side-by-side benchmarks: `python benchmarks/run.py --sections ...`, one module per "
                  "section; numbers in `benchmarks/README.md`",
    "search_spaces": "ready grids (`quickstart_trained.yaml`, `quickstart.yaml`, `seed_models.yaml`, ...)",
    "tests": "the pytest suite (`-m \"not slow\"` for the fast loop); uses `../shared/data/coco-mini`",
    "mlflow": "tracking-server setup (`mlflow/server.sh`; not a Python package)",
    ".ci": "CI: `run` (what CI runs), `vllm_venv.sh` (builds `.vllm-venv`), `vllm_cpu_check.py` "
           "(real vLLM on CPU, run by `tests/test_vllm_cpu.py`)",
    "docs": "these pages; `layout.py` writes this one",
}
HEADER = """# Layout

Where each module lives. Generated from the tree by `python docs/layout.py --write` (the first sentence
of each module's docstring); do not edit by hand: `tests/test_layout.py` fails when this page is out of
date.
"""


class LayoutError(ValueError):
    """A module the table cannot describe (no docstring, or one that does not parse)."""


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line (a table cell: `|` escaped)."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError as exc:
        raise LayoutError(f"{path.relative_to(ROOT)}: does not parse ({exc.msg}, line {exc.lineno})") from exc
    if not doc or not doc.strip():
        raise LayoutError(f"{path.relative_to(ROOT)}: no module docstring; the layout table is made of them")
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    # a period followed by a space ends a sentence; "e.g. " and "i.e. " do not
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", paragraph)
    sentence = paragraph[: match.start() + 1] if match else paragraph
    return sentence.replace("|", "\\|")


def modules(package: str) -> list[Path]:
    """The package's modules, each package's `__init__` before its modules, subpackages after."""
    base = ROOT / package
    found = [p for p in base.rglob("*.py") if "__pycache__" not in p.parts]

    def key(p: Path) -> tuple:
        rel = p.relative_to(base)
        return (len(rel.parts) > 1, rel.parent.as_posix(), p.name != "__init__.py", p.name)

    return sorted(found, key=key)


def top_level_rows() -> list[tuple[str, str]]:
    rows = []
    for entry in sorted(ROOT.iterdir(), key=lambda p: p.name.lstrip(".")):
        init = entry / "__init__.py"
        if entry.is_dir() and init.is_file():
            rows.append((f"{entry.name}/", summary(init)))
        elif entry.name in FOLDERS:
            rows.append((f"{entry.name}/", FOLDERS[entry.name]))
    return rows


def table(rows: list[tuple[str, str]], head: str) -> list[str]:
    return [f"| {head} | what |", "|---|---|", *(f"| `{name}` | {what} |" for name, what in rows)]


def render() -> str:
    """The whole of docs/layout.md."""
    lines = [HEADER, "## Top level", "", *table(top_level_rows(), "folder")]
    for package in PACKAGES:
        rows = [(p.relative_to(ROOT).as_posix(), summary(p)) for p in modules(package)]
        lines += ["", f"## `{package}/`", "", *table(rows, "module")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"rewrite {TARGET.relative_to(ROOT)}")
    group.add_argument("--check", action="store_true", help="exit 1 if the committed page is out of date")
    args = parser.parse_args(argv)
    try:
        text = render()
    except LayoutError as exc:
        print(f"layout: {exc}", file=sys.stderr)
        return 2
    if args.write:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}")
    elif args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python docs/layout.py --write",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
