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

import helpers.job
from helpers import cache, runs

from helpers.job import Job
from helpers.config import BASELINE
from tests.conftest import REPO, need_real_data


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


def test_ledger_manifest_is_part_of_the_execution_cache_key(tmp_path: Path) -> None:
    """A new or retrained ledger entry changes results/MANIFEST.json, and a new retrain report
    results/VERIFY.md: either re-runs the pages."""
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "helpers", tmp_path / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "MANIFEST.json").write_text('{"files": {}}')
    before = _make(tmp_path, "print-code-hash")
    (tmp_path / "results" / "MANIFEST.json").write_text('{"files": {"runs/x/record.json": "00"}}')
    after = _make(tmp_path, "print-code-hash")
    assert after != before
    # a new retrain report changes the reproducibility chapter's verification counts
    (tmp_path / "results" / "VERIFY.md").write_text("# Retraining the results ledger\n")
    assert _make(tmp_path, "print-code-hash") != after


def test_code_hash_follows_the_code_that_determines_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash changes with the training core's source and with the network a configuration
    builds, and with nothing else: a new model option, off by default, leaves old entries valid."""
    from helpers import model

    base = helpers.job.code_hash(BASELINE)
    assert helpers.job.code_hash(BASELINE) == base and helpers.job.code_hash(BASELINE.with_(filters=64)) != base
    code = helpers.job._CODE  # the normalised source of the training core, by name (helpers/codehash.py)
    assert {"fit", "parse", "to_images", "validation_split", "fold_split", "arrays", "set_seed", "_predict",
            "_tf"} <= set(code)
    assert "set_intra_op_parallelism_threads" in code["_tf"] and "enable_op_determinism" in code["set_seed"]

    helpers.job.code_hash.cache_clear()
    shuffle = "keyword(arg='shuffle', value=Constant(value=True))"
    assert shuffle in code["fit"]
    monkeypatch.setitem(helpers.job._CODE, "fit", code["fit"].replace(shuffle, shuffle.replace("True", "False")))
    assert helpers.job.code_hash(BASELINE) != base, "a change to the training loop kept the hash"
    monkeypatch.undo()

    real_build = model.build_model

    def with_extra_layer(config, steps_per_epoch=1):  # type: ignore[no-untyped-def]
        net = real_build(config, steps_per_epoch)
        extended = model.keras.Sequential([net, model.keras.layers.Activation("linear")])
        extended.compile(optimizer=net.optimizer, loss=net.loss)
        return extended

    # the serialised network is kept in the per-user cache under the code's files: a network changed
    # behind their back (here) is built again only in an empty cache
    helpers.job.code_hash.cache_clear()
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(model, "build_model", with_extra_layer)
    assert helpers.job.code_hash(BASELINE) != base, "a change to the network kept the hash"
    monkeypatch.undo()
    helpers.job.code_hash.cache_clear()
    assert helpers.job.code_hash(BASELINE) == base


KILLED = """
import sys
from helpers import runs
from helpers.config import BASELINE
from helpers.job import Job
config = BASELINE.with_(epochs=12, filters=4, dense_units=8, batch_size=512)
runs.run(Job(config, 0), progress_every=1)
"""


def test_training_killed_half_way_is_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_real_data()
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("USPS_TRAINING", "allow")
    child = subprocess.Popen([sys.executable, "-c", KILLED], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "USPS_CACHE_DIR": str(tmp_path), "USPS_TRAINING": "allow"})
    assert child.stdout is not None
    deadline = time.time() + 120
    while "epoch   3/12" not in child.stdout.readline():  # killed with 9 epochs to go
        assert time.time() < deadline and child.poll() is None, "training did not start"
    child.send_signal(signal.SIGKILL)
    child.wait()
    job = Job(BASELINE.with_(epochs=12, filters=4, dense_units=8, batch_size=512), 0)
    assert cache.lookup("models", job.spec(), tmp_path) is None, "a killed run was accepted"
    assert list((tmp_path / "models").glob(".*.tmp-*")), "the killed run left only a temporary folder"
    result = runs.run(job)  # the next run trains afresh and cleans up
    assert result.source == "trained" and len(result.history["loss"]) == 12
    assert not list((tmp_path / "models").glob(".*.tmp-*"))
    assert cache.lookup("models", job.spec(), tmp_path) == result.entry


def test_altered_cached_run_is_detected_and_retrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    need_real_data()
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("USPS_TRAINING", "allow")
    job = Job(BASELINE.with_(epochs=2, filters=4, dense_units=8, batch_size=512), 0)
    first = runs.run(job)
    (first.entry / "predictions.npz").write_bytes(b"not the predictions")
    second = runs.run(job)
    assert second.source == "trained" and "predictions.npz was altered" in capsys.readouterr().err
    assert (second.probabilities == first.probabilities).all(), "retraining the same job gives the same model"


def test_a_result_derived_from_the_ledger_is_computed_once_and_again_when_the_ledger_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runs.derived (the rounds' results, the findings): kept on disk for other processes only while
    training is forbidden, keyed by the ledger's contents and the code; a result computed while the ledger
    or the code changed is not kept; old entries are pruned."""
    ledger, calls = tmp_path / "ledger", []
    (ledger / "runs" / "a").mkdir(parents=True)
    record = ledger / "runs" / "a" / "record.json"
    record.write_text('{"errors": 80}')
    monkeypatch.setenv("USPS_LEDGER_DIR", str(ledger))
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    kept = tmp_path / "cache" / "derived" / "test"

    def compute() -> dict[str, object]:
        calls.append(1)
        return {"errors": len(calls)}

    monkeypatch.setenv("USPS_TRAINING", "allow")  # a run may be trained or read from the cache: computed
    assert [runs.derived("test", compute) for _ in range(2)] == [{"errors": 1}, {"errors": 2}]
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    assert [runs.derived("test", compute) for _ in range(2)] == [{"errors": 3}, {"errors": 3}]
    record.write_text('{"errors": 81}')  # an edited number: a new key
    assert [runs.derived("test", compute) for _ in range(2)] == [{"errors": 4}, {"errors": 4}]
    monkeypatch.setattr(runs, "CODE_STAMP", "other code")  # other code: a new key
    assert runs.derived("test", compute) == {"errors": 5}
    monkeypatch.undo()
    monkeypatch.setenv("USPS_LEDGER_DIR", str(ledger))
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    assert len(list(kept.glob("*/result.pickle"))) == 3

    record.write_text('{"errors": 90}')

    def edits_the_ledger() -> dict[str, object]:
        record.write_text(f'{{"errors": {82 + len(calls)}}}')  # as a `make results` beside it would
        return compute()

    assert [runs.derived("test", edits_the_ledger) for _ in range(2)] == [{"errors": 6}, {"errors": 7}]
    monkeypatch.setattr(helpers.job, "CODE_STAMP", "what this process imported")  # the code changed since
    assert [runs.derived("test", compute) for _ in range(2)] == [{"errors": 8}, {"errors": 9}]
    assert len(list(kept.glob("*/result.pickle"))) == 3, "results of a changing ledger or code are not kept"
    monkeypatch.undo()
    monkeypatch.setenv("USPS_LEDGER_DIR", str(ledger))
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    record.write_text('{"errors": 1}')
    assert runs.derived("test", compute) == {"errors": 10}
    assert len(list(kept.glob("*/result.pickle"))) == 3, "the oldest entry is pruned"
