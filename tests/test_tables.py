"""Tables and glued numbers a reader can trust, in the pages of the reproduction's chapters.

* no table cell says ``nan``, ``None`` or ``<NA>``, and no spread over seeds (a standard deviation,
  an interval) stands in a row of fewer than three seeds: the cell says "1 seed" or "2 seeds";
* the numbers the prose quotes (``{eval}`n["name"]```) read as the prose around them: not bold,
  and never two numbers side by side with no word between them, nor a phrase that opens a quote
  right before a quoted name (Sphinx's smart quotes then print a closing quote).

The first checks read the executed notebooks (no build needed); the last one the built pages
(skipped without ``make book``). Tables that overflow the text column are caught for every page by
``tests/test_reader.py``.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO

PAGES = ("eda", "evaluation", "variance", "discussion", "ablations", "human-level")
MISSING = {"nan", "NaN", "None", "<NA>"}
SPREAD = re.compile(r"^(std|standard deviation|95 % interval)")  # column headers of a spread over seeds
GLUE = r"\{eval\}`n\[\"[^\"]+\"\]`"  # a number of the prose, {eval}`n["name:format"]`


def markdown_tables(chapter: str) -> list[list[list[str]]]:
    """The Markdown tables a chapter's notebook displays: rows of cells, the header row first."""
    notebook = json.loads((REPO / "chapters" / f"{chapter}.ipynb").read_text())
    tables = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/markdown", ""))
            rows = [[c.strip() for c in line.strip().strip("|").split("|")]
                    for line in text.splitlines() if line.startswith("|")]
            rows = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]  # the rule under the header
            if rows:
                tables.append(rows)
    return tables


def prose(chapter: str) -> str:
    """A chapter's Markdown text without its code cells."""
    return re.sub(r"```\{code-cell\}.*?```", "", (REPO / "chapters" / f"{chapter}.md").read_text(), flags=re.S)


@pytest.mark.parametrize("chapter", PAGES)
def test_no_table_cell_is_missing(chapter: str) -> None:
    tables = markdown_tables(chapter)
    missing = [(i, row[0], cell) for i, table in enumerate(tables) for row in table[1:] for cell in row
               if cell in MISSING]
    assert not missing, f"{chapter}: cells without a value (table, row, cell): {missing}"


@pytest.mark.parametrize("chapter", PAGES)
def test_no_spread_from_fewer_than_three_seeds(chapter: str) -> None:
    checked = 0
    for table in markdown_tables(chapter):
        header = table[0]
        if "95 % interval (%)" in header:  # the literature table: a row "... (mean of 2 seeds)"
            column = header.index("95 % interval (%)")
            for row in table[1:]:
                n = re.search(r"\(mean of (\d+) seeds\)", row[0])
                if n and int(n[1]) < 3:
                    checked += 1
                    assert row[column] == f"{n[1]} seeds", f"{chapter}: the interval of {row[0]!r} is {row[column]!r}"
        if "seeds" not in header:
            continue
        seeds = header.index("seeds")
        for column, name in enumerate(header):
            if not SPREAD.match(name):
                continue
            for row in table[1:]:
                n = int(row[seeds])
                if n < 3:
                    checked += 1
                    assert row[column] == f"{n} seed{'' if n == 1 else 's'}", (
                        f"{chapter}: {name!r} of {row[0]!r} from {n} seeds says {row[column]!r}")
    if chapter in ("ablations", "human-level"):  # their tables have rows of one or two seeds
        assert checked, f"{chapter}: no row of fewer than three seeds was found to check"


@pytest.mark.parametrize("chapter", PAGES)
def test_glued_numbers_have_words_between_them(chapter: str) -> None:
    text = prose(chapter)
    roles = list(re.finditer(GLUE, text))
    side_by_side = [text[a.start():b.end()] for a, b in zip(roles, roles[1:])
                    if re.fullmatch(r"\s*", text[a.end():b.start()])]
    assert not side_by_side, f"{chapter}: glued values with nothing between them: {side_by_side}"
    # a glued count followed by a digit: "the 9 3s", "at least 4 1s"
    before_digit = re.findall(GLUE + r"\s+\d", text)
    assert not before_digit, f"{chapter}: a glued number runs into a digit: {before_digit}"
    # ("{glue:text}`name`") renders with a closing quote on the left: write “ ” instead
    quoted = re.findall(r"\(\"" + GLUE, text)
    assert not quoted, f"{chapter}: write “…” around a glued name after '(': {quoted}"


def test_glued_numbers_read_as_plain_text_in_the_built_pages(site: str, browser) -> None:
    """myst-nb renders an {eval} role as span.output.text_plain (glue's span.pasted-text was bold)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    bold, shown = {}, {}
    for name in ("introduction", *PAGES):
        page.goto(f"{site}/chapters/{name}.html")
        shown[name] = page.locator("main p span.output.text_plain").count()
        bold[name] = page.evaluate("""() => Array.from(document.querySelectorAll('main span.output.text_plain'))
            .filter(s => !s.closest('strong, b, th, .cell_output') && Number(getComputedStyle(s).fontWeight) >= 600).length""")
    page.close()
    assert all(shown.values()), f"pages whose prose shows no evaluated number: {shown}"
    assert not any(bold.values()), f"glued numbers in bold outside ** **, per page: {bold}"
