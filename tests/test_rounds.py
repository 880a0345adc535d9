"""The protocol rounds' engine and the third round's data entry (#26, #33): the protocol as committed, the
pixel-noise layer, the stored noisy and rotated predictions, and the rule and test look of helpers.rounds on
realistic inputs (3 folds of the real labels, 5 seeds, 10 digits)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

import helpers.job
from helpers import data, rounds, stats, store, train, trainer

from helpers.job import Job, arrays
from helpers.config import BASELINE
from helpers.model import PixelNoise
from helpers.store import Run

from conftest import REPO, need_real_data

B = BASELINE.with_(second_block_filters=64, augment_shift=2 / 16, augment_rotation=10.0, label_smoothing=0.1,
                   weight_average=0.99)
PAPER = BASELINE
R3 = rounds.ROUNDS[3]


# ------------------------------------------------------------------ the protocol


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def test_the_protocol_names_the_candidates_folds_rule_and_looks_the_code_uses() -> None:
    text = (REPO / R3.protocol).read_text()
    names = R3.configs(B, PAPER)
    # the protocol's numbered list, in order, bold names
    listed = re.findall(r"^\d\. \*\*(.+?)\*\*", text, flags=re.M)
    code = ["the paper's network", "B", *(name for name in names if name.startswith("B + "))]
    assert listed == code
    assert f"fold seed {R3.fold_seed}" in text.replace("**", "") and f"{R3.folds}-fold" in text
    assert f"sigma = {R3.noise}" in text and "**One look**" in text
    assert f"{R3.targets['single']} %" in text.replace("**", "") and f"{R3.targets['ensemble']} %" in text.replace("**", "")
    assert f"At most {R3.budget_minutes} minutes" in text and "uniform in [0, 0.5]" in text and names[rounds.NOISY].augment_noise == 0.5
    assert names[rounds.LONGER].epochs == 2 * B.epochs and names[rounds.LONGER].schedule == "cosine"
    assert (names[rounds.WIDER].filters, names[rounds.WIDER].second_block_filters, names[rounds.WIDER].dense_units) == (64, 128, 256)
    assert names[rounds.DEEPER].third_block_filters == 128 and names[rounds.B] == B


def _history_or_skip() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history")
    if _git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("a shallow clone lacks the protocol's commit (CI fetches the whole history)")


def check_protocol_runs(protocol: str, commit: str, of_round: Callable[[dict], bool]) -> list[dict]:
    """The records of a round's runs (``of_round(record)``), checked against its protocol: the protocol has not
    changed since ``commit``, neither committed nor in the working tree; every run records the commit, started
    training after it and was added to the ledger by a commit that descends from it."""
    _history_or_skip()
    assert _git("log", "-1", "--format=%H", "--", protocol) == commit
    assert subprocess.run(["git", "diff", "--quiet", commit, "--", protocol],
                          cwd=REPO).returncode == 0, "the protocol was edited after its commit"
    committed = int(_git("log", "-1", "--format=%ct", commit))
    found = []
    for entry in store.entries():
        record = store.record(entry)
        if not of_round(record):
            continue
        found.append(record)
        assert record.get("protocol") == commit, entry.name
        # its training started (the record's end time less its training seconds) after the commit
        ended = pd.Timestamp(record["trained"])  # written with its time zone's name (UTC on the machine that trained)
        ended = (ended if ended.tzinfo else ended.tz_localize("UTC")).timestamp()
        assert ended - record["seconds"] >= committed, f"{entry.name} started training before the protocol's commit"
        added = _git("log", "--diff-filter=A", "--format=%H", "--", str((entry / "record.json").relative_to(REPO)))
        if added:
            assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, added.splitlines()[-1]],
                                  cwd=REPO).returncode == 0, entry.name
    return found


def test_the_runs_were_trained_after_the_protocol_was_committed_and_record_it() -> None:
    def of_round(record: dict) -> bool:  # noise in training, or the new folds; the fourth round's students aside
        job = record["job"]
        return bool((job["config"].get("augment_noise") or (job["split"].startswith("cv") and job["seed"] == R3.fold_seed))
                    and not job["config"].get("distill_weight"))

    found = check_protocol_runs(R3.protocol, R3.protocol_commit, of_round)
    assert len(found) >= R3.folds * len(R3.configs(B, PAPER)), f"only {len(found)} runs of the round"


def test_the_protocol_commit_is_not_part_of_a_runs_name() -> None:
    plain, tagged = Job(B, 1, "cv3-0"), Job(B, 1, "cv3-0", protocol=R3.protocol_commit)
    assert plain == tagged and plain.key() == tagged.key()


def test_cv_jobs_use_the_protocols_folds_and_record_its_commit() -> None:
    jobs = R3.cv_jobs(B)
    assert [j.split for j in jobs] == ["cv3-0", "cv3-1", "cv3-2"]
    assert {j.seed for j in jobs} == {R3.fold_seed} and {j.protocol for j in jobs} == {R3.protocol_commit}


# ------------------------------------------------------------------ pixel noise


def test_pixel_noise_is_off_at_inference_seeded_clipped_and_of_varying_strength() -> None:
    images = np.zeros((400, 16, 16, 1), "float32")
    images[:, 4:12, 7:9] = 1.0
    layer = PixelNoise(0.5, seed=3)
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    once = np.asarray(PixelNoise(0.5, seed=3)(images, training=True))
    again = np.asarray(PixelNoise(0.5, seed=3)(images, training=True))
    assert np.array_equal(once, again) and once.min() >= 0.0 and once.max() <= 1.0
    # background pixels are clipped noise: mean of max(0, s z) is s / sqrt(2 pi), s uniform in [0, 0.5]
    background = once[:, :2].reshape(len(once), -1).mean(axis=1)
    assert background.mean() == pytest.approx(0.25 / np.sqrt(2 * np.pi), rel=0.1)
    assert background.min() < 0.02 < 0.15 < background.max()  # per-image strength, from clean to strong


def test_noise_changes_the_code_hash_only_where_it_is_used() -> None:
    assert helpers.job.code_hash(B) != helpers.job.code_hash(B.with_(augment_noise=0.5))
    assert "augment_noise" not in B.as_dict() and Job(B).key() != Job(B.with_(augment_noise=0.5)).key()


def test_add_noise_is_one_draw_for_every_model_and_clipped() -> None:
    images = np.random.default_rng(1).uniform(0, 1, (50, 16, 16, 1)).astype("float32")
    a, b = data.add_noise(images, 0.4), data.add_noise(images.copy(), 0.4)
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() <= 1
    expected = np.clip(images + 0.4 * np.random.default_rng(0).standard_normal(images.shape).astype("float32"), 0, 1)
    assert np.array_equal(a, expected)


def test_rotation_turns_about_the_centre_and_keeps_zero_angle_exact() -> None:
    image = np.zeros((1, 16, 16, 1), "float32")
    image[0, 2:14, 7:9] = 1.0  # a vertical bar
    assert np.array_equal(train.rotated(image, 0.0, 0.0), image)
    quarter = train.rotated(image, 90.0, 0.0)
    np.testing.assert_allclose(quarter[0, :, :, 0], np.rot90(image[0, :, :, 0]), atol=1e-5)
    assert train.rotated(image, 6.0, 0.0).sum() == pytest.approx(image.sum(), rel=0.05)


def test_a_new_run_stores_rotated_and_noisy_predictions_and_its_protocol(tmp_path: Path) -> None:
    need_real_data()
    config = BASELINE.with_(epochs=1, filters=4, dense_units=8, augment_noise=0.5)
    job = Job(config, 1, "cv3-2", protocol=R3.protocol_commit)
    store.write_files(tmp_path, trainer.entry_files(job, arrays(job)))
    result = store.load_entry(job, tmp_path, "trained")
    assert result.record["protocol"] == R3.protocol_commit
    assert result.noisy.shape == (len(data.NOISE_LEVELS), len(result.labels))
    assert result.tta_rotations.shape == result.probabilities.shape
    model = trainer.load_model(result)
    *_, images, _ = arrays(job)
    again = np.array([train._predict(model, data.add_noise(images, s)).argmax(1) for s in data.NOISE_LEVELS])
    assert np.array_equal(again, result.noisy)
    np.testing.assert_allclose(train.predict_tta_rotations(model, images, 0.0), result.tta_rotations, atol=2e-3)


# ------------------------------------------------------------------ the rule, on realistic inputs


def _probabilities(labels: np.ndarray, wrong: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = rng.uniform(0, 0.05, (len(labels), 10)).astype(np.float32)
    p[np.arange(len(labels)), labels] = 0.9
    p[wrong, labels[wrong]] = 0.0
    p[wrong, (labels[wrong] + 3) % 10] = 0.9
    return p / p.sum(1, keepdims=True)


def _fake_run(job: Job, labels: np.ndarray, wrong: np.ndarray, noisy_wrong: list[np.ndarray],
              rng: np.random.Generator, stored: tuple[str, ...] = ("tta", "tta_rotations")) -> Run:
    p = _probabilities(labels, wrong, rng)
    noisy = np.array([np.where(np.isin(np.arange(len(labels)), w), (labels + 1) % 10, labels) for w in noisy_wrong])
    extra = {name: p for name in stored}
    return Run(job, job.key(), Path("."), {"accuracy": [0.99]}, 10.0, p, labels, record={}, noisy=noisy, **extra)


def _cv_candidate(name: str, config, wrong_per_fold: int, noisy_per_fold: int, seed: int) -> rounds.Scored:
    _, labels = data.load_usps("train")
    rng = np.random.default_rng(seed)
    found = []
    for fold in range(R3.folds):
        job = R3.cv_jobs(config)[fold]
        _, held = data.fold_split(labels, R3.folds, fold, seed=R3.fold_seed)
        y = labels[held].astype(np.int64)
        wrong = rng.choice(len(y), wrong_per_fold, replace=False)
        noisy = [rng.choice(len(y), k, replace=False) for k in (noisy_per_fold // 4, noisy_per_fold // 2,
                                                              3 * noisy_per_fold // 4, noisy_per_fold)]
        found.append(_fake_run(job, y, wrong, noisy, rng))
    return rounds.out_of_fold(name, config, found, R3.folds, R3.fold_seed, R3.modes(name))


def test_the_rule_takes_the_fewest_clean_errors_among_the_robust_and_counts_out_of_fold() -> None:
    need_real_data()
    configs = R3.configs(B, PAPER)
    spec = {rounds.PAPER: (30, 300), rounds.B: (12, 900), rounds.NOISY: (14, 250),
            rounds.WIDER: (11, 280), rounds.LONGER: (10, 400), rounds.DEEPER: (13, 200)}
    found = {name: _cv_candidate(name, configs[name], *spec[name], seed=i) for i, name in enumerate(spec)}
    selection = rounds.Selection(R3, found)
    assert found[rounds.NOISY].errors() == 3 * 14 and found[rounds.NOISY].noise_errors() == 3 * 250
    assert found[rounds.NOISY].noise_errors(0.1) == 3 * (250 // 4)
    assert found[rounds.B].modes == ("plain", "shifts") and found[rounds.B].errors("shifts and rotations") == 3 * 12
    # robust: noise errors at or under the paper's network's 900; LONGER (1200) and B (2700) are not
    assert [n for n in selection.choosable if selection.robust(n)] == [rounds.NOISY, rounds.WIDER, rounds.DEEPER]
    assert selection.chosen.name == rounds.WIDER  # the fewest clean errors among the robust
    table = rounds.cv_table(selection).set_index("candidate")
    assert table.loc[rounds.WIDER, "score"] == 33 and table.loc[rounds.WIDER, "changes #"] == 2  # B + noise
    assert table.loc[rounds.WIDER, "shifts"] == 33 and table.loc[rounds.B, "changes #"] == "" == table.loc[rounds.PAPER, "changes #"]
    assert table.loc[rounds.WIDER, "p vs it"] == "< 0.001" or 0 <= float(table.loc[rounds.WIDER, "p vs it"]) <= 1
    assert stats.p_text(0.00001) == "< 0.001" and stats.p_text(0.0037) == "0.0037" and stats.p_text(0.71) == "0.71"
    noise = rounds.noise_cv_table(selection).set_index("candidate")
    assert noise.loc[rounds.PAPER, "robust"] == "reference" and noise.loc[rounds.B, "robust"] == "no"
    assert noise.loc[rounds.LONGER, "noise 0.4"] == 1200 and noise.loc[rounds.LONGER, "noise 0.1"] == 3 * (400 // 4)


def test_without_a_robust_candidate_the_rule_takes_the_lowest_noise_score() -> None:
    need_real_data()
    configs = R3.configs(B, PAPER)
    spec = {rounds.PAPER: (30, 10), rounds.B: (12, 900), rounds.NOISY: (14, 250),
            rounds.WIDER: (11, 280), rounds.LONGER: (10, 400), rounds.DEEPER: (13, 200)}
    selection = rounds.Selection(R3, {name: _cv_candidate(name, configs[name], *spec[name], seed=i)
                                  for i, name in enumerate(spec)})
    assert not any(selection.robust(n) for n in selection.choosable) and selection.chosen.name == rounds.DEEPER


def test_prediction_modes_tie_to_the_simpler_and_b_never_reads_rotations() -> None:
    labels = np.tile(np.arange(10), 30)
    rng = np.random.default_rng(0)
    wrong = np.arange(0, 300, 10)  # digit 0 wrong, 30 errors
    p = _probabilities(labels, wrong, rng)
    better = _probabilities(labels, wrong[:20], rng)
    common = dict(config=B, runs=[], labels=labels, noisy=np.zeros((4, 300), int))
    tie = rounds.Scored(rounds.NOISY, predictions={"plain": p, "shifts": p, "shifts and rotations": p}, **common)
    assert tie.mode == "plain" and tie.score == 30
    rotations = rounds.Scored(rounds.NOISY, predictions={"plain": p, "shifts": p, "shifts and rotations": better}, **common)
    assert rotations.mode == "shifts and rotations" and rotations.score == 20
    previous = rounds.Scored(rounds.B, predictions={"plain": p, "shifts": p, "shifts and rotations": better},
                             modes=R3.modes(rounds.B), **common)
    assert previous.mode == "plain" and R3.modes(rounds.NOISY) == tuple(rounds.PREDICTION_MODES)


def _look(chosen_errors: list[int], member_errors: list[int], rng: np.random.Generator) -> rounds.TestLook:
    labels = data.load_usps("test")[1].astype(np.int64)
    runs_ = {rounds.WIDER: [], rounds.DEEPER: []}
    for name, errors in ((rounds.WIDER, chosen_errors), (rounds.DEEPER, member_errors)):
        config = R3.configs(B, PAPER)[name]
        for seed, k in enumerate(errors):
            wrong = rng.choice(len(labels), k, replace=False)
            runs_[name].append(_fake_run(Job(config, seed), labels, wrong, [wrong[:k // 2]] * 3 + [wrong], rng))
    return rounds.TestLook(rounds.WIDER, {rounds.WIDER: "shifts", rounds.DEEPER: "plain"}, runs_)


def test_the_test_look_counts_seeds_members_and_training_runs() -> None:
    need_real_data()
    look = _look([40, 38, 41, 36, 39], [45, 44, 47], np.random.default_rng(5))
    assert look.single_errors == [40, 38, 41, 36, 39] and look.noise_errors(0.4) == [40, 38, 41, 36, 39]
    assert look.noise_errors(0.2) == [20, 19, 20, 18, 19]
    assert look.training_runs == 8 and look.prediction_sets == 8
    # members weigh equally: each run of the chosen model 1/10, each of the other member's 1/6
    labels = look.labels
    chosen = np.mean([r.tta for r in look.runs[rounds.WIDER]], axis=0)
    other = np.mean([r.probabilities for r in look.runs[rounds.DEEPER]], axis=0)
    assert look.ensemble_errors == int((((chosen + other) / 2).argmax(1) != labels).sum())
    table = rounds.final_table(look)
    assert list(table["errors, shifts"][:5]) == [40, 38, 41, 36, 39] and len(table) == 7
    assert list(table["σ = 0.4 (%), plain"][:5]) == [round(100 * k / 2007, 1) for k in (40, 38, 41, 36, 39)]
    previous = [_fake_run(Job(B, seed), look.labels, np.arange(k), [np.arange(k)] * 4, np.random.default_rng(seed))
                for seed, k in enumerate((43, 44, 44, 42, 45))]
    numbers = rounds.lineage_numbers(_selection_stub(), look, paper_noise=11.8, previous_noise=70.0, previous=previous)
    assert numbers["r3_prev_mean"] == pytest.approx(100 * 43.6 / len(look.labels))
    assert numbers["r3_vs_prev"] == pytest.approx(100 * (38.8 - 43.6) / len(look.labels))
    assert numbers["r3_mean"] == pytest.approx(100 * 38.8 / len(labels))
    assert numbers["r3_noise_gap"] == pytest.approx(100 * 38.8 / len(labels) - 11.8)
    assert numbers["r3_ensemble_runs"] == 8 and numbers["r3_seeds"] == 5


def _selection_stub() -> rounds.Selection:
    labels = np.tile(np.arange(10), 30)
    rng = np.random.default_rng(1)
    made = {}
    for i, name in enumerate(R3.configs(B, PAPER)):
        p = _probabilities(labels, np.arange(i, 300, 37), rng)
        noisy = np.array([labels] * 4)
        made[name] = rounds.Scored(name, B, [], labels, {r: p for r in rounds.PREDICTION_MODES}, noisy)
    return rounds.Selection(R3, made)


def test_noise_table_puts_the_chosen_model_beside_the_reference_columns() -> None:
    need_real_data()
    look = _look([40, 38, 41, 36, 39], [45, 44, 47], np.random.default_rng(2))
    levels = (0.0, *data.NOISE_LEVELS)
    reference = pd.DataFrame({"the paper's network": [3.9, 4.5, 6.0, 9.0, 11.8]}, index=pd.Index(levels))
    table = rounds.noise_table({look.chosen: look}, reference)
    n = len(look.labels)
    assert table.iloc[-1, 1] == pytest.approx(100 * 40 / n) and table.iloc[-1, 2] == pytest.approx(100 * 38.8 / n)
    with pytest.raises(ValueError, match="noise levels"):
        rounds.noise_table({look.chosen: look}, reference.iloc[:3])


def _confident(labels: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """0.9 on the label, except on ``wrong``: 0.6 on another digit and 0.4 on the label."""
    p = np.full((len(labels), 10), 0.1 / 9, np.float32)
    p[np.arange(len(labels)), labels] = 0.9
    p[wrong] = 0.0
    p[wrong, labels[wrong]], p[wrong, (labels[wrong] + 1) % 10] = 0.4, 0.6
    return p


def test_forward_selection_adds_the_member_that_errs_elsewhere_and_final_jobs_follow_the_protocol() -> None:
    labels = np.tile(np.arange(10), 30)  # 300 images, 10 digits
    wrong = {rounds.PAPER: np.arange(40), rounds.B: np.arange(20), rounds.NOISY: np.arange(15),
             rounds.WIDER: np.arange(10), rounds.LONGER: np.arange(12), rounds.DEEPER: np.arange(100, 112)}
    configs = R3.configs(B, PAPER)
    made = {name: rounds.Scored(name, configs[name], [], labels,
                                   {r: _confident(labels, wrong[name]) for r in rounds.PREDICTION_MODES},
                                   np.array([labels] * 4)) for name in configs}
    selection = rounds.Selection(R3, made)
    assert selection.chosen.name == rounds.WIDER and selection.chosen.score == 10
    # the deeper candidate errs on other images: averaged in, every error goes; nothing lowers 0
    assert selection.members == [(rounds.WIDER, 10), (rounds.DEEPER, 0)]
    jobs = rounds.final_jobs(selection)
    assert list(jobs) == [rounds.WIDER, rounds.DEEPER]
    assert [j.seed for j in jobs[rounds.WIDER]] == list(R3.final_seeds) == [0, 1, 2, 3, 4]
    assert [j.seed for j in jobs[rounds.DEEPER]] == list(R3.member_seeds) == [0, 1, 2]
    assert all(j.split == "test" and j.protocol == R3.protocol_commit for group in jobs.values() for j in group)
    assert jobs[rounds.DEEPER][0].config == configs[rounds.DEEPER]
