"""Nothing stale, half-written or from another configuration reaches a page: faults injected for real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cache, train
from helpers.config import BASELINE
from tests.conftest import REPO

REAL = os.environ.get("USPS_DATA_DIR")


def _make(folder: Path, *args: str) -> str:
    return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=folder, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_helpers_change_drops_the_execution_cache(tmp_path: Path) -> None:
    """`make book` keys Jupyter Book's execution cache on helpers/ and requirements.txt."""
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "helpers", tmp_path / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    before = _make(tmp_path, "print-code-hash")
    _make(tmp_path, f"_build/.code-hash-{before}")
    stale = [tmp_path / "_build" / ".jupyter_cache" / "x", tmp_path / "_build" / ".doctrees" / "y"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("results of the old helpers")
    _make(tmp_path, f"_build/.code-hash-{before}")  # nothing changed: the cache stays
    assert all(p.exists() for p in stale)
    with open(tmp_path / "helpers" / "model.py", "a") as handle:
        handle.write("\n# a change to the helpers\n")
    after = _make(tmp_path, "print-code-hash")
    assert after != before
    _make(tmp_path, f"_build/.code-hash-{after}")
    assert not any(p.exists() for p in stale), "stale execution results survived a helpers change"


def test_model_cache_key_covers_the_code_that_trains() -> None:
    sources = "".join(train._determining_code())
    for needle in ("def build_model", "def fit", "def parse", "def to_images", "def validation_split",
                   "set_intra_op_parallelism_threads"):
        assert needle in sources
    assert train.Job(BASELINE).spec()["code"] == train.code_hash()


KILLED = """
import sys
from helpers import train
from helpers.config import BASELINE
config = BASELINE.with_(epochs=60, filters=4, dense_units=8, batch_size=512)
train.run(train.Job(config, 0), progress_every=1)
"""


@pytest.mark.skipif(not REAL, reason="USPS_DATA_DIR is not set")
def test_training_killed_half_way_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", KILLED], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "USPS_CACHE_DIR": str(tmp_path)})
    assert child.stdout is not None
    deadline = time.time() + 120
    while "epoch   3/60" not in child.stdout.readline():
        assert time.time() < deadline and child.poll() is None, "training did not start"
    child.send_signal(signal.SIGKILL)
    child.wait()
    job = train.Job(BASELINE.with_(epochs=60, filters=4, dense_units=8, batch_size=512), 0)
    assert cache.lookup("models", job.spec(), tmp_path) is None, "a killed run was accepted"
    assert list((tmp_path / "models").glob(".*.tmp-*")), "the killed run left only a temporary folder"
    result = train.run(job)  # the next run trains afresh and cleans up
    assert result.built and len(result.history["loss"]) == 60
    assert not list((tmp_path / "models").glob(".*.tmp-*"))
    assert cache.lookup("models", job.spec(), tmp_path) == result.entry


@pytest.mark.skipif(not REAL, reason="USPS_DATA_DIR is not set")
def test_altered_model_file_is_detected_and_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path))
    job = train.Job(BASELINE.with_(epochs=2, filters=4, dense_units=8, batch_size=512), 0)
    first = train.run(job)
    (first.entry / "probabilities.npy").write_bytes(b"not the predictions")
    second = train.run(job)
    assert second.built and "probabilities.npy was altered" in capsys.readouterr().err
    assert (second.predicted == first.predicted).all(), "retraining the same job gives the same model"
