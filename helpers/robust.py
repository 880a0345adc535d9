"""Accurate and robust: the third round of the best-published chapter, as its protocol says.

The protocol (``protocols/accurate-and-robust.md``) was committed before any of this round's runs
was trained, and every run records that commit (:data:`PROTOCOL_COMMIT`). This module carries it
out: the candidates (:func:`candidates`), 3-fold cross-validation on new folds (:data:`FOLD_SEED`)
with predictions of the held-out images plain, shifted, shifted and turned, and under pixel noise
(:func:`helpers.data.add_noise`, draw seed 0 over each fold's held-out images: folds of the same size
get the same noise pattern, and every candidate the same noisy images)
(:func:`cross_validate`), the rule (:class:`Selection`), the final runs (:func:`final_jobs`) and the
one look at the test set (:func:`test_results`). The statistics are :mod:`helpers.stats`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import data, stats
from helpers.best_published import forward_selection, prediction_sets, training_runs
from helpers.config import Config
from helpers.job import Job
from helpers.runs import run_many
from helpers.store import Run
from helpers.train import TTA_ROTATIONS, TTA_SHIFTS

PROTOCOL = "protocols/accurate-and-robust.md"
#: The commit of the protocol's last change, made before any of this round's runs was trained.
PROTOCOL_COMMIT = "37192d36a0c752e79c437de6b71471dab3fb7b3d"
FOLDS = 3
FOLD_SEED = 1
NOISE = 0.4  # the noise condition's level (standard deviation, images in [0, 1])
FINAL_SEEDS = (0, 1, 2, 3, 4)
MEMBER_SEEDS = (0, 1, 2)
TARGETS = {"single": 1.8, "ensemble": 1.5}  # test error (%)
BUDGET_MINUTES = 240  # wall-clock training on 2 cores for the whole round

REFERENCE = "the paper's network"
PREVIOUS = "B"  # the second round's choice (the protocol calls it "B (the previous best)")
NOISY = "B + pixel noise"
WIDER = "B + pixel noise, wider"
LONGER = "B + pixel noise, wider, twice the epochs"
DEEPER = "B + pixel noise, third block"

#: The readings of a candidate's predictions, simplest first, and the stored array each uses.
READINGS = {"plain": "probabilities", "shifts": "tta", "shifts and rotations": "tta_rotations"}
#: B's earlier runs on all training images store no rotated predictions (the protocol's amendment).
PREVIOUS_READINGS = ("plain", "shifts")
#: The candidate each one changes, for the McNemar test of that one change.
PARENT = {NOISY: PREVIOUS, WIDER: NOISY, LONGER: WIDER, DEEPER: NOISY}


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
        if result.job.seed != FOLD_SEED:
            raise ValueError(f"run {result.key} has seed {result.job.seed}; the protocol's folds are drawn with {FOLD_SEED}")
        _, held = data.fold_split(labels, FOLDS, int(result.job.split.split("-")[1]), seed=FOLD_SEED)
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


def fewest_errors_among_robust(pool: Sequence[Candidate], robust: Callable[[str], bool]) -> Candidate:
    """The protocols' rule: the fewest clean errors among the robust candidates of ``pool``, a tie taking the
    earlier; with none robust, the lowest noise score."""
    found = [c for c in pool if robust(c.name)]
    if found:
        return min(found, key=lambda c: (c.score, pool.index(c)))
    return min(pool, key=lambda c: (c.noise_errors(), pool.index(c)))


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
        return fewest_errors_among_robust(list(self.choosable.values()), self.robust)

    @property
    def members(self) -> list[tuple[str, int]]:
        """Forward selection from the chosen model: each member with the ensemble's out-of-fold errors once it joined."""
        return forward_selection({name: c.probabilities for name, c in self.choosable.items()},
                                 self.chosen.labels, self.chosen.name)


def cv_table(selection: Selection) -> pd.DataFrame:
    """Each candidate's clean out-of-fold errors in every reading (columns named by the reading), its score (the
    fewest of its allowed readings), McNemar tests against B and against the candidate it changes (:data:`PARENT`,
    by its number ``#``), and its training time summed over the folds."""
    rows = []
    previous, number = selection.candidates[PREVIOUS], {name: i for i, name in enumerate(selection.candidates)}
    for name, c in selection.candidates.items():
        rows.append({"#": number[name], "candidate": name, **{r: c.errors(r) for r in READINGS},
                     "score": c.score,
                     "p vs B": "" if name in (REFERENCE, PREVIOUS) else _p(stats.mcnemar_p(
                         c.probabilities.argmax(1), previous.probabilities.argmax(1), c.labels)),
                     "changes #": number[PARENT[name]] if name in PARENT else "",
                     "p vs it": "" if name not in PARENT else _p(stats.mcnemar_p(
                         c.probabilities.argmax(1), selection.candidates[PARENT[name]].probabilities.argmax(1),
                         c.labels)),
                     "time (s)": round(c.seconds)})
    return pd.DataFrame(rows).set_index("#")


def _p(value: float) -> str:
    """A p-value to two significant digits, or "< 0.001"."""
    return "< 0.001" if value < 0.001 else f"{value:.2g}"


def noise_cv_table(selection: Selection) -> pd.DataFrame:
    """Each candidate's out-of-fold errors under pixel noise at every level, and whether it is robust."""
    n = len(selection.reference.labels)
    rows = []
    for i, (name, c) in enumerate(selection.candidates.items()):
        rows.append({"#": i, "candidate": name, **{f"noise {level}": c.noise_errors(level) for level in data.NOISE_LEVELS},
                     f"noise {NOISE} (%)": round(100 * c.noise_errors() / n, 1),
                     "robust": "reference" if name == REFERENCE else ("yes" if selection.robust(name) else "no")})
    return pd.DataFrame(rows).set_index("#")


def final_jobs(selection: Selection) -> dict[str, list[Job]]:
    """The final runs on all training images: the chosen model's seeds 0-4, each other member's seeds 0-2."""
    chosen = selection.chosen.name
    return {name: [Job(selection.candidates[name].config, seed, protocol=PROTOCOL_COMMIT)
                   for seed in (FINAL_SEEDS if name == chosen else MEMBER_SEEDS)]
            for name, _ in selection.members}


def final_runs(selection: Selection, workers: int = 2) -> dict[str, list[Run]]:
    """The runs of :func:`final_jobs` (trained if missing), by member, the chosen model first."""
    jobs = final_jobs(selection)
    found = iter(run_many(sum(jobs.values(), []), workers=workers,
                          describe=lambda j: f"third round, test seed {j.seed}, {j.key()[:8]}"))
    return {name: [next(found) for _ in group] for name, group in jobs.items()}


def read(result: Run, reading: str) -> np.ndarray:
    """A run's test probabilities in ``reading`` (see :data:`READINGS`)."""
    values = getattr(result, READINGS[reading])
    if values is None:
        raise ValueError(f"run {result.key} stores no '{reading}' predictions; retrain it with `make results`")
    return values


@dataclass(frozen=True)
class TestLook:
    """The protocol's one look at the test set: the chosen model's seeds and the ensemble."""

    chosen: str
    readings: dict[str, str]  # member -> the reading its cross-validation chose
    runs: dict[str, list[Run]]  # member -> its runs on all training images, the chosen model first

    @property
    def labels(self) -> np.ndarray:
        return self.runs[self.chosen][0].labels

    @property
    def n(self) -> int:
        return len(self.labels)

    def _errors(self, probabilities: np.ndarray) -> int:
        return int((probabilities.argmax(1) != self.labels).sum())

    @property
    def single_errors(self) -> list[int]:
        """Test errors of each seed of the chosen model, in its reading."""
        return [self._errors(read(r, self.readings[self.chosen])) for r in self.runs[self.chosen]]

    @property
    def single_rates(self) -> np.ndarray:
        return 100 * np.array(self.single_errors) / self.n

    def noise_errors(self, level: float) -> list[int]:
        """Test errors of each seed of the chosen model under pixel noise ``level`` (plain prediction)."""
        found = [r.noisy_errors(level) for r in self.runs[self.chosen]]
        if any(e is None for e in found):
            raise ValueError("a run of the chosen model stores no noisy predictions; retrain it with `make results`")
        return [int(e) for e in found if e is not None]

    def member(self, name: str) -> np.ndarray:
        """A member's test probabilities: the mean of its runs, each in the member's reading."""
        return np.mean([read(r, self.readings[name]) for r in self.runs[name]], axis=0)

    @property
    def seed_ensemble_errors(self) -> int:
        return self._errors(self.member(self.chosen))

    @property
    def ensemble_errors(self) -> int:
        """The ensemble as the protocol defines it: members averaged with equal weight."""
        return self._errors(np.mean([self.member(name) for name in self.runs], axis=0))

    @property
    def plain_ensemble_errors(self) -> int:
        """The same prediction sets averaged with equal weight each."""
        return self._errors(np.mean([read(r, self.readings[name]) for name, group in self.runs.items()
                                     for r in group], axis=0))

    @property
    def prediction_sets(self) -> int:
        return prediction_sets(self.runs)

    @property
    def training_runs(self) -> int:
        """Independent training runs (weight averaging reads one training run with other weights)."""
        return training_runs(self.runs)


def test_look(selection: Selection, workers: int = 2) -> TestLook:
    """The protocol's one look: the final runs read as cross-validation chose."""
    runs = final_runs(selection, workers)
    return TestLook(selection.chosen.name, {name: selection.candidates[name].reading for name in runs}, runs)


def final_table(look: TestLook) -> pd.DataFrame:
    """One row per seed of the chosen model (named in the index's header), its seeds' ensemble and the
    ensemble: errors, error, binomial interval, and each seed's error under pixel noise sigma = 0.4."""
    rows = []
    for result, errors, noisy in zip(look.runs[look.chosen], look.single_errors, look.noise_errors(NOISE)):
        rows.append({"model": f"seed {result.job.seed}", "errors": errors,
                     "error (%)": round(100 * errors / look.n, 2), "95 % interval (%)": _wilson(errors, look.n),
                     f"σ = {NOISE} (%), plain": round(100 * noisy / look.n, 1),
                     "training time (s)": round(result.seconds)})
    groups = {f"ensemble of its {len(look.runs[look.chosen])} seeds": (look.seed_ensemble_errors, look.runs[look.chosen])}
    if len(look.runs) > 1:  # forward selection added members
        groups[f"ensemble of {len(look.runs)} members ({look.training_runs} training runs)"] = (
            look.ensemble_errors, sum(look.runs.values(), []))
    for name, (errors, group) in groups.items():
        rows.append({"model": name, "errors": errors, "error (%)": round(100 * errors / look.n, 2),
                     "95 % interval (%)": _wilson(errors, look.n), f"σ = {NOISE} (%), plain": "not measured",
                     "training time (s)": round(sum(r.seconds for r in group))})
    table = pd.DataFrame(rows).set_index("model").rename_axis(look.chosen)
    return table.rename(columns={"errors": f"errors, {look.readings[look.chosen]}",
                                 "error (%)": f"error (%), {look.readings[look.chosen]}"})


def _wilson(errors: int, n: int) -> str:
    low, high = stats.wilson_interval(errors, n)
    return f"{100 * low:.2f}-{100 * high:.2f}"


def noise_table(look: TestLook, reference: pd.DataFrame) -> pd.DataFrame:
    """Test error (%) at each noise level (rows; 0 is the clean plain prediction): the ``reference``
    models' columns (:func:`helpers.evaluate.noise_robustness` of their seed 0, the same noise draws),
    then the chosen model's seed 0 and the mean of its seeds (plain predictions, as the others)."""
    levels = (0.0, *data.NOISE_LEVELS)
    if tuple(reference.index) != levels:
        raise ValueError(f"the reference table's noise levels are {tuple(reference.index)}, not {levels}")
    plain = [int((r.predicted != look.labels).sum()) for r in look.runs[look.chosen]]
    seeds = {0.0: plain} | {level: look.noise_errors(level) for level in data.NOISE_LEVELS}
    table = reference.copy()
    table[f"{look.chosen}, seed 0"] = [100 * seeds[level][0] / look.n for level in levels]
    table[f"{look.chosen}, mean of {len(plain)} seeds"] = [100 * float(np.mean(seeds[level])) / look.n
                                                          for level in levels]
    return table


def numbers(selection: Selection, look: TestLook, paper_noise: float, previous_noise: float,
            previous: Sequence[Run]) -> dict[str, object]:
    """What the chapter and ``summary --json`` quote about the third round. ``paper_noise`` and
    ``previous_noise``: the test error (%) at sigma = 0.4 of the paper's network and of B (seed 0 each);
    ``previous``: B's runs on all training images (the second round's, read as its cross-validation chose)."""
    c, n_cv = selection.candidates, len(selection.reference.labels)
    rates = look.single_rates
    previous_rates = [100 * int((read(r, c[PREVIOUS].reading).argmax(1) != r.labels).sum()) / len(r.labels)
                      for r in previous]
    low, high = stats.mean_interval(rates)
    noise = 100 * np.array(look.noise_errors(NOISE)) / look.n
    ensemble = 100 * look.ensemble_errors / look.n
    e_low, e_high = stats.wilson_interval(look.ensemble_errors, look.n)
    return {
        "r3_protocol": PROTOCOL_COMMIT[:7], "r3_budget": BUDGET_MINUTES, "r3_folds": FOLDS, "r3_fold_seed": FOLD_SEED, "r3_noise": NOISE,
        "r3_candidates": len(selection.choosable), "r3_cv_n": n_cv,
        "r3_ref_noise_errors": selection.reference.noise_errors(), "r3_ref_score": selection.reference.score,
        "r3_robust": sum(selection.robust(name) for name in selection.choosable),
        "r3_prev_score": c[PREVIOUS].score, "r3_prev_noise_errors": c[PREVIOUS].noise_errors(),
        "r3_noisy_score": c[NOISY].score, "r3_noisy_noise_errors": c[NOISY].noise_errors(),
        "r3_noise_cost": c[NOISY].score - c[PREVIOUS].score,
        "r3_wider_score": c[WIDER].score, "r3_longer_score": c[LONGER].score, "r3_deeper_score": c[DEEPER].score,
        "r3_prev_rotations": c[PREVIOUS].errors("shifts and rotations"),
        "r3_lead": c[PREVIOUS].score - selection.chosen.score,
        "r3_train_noise": c[NOISY].config.augment_noise, "r3_rotation": max(TTA_ROTATIONS),
        "r3_copies": len(TTA_ROTATIONS) * len(TTA_SHIFTS), "r3_level_min": min(data.NOISE_LEVELS),
        "r3_level_max": max(data.NOISE_LEVELS), "r3_filters": c[WIDER].config.filters,
        "r3_filters_2": c[WIDER].config.second_block_filters, "r3_dense": c[WIDER].config.dense_units,
        "r3_binomial_half": 100 * float(np.diff(stats.wilson_interval(round(float(np.mean(look.single_errors))),
                                                                     look.n))[0]) / 2,
        "r3_ref_noise_pct": 100 * selection.reference.noise_errors() / n_cv,
        "r3_prev_noise_pct": 100 * c[PREVIOUS].noise_errors() / n_cv,
        "r3_chosen_p": stats.mcnemar_p(selection.chosen.probabilities.argmax(1),
                                       c[PREVIOUS].probabilities.argmax(1), selection.chosen.labels),
        "r3_chosen": look.chosen, "r3_reading": selection.chosen.reading, "r3_chosen_score": selection.chosen.score,
        "r3_chosen_noise_errors": selection.chosen.noise_errors(),
        "r3_members": len(look.runs), "r3_member_names": ", ".join(look.runs),
        "r3_ensemble_cv_errors": selection.members[-1][1],
        "r3_seeds": len(rates), "r3_mean": float(rates.mean()), "r3_std": float(rates.std(ddof=1)),
        "r3_low": low, "r3_high": high, "r3_min_errors": min(look.single_errors),
        "r3_max_errors": max(look.single_errors),
        "r3_noise_mean": float(noise.mean()), "r3_noise_seed0": float(noise[0]),
        "r3_noise_min": float(noise.min()), "r3_noise_max": float(noise.max()),
        "r3_paper_noise": paper_noise, "r3_previous_noise": previous_noise,
        "r3_seed_ensemble": 100 * look.seed_ensemble_errors / look.n, "r3_seed_ensemble_errors": look.seed_ensemble_errors,
        "r3_ensemble": ensemble, "r3_ensemble_errors": look.ensemble_errors,
        "r3_ensemble_low": 100 * e_low, "r3_ensemble_high": 100 * e_high,
        "r3_ensemble_runs": look.training_runs, "r3_ensemble_sets": look.prediction_sets,
        "r3_plain_ensemble_errors": look.plain_ensemble_errors,
        "r3_target_single": TARGETS["single"], "r3_target_ensemble": TARGETS["ensemble"],
        "r3_single_gap": float(rates.mean()) - TARGETS["single"], "r3_ensemble_gap": ensemble - TARGETS["ensemble"],
        "r3_noise_gap": float(noise.mean()) - paper_noise,
        "r3_prev_mean": float(np.mean(previous_rates)), "r3_prev_seeds": len(previous_rates),
        "r3_vs_prev": float(rates.mean() - np.mean(previous_rates)),
        "r3_vs_prev_p": stats.welch_p(rates, previous_rates),
    }


def candidate_table(configs: Mapping[str, Config]) -> pd.DataFrame:
    """Each candidate and what it changes against B (the second round's choice); the paper's network in full."""
    previous = configs[PREVIOUS]
    rows = []
    for name, config in configs.items():
        if name == REFERENCE:
            changes = "the paper's recipe: " + ", ".join(f"{k} = {getattr(config, k)}" for k in (
                "filters", "kernel_size", "dense_units", "dropout", "epochs", "batch_size")) + ", no augmentation"
        elif name == PREVIOUS:
            changes = "the second round's choice: " + ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                                                                for k, v in config.as_dict().items()
                                                                if k in ("second_block_filters", "augment_shift",
                                                                         "augment_rotation", "label_smoothing",
                                                                         "weight_average"))
        else:
            changes = ", ".join(f"{k} = {v}" for k, v in config.as_dict().items() if getattr(previous, k) != v)
        rows.append({"candidate": name, "role": "noise reference" if name == REFERENCE else "candidate",
                     "changes against B": changes})
    return pd.DataFrame(rows).set_index("candidate")


def selection_text(selection: Selection) -> str:
    """How the third round chose, in one sentence (``summary --json``)."""
    members = ", ".join(repr(name) for name, _ in selection.members)
    return (f"the protocol {PROTOCOL} (commit {PROTOCOL_COMMIT[:7]}, committed before any of its runs): "
            f"{FOLDS}-fold cross-validation over the 7291 training images on new folds (fold seed {FOLD_SEED}); "
            f"{len(selection.choosable)} candidates; robust = out-of-fold errors under pixel noise sigma = {NOISE} at "
            f"or under the paper's network's ({selection.reference.noise_errors()}); chosen: '{selection.chosen.name}', "
            f"the fewest clean out-of-fold errors among the robust, read {selection.chosen.reading}; ensemble by "
            f"forward selection on the out-of-fold predictions: {members}; one look at the test set, to report")
