"""Distillation: the fourth round of the best-published chapter, as its protocol says.

The protocol (``protocols/distillation.md``) was committed before this module and before any of
the round's runs; every run records that commit (:data:`PROTOCOL_COMMIT`). Students of the third
round's chosen model W (:mod:`helpers.robust`) are trained on soft targets that W's runs on exactly
their training images give (:func:`helpers.runs.training_arrays`): in cross-validation W's run on the
same fold, on all training images W's five final runs. The candidates (:data:`CANDIDATES`) are
cross-validated on the third round's folds and scored by its rule (:func:`cross_validate`,
:class:`Round`); the chosen student's final runs (:func:`final_jobs`) are the round's one look at the
test set (:func:`test_look`). The targets are computed once per run, from the clean training images;
the student's own augmentation (shifts, rotations, pixel noise) changes the images it sees, not their targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from helpers import data, robust, stats
from helpers.config import Config
from helpers.job import Job
from helpers.runs import run_many

PROTOCOL = "protocols/distillation.md"
#: The commit of the protocol, made before any of this round's runs was trained.
PROTOCOL_COMMIT = "5ef3b2c0d30c35b463a09df0870bd3819a0741f7"
#: The students: (share of the teachers' probabilities in the targets, their temperature).
CANDIDATES: dict[str, tuple[float, float]] = {"distilled, a = 1, T = 1": (1.0, 1.0),
                                               "distilled, a = 0.5, T = 2": (0.5, 2.0)}
FINAL_SEEDS = (0, 1, 2, 3, 4)
BUDGET_MINUTES = 60  # wall-clock training on 2 cores for the round
TEACHER = "W (the third round's choice, the teacher)"


def student_config(teacher: Config, weight: float, temperature: float) -> Config:
    """The teacher's configuration with label smoothing replaced by soft targets."""
    return teacher.with_(label_smoothing=0.0, distill_weight=weight, distill_temperature=temperature)


TEACHER_READING = "shifts"  # how a teacher reads the student's images (runs.teacher_probabilities)


def _check_reading(teacher: robust.Candidate) -> None:
    """The protocol's teachers read in W's reading, which the code fixes as :data:`TEACHER_READING`."""
    if teacher.reading != TEACHER_READING:
        raise ValueError(f"the teacher's cross-validated reading is {teacher.reading!r}; the students' targets "
                         f"are read with {TEACHER_READING!r} (helpers.runs.teacher_probabilities)")


def cv_jobs(config: Config, teacher: robust.Candidate) -> list[Job]:
    """A student's cross-validation runs: on each fold of the third round, taught by W's run on that fold."""
    _check_reading(teacher)
    return [Job(config, r.job.seed, r.job.split, protocol=PROTOCOL_COMMIT, teachers=(r.key,)) for r in teacher.runs]


def cross_validate(third: robust.Selection, workers: int = 2) -> dict[str, robust.Candidate]:
    """Every student's cross-validation runs (trained if missing), put together out of fold."""
    teacher = third.chosen
    configs = {name: student_config(teacher.config, *ta) for name, ta in CANDIDATES.items()}
    jobs = {name: cv_jobs(config, teacher) for name, config in configs.items()}
    found = iter(run_many(sum(jobs.values(), []), workers=workers,
                          describe=lambda j: f"fourth round, CV fold {j.split[-1]}, {j.key()[:8]}"))
    return {name: robust.out_of_fold(name, configs[name], [next(found) for _ in group])
            for name, group in jobs.items()}


@dataclass(frozen=True)
class Round:
    """The protocol's rule applied to the cross-validated students."""

    third: robust.Selection
    students: dict[str, robust.Candidate]

    @property
    def teacher(self) -> robust.Candidate:
        return self.third.chosen

    def robust(self, name: str) -> bool:
        return self.students[name].noise_errors() <= self.third.reference.noise_errors()

    @property
    def student(self) -> robust.Candidate:
        """The fewest clean errors among the robust students (a tie takes the first). Were none robust (the
        protocol does not say), the lowest noise score, as the third round's rule does; it could not replace W."""
        return robust.fewest_errors_among_robust(list(self.students.values()), self.robust)

    @property
    def replaces(self) -> bool:
        """Whether the student becomes the book's best single model: robust, and fewer clean errors than W."""
        return self.robust(self.student.name) and self.student.score < self.teacher.score


def final_jobs(selected: Round) -> list[Job]:
    """The chosen student's seeds 0-4 on all training images, each taught by W's five final runs."""
    _check_reading(selected.teacher)
    teachers = tuple(job.key() for job in robust.final_jobs(selected.third)[selected.teacher.name])
    return [Job(selected.student.config, seed, protocol=PROTOCOL_COMMIT, teachers=teachers) for seed in FINAL_SEEDS]


def test_look(selected: Round, teacher_look: robust.TestLook, workers: int = 2) -> robust.TestLook:
    """The protocol's one look: the student's final runs, read as its cross-validation chose."""
    if teacher_look.chosen != selected.teacher.name:
        raise ValueError(f"the teachers' look is of {teacher_look.chosen!r}, not of {selected.teacher.name!r}")
    found = run_many(final_jobs(selected), workers=workers,
                     describe=lambda j: f"fourth round, test seed {j.seed}, {j.key()[:8]}")
    name = selected.student.name
    return robust.TestLook(name, {name: selected.student.reading}, {name: found})


def cv_table(selected: Round) -> pd.DataFrame:
    """The teacher and each student: out-of-fold errors in every reading, the score, the noise score,
    whether robust, and a McNemar test of the student against the teacher (both in their readings)."""
    teacher = selected.teacher
    rows = []
    for name, c in {TEACHER: teacher, **selected.students}.items():
        student = name != TEACHER
        rows.append({"model": name, **{r: c.errors(r) for r in robust.READINGS}, "score": c.score,
                     f"noise {robust.NOISE}": c.noise_errors(),
                     "robust": ("yes" if selected.robust(name) else "no") if student else "yes",
                     "p vs W": robust._p(stats.mcnemar_p(c.probabilities.argmax(1), teacher.probabilities.argmax(1),
                                                         c.labels)) if student else "",
                     "3 folds (s)": round(c.seconds)})
    return pd.DataFrame(rows).set_index("model")


def final_table(look: robust.TestLook, teacher_look: robust.TestLook) -> pd.DataFrame:
    """Seed by seed: the student's and W's test errors (each in its reading) and their errors at sigma = 0.4;
    then both seeds' ensembles."""
    rows = []
    student_noise, teacher_noise = look.noise_errors(robust.NOISE), teacher_look.noise_errors(robust.NOISE)
    for i, (s, t) in enumerate(zip(look.runs[look.chosen], teacher_look.runs[teacher_look.chosen])):
        if s.job.seed != t.job.seed:
            raise ValueError("the student's and the teacher's runs are not in the same seed order")
        rows.append({"seed": str(s.job.seed), "student errors": look.single_errors[i],
                     "W errors": teacher_look.single_errors[i],
                     "student (%)": round(float(look.single_rates[i]), 2),
                     "W (%)": round(float(teacher_look.single_rates[i]), 2),
                     f"student at noise {robust.NOISE} (%)": round(100 * student_noise[i] / look.n, 2),
                     f"W at noise {robust.NOISE} (%)": round(100 * teacher_noise[i] / look.n, 2)})
    rows.append({"seed": "ensemble of the 5 seeds", "student errors": look.seed_ensemble_errors,
                 "W errors": teacher_look.seed_ensemble_errors,
                 "student (%)": round(100 * look.seed_ensemble_errors / look.n, 2),
                 "W (%)": round(100 * teacher_look.seed_ensemble_errors / look.n, 2),
                 f"student at noise {robust.NOISE} (%)": "", f"W at noise {robust.NOISE} (%)": ""})
    return pd.DataFrame(rows).set_index("seed")


def noise_table(look: robust.TestLook, teacher_look: robust.TestLook) -> pd.DataFrame:
    """Mean test error (%) of the 5 seeds at each noise level (0: the clean plain prediction), W and the student."""
    table = {}
    for label, one in (("W, mean of 5 seeds", teacher_look), ("student, mean of 5 seeds", look)):
        clean = [int((r.predicted != one.labels).sum()) for r in one.runs[one.chosen]]
        table[label] = [100 * float(np.mean(clean)) / one.n] + [100 * float(np.mean(one.noise_errors(level))) / one.n
                                                                 for level in data.NOISE_LEVELS]
    return pd.DataFrame(table, index=pd.Index((0.0, *data.NOISE_LEVELS), name="noise sigma"))


def numbers(selected: Round, look: robust.TestLook, teacher_look: robust.TestLook,
            seconds: Sequence[float]) -> dict[str, object]:
    """What the chapter and ``summary --json`` quote about the fourth round (``seconds``: the training time
    of each of the round's runs, for its budget)."""
    student, teacher = selected.student, selected.teacher
    rates, teacher_rates = look.single_rates, teacher_look.single_rates
    low, high = stats.mean_interval(rates)
    noise = 100 * np.array(look.noise_errors(robust.NOISE)) / look.n
    weight, temperature = CANDIDATES[student.name]
    return {
        "r4_protocol": PROTOCOL_COMMIT[:7], "r4_budget": BUDGET_MINUTES, "r4_candidates": len(selected.students),
        "r4_teacher_score": teacher.score, "r4_teacher_noise_errors": teacher.noise_errors(),
        **{f"r4_score_{i}": c.score for i, c in enumerate(selected.students.values(), start=1)},
        **{f"r4_noise_errors_{i}": c.noise_errors() for i, c in enumerate(selected.students.values(), start=1)},
        "r4_student": student.name, "r4_weight": weight, "r4_temperature": temperature,
        "r4_reading": student.reading, "r4_student_score": student.score,
        "r4_student_noise_errors": student.noise_errors(),
        "r4_robust": sum(selected.robust(name) for name in selected.students),
        "r4_p": stats.mcnemar_p(student.probabilities.argmax(1), teacher.probabilities.argmax(1), student.labels),
        "r4_replaces": selected.replaces, "r4_cv_gain": teacher.score - student.score,
        "r4_seeds": len(rates), "r4_mean": float(rates.mean()), "r4_std": float(rates.std(ddof=1)),
        "r4_low": low, "r4_high": high, "r4_min_errors": min(look.single_errors), "r4_max_errors": max(look.single_errors),
        "r4_teacher_mean": float(teacher_rates.mean()), "r4_vs_teacher": float(rates.mean() - teacher_rates.mean()),
        "r4_vs_teacher_p": stats.welch_p(rates, teacher_rates),
        "r4_noise_mean": float(noise.mean()), "r4_noise_min": float(noise.min()), "r4_noise_max": float(noise.max()),
        "r4_seed_ensemble_errors": look.seed_ensemble_errors, "r4_seed_ensemble": 100 * look.seed_ensemble_errors / look.n,
        "r4_seed_ensemble_runs": 2 * len(rates),
        "r4_target_single": robust.TARGETS["single"], "r4_single_gap": float(rates.mean()) - robust.TARGETS["single"],
        "r4_runs": len(seconds), "r4_minutes": sum(seconds) / 60,
    }


def selection_text(selected: Round) -> str:
    """How the fourth round chose, in one sentence (``summary --json``)."""
    return (f"the protocol {PROTOCOL} (commit {PROTOCOL_COMMIT[:7]}, committed before any of its runs): students of "
            f"'{selected.teacher.name}' trained on soft targets from its runs on the same images, "
            f"{len(selected.students)} candidates cross-validated on the third round's folds; reported: "
            f"'{selected.student.name}' ({selected.student.score} out-of-fold errors against the teacher's "
            f"{selected.teacher.score}); it replaces the best single model only with fewer errors than the teacher "
            f"and robust: {'yes' if selected.replaces else 'no'}; one look at the test set, to report")
