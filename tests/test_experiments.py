"""helpers.experiments and helpers.baselines on tiny data, one process (workers are tested by nbval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import baselines, evaluate, experiments, runs
from helpers.config import BASELINE, BEYOND, LADDER, beyond
from helpers.job import Job
from helpers.store import Run

TINY = BASELINE.with_(epochs=1, batch_size=16, filters=2, dense_units=4)


def fake_run(seed: int, probabilities: np.ndarray, labels: np.ndarray) -> Run:
    return Run(Job(TINY, seed), f"k{seed}", Path("."), {}, 1.0, probabilities, labels, "ledger")


def one_hot(predicted: list[int]) -> np.ndarray:
    return np.eye(10)[predicted]


def test_ensemble_averages_probabilities() -> None:
    labels = np.array([0, 1, 2, 3])
    runs = [fake_run(0, one_hot([0, 1, 9, 9]) * 0.6 + 0.04, labels),
            fake_run(1, one_hot([0, 9, 2, 9]) * 0.6 + 0.04, labels),
            fake_run(2, one_hot([9, 1, 2, 3]) * 0.9 + 0.01, labels)]
    table = experiments.ensemble_errors(runs)
    assert table.loc[1, "mean errors"] == pytest.approx((2 + 2 + 1) / 3)
    assert table.loc[1, "subsets"] == 3 and table.loc[2, "subsets"] == 3
    assert table.loc[3, "min errors"] == table.loc[3, "max errors"]
    assert table.loc[1, "max error rate (%)"] == pytest.approx(50.0)
    assert experiments.ensemble_predictions(runs).tolist() == [0, 1, 2, 9]
    numbers = experiments.ensemble_numbers(table)
    assert numbers["ensemble_size"] == 3 and numbers["ensemble_errors"] == 1
    assert numbers["ensemble_gain"] == pytest.approx(5 / 3 - 1)


def test_cost_table_counts_a_shared_run_once_in_its_first_group() -> None:
    labels = np.array([0, 1])
    runs = [fake_run(seed, one_hot([0, 1]), labels) for seed in range(3)]
    table = experiments.cost_table({"a": runs[:2], "b": runs[1:]})
    assert table["runs"].tolist() == [2, 2] and table["new runs"].tolist() == [2, 1]
    assert table["training time of the new runs (s)"].tolist() == [2, 1]
    assert experiments.cost_numbers(table, "x") == {"x_runs": 3, "x_minutes": 3 / 60, "x_wall_minutes": 3 / 120}


def test_seed_table_has_intervals() -> None:
    labels = np.zeros(100, int)
    predicted = [0] * 97 + [1] * 3
    table = experiments.seed_table([fake_run(4, one_hot(predicted), labels)])
    assert table.loc[4, "test errors"] == 3 and table.loc[4, "error rate (%)"] == 3.0
    assert table.loc[4, "95 % interval (%)"].startswith("1.")
    two = [fake_run(4, one_hot(predicted), labels), fake_run(5, one_hot(labels.tolist()), labels)]
    numbers = experiments.seed_numbers(two, paper_error=2.0)
    assert (numbers["seed_mean"], numbers["seed_min"], numbers["seed_max"]) == (1.5, 0.0, 3.0)
    assert numbers["paper_z"] == pytest.approx(0.5 / numbers["seed_std"])
    # five seeds on the 2007 test images: from exact rates, not the table's two-decimal ones
    test = np.repeat(np.arange(10), 201)[:2007]
    runs = []
    for seed, errors in enumerate((76, 75, 78, 83, 78)):
        guess = test.copy()
        guess[:errors] = (test[:errors] + 1) % 10
        runs.append(fake_run(seed, one_hot(guess.tolist()), test))
    exact = np.array([76, 75, 78, 83, 78]) / 2007 * 100
    numbers = experiments.seed_numbers(runs, paper_error=2.89)
    assert numbers["seed_std"] == pytest.approx(exact.std(ddof=1), rel=1e-12)  # 0.1536, not 0.1541
    assert numbers["seed_mean"] == pytest.approx(exact.mean(), rel=1e-12)


def test_sweep_summary_means_over_seeds() -> None:
    frame = pd.DataFrame({"dense_units": [8, 8, 16], "seed": [0, 1, 0], "errors": [10, 20, 5],
                          "error rate (%)": [1.0, 2.0, 0.5], "seconds": [3, 5, 9], "seconds per epoch": [1, 1, 3]})
    summary = experiments.sweep_summary(frame, "dense_units")
    assert summary.loc[8, "mean error rate (%)"] == 1.5 and summary.loc[8, "seeds"] == 2
    assert np.isnan(summary.loc[16, "std (%)"])
    numbers = experiments.sweep_numbers(summary, "width")
    assert numbers["width_seeds"] == "1 seed"  # the fewest seeds any setting has
    assert (numbers["width_low"], numbers["width_high"], numbers["width_best"]) == (8, 16, 16)
    assert (numbers["width_low_error"], numbers["width_best_error"], numbers["width_range"]) == (1.5, 0.5, 1.0)
    assert numbers["width_time_high_over_low"] == 9 / 4 and numbers["width_time_low_over_high"] == 4 / 9


def test_profiles_resolve_half_epochs() -> None:
    assert BEYOND["full"].resolve({"epochs": "half"}) == {"epochs": 50}
    assert BEYOND["ci"].resolve({"epochs": "half", "x": 1}) == {"epochs": 1, "x": 1}
    assert all(rung.changes for rung in LADDER)


def test_ladder_keeps_rungs_by_holdout_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rung is kept when its holdout errors do not exceed the previous kept rung's."""
    holdout_errors = {0: 10, 1: 12, 2: 9, 3: 20}  # per rung index
    monkeypatch.setattr(experiments, "paper_config", lambda: TINY)
    monkeypatch.setenv("USPS_BOOK_PROFILE", "ci")
    calls: list[list[Job]] = []

    def fake_run_many(jobs: list[Job], **_: object) -> list[Run]:
        calls.append(jobs)
        rung = len(calls) - 1
        out = []
        for job in jobs:
            labels = np.zeros(100, int)
            wrong = holdout_errors[rung] if job.split == "holdout" else 1
            out.append(fake_run(job.seed, one_hot([1] * wrong + [0] * (100 - wrong)), labels))
        return out

    monkeypatch.setattr(experiments, "run_many", fake_run_many)
    results = experiments.ladder()
    assert [r.kept for r in results] == [True, False, True, False]
    assert experiments.best_rung(results).name == LADDER[1].name
    # the rung after a dropped one builds on the last kept configuration
    assert results[2].config.schedule == "constant" and results[2].config.augment_shift > 0
    assert all(job.split in ("holdout", "test") for jobs in calls for job in jobs)
    table = experiments.ladder_table(results)
    assert list(table["kept"]) == ["yes", "no", "yes", "no"]
    numbers = experiments.ladder_numbers(results, {"single": 0.5, "ensemble": 2.0})
    assert numbers["final_rung"] == LADDER[1].name and numbers["final_mean"] == pytest.approx(1.0)
    assert numbers["single_gap"] > 0 >= numbers["ensemble_gap"]  # the single model misses, the ensemble meets
    assert (numbers["rungs_kept"], numbers["rungs_tried"]) == (1, 3)
    classical = pd.DataFrame([{"method": "k-nearest neighbours", "parameter": "k", "chosen": 1.0,
                               "test error rate (%)": 5.0}]).set_index("method")
    rows = experiments.ladder_standings(results[0].runs, results, classical)
    assert [error for _, error, _ in rows] == pytest.approx([1.0, numbers["final_mean"], numbers["final_ensemble"], 5.0])
    assert rows[-1][0] == "k-nearest neighbours (k = 1)" and rows[-1][2] == evaluate.binomial_text(5.0)


def test_run_many_trains_missing_jobs_once(fake_release: dict[str, Path], isolated: Path,
                                           monkeypatch: pytest.MonkeyPatch, allow_training: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import cache

    monkeypatch.setenv("USPS_DATA_DIR", str(fake_release["train"].parent))
    monkeypatch.setenv("USPS_LEDGER_DIR", str(isolated / "empty-ledger"))
    jobs = [Job(TINY, 0), Job(TINY, 1), Job(TINY, 0, "holdout"), Job(TINY, 0)]
    assert not any(runs.available(j) for j in jobs)
    results = runs.run_many(jobs, workers=1)
    assert "Training 3 of 3 runs" in capsys.readouterr().out  # the duplicate is trained once
    assert all(cache.lookup("models", j.spec()) is not None for j in jobs)
    assert len(results[2].labels) == 12 and len(results[0].labels) == 20  # 20 % holdout of 60, all 20 test
    assert (results[3].probabilities == results[0].probabilities).all()
    again = runs.run_many(jobs, workers=1)
    assert "Training" not in capsys.readouterr().out and {r.source for r in again} == {"cache"}
    assert all((a.probabilities == b.probabilities).all() for a, b in zip(results, again))


def test_baseline_chooses_on_holdout(fake_release: dict[str, Path], isolated: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_DATA_DIR", str(fake_release["train"].parent))
    result = baselines.evaluate_method("k-nearest neighbours")
    holdout = result["holdout errors"]
    assert set(holdout) == {"1", "3", "5", "7"}
    assert holdout[str(result["chosen"])] == min(holdout.values()), "not chosen by the fewest holdout errors"
    _, labels = runs.data.load_usps("test")
    predicted = np.array(result["test predictions"])
    assert result["test errors"] == int((predicted != labels).sum())
    assert result["test error rate (%)"] == pytest.approx(100 * result["test errors"] / len(labels))


def test_noise_robustness_and_literature() -> None:
    class Constant:
        def predict(self, x: np.ndarray, **_: object) -> np.ndarray:
            return np.tile(np.eye(10)[0], (len(x), 1))

    images = np.zeros((10, 16, 16, 1), np.float32)
    labels = np.array([0] * 9 + [1])
    table = evaluate.noise_robustness({"zero": Constant()}, images, labels, levels=(0.0, 0.5))
    assert table.loc[0.0, "zero"] == pytest.approx(10.0) and table.loc[0.5, "zero"] == pytest.approx(10.0)
    numbers = evaluate.robustness_numbers(pd.DataFrame(
        {"the paper's network": [1.0, 4.0], "the ladder's final model": [0.5, 8.0], "recipe + shifts": [1.0, 6.0],
         "recipe + rotations": [1.0, 3.0]}, index=pd.Index([0.0, 0.4], name="noise standard deviation")))
    assert (numbers["noise_max"], numbers["noise_ratio"]) == (0.4, 2.0) and "noise_verdict" not in numbers
    assert (numbers["noise_worst_alone"], numbers["noise_best_alone_error"]) == ("shifts", 3.0)
    literature = evaluate.literature_table([("ours", 2.0, "")])
    assert literature.loc["ours", "source"] == "this book" and literature.iloc[-1].name == "ours"


def test_beyond_settings_follow_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USPS_BOOK_PROFILE", "ci")
    assert beyond().epochs == 2


def fake_runs_for(jobs: list[Job], **_: object) -> list[Run]:
    """A made-up run per job (for checking how runs are grouped)."""
    labels = np.zeros(10, int)
    return [Run(job, job.key(), Path("."), {}, 1.0, one_hot([0] * 10), labels, "ledger") for job in jobs]


def test_readings_and_decision_options_group_runs_by_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.config import DECISIONS, READINGS

    monkeypatch.setattr(experiments, "paper_config", lambda: TINY)
    monkeypatch.setattr(experiments, "run_many", fake_runs_for)
    monkeypatch.setenv("USPS_BOOK_PROFILE", "full")
    readings = experiments.readings()
    assert list(readings)[0] == "the recipe (our reproduction)" and len(readings) == len(READINGS) + 1
    for name, group in readings.items():
        assert [r.job.seed for r in group] == list(beyond().reading_seeds)
        assert len({r.job.config for r in group}) == 1
    shift = readings["shift augmentation"][0].job.config
    assert shift == TINY.with_(epochs=beyond().epochs, augment_shift=2 / 16)
    options = experiments.decision_options()
    # every option that differs from the recipe, plus the recipe itself
    changed = [c for d in DECISIONS for _, c in d.options if TINY.with_(epochs=beyond().epochs, **c)
               != TINY.with_(epochs=beyond().epochs)]
    assert len(options) == len(changed) + 1
    for name, group in options.items():
        assert [r.job.seed for r in group] == list(beyond().option_seeds) and len({r.job.config for r in group}) == 1
    assert options["padding: valid"][0].job.config.padding == "valid"
    assert set(experiments.noise_jobs()) == set(experiments.NOISE_READINGS)
