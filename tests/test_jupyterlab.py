"""A chapter run in JupyterLab as the README says, and read there like the book.

Starts ``jupyter lab`` from the virtual environment (the README's command) on 127.0.0.1 with a
token, opens copies of two chapter notebooks in headless Chromium, clears their outputs, runs all
cells and waits for every code cell, then reads the rendered Markdown cells: the numbers of the
prose must be there as values (jupyterlab-myst evaluates each ``{eval}`n["name:format"]``` in the
kernel), with no role, expression or key name left. The expected values are computed here from
the results ledger, not read from the notebooks.

JupyterLab and two chapters take about a minute and a half, so ``make test`` skips this module;
``make check-published`` runs it (USPS_REQUIRE_PUBLISHED=1), as does USPS_JUPYTERLAB_TEST=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, REQUIRED

pytestmark = pytest.mark.skipif(not (REQUIRED or os.environ.get("USPS_JUPYTERLAB_TEST") == "1"),
                                reason="about 90 s: make check-published runs it (or USPS_JUPYTERLAB_TEST=1)")

CHAPTERS = ("evaluation", "introduction")
TOKEN = "usps-cnn-book-test"
LEFT_OVER = re.compile(r"\{glue|\{eval|n\[\"|our_accuracy|rec_mean|paper_error\b")
SETTINGS = {  # every cell in the page (no virtual scrolling), and nothing saved over the copies
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def expected() -> dict[str, list[str]]:
    """Values each chapter's prose must show, from the ledger (as the book formats them)."""
    from helpers import findings, recipe, runs

    os.environ.setdefault("USPS_TRAINING", "forbid")
    paper_run = runs.run(recipe.paper_job())
    numbers = findings.numbers(findings.gather())
    return {"evaluation": [f"classifies {100 * paper_run.accuracy:.2f} % of the test images",
                           f"({paper_run.errors} errors"],
            "introduction": ["the headline number is not reproduced",
                             f"makes {numbers['rec_mean']:.2f} % on average"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab from .venv serving a folder with copies of the chapters' notebooks."""
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.fail(f"{jupyter} is missing: the virtual environment lacks JupyterLab (make book installs it)")
    root = tmp_path_factory.mktemp("lab")
    (root / "chapters").mkdir()
    for name in CHAPTERS:
        shutil.copy(REPO / "chapters" / f"{name}.ipynb", root / "chapters")
    settings = root / "settings"
    for path, values in SETTINGS.items():
        (settings / path).parent.mkdir(parents=True, exist_ok=True)
        (settings / path).write_text(json.dumps(values))
    port = _free_port()
    command = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "USPS_TRAINING": "forbid", "JUPYTER_CONFIG_DIR": str(root / "config")}
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"jupyter lab stopped: {(root / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer within 60 s")
        yield url, root
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _menu(page, menu: str, item: str) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()


def run_all(page, url: str, name: str) -> list[str]:
    """Open a notebook, clear its outputs, run all cells; the text of its rendered Markdown cells."""
    page.goto(f"{url}/lab/tree/chapters/{name}.ipynb?token={TOKEN}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    notebook.locator(".jp-CodeCell").first.wait_for(timeout=90_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=90_000)
    _menu(page, "Edit", "Clear Outputs of All Cells")
    _menu(page, "Run", "Run All Cells")
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # every code cell numbered, none waiting ([*]) or unrun ([ ])
        texts = prompts.all_inner_texts()
        if texts and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts):
            break
        page.wait_for_timeout(1000)
    else:
        pytest.fail(f"{name}: not every cell ran within 240 s: {texts}")
    errors = notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, f"{name}: a cell failed: {tracebacks[0][:1500]}"
    page.wait_for_timeout(3000)  # the last Markdown cells' expressions come back from the kernel
    failed = notebook.locator(".myst-RenderedExpressionError").all_inner_texts()
    assert not failed, f"{name}: expressions the kernel could not evaluate: {failed}"
    # jupyterlab-myst renders Markdown cells (JupyterLab's own renderer would show the roles raw)
    return notebook.locator(".jp-MarkdownCell .lm-Widget.myst").all_inner_texts()


@pytest.mark.parametrize("name", CHAPTERS)
def test_run_all_shows_every_number_of_the_prose(lab, browser, name: str) -> None:
    url, root = lab
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        cells = run_all(page, url, name)
        if name == "evaluation":
            page.locator(".jp-MarkdownCell", has_text="classifies").first.scroll_into_view_if_needed()
            page.screenshot(path=str(REPO / "artifacts" / "screenshots" / "jupyterlab-evaluation.png"))
    finally:
        page.close()
    text = "\n".join(cells).replace("\u2019", "'")
    for phrase in expected()[name]:
        assert phrase in " ".join(text.split()), f"{name}: {phrase!r} is not in the rendered prose"
    left = sorted({m for cell in cells for m in LEFT_OVER.findall(cell)})
    assert not left, f"{name}: the rendered prose shows placeholders or key names: {left}"
    assert len(cells) >= 3, f"{name}: only {len(cells)} Markdown cells rendered by jupyterlab-myst"


def test_the_committed_notebook_shows_the_numbers_before_it_runs(lab, browser) -> None:
    """`make notebooks` stores each expression's value where jupyterlab-myst restores it from."""
    url, root = lab
    shutil.copy(REPO / "chapters" / "evaluation.ipynb", root / "chapters" / "evaluation-as-committed.ipynb")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{url}/lab/tree/chapters/evaluation-as-committed.ipynb?token={TOKEN}")
        cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell .lm-Widget.myst")
        cells.nth(3).wait_for(timeout=90_000)
        page.wait_for_timeout(2000)
        text = " ".join(" ".join(cells.all_inner_texts()).split())
    finally:
        page.close()
    assert expected()["evaluation"][0] in text
    assert not LEFT_OVER.findall(text), sorted(set(LEFT_OVER.findall(text)))
