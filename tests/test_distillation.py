"""The fourth round (#26, distillation): the protocol as committed, the soft targets, students named by
their teachers, the check that a teacher saw exactly the student's images, a tiny teacher and student
trained end to end, and the rule of helpers.rounds for students on realistic inputs (10 digits, 5 seeds)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
from scipy.special import softmax

import helpers.job
from helpers import data, rounds, runs, store, train, trainer
from helpers.config import BASELINE
from helpers.job import Job, arrays
from helpers.store import Run

from conftest import REPO, need_real_data
from test_rounds import B, R3, _fake_run, check_protocol_runs

W = R3.configs(B, BASELINE)[rounds.WIDER]
R4 = rounds.ROUNDS[4]
NAMES = [c.name for c in R4.candidates]


def student_config(teacher, weight: float, temperature: float):
    """The fourth round's candidate of that weight and temperature, taught by ``teacher``."""
    return R4.configs(teacher, BASELINE)[f"distilled, a = {weight:g}, T = {temperature:g}"]


# ------------------------------------------------------------------ the protocol


def test_the_protocol_names_the_candidates_and_budget_the_code_uses() -> None:
    text = (REPO / R4.protocol).read_text()
    listed = re.findall(r"^\d\. \*\*(.+?)\*\*", text, flags=re.M)
    assert listed == NAMES
    for c in R4.candidates:
        assert c.parent == rounds.PREVIOUS and c.changes["label_smoothing"] == 0.0
        assert c.name == f"distilled, a = {c.changes['distill_weight']:g}, T = {c.changes['distill_temperature']:g}"
    assert R4.teacher_mode == "shifts" and R4.reference == R3.reference and R4.fold_seed == R3.fold_seed
    assert f"at most **{R4.budget_minutes} minutes**" in text and "**One look**" in text
    assert f"fold seed {R4.fold_seed}" in text and f"seeds 0-{max(R4.final_seeds)}" in text
    assert "`t = a * q + (1 - a) * onehot(label)`" in text and "p ** (1 / T)" in text


def test_the_rounds_runs_record_the_protocol_and_started_after_it() -> None:
    found = check_protocol_runs(R4.protocol, R4.protocol_commit,
                                lambda record: bool(record["job"]["config"].get("distill_weight")))
    assert all(record["job"]["teachers"] for record in found)
    assert len(found) == R4.folds * len(R4.candidates) + len(R4.final_seeds), \
        f"{len(found)} runs of the round in the ledger"
    finals = [store.record(e) for e in store.entries() if store.record(e)["job"]["config"].get("distill_weight")
              and store.record(e)["job"]["split"] == "test"]
    assert sorted(r["job"]["seed"] for r in finals) == list(R4.final_seeds)
    assert len({tuple(r["job"]["teachers"]) for r in finals}) == 1 and len(finals[0]["job"]["teachers"]) == 5


# ------------------------------------------------------------------ soft targets


def test_soft_targets_temper_mix_and_sum_to_one_on_ten_digits() -> None:
    rng = np.random.default_rng(4)
    labels = np.tile(np.arange(10), 50)  # 500 images, every digit
    teachers = softmax(rng.normal(0, 3, (500, 10)), axis=1).astype(np.float32)
    # a = 1, T = 1: the teachers' probabilities as they are
    np.testing.assert_allclose(train.soft_targets(teachers, labels, 1.0, 1.0), teachers, atol=1e-6)
    # a = 0: the one-hot labels
    assert np.array_equal(train.soft_targets(teachers, labels, 0.0, 2.0), np.eye(10, dtype=np.float32)[labels])
    # a = 0.5, T = 2: half the labels, half softmax(log p / 2), written out another way
    expected = 0.5 * softmax(np.log(teachers.astype(np.float64)) / 2, axis=1) + 0.5 * np.eye(10)[labels]
    found = train.soft_targets(teachers, labels, 0.5, 2.0)
    np.testing.assert_allclose(found, expected, atol=1e-6)
    np.testing.assert_allclose(found.sum(1), 1.0, atol=1e-6)
    assert found.dtype == np.float32 and (found[np.arange(500), labels] >= 0.5).all()
    # tempering keeps each row's order and flattens it
    tempered = train.soft_targets(teachers, labels, 1.0, 2.0)
    assert np.array_equal(tempered.argmax(1), teachers.argmax(1)) and (tempered.max(1) <= teachers.max(1) + 1e-6).all()
    with pytest.raises(ValueError, match="expected"):
        train.soft_targets(teachers[:, :9], labels, 1.0, 1.0)


# ------------------------------------------------------------------ students and their names


def test_a_student_is_named_by_its_teachers_and_old_runs_keep_their_names() -> None:
    student = student_config(W, 0.5, 2.0)
    assert student.label_smoothing == 0.0 and (student.distill_weight, student.distill_temperature) == (0.5, 2.0)
    assert "distill_weight" not in W.as_dict() and "distill_temperature" not in W.as_dict()
    a, b = Job(student, 1, "cv3-0", teachers=("aaaa",)), Job(student, 1, "cv3-0", teachers=("bbbb",))
    assert a.key() != b.key() and a.identity()["teachers"] == ["aaaa"]
    assert "teachers" not in Job(W, 1, "cv3-0").identity()
    with pytest.raises(ValueError, match="needs teachers"):
        Job(student, 1, "cv3-0")
    with pytest.raises(ValueError, match="needs teachers"):
        Job(W, 1, "cv3-0", teachers=("aaaa",))
    assert helpers.job.code_hash(student) != helpers.job.code_hash(W.with_(label_smoothing=0.0))


def test_a_teacher_trained_on_other_images_is_refused() -> None:
    need_real_data()
    third_w = [e for e in store.entries() if store.record(e)["job"]["config"] == W.as_dict()
               and store.record(e)["job"]["split"].startswith("cv3-") and store.record(e)["job"]["seed"] == R4.fold_seed]
    if len(third_w) < R4.folds:
        pytest.skip("the third round's runs of W are not in this ledger")
    by_fold = {store.record(e)["job"]["split"]: e.name for e in third_w}
    student = student_config(W, 1.0, 1.0)
    wrong = Job(student, R4.fold_seed, "cv3-1", teachers=(by_fold["cv3-0"],))  # fold 0's run, fold 1's images
    with pytest.raises(ValueError, match="not trained on the student's training images"):
        trainer.training_arrays(wrong)
    with pytest.raises(store.LedgerError, match="not in the results ledger"):
        trainer.training_arrays(Job(student, R4.fold_seed, "cv3-1", teachers=("0" * 20,)))


def test_a_tiny_teacher_and_student_train_end_to_end(tmp_path, monkeypatch) -> None:
    need_real_data()
    monkeypatch.setenv(store.ENV_LEDGER, str(tmp_path / "ledger"))
    monkeypatch.setenv(runs.ENV_TRAINING, "ledger")
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    tiny = BASELINE.with_(epochs=1, filters=4, dense_units=8, augment_noise=0.5)
    teacher_job = Job(tiny, 1, "cv3-2")
    student_job = Job(student_config(tiny, 0.5, 2.0), 1, "cv3-2", protocol="x" * 40,
                      teachers=(teacher_job.key(),))
    # one batch, the student first (as `make retrain` submits the whole ledger): its teacher is trained first
    student, teacher = runs.run_many([student_job, teacher_job], workers=1)
    assert [teacher.key, student.key] == [teacher_job.key(), student_job.key()]
    assert {e.name for e in store.entries()} == {teacher.key, student.key}
    x, targets, _, _ = trainer.training_arrays(student_job)
    _, y, _, _ = arrays(student_job)
    # the targets are the teacher's shifted reading of the student's own images, tempered and mixed
    model = trainer.load_model(teacher, weights=store.pooled_weights(teacher.key, teacher.record["code"]))
    expected = train.soft_targets(train.predict_tta(model, x, 0.0), y, 0.5, 2.0)
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    student = runs.run(student_job)
    assert student.record["job"]["teachers"] == [teacher.key] and student.record["protocol"] == "x" * 40
    stored = hashlib.sha256(np.ascontiguousarray(targets, dtype=np.float32).tobytes()).hexdigest()
    assert student.record["targets_sha256"] == stored
    assert len(student.record["targets_sha256"]) == 64 and student.record["n_train"] == len(y)
    assert store.stale_reason(student.entry) is None and Job.from_record(student.record) == student_job
    assert student.noisy is not None and student.tta_rotations is not None
    # a teacher trained again after its student makes the student stale, and so does a missing teacher
    record = store.record(teacher.entry) | {"trained": "2999-01-01 00:00:00 UTC"}
    (teacher.entry / "record.json").write_text(json.dumps(record))
    assert "trained again" in store.stale_reason(student.entry)
    shutil.rmtree(teacher.entry)
    assert "not in the ledger" in store.stale_reason(student.entry)


# ------------------------------------------------------------------ the rule


def _candidate(name: str, config, errors: int, noise: int, labels: np.ndarray) -> rounds.Scored:
    """Its errors in the shifts reading; two more read plain and with rotations (so it reads best with shifts)."""
    predictions = {}
    for mode in rounds.PREDICTION_MODES:
        p = np.full((len(labels), 10), 0.01, np.float32)
        p[np.arange(len(labels)), labels] = 0.91
        k = errors if mode == "shifts" else errors + 2
        p[:k] = np.roll(p[:k], 1, axis=1)
        predictions[mode] = p
    noisy = np.array([labels] * len(data.NOISE_LEVELS))
    noisy[:, :noise] = (labels[:noise] + 1) % 10
    return rounds.Scored(name, config, [], labels, predictions, noisy)


def _round(teacher: int, students: tuple[tuple[int, int], ...], reference_noise: int = 700) -> rounds.Selection:
    labels = np.tile(np.arange(10), 730)[:7291]
    third = {rounds.PAPER: _candidate(rounds.PAPER, BASELINE, 86, reference_noise, labels),
             rounds.WIDER: _candidate(rounds.WIDER, W, teacher, 150, labels)}
    configs = R4.configs(W, BASELINE)
    made = {name: _candidate(name, configs[name], e, n, labels) for name, (e, n) in zip(configs, students)}
    return rounds.Selection(R4, made, rounds.Selection(R3, third))


def test_the_student_replaces_its_teacher_only_with_fewer_errors_and_robust() -> None:
    first, second = NAMES
    chosen = _round(37, ((36, 160), (35, 140)))
    assert chosen.teacher.name == rounds.WIDER and chosen.chosen.name == second and chosen.replaces
    tie = _round(37, ((37, 160), (38, 140)))
    assert tie.chosen.name == first and not tie.replaces  # equal to the teacher: W stays
    fragile = _round(37, ((30, 900), (35, 650)))  # the first is more accurate but not robust
    assert not fragile.robust(first) and fragile.robust(second) and fragile.chosen.name == second
    assert fragile.replaces
    none = _round(37, ((30, 900), (35, 800)))  # none robust: the lowest noise score, which cannot replace W
    assert none.chosen.name == second and not none.replaces
    table = rounds.student_table(chosen)
    assert list(table.index) == [rounds.W, first, second]
    assert list(table["score"]) == [37, 36, 35] and list(table["noise 0.4"]) == [150, 160, 140]
    assert table.loc[rounds.W, "p vs W"] == "" and float(table.loc[second, "p vs W"]) == pytest.approx(0.5)


def test_a_teacher_not_read_with_shifts_is_refused() -> None:
    labels = np.tile(np.arange(10), 730)[:7291]
    p = np.eye(10, dtype=np.float32)[labels]
    plain = rounds.Scored(rounds.WIDER, W, [], labels, {m: p for m in rounds.PREDICTION_MODES},
                          np.array([labels] * len(data.NOISE_LEVELS)))
    assert plain.mode == "plain"  # a tie reads plain, but the students' targets are read with shifts
    with pytest.raises(ValueError, match="prediction mode is 'plain'"):
        R4.cv_jobs(student_config(W, 1.0, 1.0), plain)


def test_final_jobs_are_five_seeds_taught_by_ws_five_final_runs() -> None:
    selected = _round(37, ((36, 160), (35, 140)))
    found = rounds.final_jobs(selected)
    jobs = found[selected.chosen.name]
    teachers = [j.key() for j in rounds.final_jobs(selected.previous)[rounds.WIDER]]
    assert list(found) == [selected.chosen.name]
    assert [j.seed for j in jobs] == [0, 1, 2, 3, 4] and all(j.split == "test" for j in jobs)
    assert all(j.teachers == tuple(teachers) and j.protocol == R4.protocol_commit for j in jobs)
    assert len(set(teachers)) == 5 and jobs[0].config == selected.chosen.config


def _look(name: str, config, errors: list[int], noise: list[int], labels: np.ndarray) -> rounds.TestLook:
    rng = np.random.default_rng(len(name))
    found: list[Run] = []
    for seed, (k, m) in enumerate(zip(errors, noise)):
        wrong = rng.choice(len(labels), max(k, m), replace=False)
        found.append(_fake_run(Job(config, seed, teachers=("t",) if config.distill_weight else ()), labels,
                               wrong[:k], [wrong[:m // 4], wrong[:m // 2], wrong[:3 * m // 4], wrong[:m]], rng))
    return rounds.TestLook(name, {name: "shifts"}, {name: found})


def test_the_look_compares_the_student_with_its_teacher_seed_by_seed() -> None:
    need_real_data()
    labels = data.load_usps("test")[1].astype(np.int64)
    selected = _round(37, ((36, 160), (35, 140)))
    teacher = _look(rounds.WIDER, W, [49, 45, 45, 43, 49], [70, 72, 68, 71, 69], labels)
    look = _look(selected.chosen.name, selected.chosen.config, [44, 46, 41, 47, 42], [60, 61, 66, 59, 63], labels)
    table = rounds.student_final_table(look, teacher)
    assert list(table["student errors"][:5]) == [44, 46, 41, 47, 42] and list(table["W errors"][:5]) == [49, 45, 45, 43, 49]
    assert table.loc["0", "student at noise 0.4 (%)"] == round(100 * 60 / 2007, 2)
    numbers = rounds.student_numbers(selected, look, teacher, seconds=[600.0] * 11)
    assert numbers["r4_mean"] == pytest.approx(100 * 44 / 2007) and numbers["r4_teacher_mean"] == pytest.approx(100 * 46.2 / 2007)
    assert numbers["r4_vs_teacher"] == pytest.approx(100 * (44 - 46.2) / 2007)
    assert numbers["r4_noise_mean"] == pytest.approx(100 * 61.8 / 2007) and numbers["r4_minutes"] == pytest.approx(110)
    assert numbers["r4_seed_ensemble_runs"] == 10 and numbers["r4_replaces"] and numbers["r4_cv_gain"] == 2
    noise = rounds.noise_table({"W": teacher, "student": look})
    assert noise.loc[0.4, "student, mean of 5 seeds"] == pytest.approx(100 * 61.8 / 2007)
    assert noise.loc[0.0, "W, mean of 5 seeds"] == pytest.approx(100 * 46.2 / 2007)  # plain = shifts here
