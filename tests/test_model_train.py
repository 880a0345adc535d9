"""helpers.model and helpers.train on tiny data: shapes, caching, determinism, progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import helpers.job
from helpers import cache, config, model, recipe, runs, store, train, trainer

from helpers.job import Job
from helpers.config import BASELINE, DECISIONS

TINY = BASELINE.with_(epochs=2, batch_size=256, filters=4, dense_units=8)


def test_model_matches_the_paper_layers() -> None:
    net = model.build_model(BASELINE)
    kinds = [row["type"] for row in model.layer_table(net)]
    assert kinds == ["InputLayer", "Conv2D", "LeakyReLU", "MaxPooling2D", "Flatten", "Dense",
                     "Dropout", "Dense"]
    assert net.input_shape == (None, 16, 16, 1) and net.output_shape == (None, 10)
    conv = net.get_layer("conv")
    assert conv.kernel_size == (5, 5)
    # 5x5x1 kernels + bias per filter
    assert conv.count_params() == BASELINE.filters * 26
    assert net.get_layer("softmax").activation.__name__ == "softmax"


def test_valid_padding_shrinks_the_maps() -> None:
    rows = model.layer_table(model.build_model(BASELINE.with_(padding="valid")))
    assert rows[1]["output shape"] == f"12 x 12 x {BASELINE.filters}"


def test_every_decision_option_builds() -> None:
    for decision in DECISIONS:
        for _, changes in decision.options:
            assert model.build_model(BASELINE.with_(**changes)).count_params() > 0


def test_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_BOOK_PROFILE", "ci")
    assert config.profile().epochs < config.PROFILES["full"].epochs
    monkeypatch.setenv("USPS_BOOK_PROFILE", "huge")
    with pytest.raises(ValueError, match="USPS_BOOK_PROFILE"):
        config.profile()


def test_fit_is_deterministic_and_prints_compact_progress(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    first, history, _ = train.fit(TINY, x, y, seed=3, progress_every=1)
    second, _, _ = train.fit(TINY, x, y, seed=3, progress_every=None)
    np.testing.assert_array_equal(first.predict(x, verbose=0), second.predict(x, verbose=0))
    assert len(history["loss"]) == TINY.epochs
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == TINY.epochs and lines[-1].startswith("epoch   2/2")
    assert "\x1b" not in "".join(lines), "no ANSI escapes (they break the PDF)"


def test_run_is_cached_under_its_full_spec_and_weights_reproduce_it(
        fake_release: dict[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch, allow_training: None) -> None:
    monkeypatch.setenv("USPS_DATA_DIR", str(fake_release["train"].parent))
    monkeypatch.setenv("USPS_LEDGER_DIR", str(isolated / "empty-ledger"))
    job = Job(TINY, seed=1)
    first = runs.run(job)
    assert first.source == "trained" and set(first.history) >= {"loss", "val_accuracy"}
    again = runs.run(job)
    assert again.source == "cache" and again.key == first.key
    assert (again.probabilities == first.probabilities).all()
    spec = job.spec()
    assert set(spec) >= {"config", "seed", "split", "data", "env", "code"}
    assert spec["env"]["tensorflow"] and spec["code"] == helpers.job.code_hash(TINY)
    assert first.record["data"]["zip.train.gz"] == first_hash(fake_release)
    numbers = first.numbers()
    assert (numbers["epochs"], numbers["batch_size"]) == (TINY.epochs, TINY.batch_size)
    assert numbers["seconds_per_epoch"] == pytest.approx(first.seconds / TINY.epochs) and first.seconds > 0
    assert numbers["train_cpu"] == first.record["environment"]["cpu"] and numbers["train_threads"] == 1
    other = runs.run(Job(TINY, seed=2))
    assert other.key != first.key and other.source == "trained"
    assert cache.lookup("models", spec) is not None
    stored = runs.run(Job(TINY, seed=1))
    assert stored.source == "cache" and stored.history == first.history
    x, _ = runs.data.load_usps("test")
    model = trainer.load_model(stored)  # rebuilt from the stored weights
    np.testing.assert_allclose(model.predict(x, verbose=0), first.probabilities, atol=1e-6)


def test_weights_of_another_model_are_refused(fake_release: dict[str, Path], isolated: Path,
                                              monkeypatch: pytest.MonkeyPatch, allow_training: None) -> None:
    monkeypatch.setenv("USPS_DATA_DIR", str(fake_release["train"].parent))
    monkeypatch.setenv("USPS_LEDGER_DIR", str(isolated / "empty-ledger"))
    one, two = runs.run(Job(TINY, seed=1)), runs.run(Job(TINY, seed=2))
    (one.entry / store.WEIGHTS).write_bytes((two.entry / store.WEIGHTS).read_bytes())
    with pytest.raises(ValueError, match="does not reproduce"):
        trainer.load_model(one)


def first_hash(files: dict[str, Path]) -> str:
    from helpers.data import sha256_of

    return sha256_of(files["train"])


def test_selection_takes_fewest_errors_and_keeps_baseline_on_ties() -> None:
    rows = []
    for decision in DECISIONS:
        for number, (label, changes) in enumerate(decision.options):
            rows.append({"decision": decision.name, "option": label, "baseline": number == 0,
                         "changes": changes, "errors": 10, "n": 100, "accuracy": 0.9})
    assert recipe.select(rows) == BASELINE
    target = next(r for r in rows if r["option"] == "64")
    target["errors"], target["accuracy"] = 9, 0.91
    assert recipe.select(rows) == BASELINE.with_(filters=64)
    assert recipe.chosen_options(rows)["convolution filters"]["option"] == "64"
    numbers = recipe.decision_numbers(rows)
    assert (numbers["holdout_n"], numbers["baseline_errors"], numbers["sweep_spread"]) == (100, 10, 1)
    assert numbers["sweep_spread_pct"] == 1.0 and numbers["sweep_seeds"] == len(config.profile().sweep_seeds)
    jobs = recipe.decision_jobs()
    assert len(jobs) == sum(len(d.options) for d in DECISIONS) * numbers["sweep_seeds"]
    assert {job.split for job in jobs} == {"holdout"} and jobs[0].config == BASELINE.with_(epochs=numbers["sweep_epochs"])
