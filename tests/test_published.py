"""The published book: HTML pages in a real browser and the PDF.

These need the built book (`make book`, `make pdf`). `make test` skips them when it is
not there; `make check-published` builds both and sets USPS_REQUIRE_PUBLISHED=1 so that
a missing artefact fails instead. Screenshots land in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import REPO, SHOTS, _need, import_ext

PDF = REPO / "_build" / "latex" / "usps-cnn-book.pdf"
PAGES = ["introduction", "eda", "model", "training", "evaluation", "variance", "discussion", "ablations",
         "human-level", "best-published", "best-published-round-1", "best-published-round-2", "best-published-noise",
         "best-published-round-3", "best-published-round-4", "demo", "reproducibility", "references"]
TITLES = ["Introduction", "The data", "The model", "Training", "Evaluation", "Seeds and ensembles", "Discussion",
          "Hidden units and batch size", "Towards human level", "Beyond the best published result",
          "Round 1: cross-validation instead of holdout splits", "Round 2: B and its ensemble",
          "Why B misreads noisy digits", "Round 3: accurate and robust (W)", "Round 4: distillation",
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
    from helpers import experiments, recipe, runs

    os.environ.setdefault("USPS_TRAINING", "forbid")
    paper_run = runs.run(recipe.paper_job())
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
    assert f"in {ours['train_seconds']} s," in page.locator("main").inner_text()  # the training chapter's run time
    page.close()


def test_pdf_has_every_chapter_figure_and_number() -> None:
    _need(PDF, "run `make pdf` first")
    ours = ledger_numbers()
    text = subprocess.run(["pdftotext", "-layout", str(PDF), "-"], capture_output=True, text=True,
                          check=True).stdout.replace("\u2019", "'")
    assert "This book reproduces" in text  # the root page opens the PDF untitled
    for title in TITLES[1:-1]:
        assert title.upper() in text.upper(), f"chapter {title!r} is missing from the PDF"
    assert "??" not in text, "unresolved references in the PDF"
    for caption in ("Paper's Figure 1", "Paper's Figure 2", "Paper's Figures 4 and 5",  # one figure, two panels
                    "Paper's Figure 6", "Paper's Figure 7", "Paper's Figure 9"):
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


# ---------------------------------------------------------------- what each page transfers
INTRODUCTION_BUDGET = 2_000_000  # bytes: the introduction, everything it requests included


def transfers(browser, url: str) -> dict[str, int]:
    """Every file a fresh visit to ``url`` requests (browser cache off), with the bytes transferred
    (headers and body, as Chromium's DevTools count them), once the page has settled."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    urls: dict[str, str] = {}
    sizes: dict[str, int] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], int(e["encodedDataLength"])))
    cdp.on("Network.loadingFailed", lambda e: sizes.setdefault(e["requestId"], 0))
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(1000)  # anything a script asks for after the load (a lazy loader, say)
    context.close()
    return {urls[r]: size for r, size in sizes.items() if r in urls}


def test_pages_load_only_what_they_show(site: str, browser) -> None:
    """Only the demo page loads the demo's files, and the introduction transfers at most 2 MB.

    Jupyter Book adds every script under _static/ to every page; _ext/lean_pages.py keeps the
    demo's script to the demo page (and drops the theme's unused 1.5 MB FontAwesome script).
    The table printed here (``-s``) is each page's weight as a first-time reader fetches it.
    """
    rows, demo_elsewhere = [], {}
    for name in PAGES:
        files = transfers(browser, f"{site}/chapters/{name}.html")
        total = sum(files.values())
        largest = max(files, key=files.get)
        rows.append((name, len(files), total, largest.replace(site, ""), files[largest]))
        demo_files = [u.replace(site, "") for u in files if "/_static/demo/" in u]
        if name != "demo" and demo_files:
            demo_elsewhere[name] = demo_files
        if name == "introduction":
            introduction = total
    print("\npage               requests        bytes  largest file")
    for name, count, total, largest, size in rows:
        print(f"{name:18s} {count:8d} {total:12,d}  {largest.split('?')[0]} ({size:,d})")
    assert demo_elsewhere == {}, f"pages other than the demo request the demo's files: {demo_elsewhere}"
    assert introduction <= INTRODUCTION_BUDGET, \
        f"the introduction transfers {introduction:,d} bytes (budget {INTRODUCTION_BUDGET:,d})"


# ---------------------------------------------------------------- version and citation
def book_version_module():
    """_ext/book_version.py, which computes the version and the ledger's date when the book is built."""
    return import_ext("book_version")[0]


def assert_built_from_this_history(shown: str) -> None:
    """The version a page shows is this checkout's commit or one before it (the book may have
    been built before the last commit), with "-dirty" when it was built with changes, or
    "unknown" when git is not available here either."""
    if book_version_module().book_version()[0] == "unknown":
        assert shown == "unknown"
        return
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", shown), f"not a version from git: {shown!r}"
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", shown.removesuffix("-dirty"), "HEAD"],
                              cwd=REPO, capture_output=True)
    assert ancestor.returncode == 0, f"{shown} is not a commit of this checkout's history"


def test_every_page_footer_names_the_version_and_the_ledger_date(site: str, browser) -> None:
    ledger = book_version_module().ledger_date()
    page = browser.new_page()
    shown = set()
    for name in PAGES:
        page.goto(f"{site}/chapters/{name}.html")
        footer = " ".join(page.locator("footer .book-version").inner_text().split())
        match = re.fullmatch(r"Version (\S+)( \(\d{4}-\d{2}-\d{2}\))? · results ledger: last entry trained "
                             r"(\S+) · How to cite", footer)
        assert match, f"{name}: footer reads {footer!r}"
        assert match[3] == ledger, f"{name}: the footer's ledger date {match[3]} is not the ledger's {ledger}"
        shown.add(match[1])
    assert len(shown) == 1, f"pages show different versions: {shown}"
    version = shown.pop()
    assert_built_from_this_history(version)
    page.goto(f"{site}/chapters/reproducibility.html")
    section = " ".join(page.locator("section#how-to-cite").inner_text().split())
    assert f"version {version}" in section and "Karim" in section, section
    page.locator("footer .book-version a").click()
    assert page.url.endswith("reproducibility.html#how-to-cite")
    page.close()


def test_pdf_title_page_names_the_version_and_the_ledger_date() -> None:
    _need(PDF, "run `make pdf` first")
    title_page = subprocess.run(["pdftotext", "-l", "1", str(PDF), "-"], capture_output=True, text=True,
                                check=True).stdout
    flat = " ".join(title_page.split())
    match = re.search(r"Version (\S+)", flat)
    assert match, f"no version on the PDF's title page: {flat!r}"
    assert_built_from_this_history(match[1])
    ledger = book_version_module().ledger_date()
    assert f"Results ledger: last entry trained {ledger}" in flat, flat
