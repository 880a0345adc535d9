"""The published book: HTML pages in a real browser and the PDF.

These need the built book (`make book`, `make pdf`). `make test` skips them when it is
not there; `make check-published` builds both and sets USPS_REQUIRE_PUBLISHED=1 so that
a missing artefact fails instead. Screenshots land in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO, SHOTS, _need

PDF = REPO / "_build" / "latex" / "usps-cnn-book.pdf"
PAGES = ["introduction", "eda", "model", "training", "evaluation", "variance", "discussion", "ablations",
         "human-level", "best-published", "demo", "reproducibility", "references"]
TITLES = ["Introduction", "The data", "The model", "Training", "Evaluation", "Seeds and ensembles", "Discussion",
          "Hidden units and batch size", "Towards human level", "Beyond the best published result",
          "Read your own handwriting",
          "Reproducibility and cost", "References"]


@pytest.mark.parametrize("page_name, title", zip(PAGES, TITLES))
def test_page_loads_with_images_and_no_console_errors(site: str, browser, page_name: str, title: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if r.url.startswith(site) else None)
    page.goto(f"{site}/chapters/{page_name}.html", wait_until="networkidle")
    assert title in page.locator("h1").first.inner_text()
    broken = page.evaluate("""() => Array.from(document.querySelectorAll('main img'))
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
    assert broken == [] and failed == [], f"images or files that did not load: {broken + failed}"
    assert errors == [], f"console errors: {errors}"
    text = page.locator("main").inner_text()
    assert "??" not in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{page_name}.png"), full_page=True)
    page.close()


def ledger_numbers() -> dict[str, str]:
    """The book's own headline numbers, computed from the results ledger (not the paper's constants)."""
    from helpers import experiments, train

    os.environ.setdefault("USPS_TRAINING", "forbid")
    paper_run = train.run(train.paper_job())
    seeds = experiments.paper_seed_runs()
    seed_mean = 100 * sum(1 - r.accuracy for r in seeds) / len(seeds)
    return {"accuracy": f"{100 * paper_run.accuracy:.2f}", "errors": str(paper_run.errors),
            "seed_mean": f"{seed_mean:.2f}", "train_seconds": f"{paper_run.seconds:.0f}"}


def test_glued_numbers_and_tables_are_in_the_pages(site: str, browser) -> None:
    ours = ledger_numbers()
    page = browser.new_page()
    page.goto(f"{site}/chapters/eda.html")
    text = page.locator("main").inner_text().replace("\u2019", "'")  # Sphinx may typeset ' as ’
    assert "7291" in text and "2007" in text and "all twenty proportions equal the paper's" in text
    assert page.locator("main table").count() >= 1
    page.goto(f"{site}/chapters/evaluation.html")
    text = page.locator("main").inner_text()
    assert f"classifies {ours['accuracy']} % of the test images" in text
    assert f"({ours['errors']} errors" in text and "results ledger" in text
    assert page.locator("main table").count() >= 2
    page.goto(f"{site}/chapters/variance.html")
    assert f"{ours['seed_mean']} %" in page.locator("main").inner_text()
    page.goto(f"{site}/chapters/training.html")
    assert f"took {ours['train_seconds']} s" in page.locator("main").inner_text()
    page.close()


def test_pdf_has_every_chapter_figure_and_number() -> None:
    _need(PDF, "run `make pdf` first")
    ours = ledger_numbers()
    text = subprocess.run(["pdftotext", "-layout", str(PDF), "-"], capture_output=True, text=True,
                          check=True).stdout.replace("\u2019", "'")
    assert "This book is an executable reproduction" in text  # the root page opens the PDF untitled
    for title in TITLES[1:-1]:
        assert title.upper() in text.upper(), f"chapter {title!r} is missing from the PDF"
    assert "??" not in text, "unresolved references in the PDF"
    for caption in ("Paper's Figure 1", "Paper's Figure 2", "Paper's Figure 4",
                    "Paper's Figure 5", "Paper's Figure 6", "Paper's Figure 7", "Paper's Figure 9"):
        assert caption in text, f"{caption} is missing from the PDF"
    for table in ("Paper's Figure 3", "Paper's Figure 8"):
        assert table in text, f"{table} (a table) is missing from the PDF"
    flat = " ".join(text.split())
    assert "7291" in text and "\x1b" not in text
    assert f"classifies {ours['accuracy']} % of the test images" in flat, "the book's own accuracy is missing"
    assert f"{ours['seed_mean']} %" in flat
    images = subprocess.run(["pdfimages", "-list", str(PDF)], capture_output=True, text=True,
                            check=True).stdout.strip().splitlines()[2:]
    assert len(images) >= 13, f"only {len(images)} images in the PDF"
