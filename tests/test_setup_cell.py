"""The first cell of every chapter: silent on a checkout, fetches and installs the book elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import book
from tests.conftest import REPO

AFTER = """
import helpers, os
print("HELPERS", helpers.__file__)
print("CWD", os.getcwd())
"""


def test_on_a_checkout_it_does_nothing_and_prints_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", book.setup_cell()], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=True)
    assert (done.stdout, done.stderr) == ("", "") and list(tmp_path.iterdir()) == []


def test_without_helpers_it_clones_the_repository_and_installs_it(tmp_path: Path) -> None:
    """``python -S`` cannot import helpers (nor anything installed); a local file URL stands in
    for the repository, and pip resolves the requirements without installing (PIP_DRY_RUN)."""
    source = book.setup_cell().replace(book.repository_url(), REPO.as_uri())
    assert REPO.as_uri() in source, "the cell does not read the repository's URL from _config.yml"
    # without PYTHONPATH, which could point at a checkout and so make helpers importable after all
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PIP_DRY_RUN": "1", "PIP_NO_BUILD_ISOLATION": "0",  # 0: off (pip's inverted flag)
           "PIP_QUIET": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", source + AFTER], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    clone = tmp_path / "usps-cnn-book"
    assert (clone / "helpers" / "__init__.py").is_file() and (clone / "_config.yml").is_file()
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("HELPERS", "CWD")))
    assert Path(lines["HELPERS"]).resolve() == (clone / "helpers" / "__init__.py").resolve()
    assert Path(lines["CWD"]).resolve() == (clone / "chapters").resolve()


def test_numbers_format_as_the_text_asks_and_say_what_is_missing() -> None:
    """``n["name:format"]``, the expression of every number in the prose."""
    n = book.Numbers()
    n.add({"rate": 3.891, "errors": 58, "model": "W", "diff": -4})
    assert (n["rate:.2f"], n["errors"], n["errors:.1f"], n["model"], n["diff:+d"], n["rate:.0f"]) == (
        "3.89", "58", "58.0", "W", "-4", "4")
    assert "errors" in n and len(n) == 4
    import pytest

    with pytest.raises(KeyError, match="n.add"):
        n["accuracy"]
    with pytest.raises(ValueError, match="already .* other values: rate"):
        n.add({"rate": 1.0, "errors": 58})
    assert n["rate:.2f"] == "3.89"  # nothing was lost
    n.add({"rate": 3.891, "errors": 58})  # a cell run again in JupyterLab adds the same values: fine
    assert n["rate:.2f"] == "3.89" and len(n) == 4
