"""The README stays short, its links resolve, and the numbers it quotes from the ledger are the ledger's.

The README quotes three numbers computed from the results ledger (the verdict: the recipe's seeds,
its mean test error and the 95 % interval of that mean, as `python -m helpers gap --json` gives
them); they are recomputed here from the committed ledger with training forbidden, as `make book`
does. Its times are dated measurements (benchmarks/TIMINGS.md), not ledger numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import paper, store
from tests.conftest import REPO, need_real_data

README = REPO / "README.md"
#: The README and the two documents it links to, whose relative links must resolve too.
DOCUMENTS = (README, REPO / "docs" / "cluster.md", REPO / "benchmarks" / "TIMINGS.md")
MAX_WORDS = 1000


def text() -> str:
    return README.read_text(encoding="utf-8")


def one_line(s: str) -> str:
    """The text with its line breaks and runs of spaces as single spaces (a number may wrap)."""
    return re.sub(r"\s+", " ", s)


def relative_links(markdown: str) -> list[str]:
    """The targets of the Markdown links ``[text](target)`` that are not web addresses or anchors."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", markdown)
    return [t for t in targets if not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#)", t, re.IGNORECASE)]


def test_relative_links_finds_only_local_targets() -> None:
    sample = '[a](docs/x.md) [b](https://e.org) [c](#top) [d](../README.md#x) [e](mailto:a@b) [`f`](f/ "title")'
    assert relative_links(sample) == ["docs/x.md", "../README.md#x", "f/"]


def test_readme_reads_in_five_minutes() -> None:
    words = len(text().split())  # what `wc -w README.md` counts
    assert words <= MAX_WORDS, f"README.md has {words} words (at most {MAX_WORDS}): move detail to docs/ or benchmarks/"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_a_file_that_exists(document: Path) -> None:
    assert document.is_file(), f"{document.relative_to(REPO)} is missing"
    links = relative_links(document.read_text(encoding="utf-8"))
    assert links or document != README, "README.md links to no file of the repository"
    missing = [link for link in links if not (document.parent / link.split("#")[0]).exists()]
    assert not missing, f"{document.relative_to(REPO)} links to missing files: {missing}"


def test_readme_documents_stay_out_of_the_book() -> None:
    """docs/ and benchmarks/ are the README's documents, not pages of the Jupyter Book."""
    import yaml

    excluded = yaml.safe_load((REPO / "_config.yml").read_text())["exclude_patterns"]
    assert {"docs/*", "benchmarks/*", "README.md"} <= set(excluded)


def test_readme_quotes_the_papers_headline() -> None:
    readme = one_line(text())
    for quoted in (f"{paper.ACCURACY} %", f"{paper.ERRORS} errors of {paper.COUNTS['test']}", f"{paper.ERROR} %"):
        assert quoted in readme, f"README.md does not quote the paper's headline as {quoted!r}"


@pytest.fixture
def committed_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed ledger, read with training forbidden (as `make book` and `make test` do)."""
    need_real_data()
    monkeypatch.delenv(store.ENV_LEDGER, raising=False)
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    monkeypatch.setenv("USPS_BOOK_PROFILE", "full")


def test_readme_verdict_is_the_ledgers(committed_ledger: None) -> None:
    """The verdict's numbers: those of `python -m helpers gap --json` (``recipe``), from the ledger."""
    from helpers import discussion, experiments

    recipe = discussion.recipe_vs_paper(experiments.readings()[discussion.RECIPE])
    low, high = recipe["mean_ci95"]
    readme = one_line(text())
    quoted = {
        "the number of seeds": f"over {recipe['seeds']} seeds",
        "the recipe's mean test error": f"mean test error of {recipe['mean_error']:.2f} %",
        "its 95 % interval": f"95 % interval {low:.2f} to {high:.2f} %",
    }
    for what, phrase in quoted.items():
        assert phrase in readme, f"README.md should quote {what} from the ledger as {phrase!r}"
    # The verdict's words follow from the numbers: the whole interval lies above the paper's error.
    assert paper.ERROR < low, "the recipe's 95 % interval now reaches the paper's error: rewrite the verdict"
    assert "is not reproduced" in readme
