"""End-to-end on the real data: the command line answers from the ledger, and one retrain
of the paper's model is compared with its ledger entry (what keeps the ledger honest)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ledger, recipe, runs, store, trainer

from helpers.job import Job
from tests.conftest import REPO, need_real_data


def test_command_line_evaluate_json_answers_from_the_ledger(cli_answers: dict[str, tuple[str, float]]) -> None:
    need_real_data()
    stdout, seconds = cli_answers["evaluate"]
    result = json.loads(stdout)
    entry = store.record(store.root() / store.KIND / result["key"])
    assert result["source"] == "ledger" and result["test_errors"] == entry["errors"]
    assert result["test_images"] == 2007 and len(result["per_class_accuracy"]) == 10
    assert result["test_accuracy"] == pytest.approx(1 - entry["errors"] / 2007)
    assert seconds < 60, f"evaluate took {seconds:.0f} s"


def test_command_line_summary_json_answers_from_the_ledger(cli_answers: dict[str, tuple[str, float]]) -> None:
    need_real_data()
    stdout, seconds = cli_answers["summary"]
    result = json.loads(stdout)
    seeds = [store.record(store.root() / store.KIND / Job(recipe.paper_config(), s["seed"]).key())
             for s in result["paper_model_seeds"]]
    assert [s["test_errors"] for s in result["paper_model_seeds"]] == [r["errors"] for r in seeds]
    assert 0 < result["best_single_error"] < result["paper_model_mean_error"]
    assert result["best_single_error"] == pytest.approx(np.mean(result["best_single_errors"]) / 2007)
    assert result["ensemble_error"] == pytest.approx(result["ensemble_errors"] / 2007)
    assert len(result["best_single_seeds"]) >= 3 and result["ensemble_size"] >= 5
    # the ensemble's size counts independent training runs: never more than its prediction sets
    members = result["ensemble_members"]
    assert result["ensemble_prediction_sets"] == sum(len(m["seeds"]) for m in members)
    assert result["ensemble_size"] <= result["ensemble_prediction_sets"]
    assert sum(m["weight"] * len(m["seeds"]) for m in members) == pytest.approx(1.0)
    assert result["plain_ensemble_error"] == pytest.approx(result["plain_ensemble_errors"] / 2007)
    chosen = result["best_single_candidate"]
    assert result["best_single_name"].startswith(chosen) and members[0]["name"] == chosen
    assert "cross-validation" in result["selection"] and repr(chosen) in result["selection"]
    # the best single model is the third round's choice: robust (its noise errors on the held-out
    # training images at or under the paper's network's) and the fewest clean cross-validated errors
    # among the robust, in its best reading; the second round's choice is kept under second_round
    third = result["third_round_cross_validation"]
    reference = next(v for v in third.values() if v["robust"] is None)
    assert all(v["robust"] == (v["noise_errors"] <= reference["noise_errors"]) for v in third.values() if v is not reference)
    scores = {n: min(v["errors_plain"], v["errors_shifts"]) if n == "B" else
              min(v["errors_plain"], v["errors_shifts"], v["errors_shifts_and_rotations"])
              for n, v in third.items() if v["robust"]}
    assert third[chosen]["robust"] and scores[chosen] == min(scores.values())
    assert result["best_single_round"] == "third" and 0 < result["best_single_noise_error"] < 1
    assert result["second_round"]["model"] == "B" and result["second_round"]["model_name"] in (
        {f"{n}, test-time shifts" for n in result["cross_validation"]} | set(result["cross_validation"]))
    assert result["seed_ensemble_error"] == pytest.approx(result["seed_ensemble_errors"] / 2007)
    assert seconds < 60, f"summary took {seconds:.0f} s"


def test_command_line_reports_bad_data_folder(tmp_path) -> None:
    env = {**os.environ, "USPS_DATA_DIR": str(tmp_path / "missing"), "USPS_TRAINING": "allow",
           "USPS_CACHE_DIR": str(tmp_path / "cache")}
    # seed 99 is in no ledger: it must be trained, which needs the data
    done = subprocess.run([sys.executable, "-m", "helpers", "train", "--seed", "99"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "USPS_DATA_DIR" in done.stderr and "does not exist" in done.stderr


#: How many of the seeds' standard deviations a retrain in another environment may fall from their mean.
BAND_SDS = 4


def retrain_band(errors: list[int], sds: float = BAND_SDS) -> tuple[float, float]:
    """The seeds' mean error count plus or minus ``sds`` of their standard deviations.

    A run in another environment is one more draw of the seed-to-seed spread (its last digits
    differ, so it trains like another seed); 4 standard deviations leave a chance of well under
    1 in 1000 that a correct retrain fails, while a retrain that reads the data or the model
    wrongly lands far outside (the paper model's seeds span a few images).
    """
    mean, sd = float(np.mean(errors)), float(np.std(errors, ddof=1))
    return mean - sds * sd, mean + sds * sd


def test_retraining_the_paper_model_reproduces_its_ledger_entry(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                record_property) -> None:
    """Retrains the paper's model (seed 0, the full 100 epochs, a few minutes) and compares.

    In the ledger's environment the predictions must be identical; in another one (other CPU
    flags or library versions) the error count must fall within 4 standard deviations of the
    mean of the recipe's ledger seeds (:func:`retrain_band`).
    """
    need_real_data()
    monkeypatch.setenv("USPS_BOOK_PROFILE", "full")
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    job = recipe.paper_job()
    stored = runs.run(job)
    assert stored.source == "ledger"
    trainer.build_entry(job, tmp_path, progress_every=25)
    again = store.load_entry(job, tmp_path, "trained")
    same = ledger.same_environment(stored.record, again.record)
    if same:
        case = (f"same environment as the ledger entry: predictions must be identical "
                f"({stored.errors} errors stored, {again.errors} retrained)")
        record_property("retrain check", case)  # printed at the end of the run (tests/conftest.py)
        assert np.array_equal(again.probabilities, stored.probabilities), (
            f"retrained in the ledger's environment but the predictions differ "
            f"({again.errors} errors against {stored.errors}): the ledger entry {stored.key} is not reproduced")
    else:
        seeds = [runs.run(Job(job.config, seed)).errors for seed in (0, 1, 2, 3, 4)]
        low, high = retrain_band(seeds)
        record_property("retrain check", f"another environment than the ledger entry's: {again.errors} errors "
                                         f"retrained; the seeds made {seeds}, band {low:.1f} to {high:.1f} "
                                         f"(their mean ± {BAND_SDS} standard deviations: a retrain elsewhere "
                                         f"trains like another seed)")
        assert low <= again.errors <= high


def test_retrain_band_is_the_seeds_mean_plus_or_minus_four_standard_deviations() -> None:
    seeds = [76, 75, 78, 83, 78]  # the recipe's seeds in the ledger
    sd = math.sqrt(sum((e - 78) ** 2 for e in seeds) / 4)
    assert retrain_band(seeds) == pytest.approx((78 - 4 * sd, 78 + 4 * sd))
    low, high = retrain_band(seeds)
    assert 65 < low < 66 and 90 < high < 91  # 79 (measured on another CPU) passes; 58 or 100 would not
    assert not low <= 58 and not 100 <= high
