"""Between the helpers and the chapters' text: the numbers the prose quotes, provenance, setup cell."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from IPython.display import Markdown

from helpers import data, paper

REPO = Path(__file__).resolve().parents[1]

#: The first code cell of every chapter (tagged ``remove-cell``): on Colab, or anywhere the
#: book's helpers are not installed, it fetches the book and installs them; on a checkout
#: it does nothing. ``{url}`` is ``repository.url`` of ``_config.yml`` (a test keeps them equal).
SETUP_CELL = '''\
# Colab / Binder: fetch the book and install its helpers when they are missing.
# The text shows its numbers as {{eval}}`n["name"]`: JupyterLab shows their values (jupyterlab-myst);
# Colab renders no MyST, so there each cell that computes numbers lists them in a table below it.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("helpers") is None:
    subprocess.run("git clone -q --depth 1 {url} usps-cnn-book && cd usps-cnn-book && "
                   f'"{{sys.executable}}" -m pip install -q -r requirements.txt', shell=True, check=True)
    sys.path.insert(0, os.path.abspath("usps-cnn-book")); os.chdir("usps-cnn-book/chapters")'''


def repository() -> dict[str, str]:
    """The ``repository:`` settings of the book's ``_config.yml`` (``url``, ``branch``, ...)."""
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)*)", (REPO / "_config.yml").read_text(), re.M)
    return dict(re.findall(r"^\s+(\w+):\s*(\S+)", block[1], re.M)) if block else {}


def repository_url() -> str:
    if "url" not in (found := repository()):
        raise ValueError(f"{REPO / '_config.yml'} has no repository.url")
    return found["url"]


def setup_cell() -> str:
    """The setup cell every chapter starts with, for this book's repository."""
    return SETUP_CELL.format(url=repository_url())


def plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, so that the text's numbers format as numbers."""
    return value.item() if isinstance(value, np.generic) else value


class Numbers:
    """The numbers a chapter's prose quotes, by name: ``{eval}`n["name:format"]``` in the text.

    Every chapter's setup cell makes one, ``n``; each code cell adds what it computed (``n.add(...)``) before
    the paragraphs that quote it. ``n["rec_mean:.2f"]`` is ``format(value, ".2f")`` (the format is optional),
    so the same expression shows the number in the built book (myst-nb) and in JupyterLab (jupyterlab-myst).
    Each value is also a glue record in the cell's outputs (no page displays it), which nbval and
    ``tests/independent`` read; on Colab, which renders no MyST, each ``add`` also shows its numbers as a table.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def add(self, values: Mapping[str, Any]) -> None:
        """Make ``values`` quotable by the text below. A name means one value per chapter: adding it
        again with the same value (a cell run twice in JupyterLab) is fine, with another refused."""
        from myst_nb import glue

        clash = sorted(name for name in set(values) & set(self._values) if plain(values[name]) != self._values[name])
        if clash:
            raise ValueError(f"these numbers are already in this chapter with other values: {', '.join(clash)}; "
                             "give the new ones other names")
        for name, value in values.items():
            self._values[name] = plain(value)
            glue(name, self._values[name], display=False)
        if "google.colab" in sys.modules:  # Colab shows the prose's {eval} roles as code
            from IPython.display import display

            display(Markdown("| number | value |\n|---|---|\n" + "\n".join(
                f"| `{name}` | {self._values[name]} |" for name in values)))

    def __getitem__(self, spec: str) -> str:
        """``"name"`` or ``"name:format"``: the value as the text shows it."""
        name, _, fmt = spec.partition(":")
        if name not in self._values:
            raise KeyError(f"the text quotes {name!r}, which no cell above it has added to n; "
                           f"add it with n.add(...) in a cell before that paragraph")
        return format_number(self._values[name], fmt)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __len__(self) -> int:
        return len(self._values)


def format_number(value: Any, fmt: str = "") -> str:
    """``value`` formatted by ``fmt`` as myst-nb's ``{glue:text}`` did: an integer format makes an int, a float
    format a float, no format ``str(value)``."""
    if not fmt:
        return str(value)
    kind = fmt[-1]
    if kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    elif kind == "s":
        value = str(value)
    return format(value, fmt)


class ClaimError(AssertionError):
    """A statement of a chapter's prose that the ledger's numbers no longer support."""


def require(claims: Mapping[str, bool]) -> None:
    """Stop the chapter when a statement its prose makes is false for the ledger's numbers: prose that interprets
    results (which reading explains the gap, which digit carries it) is checked, as it cannot be quoted."""
    false = [claim for claim, holds in claims.items() if not holds]
    if false:
        raise ClaimError("The text of this chapter states these, but the results ledger says otherwise; "
                         "rewrite the text for the new results: " + "; ".join(false))


def constants() -> dict[str, float | int]:
    """Numbers every chapter's prose may quote: set sizes, the paper's recipe and published numbers."""
    return {"n_train": data.ROWS["train"], "n_test": data.ROWS["test"],
            "paper_epochs": paper.EPOCHS, "paper_batch": paper.BATCH_SIZE, **paper.numbers()}


def provenance(runs: Iterable[Any]) -> Markdown:
    """One line saying where a page's trained results come from (ledger, cache or this build)."""
    runs = list({r.key: r for r in runs}.values())  # a run several experiments share counts once
    sources = Counter(r.source for r in runs)
    parts = []
    if sources["ledger"]:
        records = [r.record for r in runs if r.source == "ledger"]
        days = sorted({rec["trained"][:10] for rec in records})
        envs = sorted({f"{e['cpu']} ({e['machine']}), Python {e['python']}, TensorFlow {e['tensorflow']}, "
                       f"{e['threads']} thread{'s' if e['threads'] > 1 else ''} per run"
                       for e in (rec["environment"] for rec in records)})
        when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        parts.append(f"{sources['ledger']} run{'s' if sources['ledger'] > 1 else ''} from the results ledger "
                     f"(`results/`), trained {when} on {'; '.join(envs)}")
    if sources["cache"]:
        parts.append(f"{sources['cache']} from this machine's cache (not in the ledger)")
    if sources["trained"]:
        parts.append(f"{sources['trained']} trained in this build (not in the ledger)")
    return Markdown("*Where these numbers come from:* " + "; ".join(parts) + ".")
