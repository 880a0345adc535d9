"""Rounds 1 and 2 (helpers.rounds.ROUNDS[1] and [2], helpers.best_published) and the levers they add to the model: elastic distortions, scale/shear, label smoothing,
test-time shifts; the late configuration fields leave the names of older runs alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import helpers.job
from helpers import best_published, data, evaluate, paper, rounds, train
from helpers._tf import keras
from helpers.config import BASELINE, beyond, LATE_FIELDS
from helpers.model import ElasticDistortion, SmoothedSparseCrossentropy, build_model
from helpers.job import Job
from helpers.store import Run

from conftest import need_real_data

BASE = BASELINE.with_(second_block_filters=64, augment_shift=2 / 16, augment_rotation=10.0)
R1, R2 = rounds.ROUNDS[1], rounds.ROUNDS[2]


def _selection(entry: rounds.Round, candidates: dict[str, rounds.Scored],
               previous: rounds.Selection | None = None) -> rounds.Selection:
    """A round's rule on these candidates (the ladder's final model, as in round 1, never joins an ensemble)."""
    specs = tuple(rounds.Candidate(name, rounds.PREVIOUS, member=name != rounds.LADDER) for name in candidates)
    return rounds.Selection(dataclasses.replace(entry, candidates=specs), candidates, previous)


def test_late_fields_are_left_out_of_run_names_at_their_defaults() -> None:
    assert not set(LATE_FIELDS) & set(BASE.as_dict())
    changed = BASE.with_(augment_elastic=8.0)
    assert changed.as_dict()["augment_elastic"] == 8.0
    assert Job(changed).key() != Job(BASE).key()
    # a record written before the fields existed still names the same run
    assert Job(type(BASE)(**BASE.as_dict())).key() == Job(BASE).key()


def test_candidates_add_each_lever_and_all_together() -> None:
    found = R1.configs(BASE, BASELINE)
    assert list(found)[0] == rounds.LADDER and list(found)[-1] == rounds.ALL and found[rounds.LADDER] == BASE
    assert len(found) == len(rounds.LEVERS) + 2 and len(set(found.values())) == len(found)
    for lever in rounds.LEVERS:
        assert all(getattr(found[rounds.ALL], k) == v for k, v in lever.changes.items())
        assert all(getattr(found[lever.name], k) == v for k, v in lever.changes.items())


def test_every_candidate_builds_and_hashes_differently() -> None:
    hashes = {helpers.job.code_hash(config) for config in R1.configs(BASE, BASELINE).values()}
    assert len(hashes) == len(rounds.LEVERS) + 2


def test_elastic_distortion_is_seeded_bounded_and_off_at_inference() -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 16, 16, 1)).astype("float32")
    layer = ElasticDistortion(8.0, seed=3)
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    once = np.asarray(ElasticDistortion(8.0, seed=3)(images, training=True))
    again = np.asarray(ElasticDistortion(8.0, seed=3)(images, training=True))
    assert np.array_equal(once, again) and not np.allclose(once, images)
    assert once.min() >= 0.0 and once.max() <= 1.0  # bilinear mixes of pixels and the background
    still = np.asarray(ElasticDistortion(0.0, seed=3)(images, training=True))
    np.testing.assert_allclose(still, images, atol=1e-6)  # no displacement: the image itself


def test_elastic_fields_differ_between_directions() -> None:
    # Keras' RandomElasticTransform draws one field for both directions; ours must not
    image = np.zeros((1, 16, 16, 1), "float32")
    image[0, 8, :, 0] = 1.0  # a horizontal line moves only with the vertical field
    moved = np.asarray(ElasticDistortion(8.0, seed=1)(image, training=True))
    assert not np.allclose(moved, image)


def test_label_smoothing_matches_the_formula() -> None:
    loss = SmoothedSparseCrossentropy(0.1)
    p = np.array([[0.7] + [0.3 / 9] * 9], "float32")
    target = np.array([0.9 + 0.01] + [0.01] * 9)
    assert float(loss(np.array([0]), p)) == pytest.approx(-(target * np.log(p[0])).sum(), rel=1e-5)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).smoothing == 0.1


def test_every_lever_builds_a_model_that_trains() -> None:
    small = BASE.with_(epochs=1, batch_size=8, filters=2, dense_units=4, second_block_filters=2)
    config = R1.configs(small, BASELINE)[rounds.ALL]
    model = build_model(config)
    names = [layer.name for layer in model.layers]
    assert {"augment_zoom", "augment_shear", "augment_elastic"} <= set(names)
    x = np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 1)).astype("float32")
    history = model.fit(x, np.arange(16) % 10, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_shifted_moves_pixels_and_fills_the_edge() -> None:
    images = np.arange(16 * 16, dtype="float32").reshape(1, 16, 16, 1)
    down = train.shifted(images, 1, 0, -1.0)
    assert (down[0, 0] == -1).all() and np.array_equal(down[0, 1:], images[0, :-1])
    left = train.shifted(images, 0, -1, 0.0)
    assert (left[0, :, -1] == 0).all() and np.array_equal(left[0, :, :-1], images[0, :, 1:])
    assert np.array_equal(train.shifted(images, 0, 0, 5.0), images)


def _fold_runs(labels: np.ndarray, wrong: int, folds: int = R1.folds) -> list[Run]:
    runs = []
    for fold in range(folds):
        _, held = data.fold_split(labels, folds, fold, seed=R1.fold_seed)
        predicted = labels[held].copy()
        predicted[:wrong] = (predicted[:wrong] + 1) % 10
        probs = np.eye(10, dtype="float32")[predicted]
        job = Job(BASE, R1.fold_seed, f"cv{folds}-{fold}")
        runs.append(Run(job, job.key(), Path("."), {"accuracy": [0.5, 0.9]}, 10.0, probs, labels[held], "ledger",
                        tta=np.eye(10, dtype="float32")[labels[held]]))
    return runs


def _out_of_fold(name: str, runs: list[Run]) -> rounds.Scored:
    """Rounds 1 and 2 put fold runs together: plain and shifted predictions, no noise."""
    return rounds.out_of_fold(name, BASE, runs, R1.folds, R1.fold_seed, R1.stored, R1.stored, noisy=False)


def _scored(name: str, plain: np.ndarray, labels: np.ndarray, shifts: np.ndarray | None = None,
            runs: Sequence[Run] = ()) -> rounds.Scored:
    """A first- or second-round candidate: plain out-of-fold probabilities, shifted ones when stored."""
    predictions = {"plain": plain} | ({} if shifts is None else {"shifts": shifts})
    return rounds.Scored(name, BASE, list(runs), labels, predictions, None, tuple(predictions))


def test_out_of_fold_places_every_image_once_and_choice_uses_cross_validation() -> None:
    need_real_data()
    _, labels = data.load_usps("train")
    runs = _fold_runs(labels, wrong=4)
    base = _out_of_fold(rounds.LADDER, runs)
    assert np.array_equal(base.labels, labels) and "shifts" in base.predictions and base.noisy is None
    assert base.errors() == 4 * R1.folds and "shifts and rotations" not in base.predictions
    plain = base.predictions["plain"]  # shifts do not help the ladder's final model here
    results = {rounds.LADDER: _scored(rounds.LADDER, plain, labels, shifts=plain, runs=runs),
               "better": _out_of_fold("better", _fold_runs(labels, wrong=1)),
               rounds.ALL: _out_of_fold(rounds.ALL, _fold_runs(labels, wrong=1))}
    chosen = _selection(R1, results).chosen  # no noise score: the fewest errors, a tie taking the earlier
    assert chosen.name == "better" and chosen.mode == "shifts" and chosen.score == 0  # shifts fix its errors
    table = best_published.cv_table(results)
    assert table.loc[rounds.LADDER, "CV errors"] == 12 and table.loc["better", "shifts"] == 0
    assert table.loc["better", "p vs base"] < 0.05
    assert table.loc["better", "fit (%)"] == 90.0
    numbers = best_published.cv_numbers(table, chosen)
    assert numbers["cv_better"] == 2 and numbers["cv_significant"] == 2 and numbers["base_cv_errors"] == 12
    assert numbers["chosen_p"] < 0.05 and numbers["cv_n"] == len(labels)
    with pytest.raises(ValueError, match="cover"):
        _out_of_fold("short", runs[:-1])


def test_final_and_ensemble_errors() -> None:
    labels = np.array([0, 1, 2, 3, 4])
    probs = [np.eye(10)[[0, 1, 2, 3, 9]] * 0.6 + 0.04, np.eye(10)[[0, 1, 2, 9, 4]] * 0.6 + 0.04,
             np.eye(10)[[0, 1, 2, 3, 4]] * 0.9 + 0.01]
    runs = [Run(Job(BASE, s), f"k{s}", Path("."), {}, 5.0, p, labels, "ledger", tta=p) for s, p in enumerate(probs)]
    chosen = _scored("x", np.eye(10)[labels], labels, shifts=np.eye(10)[labels])
    result = rounds.TestLook(chosen.name, {chosen.name: chosen.mode}, {chosen.name: runs})
    assert result.single_errors == [1, 1, 0] and result.seed_ensemble_errors == 0
    assert list(best_published.seed_rates(result)) == [1 / 5 * 100, 1 / 5 * 100, 0.0]  # the order rounds 1-2 print
    assert best_published.first_round_numbers(result, R1.targets)["first_test_mean"] == pytest.approx(100 * 2 / 15)
    table = best_published.final_table(result)
    assert list(table["errors"]) == [1, 1, 0, 0] and table.index[-1] == "ensemble of the 3 seeds"
    with pytest.raises(ValueError, match="stores no 'shifts' predictions"):
        rounds.read(Run(Job(BASE), "k", Path("."), {}, 1.0, probs[0], labels, "ledger"), "shifts")
    rungs = [SimpleNamespace(name="recipe", kept=True, runs=runs[:1], holdout={"errors": 9, "n": 100, "accuracy": 0.91}),
             SimpleNamespace(name="dropped", kept=False, runs=runs[1:2], holdout={"errors": 12, "n": 100, "accuracy": 0.88}),
             SimpleNamespace(name="kept", kept=True, runs=runs, holdout={"errors": 7, "n": 100, "accuracy": 0.93})]
    assert best_published.holdout_numbers(best_published.holdout_table(rungs), "kept") == {
        "ladder_holdout_errors": 7, "ladder_holdout_n": 100, "ladder_holdout_pct": 7.0,
        "ladder_test_mean": round(100 * 2 / 15, 2)}


def test_literature_table_sorts_and_marks_the_best_published() -> None:
    table = evaluate.literature_table([("our ensemble", 1.5, "1.0-2.1")])
    assert table["test error (%)"].is_monotonic_decreasing
    assert paper.BEST_PUBLISHED == 2.0 and table.loc["our ensemble", "source"] == "this book"
    assert set(table["source"]) == set(paper.LITERATURE) | {"this book"}  # every published result, keyed once
    assert evaluate.seed_row("x", [2.0]) == ("x", 2.0, evaluate.binomial_text(2.0))  # one seed: binomial
    assert table.loc["Keysers, Paredes, Ney & Vidal 2002, tangent vectors and local representations",
                     "95 % interval (%)"] == "1.47-2.70"  # 40 of 2007, Wilson (statsmodels agrees)


def test_ranking_table_and_spearman() -> None:
    labels = np.zeros(10, int)
    results = {n: _scored(n, np.eye(10)[np.r_[np.ones(k, int), np.zeros(10 - k, int)]], labels)
               for n, k in (("a", 1), ("b", 2), ("c", 3))}
    tests = {n: Run(Job(BASE), n, Path("."), {}, 1.0, results[n].probabilities, labels, "ledger")
             for n in results}
    table = best_published.ranking_table(results, tests)
    assert list(table["CV rank"]) == [1, 2, 3] and best_published.spearman(table) == pytest.approx(1.0)


def test_noise_numbers_read_the_anatomy_rows() -> None:
    columns = ["error (%)", "most read as", "share of errors (%)", "confidence when wrong",
               "noise on background only (%)", "noise in the edge frame only (%)", "grey background, no speckle (%)"]
    rows = {"the paper's network": [11.8, 8, 46, 0.8, 7, 5, 4], "the ladder's final model": [41, 8, 71, 0.7, 18, 6, 5],
            "recipe + shift augmentation": [68.3, 8, 92, 0.9, 38.9, 8.3, 13], "B": [30, 8, 60, 0.7, 9, 5, 4]}
    numbers = best_published.noise_numbers(pd.DataFrame.from_dict(rows, orient="index", columns=columns))
    assert numbers["noise_shift_share"] == 92 and numbers["noise_shift_digit"] == 8
    assert numbers["noise_best_error"] == 30 and numbers["noise_paper_error"] == 11.8
    assert numbers["noise_shift_background"] == 38.9 and numbers["noise_final_error"] == 41


def test_second_round_adds_each_lever_to_the_first_choice() -> None:
    first = BASE.with_(label_smoothing=0.1)
    found = R2.named("label smoothing").configs(first, BASELINE)
    assert list(found)[0] == "label smoothing" and found["label smoothing"] == first
    assert len(found) == len(R2.candidates) and len(set(found.values())) == len(found)
    assert all(name.startswith("label smoothing + ") for name in list(found)[1:])
    longer = found["label smoothing + elastic distortions, twice the epochs, cosine decay"]
    assert longer.epochs == 2 * beyond().epochs and longer.augment_elastic == 8.0 and longer.schedule == "cosine"
    assert all(config.label_smoothing == 0.1 for config in found.values())
    table = best_published.lever_table(R2)
    assert len(table) == len(R2.candidates) - 1 and len(best_published.lever_table(R1)) == len(rounds.LEVERS)
    assert f"epochs = {2 * beyond().epochs}" in table.loc["elastic distortions, twice the epochs, cosine decay",
                                                          "configuration"]
    assert len({helpers.job.code_hash(config) for config in found.values()}) == len(found)


def test_weight_averaging_predicts_with_the_average_and_a_third_block_builds() -> None:
    config = BASE.with_(epochs=3, batch_size=8, filters=2, dense_units=4, second_block_filters=2)
    x = np.random.default_rng(0).uniform(0, 1, (32, 16, 16, 1)).astype("float32")
    y = np.arange(32) % 10
    plain, _, _ = train.fit(config, x, y, progress_every=None)
    averaged, _, _ = train.fit(config.with_(weight_average=0.9), x, y, progress_every=None)
    assert averaged.optimizer.use_ema and not plain.optimizer.use_ema
    # same seed, same steps: the averaged model holds different (averaged) weights at the end
    assert not np.allclose(plain.get_layer("softmax").get_weights()[0], averaged.get_layer("softmax").get_weights()[0])
    third = build_model(config.with_(third_block_filters=4))
    assert third.get_layer("conv_3").filters == 4 and third.get_layer("max_pool_3").output.shape[1:3] == (2, 2)
    assert helpers.job.code_hash(config.with_(weight_average=0.9)) != helpers.job.code_hash(config)


def _cv(name: str, wrong: np.ndarray, labels: np.ndarray) -> rounds.Scored:
    # right: 0.6 on the label; wrong: 0.5 on the next digit and 0.3 on the label (a confident vote fixes it)
    probs = np.eye(10, dtype="float32")[labels] * 0.6 + 0.04
    probs[wrong] = np.eye(10, dtype="float32")[(labels[wrong] + 1) % 10] * 0.5 \
        + np.eye(10, dtype="float32")[labels[wrong]] * 0.3 + 0.2 / 8 * (1 - np.eye(10)[labels[wrong]]
                                                                        - np.eye(10)[(labels[wrong] + 1) % 10])
    return _scored(name, probs, labels, shifts=probs)  # shifts change nothing here


def test_greedy_ensemble_adds_members_only_while_cross_validated_errors_fall() -> None:
    labels = np.arange(30) % 10
    a = np.zeros(30, bool)
    a[:6] = True  # 6 errors
    b = np.zeros(30, bool)
    b[6:12] = True  # 6 other errors
    c = np.zeros(30, bool)
    c[12:18] = True
    pool = {"a": _cv("a", a, labels), "b": _cv("b", b, labels), "c": _cv("c", c, labels), "bad": _cv("bad", a | b, labels)}
    members = rounds.forward_selection({n: c.probabilities for n, c in pool.items()}, labels, "a")
    # b and c each fix all of a's errors; the first of equals joins; then nothing lowers the errors
    assert members == [("a", 6), ("b", 0)]
    never = rounds.forward_selection({n: pool[n].probabilities for n in ("a", "bad")}, labels, "a")
    assert never == [("a", 6)]  # never adds a worse one


def test_selection_and_second_round_numbers() -> None:
    labels = np.arange(30) % 10

    def wrong(k: int) -> np.ndarray:
        mask = np.zeros(30, bool)
        mask[:k] = True
        return mask

    first = {rounds.LADDER: _cv(rounds.LADDER, wrong(8), labels), "ls": _cv("ls", wrong(5), labels),
             "other": _cv("other", wrong(6), labels)}
    second = {"ls": first["ls"], "ls + elastic distortions": _cv("ls + elastic distortions", wrong(7), labels),
              "ls + weight averaging": _cv("ls + weight averaging", wrong(3), labels),
              "ls + elastic distortions, twice the epochs, cosine decay":
              _cv("ls + elastic distortions, twice the epochs, cosine decay", wrong(4), labels)}
    selection = _selection(R2, second, _selection(R1, first))
    assert selection.previous.chosen.name == "ls" and selection.chosen.name == "ls + weight averaging"
    assert rounds.LADDER not in selection.pool and len(selection.pool) == 5  # both rounds' candidates
    numbers = best_published.second_numbers(selection)
    assert numbers["first_score"] == 5 and numbers["second_better"] == 2 and numbers["second_candidates"] == 3
    assert numbers["elastic_score"] == 7 and numbers["double_score"] == 4 and numbers["chosen_score"] == 3
    table = best_published.cv_table(second)  # the McNemar column compares with the first round's choice
    assert table.loc["ls", "p vs base"] == "" and table.loc["ls + weight averaging", "CV errors"] == 3


def test_test_jobs_list_the_chosen_seeds_the_ranking_check_and_the_members() -> None:
    labels = np.arange(30) % 10

    def wrong(start: int, stop: int) -> np.ndarray:
        mask = np.zeros(30, bool)
        mask[start:stop] = True
        return mask

    smooth, elastic = BASE.with_(label_smoothing=0.1), BASE.with_(augment_elastic=8.0)
    first = {rounds.LADDER: _cv(rounds.LADDER, wrong(0, 8), labels),
             "ls": dataclasses.replace(_cv("ls", wrong(0, 6), labels), config=smooth),
             "elastic": dataclasses.replace(_cv("elastic", wrong(6, 13), labels), config=elastic)}
    first_round = _selection(R1, first)
    selection = _selection(R2, {"ls": first["ls"]}, first_round)
    seeds = [Job(smooth, seed) for seed in beyond().best_seeds]
    assert selection.chosen.name == "ls" and rounds.final_jobs(first_round) == {"ls": seeds}
    assert rounds.ranking_jobs(first_round) == {rounds.LADDER: Job(BASE, 0), "ls": Job(smooth, 0), "elastic": Job(elastic, 0)}
    assert rounds.ranking_jobs(selection) == {}  # the second round's candidates are tested only where chosen
    # elastic fixes every error of ls (their errors fall on different images), so it joins the ensemble
    assert rounds.final_jobs(selection) == {"ls": seeds, "elastic": [Job(elastic, 0)]}


def test_ensemble_counts_independent_training_runs_and_weights_each_run() -> None:
    """5 seeds of the chosen model (with weight averaging), the same configuration without weight
    averaging (seed 0: the same training run as the chosen seed 0) and another model (seed 0)."""
    labels = np.repeat(np.arange(10), 3)
    rng = np.random.default_rng(0)
    chosen, smooth, other = BASE.with_(label_smoothing=0.1, weight_average=0.99), BASE.with_(label_smoothing=0.1), \
        BASE.with_(augment_elastic=8.0)

    def run(config, seed: int) -> Run:
        p = rng.dirichlet(np.ones(10), size=len(labels)).astype(np.float32)
        return Run(Job(config, seed), Job(config, seed).key(), Path("."), {}, 1.0, p, labels, "ledger", tta=p)

    runs = {"chosen": [run(chosen, s) for s in range(5)], "smooth": [run(smooth, 0)], "other": [run(other, 0)]}
    assert rounds.training_identity(runs["chosen"][0]) == rounds.training_identity(runs["smooth"][0])
    def oof(confidence: float, wrong: list[int]) -> np.ndarray:  # out-of-fold probabilities wrong on ``wrong``
        predicted = labels.copy()
        predicted[wrong] = (labels[wrong] + 1) % 10
        return np.eye(10)[predicted] * confidence + 0.01

    # smooth fixes the chosen model's 3 errors but one, other ties it (the earlier joins), then other fixes the last
    found = {"chosen": oof(0.6, [0, 1, 2]), "smooth": oof(0.9, [3]), "other": oof(0.9, [5])}
    cv = {name: _scored(name, p, labels) for name, p in found.items()}
    # smooth and other from the first round's pool, the chosen model the second round's only candidate
    selection = _selection(R2, {"chosen": cv["chosen"]}, _selection(R1, {n: cv[n] for n in ("smooth", "other")}))
    modes = {name: selection.scored(name).mode for name in runs}
    ensemble = rounds.TestLook("chosen", modes, runs)
    assert ensemble.prediction_sets == 7 and ensemble.training_runs == 6
    expected = int((np.mean([r.probabilities for g in runs.values() for r in g], axis=0).argmax(1) != labels).sum())
    assert ensemble.plain_ensemble_errors == expected
    weighted = np.mean([np.mean([r.probabilities for r in g], axis=0) for g in runs.values()], axis=0)
    assert ensemble.ensemble_errors == int((weighted.argmax(1) != labels).sum())
    table = best_published.ensemble_table(ensemble, selection)
    assert list(table["weight per run"]) == ["1/15", "1/3", "1/3"] and list(table["CV errors"]) == [3, 1, 0]
    assert table["test errors"].iloc[-1] == ensemble.ensemble_errors
    assert table["test errors"].iloc[0] == ensemble.seed_ensemble_errors
    with pytest.raises(ValueError, match="not the ensemble chosen"):
        best_published.ensemble_table(rounds.TestLook("chosen", modes, {"chosen": runs["chosen"]}), selection)
