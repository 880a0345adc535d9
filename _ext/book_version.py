"""Which book a reader is looking at: its version (from git) and the date of the results ledger.

Every HTML page's footer and the PDF's title page carry

* the book's version: ``git describe --always --dirty`` (the short commit hash, with ``-dirty``
  when the working tree had uncommitted changes) and that commit's date, or "unknown" when git
  or the repository is not available (a tarball, say);
* the date of the last entry of the results ledger: the latest ``trained`` of
  ``results/runs/*/record.json``.

Both are computed when the build starts (``config-inited``), never typed in: Sphinx's
``version``/``release`` (shown as "Version ..." on the PDF's title page, where the date line
names the ledger), and ``html_context`` for the footer component ``templates/book-version.html``,
which also links to "How to cite" in the reproducibility chapter.

The title page also needs the book's title as LaTeX: Jupyter Book passes ``title:`` of
``_config.yml`` to ``latex_documents`` as it is, so a title with ``&`` (``Karim & Kaur``) stopped
XeLaTeX ("Misplaced alignment tab character"); its ``&``, ``%`` and ``#`` are escaped here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FOOTER = "book-version.html"
# Sphinx prints the release on the title page and in every page's header, where it made the long
# title wrap onto two lines (and fancyhdr warn about the header's height): keep it on the title
# page (\releaseinfo is printed there only) and give the headers the title alone, as before.
TITLE_PAGE_ONLY = r"""
\makeatletter
\setreleaseinfo{\releasename\space\version}
\renewcommand{\py@release}{}
\renewcommand{\sphinxheadercomma}{}
\makeatother
"""


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def book_version() -> tuple[str, str]:
    """(``git describe --always --dirty``, the commit's date YYYY-MM-DD), or ("unknown", "")."""
    describe = _git("describe", "--always", "--dirty")
    if not describe:
        return "unknown", ""
    return describe, _git("log", "-1", "--format=%cs")


def ledger_date(results: Path = ROOT / "results") -> str:
    """The date (YYYY-MM-DD) of the latest ``trained`` in the ledger's records, or "unknown"."""
    dates = []
    for record in (results / "runs").glob("*/record.json"):
        try:
            trained = json.loads(record.read_text()).get("trained")
        except (OSError, ValueError):
            continue
        if isinstance(trained, str) and trained[:4].isdigit():
            dates.append(trained)
    return max(dates)[:10] if dates else "unknown"


def _config_inited(app: Any, config: Any) -> None:
    version, commit_date = book_version()
    ledger = ledger_date()
    release = f"{version} ({commit_date})" if commit_date else version
    config.version = version
    config.release = release
    config.today = f"Results ledger: last entry trained {ledger}"  # the date line of the PDF's title page
    config.latex_elements = {**config.latex_elements, "releasename": "Version",
                             "preamble": config.latex_elements.get("preamble", "") + TITLE_PAGE_ONLY}
    config.html_context = {**config.html_context, "book_version": version, "book_commit_date": commit_date,
                           "ledger_date": ledger}
    options = dict(config.html_theme_options)
    items = options.get("footer_content_items") or [
        "author.html", "copyright.html", "last-updated.html", "extra-footer.html"]  # sphinx-book-theme's default
    if isinstance(items, str):
        items = [item.strip() for item in items.split(",") if item.strip()]
    if FOOTER not in items:
        options["footer_content_items"] = [*items, FOOTER]
    config.html_theme_options = options
    templates = str(Path(__file__).resolve().parent / "templates")
    if templates not in config.templates_path:
        config.templates_path.insert(0, templates)


def latex_title(title: str) -> str:
    """A plain-text title as LaTeX: ``&``, ``%`` and ``#`` escaped (unless they already are)."""
    return re.sub(r"(?<!\\)([&%#])", r"\\\1", title)


def _escape_latex_titles(app: Any, env: Any) -> None:
    # Jupyter Book sets latex_documents after Sphinx has started, so this runs once the
    # sources are read, before the LaTeX builder writes the title page.
    app.config.latex_documents = [(doc[0], doc[1], latex_title(doc[2]), *doc[3:]) if len(doc) > 2 else doc
                                  for doc in app.config.latex_documents]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _config_inited)
    app.connect("env-updated", _escape_latex_titles)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
