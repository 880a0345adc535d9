"""Accurate and robust: the third round of the best-published chapter, as its protocol says.

The protocol (``protocols/accurate-and-robust.md``) was committed before any of this round's runs
was trained, and every run records that commit (:data:`PROTOCOL_COMMIT`). This module carries it
out: the candidates (:func:`candidates`), 3-fold cross-validation on new folds (:data:`FOLD_SEED`)
with predictions of the held-out images plain, shifted, shifted and turned, and under pixel noise
(:func:`cross_validate`), the rule (:class:`Selection`), the final runs (:func:`final_jobs`) and the
one look at the test set (:func:`test_results`). The statistics are :mod:`helpers.stats`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import data, stats
from helpers.config import Config
from helpers.runs import Job, Run, run_many

PROTOCOL = "protocols/accurate-and-robust.md"
#: The commit of the protocol's last change, made before any of this round's runs was trained.
PROTOCOL_COMMIT = "37192d36a0c752e79c437de6b71471dab3fb7b3d"
FOLDS = 3
FOLD_SEED = 1
NOISE = 0.4  # the noise condition's level (standard deviation, images in [0, 1])
FINAL_SEEDS = (0, 1, 2, 3, 4)
MEMBER_SEEDS = (0, 1, 2)
TARGETS = {"single": 1.8, "ensemble": 1.5}  # test error (%)

REFERENCE = "the paper's network"
PREVIOUS = "B (the previous best)"
NOISY = "B + pixel noise"
WIDER = "B + pixel noise, wider"
LONGER = "B + pixel noise, wider, twice the epochs"
DEEPER = "B + pixel noise, third block"

#: The readings of a candidate's predictions, simplest first, and the stored array each uses.
READINGS = {"plain": "probabilities", "shifts": "tta", "shifts and rotations": "tta_rotations"}
#: B's earlier runs on all training images store no rotated predictions (the protocol's amendment).
PREVIOUS_READINGS = ("plain", "shifts")


def candidates(previous: Config, paper: Config) -> dict[str, Config]:
    """The protocol's candidates, the paper's network (the noise condition's reference) first."""
    noisy = previous.with_(augment_noise=0.5)
    wider = noisy.with_(filters=64, second_block_filters=128, dense_units=256)
    return {REFERENCE: paper, PREVIOUS: previous, NOISY: noisy, WIDER: wider,
            LONGER: wider.with_(epochs=2 * wider.epochs, schedule="cosine"),
            DEEPER: noisy.with_(third_block_filters=128)}


def cv_jobs(config: Config) -> list[Job]:
    """The protocol's cross-validation runs of ``config``: fold seed 1, each of the 3 folds."""
    return [Job(config, FOLD_SEED, f"cv{FOLDS}-{fold}", protocol=PROTOCOL_COMMIT) for fold in range(FOLDS)]


@dataclass(frozen=True)
class Candidate:
    """One candidate's out-of-fold predictions of all 7291 training images."""

    name: str
    config: Config
    runs: list[Run]
    labels: np.ndarray
    readings: dict[str, np.ndarray]  # reading -> probabilities (only the readings its runs store)
    noisy: np.ndarray  # predicted digits, one row per level of data.NOISE_LEVELS

    def errors(self, reading: str = "plain") -> int:
        return int((self.readings[reading].argmax(1) != self.labels).sum())

    @property
    def reading(self) -> str:
        """The reading with the fewest out-of-fold errors (a tie takes the simpler)."""
        allowed = [r for r in READINGS if r in self.readings and (self.name != PREVIOUS or r in PREVIOUS_READINGS)]
        return min(allowed, key=lambda r: (self.errors(r), allowed.index(r)))

    @property
    def score(self) -> int:
        """The clean score: out-of-fold errors in the chosen reading."""
        return self.errors(self.reading)

    def noise_errors(self, level: float = NOISE) -> int:
        return int((self.noisy[data.NOISE_LEVELS.index(level)] != self.labels).sum())

    @property
    def probabilities(self) -> np.ndarray:
        return self.readings[self.reading]

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))


def out_of_fold(name: str, config: Config, runs: Sequence[Run]) -> Candidate:
    """Put a candidate's fold runs together: every training image predicted once, by the run that did not see it."""
    _, labels = data.load_usps("train")
    readings = {reading: np.zeros((len(labels), 10), np.float32) for reading in READINGS}
    noisy = np.zeros((len(data.NOISE_LEVELS), len(labels)), np.int64)
    seen = np.zeros(len(labels), dtype=bool)
    for result in runs:
        _, held = data.fold_split(labels, FOLDS, int(result.job.split.split("-")[1]), seed=result.job.seed)
        if not np.array_equal(labels[held], result.labels):
            raise ValueError(f"run {result.key} does not predict the images of its fold")
        for reading, stored in READINGS.items():
            values = getattr(result, stored)
            if values is None:
                raise ValueError(f"run {result.key} stores no '{reading}' predictions; retrain it with `make results`")
            readings[reading][held] = values
        if result.noisy is None:
            raise ValueError(f"run {result.key} stores no noisy predictions; retrain it with `make results`")
        noisy[:, held] = result.noisy
        seen[held] = True
    if not seen.all():
        raise ValueError(f"the folds cover {seen.sum()} of {len(labels)} training images")
    return Candidate(name, config, list(runs), labels.astype(np.int64), readings, noisy)


def cross_validate(configs: Mapping[str, Config], workers: int = 2) -> dict[str, Candidate]:
    """Every candidate's cross-validation runs (trained if missing), put together out of fold."""
    jobs = {name: cv_jobs(config) for name, config in configs.items()}
    found = iter(run_many(sum(jobs.values(), []), workers=workers,
                          describe=lambda j: f"third round, CV fold {j.split[-1]}, {j.key()[:8]}"))
    return {name: out_of_fold(name, configs[name], [next(found) for _ in group]) for name, group in jobs.items()}


@dataclass(frozen=True)
class Selection:
    """The protocol's rule applied to the cross-validated candidates."""

    candidates: dict[str, Candidate]

    @property
    def reference(self) -> Candidate:
        return self.candidates[REFERENCE]

    @property
    def choosable(self) -> dict[str, Candidate]:
        return {name: c for name, c in self.candidates.items() if name != REFERENCE}

    def robust(self, name: str) -> bool:
        """Whether a candidate's noise score is at or under the paper's network's."""
        return self.candidates[name].noise_errors() <= self.reference.noise_errors()

    @property
    def chosen(self) -> Candidate:
        """The fewest clean errors among the robust candidates (else the lowest noise score)."""
        pool = list(self.choosable.values())
        robust = [c for c in pool if self.robust(c.name)]
        if robust:
            return min(robust, key=lambda c: (c.score, pool.index(c)))
        return min(pool, key=lambda c: (c.noise_errors(), pool.index(c)))

    @property
    def members(self) -> list[tuple[str, int]]:
        """Forward selection from the chosen model: each member with the ensemble's out-of-fold errors once it joined."""
        pool = self.choosable
        labels = self.chosen.labels

        def errors(names: list[str]) -> int:
            return int((np.mean([pool[n].probabilities for n in names], axis=0).argmax(1) != labels).sum())

        members = [(self.chosen.name, errors([self.chosen.name]))]
        while True:
            names = [n for n, _ in members]
            options = [(errors(names + [n]), i, n) for i, n in enumerate(pool) if n not in names]
            if not options or min(options)[0] >= members[-1][1]:
                return members
            count, _, name = min(options)
            members.append((name, count))


def cv_table(selection: Selection) -> pd.DataFrame:
    """Each candidate's clean errors in every reading, its noise errors at every level and whether it is robust."""
    rows = []
    n, previous = len(selection.reference.labels), selection.candidates[PREVIOUS]
    for name, c in selection.candidates.items():
        row = {"candidate": name, **{f"CV errors, {r}": c.errors(r) for r in READINGS},
               "reading": "" if name == REFERENCE else c.reading, "clean score": c.score,
               "clean score (%)": round(100 * c.score / n, 2)}
        row |= {f"noise {level}": c.noise_errors(level) for level in data.NOISE_LEVELS}
        row |= {f"noise {NOISE} (%)": round(100 * c.noise_errors() / n, 1),
                "robust": "reference" if name == REFERENCE else ("yes" if selection.robust(name) else "no"),
                "McNemar p vs B": "" if name in (REFERENCE, PREVIOUS) else _two_digits(stats.mcnemar_p(
                    c.probabilities.argmax(1), previous.probabilities.argmax(1), c.labels)),
                "training time, 3 folds (s)": round(c.seconds)}
        rows.append(row)
    return pd.DataFrame(rows).set_index("candidate")


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def final_jobs(selection: Selection) -> dict[str, list[Job]]:
    """The final runs on all training images: the chosen model's seeds 0-4, each other member's seeds 0-2."""
    chosen = selection.chosen.name
    return {name: [Job(selection.candidates[name].config, seed, protocol=PROTOCOL_COMMIT)
                   for seed in (FINAL_SEEDS if name == chosen else MEMBER_SEEDS)]
            for name, _ in selection.members}
