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


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_number_is_glued_twice_in_a_chapter(chapter: Path) -> None:
    """The book build treats a glue key glued twice as an error (`-W`): catch it without building."""
    from collections import Counter

    names = Counter(output.get("metadata", {}).get("scrapbook", {}).get("name")
                    for cell in jupytext.read(chapter.with_suffix(".ipynb")).cells
                    for output in cell.get("outputs", []))
    names.pop(None, None)
    twice = sorted(name for name, count in names.items() if count > 1)
    assert not twice, f"{chapter.stem}: glued more than once: {', '.join(twice)} (book.constants() glues the paper's)"


SHOWS = ("evaluate.markdown(", "plots.", "book.provenance(")


def _shows_something(source: str) -> bool:
    """A cell whose last statement displays a table, a figure or the provenance line."""
    last = [line for line in source.strip().splitlines() if line and not line.startswith((" ", ")", "#"))]
    return bool(last) and last[-1].startswith(SHOWS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_table_and_figure_is_visible_in_the_notebook(chapter: Path) -> None:
    """What a reader of the .ipynb sees (Jupyter, Colab, GitHub): every cell that makes a figure or
    a table shows it as an ordinary output, not only as a glue record the notebook never displays."""
    import json

    from helpers.notebooks import visible_outputs

    cells = [c for c in json.loads(chapter.with_suffix(".ipynb").read_text())["cells"] if c["cell_type"] == "code"]
    showing = [c for c in cells if _shows_something("".join(c["source"]))]
    assert showing, f"{chapter.stem} makes no figure or table"
    hidden = ["".join(c["source"]).strip().splitlines()[-1] for c in showing if not visible_outputs(c)]
    assert not hidden, f"{chapter.stem}.ipynb does not show: {hidden}"
    figures = sum("mystnb" in c.get("metadata", {}) for c in cells)
    images = sum(1 for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= figures, f"{chapter.stem}.ipynb: {figures} figure cells but {images} images"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_outputs_come_from_the_current_code_and_ledger(chapter: Path) -> None:
    from helpers.notebooks import stamp_of
    from helpers.stamp import code_stamp

    stamp = stamp_of(chapter.with_suffix(".ipynb"))
    assert stamp.get("profile") == "full", (
        f"{chapter.stem}.ipynb holds outputs of the {stamp.get('profile')!r} profile: run `make notebooks`")
    assert stamp.get("code_stamp") == code_stamp(), (
        f"{chapter.stem}.ipynb was executed with other helpers, requirements or ledger "
        f"({stamp.get('code_stamp')} != {code_stamp()}): run `make notebooks` and commit")


def test_glue_only_cells_are_folded_on_the_page() -> None:
    """Cells that only import or add constants to the chapter's numbers do not open a page with code."""
    for chapter in CHAPTERS:
        for cell in jupytext.read(chapter).cells:
            lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith((" ", ")"))]
            only_glue = lines and all(ln.startswith(("import ", "from ", "n.add(", "n = book.Numbers(")) for ln in lines)
            if cell.cell_type == "code" and only_glue:
                tags = cell.metadata.get("tags", [])
                assert {"hide-input", "remove-input", "remove-cell"} & set(tags), (
                    f"{chapter.name}: an import/glue-only cell is not folded: {lines[0]}")


def test_every_chapter_starts_with_the_setup_cell_for_this_repository() -> None:
    from helpers import book

    for chapter in CHAPTERS:
        first = next(c for c in jupytext.read(chapter).cells if c.cell_type == "code")
        assert first.source.strip() == book.setup_cell(), f"{chapter.name}: the setup cell differs"
        assert "remove-cell" in first.metadata.get("tags", [])


def test_nbval_ignore_markers_are_rare_and_explained() -> None:
    ignored = []
    for chapter in CHAPTERS:
        for cell in jupytext.read(chapter).cells:
            if "nbval-ignore-output" in cell.metadata.get("tags", []):
                assert "nbval-ignore-output:" in cell.source, f"{chapter.name}: ignored cell without a reason"
                ignored.append(chapter.stem)
    assert len(ignored) <= 5, ignored


def test_sanitize_rules_leave_image_data_alone() -> None:
    import configparser
    import re

    rules = configparser.ConfigParser()
    rules.read(REPO / "tests" / "nbval_sanitize.cfg")
    base64_like = "iVBORw0KGgo0x1fAAAANSUhEUgAA0xdeadbeef+/0x00"
    for section in rules.sections():
        pattern = re.compile(rules[section]["regex"])
        assert pattern.sub(rules[section]["replace"], base64_like) == base64_like, section
    assert any(re.compile(rules[s]["regex"]).search("<Figure at 0x7f3a12>") for s in rules.sections())


# --- The numbers of the prose: {eval}`n["name:format"]` -----------------------------------------

def _records(notebook: dict) -> dict[str, object]:
    """{name: value} of the values the notebook's cells added to ``n`` (their glue records)."""
    records = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                records[name] = output["data"]["application/papermill.record/text/plain"]
    return records


def test_the_prose_quotes_numbers_only_as_the_book_build_allows() -> None:
    """Every number of the prose is an {eval} role of the one form `_config.yml` lets myst-nb
    evaluate; no glue role is left (it would show as raw text in JupyterLab)."""
    import re

    pattern = re.compile(re.search(r"nb_eval_name_regex: '(.+)'", (REPO / "_config.yml").read_text())[1])
    for chapter in CHAPTERS:
        text = chapter.read_text()
        assert "{glue" not in text, f"{chapter.name} still has a glue role"
        expressions = re.findall(r"\{eval\}`([^`\n]+)`", text)
        bad = [e for e in expressions if not pattern.match(e)]
        assert not bad, f"{chapter.name}: expressions the book build would refuse: {bad}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_committed_notebook_shows_every_number_of_its_prose(chapter: Path) -> None:
    """`make notebooks` runs each chapter as JupyterLab's "Run all" does and stores the value of
    every expression of the prose where jupyterlab-myst reads it (a Markdown cell's
    ``user_expressions``): a reader who opens the notebook sees the numbers. Each stored text is
    the cell's recorded value formatted as the expression asks (recomputed here by literal_eval
    and format, as myst-nb's glue did), so the prose and the tested records cannot disagree."""
    import ast
    import json
    import re

    notebook = json.loads(chapter.with_suffix(".ipynb").read_text())
    records = _records(notebook)
    quoted = 0
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        expressions = list(dict.fromkeys(re.findall(r"\{eval\}`([^`\n]+)`", "".join(cell["source"]))))
        stored = {e["expression"]: e["result"] for e in cell["metadata"].get("user_expressions", [])}
        assert list(stored) == expressions, f"{chapter.stem} cell {index}: run `make notebooks`"
        for expression, result in stored.items():
            assert result["status"] == "ok", f"{chapter.stem} cell {index}: {expression}: {result}"
            name, _, fmt = re.fullmatch(r'n\["([^"]+)"\]', expression)[1].partition(":")
            value = ast.literal_eval(records[name])  # the repr of a str, int, float or bool
            if fmt:
                kind = fmt[-1]
                value = int(value) if kind in "bcdoxX" else float(value) if kind in "eEfFgGn%" else value
            assert ast.literal_eval(result["data"]["text/plain"]) == format(value, fmt), (
                f"{chapter.stem}: {expression} shows {result['data']['text/plain']}, its record says {records[name]}")
            quoted += 1
    if "{eval}" in chapter.read_text():
        assert quoted, f"{chapter.stem}: the prose quotes numbers but the notebook stores none"
