"""Each chapter (chapters/X.md) and its paired notebook (chapters/X.ipynb) agree."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

from tests.conftest import REPO

CHAPTERS = sorted(p for p in (REPO / "chapters").glob("*.md") if p.name != "references.md")


def _cells(notebook: object) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]  # type: ignore[attr-defined]


def test_every_chapter_is_in_the_toc() -> None:
    toc = (REPO / "_toc.yml").read_text()
    for chapter in CHAPTERS:
        assert f"chapters/{chapter.stem}" in toc, f"{chapter.name} is not in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_pair_has_not_drifted(chapter: Path) -> None:
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"run `make notebooks` to pair {chapter.name}"
    text, paired = jupytext.read(chapter), jupytext.read(notebook)
    assert _cells(text) == _cells(paired), (
        f"{chapter.name} and {notebook.name} differ: run `make notebooks` and commit both")
    assert text.metadata["jupytext"]["formats"] == "md:myst,ipynb"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_outputs(chapter: Path) -> None:
    paired = jupytext.read(chapter.with_suffix(".ipynb"))
    code = [c for c in paired.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), (
        f"{chapter.stem}.ipynb has cells that were never executed: run `make notebooks`")
