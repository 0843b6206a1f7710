"""docs/layout.md is the table `docs/layout.py` makes from the tree: every module, its docstring's first
sentence. A module moved, added or re-described without regenerating the page fails here."""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _layout():
    spec = importlib.util.spec_from_file_location("docs_layout", ROOT / "docs" / "layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_layout_table_is_up_to_date():
    layout = _layout()
    committed = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    assert committed == layout.render(), "docs/layout.md is out of date: run python docs/layout.py --write"


def test_every_module_of_the_driver_and_model_side_has_a_row():
    text = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    for package in ("sweep", "actors"):
        for path in (ROOT / package).rglob("*.py"):
            assert f"| `{path.relative_to(ROOT).as_posix()}` |" in text, path


def test_summary_is_the_first_sentence_on_one_line(tmp_path):
    layout = _layout()
    module = tmp_path / "m.py"
    module.write_text('"""Scores captions, e.g. CIDEr | BLEU, per image.\nMore text.\n\nDetails."""\n')
    # the table cell: one line, `|` escaped, cut at the first sentence end but not at "e.g."
    layout.ROOT = tmp_path
    assert layout.summary(module) == "Scores captions, e.g. CIDEr \\| BLEU, per image."


def test_a_module_without_a_docstring_is_named(tmp_path):
    layout = _layout()
    layout.ROOT = tmp_path
    bare = tmp_path / "bare.py"
    bare.write_text("x = 1\n")
    with pytest.raises(layout.LayoutError, match="bare.py: no module docstring"):
        layout.summary(bare)


def test_relative_links_of_the_readme_and_docs_pages_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
