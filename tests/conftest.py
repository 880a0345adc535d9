"""Shared fixtures: small USPS-format files made on the fly (the real files are never committed)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def need_real_data() -> None:
    """Skip a test that needs the real USPS files when they are not configured; but fail it
    when CI says they are there (``USPS_REQUIRE_DATA=1``), so that it can never skip silently."""
    from helpers import data

    try:
        data.checksums()
    except data.USPSDataError as exc:
        if os.environ.get("USPS_REQUIRE_DATA") == "1":
            pytest.fail(f"USPS_REQUIRE_DATA=1 but the real data cannot be read: {exc}")
        pytest.skip(f"the real USPS data is not available: {exc}")


#: The slowest test modules, handed out first so that the two test workers finish together (``--dist
#: loadscope --no-loadscope-reorder`` gives each worker whole modules, in collection order): the paper
#: model's retrain (about 100 s of one core) and the cluster tests (about 110 s).
FIRST = ("tests/test_reproduction.py::test_retraining", "tests/test_reproduction.py", "tests/test_cluster.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`FIRST` first (the retrain before its module's other tests), keeping every
    other test in its order."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, path in enumerate(FIRST) if item.nodeid.startswith(path)), len(FIRST))

    items.sort(key=rank)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print which case the paper model's retrain check met (a passing test's output is captured)."""
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == "retrain check":
                terminalreporter.write_line(f"retrain check: {value}")


#: The command line's JSON answers that tests read, each run as a black box from the committed ledger.
CLI_COMMANDS = ("summary", "gap", "evaluate")


@pytest.fixture(scope="session")
def cli_answers(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, tuple[str, float]]:
    """``python -m helpers <command> --json`` for each of :data:`CLI_COMMANDS`: its output and its seconds
    (from the start until its answer was read: the three run side by side, so a bound on each one's time).

    They run once per test session (each takes 10-25 s), shared by the test workers through a file in
    their common temporary folder; a command that fails fails every test that reads it.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    answers = shared / "cli-answers.json"
    with FileLock(str(answers) + ".lock"):
        if not answers.exists():
            env = {**os.environ, "USPS_TRAINING": "forbid", "USPS_BOOK_PROFILE": "full"}
            env.pop("USPS_LEDGER_DIR", None)  # helpers.store.ENV_LEDGER: the committed ledger, not a test's
            start = time.perf_counter()
            procs = {cmd: subprocess.Popen([sys.executable, "-m", "helpers", cmd, "--json"], cwd=REPO, env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for cmd in CLI_COMMANDS}
            found = {}
            for cmd, proc in procs.items():
                stdout, stderr = proc.communicate(timeout=600)
                found[cmd] = {"returncode": proc.returncode, "stdout": stdout, "stderr": stderr[-3000:],
                              "seconds": time.perf_counter() - start}
            answers.write_text(json.dumps(found))
    found = json.loads(answers.read_text())
    for cmd, answer in found.items():
        if answer["returncode"] != 0:
            pytest.fail(f"python -m helpers {cmd} --json failed:\n{answer['stderr']}")
    return {cmd: (answer["stdout"], answer["seconds"]) for cmd, answer in found.items()}


@pytest.fixture
def allow_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that train tiny models into a temporary cache (make sets USPS_TRAINING=forbid)."""
    monkeypatch.setenv("USPS_TRAINING", "allow")


def make_rows(n: int = 20, seed: int = 0, style: str = "train") -> list[str]:
    """Rows in the format of the real files: ``6.0000 -1.0000 ... `` (train) or ``6 -1 0.5`` (test)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pixels = rng.uniform(-1, 1, 256).round(3)
        pixels[:100] = -1.0
        if style == "train":
            rows.append(f"{i % 10:.4f} " + " ".join(f"{v:.4f}" for v in pixels) + " ")
        else:
            rows.append(f"{i % 10} " + " ".join("-1" if v == -1 else f"{v:g}" for v in pixels))
    return rows


def write_gz(path: Path, rows: list[str]) -> Path:
    """Write rows as a gzip text file."""
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(rows) + "\n")
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No USPS_DATA_DIR, and an empty cache in a temporary folder."""
    monkeypatch.delenv("USPS_DATA_DIR", raising=False)
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def fake_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two small valid files whose checksums are patched in as the published ones."""
    from helpers import data

    folder = tmp_path / "release"
    folder.mkdir()
    files = {"train": write_gz(folder / "zip.train.gz", make_rows(60, 1, "train")),
             "test": write_gz(folder / "zip.test.gz", make_rows(20, 2, "test"))}
    for split, path in files.items():
        monkeypatch.setitem(data.SHA256, path.name, hashlib.sha256(path.read_bytes()).hexdigest())
        monkeypatch.setitem(data.ROWS, split, 60 if split == "train" else 20)
    data._MEMO.clear()
    return files


# ---------------------------------------------------------------- the published book
HTML = REPO / "_build" / "html"
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("google-chrome") or "/usr/bin/chromium"
REQUIRED = os.environ.get("USPS_REQUIRE_PUBLISHED") == "1"


def _need(path: Path, what: str) -> None:
    if not path.exists():
        if REQUIRED:
            pytest.fail(f"{path} is missing: {what}")
        pytest.skip(f"{path} is missing: {what}")


@pytest.fixture(scope="module")
def site() -> str:
    _need(HTML / "chapters" / "eda.html", "run `make book` first")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # one line per request is noise in test output
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (apt-get install chromium)") if REQUIRED else \
            pytest.skip("no chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def import_ext(*names: str) -> tuple:
    """The book's Sphinx extensions in ``_ext/`` (not a package), imported by module name."""
    import importlib
    import sys

    sys.path.insert(0, str(REPO / "_ext"))
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(REPO / "_ext"))
