"""The verdict's measurements (helpers/discussion.py) on small made-up runs with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from helpers import book, discussion, evaluate, paper
from helpers.config import BASELINE, READINGS
from helpers.job import Job
from helpers.store import Run
from tests.conftest import need_real_data

N = 2007  # the paper's 58 errors are judged against the real test-set size


def fake(seed: int, predicted: np.ndarray, labels: np.ndarray, val_accuracy: list[float] | None = None,
         config=BASELINE) -> Run:
    history = {"val_accuracy": val_accuracy or [0.5, 0.9, 0.8]}
    job = Job(config, seed)
    return Run(job, job.key(), Path("."), history, 1.0, np.eye(10)[predicted], labels, "ledger")


def with_errors(errors: int, seed: int = 0, val_accuracy: list[float] | None = None, config=BASELINE,
                labels: np.ndarray | None = None) -> Run:
    labels = np.arange(N) % 10 if labels is None else labels
    predicted = labels.copy()
    predicted[:errors] = (labels[:errors] + 1) % 10
    return fake(seed, predicted, labels, val_accuracy, config)


def test_best_epoch_and_selection_pick_the_lowest_test_error() -> None:
    assert discussion.best_epoch({"val_accuracy": [0.9, 0.97, 0.95]}) == (2, pytest.approx(3.0))
    variants = {discussion.RECIPE: [with_errors(80, 0, [0.95, 0.96]), with_errors(70, 1, [0.965, 0.955])],
                "other": [with_errors(50, 0, [0.98, 0.97], BASELINE.with_(dropout=0.25))]}
    sel = discussion.selection(variants)
    assert sel["best_epoch_error_mean"] == pytest.approx((4.0 + 3.5) / 2)
    assert sel["best_epoch_error_min"] == pytest.approx(3.5)
    assert sel["best_seed_error"] == pytest.approx(100 * 70 / N)
    assert sel["test_tuned_error"] == pytest.approx(2.0)
    assert sel["test_tuned_at"] == {"reading": "other", "seed": 0, "epoch": 1}
    assert (sel["runs_searched"], sel["epochs_searched"]) == (3, 6)
    options = {discussion.RECIPE: variants[discussion.RECIPE], "filters 16": [with_errors(60, 0, [0.97, 0.969], BASELINE.with_(
        filters=16)), with_errors(62, 1, [0.96, 0.969], BASELINE.with_(filters=16))]}
    sel = discussion.selection(variants, options)
    assert sel["best_option"] == "filters 16" and sel["best_option_error"] == pytest.approx(100 * 61 / N)
    assert sel["runs_searched"] == 5  # the recipe's runs are in both groups and count once
    table = discussion.selection_table(sel, 3.9)
    assert table["errors"].iloc[-1] == paper.ERRORS and len(table) == 7


def test_readings_table_counts_seeds_at_the_paper_and_pairs_seeds() -> None:
    recipe = [with_errors(e, s) for s, e in enumerate((76, 80, 78))]
    better = [with_errors(e, s, config=BASELINE.with_(augment_shift=0.125)) for s, e in enumerate((50, 58, 60))]
    table = discussion.readings_table({discussion.RECIPE: recipe, "shift": better})
    assert table.loc["shift", f"seeds ≤ {paper.ERRORS} errors"] == 2
    assert table.loc[discussion.RECIPE, f"seeds ≤ {paper.ERRORS} errors"] == 0
    assert table.loc["shift", "seeds"] == 3
    assert table.loc["shift", "mean (%)"] == pytest.approx(round(100 * 56 / N, 2))
    # the better reading's errors are a subset of the recipe's: every seed is a significant pair
    assert table.loc["shift", "McNemar: seeds with p < 0.05"] == "3 of 3"
    # the recipe is the reference of the paired tests: a dash, never nan
    assert table.loc[discussion.RECIPE, "McNemar: seeds with p < 0.05"] == "—"
    assert table.loc[discussion.RECIPE, "median p"] == "—"
    numbers = discussion.variant_numbers({discussion.RECIPE: recipe, "shift": better})
    assert numbers[1]["seeds_at_or_below_paper"] == 2 and numbers[1]["min_error"] == pytest.approx(100 * 50 / N)
    shift = READINGS[0].name
    table = discussion.readings_table({discussion.RECIPE: recipe, shift: better})
    assert table.loc[shift, "what in the paper allows it"] == READINGS[0].grounds
    assert table.loc[discussion.RECIPE, "what in the paper allows it"] == "the model chapter's choices"
    # the chapter shows it as two tables, which together hold every column
    assert set(discussion.READING_ERRORS) | set(discussion.READING_PAIRS) == set(table.columns)
    assert not set(discussion.READING_ERRORS) & set(discussion.READING_PAIRS)


def test_readings_table_shows_no_spread_from_fewer_than_three_seeds() -> None:
    recipe = [with_errors(e, s) for s, e in enumerate((76, 80, 78))]
    two = [with_errors(e, s, config=BASELINE.with_(augment_shift=0.125)) for s, e in enumerate((50, 60))]
    one = [with_errors(70, 0, config=BASELINE.with_(dense_units=64))]
    table = discussion.readings_table({discussion.RECIPE: recipe, "two": two, "one": one})
    assert table.loc["two", "std (%)"] == "2 seeds" and table.loc["two", "95 % interval (%)"] == "2 seeds"
    assert table.loc["one", "std (%)"] == "1 seed" and table.loc["one", "95 % interval (%)"] == "1 seed"
    assert table.loc[discussion.RECIPE, "std (%)"] == pytest.approx(round(float(np.std(
        100 * np.array([76, 80, 78]) / N, ddof=1)), 2))
    markdown = str(evaluate.markdown(table).data)
    assert "nan" not in markdown and "None" not in markdown


def test_recipe_against_the_paper() -> None:
    recipe = [with_errors(e, s) for s, e in enumerate((76, 75, 78, 83, 78))]
    result = discussion.recipe_vs_paper(recipe)
    errors = 100 * np.array([76, 75, 78, 83, 78]) / N
    assert result["mean_error"] == pytest.approx(errors.mean())
    assert result["t_pvalue"] == pytest.approx(stats.ttest_1samp(errors, paper.ERROR).pvalue)
    assert result["gap_images"] == pytest.approx(np.mean([76, 75, 78, 83, 78]) - paper.ERROR * N / 100)
    assert discussion.error_verdict(result, 0) == "not reproduced"
    assert discussion.error_verdict(result, 1) == "partly"
    assert discussion.error_verdict({"mean_ci95": [2.5, 3.1]}, 0) == "reproduced"


def test_per_digit_errors_and_misreadings() -> None:
    labels = np.array([3, 3, 3, 5, 0])
    runs = [fake(0, np.array([5, 5, 3, 5, 0]), labels), fake(1, np.array([5, 8, 3, 3, 0]), labels)]
    table = discussion.per_digit_errors({discussion.RECIPE: runs})
    assert list(table.loc[(discussion.RECIPE, 0)][[3, 5, "total"]]) == [2, 0, 2]
    assert list(table.loc[(discussion.RECIPE, 1)][[3, 5, "total"]]) == [2, 1, 3]
    assert ("the paper (Figure 8)", "") in table.index
    read = discussion.misreadings(runs, 3)
    assert dict(read) == {5: 3, 8: 1}


def test_paper_digit_errors_follow_figure_8() -> None:
    labels = np.repeat(np.arange(10), 100)
    assert list(discussion.paper_digit_errors(labels)) == [round(e) for e in paper.CLASS_ERROR]


def test_overlap_finds_images_every_model_misses() -> None:
    labels = np.array([0, 1, 2, 3])
    groups = {"a": {"0": np.array([9, 1, 9, 3]), "1": np.array([9, 9, 2, 3])},
              "b": {"x": np.array([9, 1, 2, 9])}}
    result = discussion.overlap(groups, labels)
    assert list(result.missed_by_all) == [0]
    assert result.table.loc["a", "missed by any"] == 3 and result.table.loc["a", "missed by all"] == 1
    assert result.table.loc["all of the above", "missed by any"] == 4
    assert result.numbers == {"all_models": 3, "missed_by_all": 1, "missed_by_all_pct": 25.0, "room": paper.ERRORS - 1}


def test_baseline_overlap_counts_shared_hard_images() -> None:
    labels = np.array([3, 3, 3, 1])
    recipe = [fake(s, np.array([5, 5, 3, 1]), labels) for s in range(3)]
    table = discussion.baseline_overlap(recipe, {"knn": np.array([5, 3, 5, 1])}, 3)
    assert table.loc["knn"].tolist() == [2, 1, 2]
    table = discussion.baseline_overlap(recipe, {"k-nearest neighbours": np.array([5, 3, 5, 1]),
                                          "RBF support vector machine": np.array([5, 5, 3, 1])}, 3)
    assert discussion.baseline_numbers(table) == {"hard_threes": 2, "knn_too": 1, "svm_too": 2}


def test_verdict_table_judges_each_claim() -> None:
    labels = np.repeat(np.arange(10), 20)
    recipe = [with_errors(e, s, labels=labels) for s, e in enumerate((20, 21, 22))]
    train_labels = np.repeat(np.arange(10), 30)
    table = discussion.verdict_table(recipe, train_labels, labels, BASELINE,
                              {"accuracy": [0.99], "val_accuracy": [0.9]})
    assert table.loc["dataset and split", "verdict"] == "not reproduced"  # 300/200 images, not 7291/2007
    assert table.loc["training: 100 epochs, batch 256", "verdict"] == "reproduced"
    assert table.loc["overall accuracy 97.11 % (58 errors)", "verdict"] in ("partly", "reproduced")
    assert "seed 0: training 99.0 %, test 90.0 %" in table.loc["curves (Figure 7): little gap between training "
                                                               "and validation", "this book"]
    # the per-digit cells say that they average the seeds (the introduction shows them without the evidence)
    assert table.loc["per-digit accuracy (Figure 8)", "this book"].startswith("mean of 3 seeds: ")
    assert table.loc["best and worst digit (Figure 8)", "this book"].startswith("mean of 3 seeds: best ")
    assert "mean of 3 seeds" in table.loc["overall accuracy 97.11 % (58 errors)", "this book"]


def test_command_line_gap_json_answers_from_the_ledger(cli_answers: dict[str, tuple[str, float]]) -> None:
    need_real_data()
    result = json.loads(cli_answers["gap"][0])
    assert result["paper_error"] == paper.ERROR
    assert set(result["recipe"]) == {"seeds", "mean_error", "std_error", "mean_ci95"}
    assert result["recipe"]["mean_ci95"][0] < result["recipe"]["mean_error"] < result["recipe"]["mean_ci95"][1]
    assert len(result["variants"]) >= 4 and all(v["seeds"] >= 5 for v in result["variants"])
    assert set(result["selection"]) >= {"best_epoch_error_mean", "best_epoch_error_min", "best_seed_error",
                                        "test_tuned_error", "best_option_error"}
    selection = result["selection"]
    assert selection["test_tuned_error"] <= min(selection["best_epoch_error_min"], selection["best_option_error"])


def test_glue_numbers_name_what_the_chapter_quotes() -> None:
    recipe = [with_errors(e, s) for s, e in enumerate((76, 80, 78))]
    close = [with_errors(e, s, config=BASELINE.with_(dropout=0.25)) for s, e in enumerate((55, 60, 58))]
    variants = {discussion.RECIPE: recipe, "close": close}
    numbers = discussion.reading_numbers(variants, ["close"])
    assert numbers["reading1_mean"] == pytest.approx(100 * 173 / 3 / N) and numbers["reading1_at"] == 2
    assert numbers["readings_holding_paper"] == "“close”" and numbers["n_readings_holding"] == 1
    recipe_glue = discussion.recipe_numbers(recipe)
    assert (recipe_glue["rec_min_errors"], recipe_glue["rec_max_errors"], recipe_glue["rec_seeds"]) == (76, 80, 3)
    sel = discussion.selection_numbers(discussion.selection(variants, {discussion.RECIPE: recipe, "close": close}))
    assert sel["best_option"] == "close" and sel["option_short"] < 0  # 57.7 errors: 2.87 %, below the paper's


def test_digit_numbers_and_mostly_missed() -> None:
    labels = np.array([3, 3, 3, 5, 0])
    runs = [fake(0, np.array([5, 5, 3, 5, 0]), labels), fake(1, np.array([5, 8, 3, 3, 0]), labels),
            fake(2, np.array([5, 3, 3, 5, 0]), labels)]
    assert list(discussion.mostly_missed(runs, 3)) == [0, 1]  # missed by 3 and by 2 of the 3 runs
    per_digit = discussion.per_digit_errors({discussion.RECIPE: runs, "other": runs[:1]})
    numbers = discussion.digit_numbers(per_digit, discussion.misreadings(runs, 3), 3, "other")
    assert (numbers["threes_min"], numbers["threes_max"], numbers["threes_as"]) == (1, 2, 5)
    assert numbers["threes_as_share"] == pytest.approx(100 * 4 / 5) and numbers["threes_aug"] == 2.0
    excess = discussion.excess_by_digit(runs)
    assert discussion.excess_numbers(excess)["top_digit"] == int(excess["excess"].idxmax())


def test_digit_numbers_read_a_digit_column_not_a_seed_row() -> None:
    """5 seeds and 10 digits, so that digit 3 is also a seed: the 3s' range must come from the
    digit-3 column over seeds (8 to 17 here), never from seed 3's row (which has 3 and its total)."""
    labels = np.repeat(np.arange(10), 50)
    threes_missed = {0: 8, 1: 12, 2: 17, 3: 3 + 8, 4: 10}  # seed 3 misses 11 threes
    shifted_missed = {0: 7, 1: 6, 2: 8, 3: 7, 4: 7}

    def run(seed: int, threes: int, config=BASELINE) -> Run:
        predicted = labels.copy()
        idx = np.flatnonzero(labels == 3)[:threes]
        predicted[idx] = 5
        other = np.flatnonzero(labels == (seed + 6) % 10)[:seed + 1]  # other digits differ per seed
        predicted[other] = 0 if (seed + 6) % 10 else 1
        return fake(seed, predicted, labels, config=config)

    recipe = [run(s, n) for s, n in threes_missed.items()]
    shift = [run(s, n, BASELINE.with_(augment_shift=2)) for s, n in shifted_missed.items()]
    per_digit = discussion.per_digit_errors({discussion.RECIPE: recipe, "shift": shift})
    numbers = discussion.digit_numbers(per_digit, discussion.misreadings(recipe, 3), 3, "shift")
    assert (numbers["threes_min"], numbers["threes_max"]) == (8, 17)
    assert numbers["threes_aug"] == pytest.approx(np.mean(list(shifted_missed.values())))
    assert numbers["threes_as"] == 5 and numbers["threes_as_share"] == 100.0
    profile = discussion.profile_numbers(per_digit, "shift")
    assert profile["runs_min_3"] == 6 and profile["gain_digits"].startswith("3 (")


def test_require_names_every_false_claim_and_holds_paper() -> None:
    book.require({"true": True})
    with pytest.raises(book.ClaimError, match="b is false; c is false"):
        book.require({"a": True, "b is false": False, "c is false": False})
    assert discussion.holds_paper([with_errors(e, s) for s, e in enumerate((55, 58, 62))])
    assert not discussion.holds_paper([with_errors(e, s) for s, e in enumerate((76, 78, 80))])


def test_profile_numbers_compare_every_run_with_figure_8() -> None:
    labels = np.repeat(np.arange(10), 100)

    def run_missing(seed: int, digits: dict[int, int], config=BASELINE) -> Run:
        predicted = labels.copy()
        for digit, count in digits.items():
            idx = np.flatnonzero(labels == digit)[:count]
            predicted[idx] = (digit + 1) % 10
        return fake(seed, predicted, labels, config=config)

    variants = {discussion.RECIPE: [run_missing(0, {3: 9, 8: 9}), run_missing(1, {3: 7, 8: 11})],
                "shift": [run_missing(0, {3: 5, 8: 2}, BASELINE.with_(augment_shift=0.1))]}
    numbers = discussion.profile_numbers(discussion.per_digit_errors(variants), "shift", top=2)
    assert numbers["runs_total"] == 3 and numbers["runs_min_3"] == 5 and numbers["runs_max_0"] == 0
    assert numbers["gain_digits"] == "8 (8.0), 3 (3.0)"
    assert numbers["paper_3"] == round(paper.CLASS_ERROR[3])
