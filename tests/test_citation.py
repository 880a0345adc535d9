"""How to cite the book: CITATION.cff, and the version and ledger date the pages carry.

No CFF validator is among the book's requirements, so this checks the keys the format
requires and the two references against the book's own sources; `cffconvert --validate`
(pip install cffconvert) checks the file against the schema.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, import_ext

CITATION = REPO / "CITATION.cff"


@pytest.fixture(scope="module")
def citation() -> dict:
    return yaml.safe_load(CITATION.read_text())


@pytest.fixture(scope="module")
def book_version():
    return import_ext("book_version")[0]


def test_citation_has_the_keys_cff_requires(citation: dict) -> None:
    assert citation["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert citation.get(key), f"CITATION.cff lacks {key}"
    assert all(a.get("name") or a.get("family-names") for a in citation["authors"])
    assert citation["type"] in ("software", "dataset")
    for reference in citation["references"]:
        for key in ("type", "title", "authors"):
            assert reference.get(key), f"a reference lacks {key}"


def test_citation_names_the_book_and_the_paper_it_reproduces(citation: dict) -> None:
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert citation["title"] == config["title"]
    assert citation["repository-code"] == config["repository"]["url"]
    bib = (REPO / "references.bib").read_text()
    entry = bib[bib.index("@inproceedings{karim2020"):]
    entry = entry[:entry.index("\n}")]
    bib_title = re.search(r"title\s*=\s*\{(.*)\},", entry)[1].replace("{", "").replace("}", "")
    papers = [r for r in citation["references"] if " ".join(r["title"].split()) == bib_title]
    assert len(papers) == 1, "the paper of references.bib's karim2020 is not among the references"
    paper = papers[0]
    assert [a["family-names"] for a in paper["authors"]] == ["Karim", "Kaur"]
    assert str(paper["year"]) == re.search(r"year\s*=\s*\{(\d{4})\}", entry)[1]
    assert "preferred-citation" not in citation, "the book is what this file cites; the paper is a reference"


def test_version_comes_from_git_or_says_unknown(book_version, tmp_path: Path, monkeypatch) -> None:
    version, date = book_version.book_version()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert version.removesuffix("-dirty").startswith(head.stdout.strip()[:7])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
    monkeypatch.setattr(book_version, "ROOT", tmp_path)  # no repository here
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert book_version.book_version() == ("unknown", "")


def test_ledger_date_is_the_last_training_date(book_version, tmp_path: Path) -> None:
    for name, trained in [("a", "2026-11-27 17:02:50 UTC"), ("b", "2026-11-28 02:32:12 UTC"), ("c", None)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "record.json").write_text(json.dumps({"trained": trained}))
    assert book_version.ledger_date(tmp_path) == "2026-11-28"
    assert book_version.ledger_date(tmp_path / "nothing") == "unknown"
    records = list((REPO / "results" / "runs").glob("*/record.json"))
    if records:
        latest = max(json.loads(r.read_text())["trained"] for r in records)
        assert book_version.ledger_date() == latest[:10]


def test_the_title_is_escaped_for_the_pdf_title_page(book_version) -> None:
    assert book_version.latex_title("a reproduction of Karim & Kaur (2020)") == r"a reproduction of Karim \& Kaur (2020)"
    assert book_version.latex_title(r"50% of \& #1") == r"50\% of \& \#1"
