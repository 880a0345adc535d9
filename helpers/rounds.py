"""The rounds of the best-published search: one selection engine, each round a data entry.

A round (:class:`Round`, listed in :data:`ROUNDS`) is what was fixed before any of its runs was trained:
for rounds 3 and 4 a committed protocol, whose commit every run records (rounds 1 and 2 came before the
protocols). It holds the candidates (each a change of the previous round's choice, of the paper's network
or of an earlier candidate), the cross-validation (folds drawn with the round's fold seed; the held-out
images predicted in each prediction mode the round stores, :data:`PREDICTION_MODES`, and, in a round with
a noise score, under pixel noise, :func:`helpers.data.add_noise`, draw seed 0 over each fold's held-out
images), the rule (the fewest clean errors among the robust candidates, all of them without a noise score;
an ensemble by forward selection), the final seeds and the look at the test set. A round whose candidates
are students learns from the previous round's choice (soft targets from its runs on exactly the student's
training images, :func:`helpers.trainer.training_arrays`): in cross-validation its run on the same fold,
on all training images its final runs. Adding a round is a protocol, an entry here and a chapter section.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import data, stats
from helpers.config import beyond, Config, TTA_ROTATIONS, TTA_SHIFTS
from helpers.job import Job
from helpers.runs import run_many
from helpers.store import Run
from helpers.stats import errors, p_text, wilson_text

#: The prediction modes of a candidate, simplest first, and the stored array each uses.
PREDICTION_MODES = {"plain": "probabilities", "shifts": "tta", "shifts and rotations": "tta_rotations"}
PAPER, PREVIOUS = "the paper's network", "the previous round's choice"  # parents outside a round
CHOICE = "{previous}"  # in a candidate's name: the previous round's choice's name
NOISE = 0.4  # the protocols' noise condition (standard deviation, images in [0, 1])
ORDINALS = ("first", "second", "third", "fourth", "fifth")


@dataclass(frozen=True)
class Candidate:
    """A change of ``parent`` (:data:`PAPER`, :data:`PREVIOUS` or an earlier candidate); a change given as a
    function reads the parent's configuration, ``epochs="double"`` the profile's (``BeyondSettings.resolve``)."""

    name: str
    parent: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] = tuple(PREDICTION_MODES)  # the prediction modes the rule may choose from
    why: str = ""  # what the change may help with (rounds 1 and 2 print it)
    member: bool = True  # whether forward selection may add it to an ensemble


@dataclass(frozen=True)
class Round:
    """One round of the search, as its protocol fixed it."""

    number: int
    name: str
    protocol: str  # none for rounds 1 and 2
    protocol_commit: str  # the protocol's commit, made before any of the round's runs was trained
    candidates: tuple[Candidate, ...]
    reference: str  # the noise reference: one of the candidates, else the previous round's
    targets: Mapping[str, float]  # test error (%)
    groups: tuple[str, str]  # its experiments in the registry: the cross-validation, the final runs
    budget_minutes: int = 0  # wall-clock training on 2 cores for the whole round
    folds: int = 3
    fold_seed: int = 1
    noise: float | None = NOISE  # None: no noise score (every candidate robust), no noisy predictions
    stored: tuple[str, ...] = tuple(PREDICTION_MODES)  # the prediction modes its runs are read in
    final_seeds: tuple[int, ...] | None = (0, 1, 2, 3, 4)  # None: the profile's best_seeds
    member_seeds: tuple[int, ...] = ()  # an ensemble's other members' seeds (none: no forward selection)
    pools_previous: bool = False  # forward selection may also add the previous round's candidates
    ranking: bool = False  # each candidate also tested once (seed 0), to check the ranking (chooses nothing)
    teacher_mode: str = ""  # students: how the previous round's choice reads their images (trainer.teacher_probabilities)

    def named(self, previous: str) -> Round:
        """The round with :data:`CHOICE` in its candidates' names and parents replaced by ``previous``."""
        return replace(self, candidates=tuple(replace(c, name=c.name.replace(CHOICE, previous),
                                                      parent=c.parent.replace(CHOICE, previous))
                                              for c in self.candidates))

    @property
    def seeds(self) -> tuple[int, ...]:
        """The chosen model's seeds on all training images."""
        return beyond().best_seeds if self.final_seeds is None else self.final_seeds

    def configs(self, previous: Config, paper: Config) -> dict[str, Config]:
        made = {PAPER: paper, PREVIOUS: previous}
        for c in self.candidates:
            parent = made[c.parent]
            made[c.name] = parent.with_(**beyond().resolve(
                {k: v(parent) if callable(v) else v for k, v in c.changes.items()}))
        return {c.name: made[c.name] for c in self.candidates}

    def spec(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def modes(self, name: str) -> tuple[str, ...]:
        """The modes the rule may choose from for candidate ``name``, of those the round stores."""
        return tuple(m for m in self.spec(name).modes if m in self.stored)

    def parent(self, name: str) -> str:
        """The candidate ``name`` changes, if one of this round's (for the McNemar test of that change)."""
        parent = self.spec(name).parent
        return parent if parent != name and parent in {c.name for c in self.candidates} else ""

    def cv_jobs(self, config: Config, teacher: "Scored | None" = None) -> list[Job]:
        """One run per fold; a student's taught by the teacher's run on that fold."""
        if not self.teacher_mode:
            return [Job(config, self.fold_seed, f"cv{self.folds}-{fold}", protocol=self.protocol_commit)
                    for fold in range(self.folds)]
        assert teacher is not None
        self.check_teacher(teacher)
        return [Job(config, r.job.seed, r.job.split, protocol=self.protocol_commit, teachers=(r.key,))
                for r in teacher.runs]

    def check_teacher(self, teacher: "Scored") -> None:
        """The protocol's teachers read in their cross-validated mode, which the code fixes as ``teacher_mode``."""
        if teacher.mode != self.teacher_mode:
            raise ValueError(f"the teacher's cross-validated prediction mode is {teacher.mode!r}; the students' "
                             f"targets are read with {self.teacher_mode!r} (helpers.trainer.teacher_probabilities)")


LADDER, ALL = "the ladder's final model", "all four levers"
B, NOISY = "B", "B + pixel noise"
WIDER, LONGER, DEEPER = "B + pixel noise, wider", "B + pixel noise, wider, twice the epochs", "B + pixel noise, third block"
W = "W (the third round's choice, the teacher)"  # how the fourth round's tables name its teacher


def twice_the_epochs(parent: Config) -> int:
    """A change that reads its parent (a function, so that rounds pickle)."""
    return 2 * parent.epochs


#: The first round's levers, each added alone to the ladder's final model.
LEVERS = (
    Candidate("cosine learning-rate decay", PREVIOUS, {"schedule": "cosine"},
              why="anneal the step size to zero over the same 100 epochs"),
    Candidate("elastic distortions", PREVIOUS, {"augment_elastic": 8.0},
              why="Simard, Steinkraus & Platt (2003): a smooth random displacement field (sigma 2 px, alpha 8 px)"),
    Candidate("scale and shear", PREVIOUS, {"augment_zoom": 0.1, "augment_shear": 0.1},
              why="random zoom of up to 10 % and shear of up to 0.1, the slant and size of handwriting"),
    Candidate("label smoothing", PREVIOUS, {"label_smoothing": 0.1},
              why="train towards 0.9 on the label and 0.01 on each other class instead of 1 and 0"),
)
#: Rounds 1 and 2, before the protocols: the same folds (seed 0), no noise score, the rule the fewest
#: out-of-fold errors plain or shifted (a tie keeps the earlier), the chosen model on the profile's seeds.
BEFORE_PROTOCOLS = dict(protocol="", protocol_commit="", reference="", targets={"single": 2.0, "ensemble": 1.8},
                        fold_seed=0, noise=None, stored=("plain", "shifts"), final_seeds=None)

#: Every round, in the order they happened. The second round starts from the first round's choice and
#: adds, one at a time, what the first left untried (written down before any of its runs was trained).
ROUNDS = {
    1: Round(1, "first round", candidates=(
        Candidate(LADDER, PREVIOUS, member=False),  # its test run predates the stored shifted predictions
        *LEVERS, Candidate(ALL, PREVIOUS, {k: v for c in LEVERS for k, v in c.changes.items()})),
        groups=("cross-validation, first round", "the first round's choice"), ranking=True, **BEFORE_PROTOCOLS),
    2: Round(2, "second round", candidates=(
        Candidate(CHOICE, PREVIOUS),
        Candidate(f"{CHOICE} + elastic distortions", PREVIOUS, {"augment_elastic": 8.0},
                  why="the other lever that lowered cross-validated errors in the first round"),
        Candidate(f"{CHOICE} + weight averaging", PREVIOUS, {"weight_average": 0.99},
                  why="predict with a moving average of the weights over training (momentum 0.99: about the last "
                      "100 steps, 3 to 5 epochs)"),
        Candidate(f"{CHOICE} + a third convolution block", PREVIOUS, {"third_block_filters": 128},
                  why="a 3x3 convolution with 128 filters and pooling after the second block"),
        Candidate(f"{CHOICE} + elastic distortions, twice the epochs, cosine decay", PREVIOUS,
                  {"augment_elastic": 8.0, "epochs": "double", "schedule": "cosine"},
                  why="a longer schedule with learning-rate decay for the augmented model: the first round's "
                      "augmented candidates fit fewer of their training batches")),
        groups=("cross-validation, second round", "ensemble members chosen by cross-validation"),
        member_seeds=(0,), pools_previous=True, **BEFORE_PROTOCOLS),
    3: Round(3, "third round", "protocols/accurate-and-robust.md", "37192d36a0c752e79c437de6b71471dab3fb7b3d", (
        Candidate(PAPER, PAPER),
        # B's earlier runs on all training images store no rotated predictions (the protocol's amendment)
        Candidate(B, PREVIOUS, modes=("plain", "shifts")),
        Candidate(NOISY, B, {"augment_noise": 0.5}),
        Candidate(WIDER, NOISY, {"filters": 64, "second_block_filters": 128, "dense_units": 256}),
        Candidate(LONGER, WIDER, {"epochs": twice_the_epochs, "schedule": "cosine"}),
        Candidate(DEEPER, NOISY, {"third_block_filters": 128})),
        reference=PAPER, targets={"single": 1.8, "ensemble": 1.5}, budget_minutes=240, member_seeds=(0, 1, 2),
        groups=("third round: cross-validation", "third round: the chosen model and the ensemble's members")),
    4: Round(4, "fourth round", "protocols/distillation.md", "5ef3b2c0d30c35b463a09df0870bd3819a0741f7", tuple(
        Candidate(f"distilled, a = {a:g}, T = {t:g}", PREVIOUS,
                  {"label_smoothing": 0.0, "distill_weight": a, "distill_temperature": t})
        for a, t in ((1.0, 1.0), (0.5, 2.0))),
        reference=PAPER, targets={"single": 1.8}, budget_minutes=60, teacher_mode="shifts",
        groups=("fourth round: cross-validation of the distilled students", "fourth round: the distilled student")),
}


def read(result: Run, mode: str) -> np.ndarray:
    values = getattr(result, PREDICTION_MODES[mode])
    if values is None:
        raise ValueError(f"run {result.key} stores no '{mode}' predictions; retrain it with `make results`")
    return values


@dataclass(frozen=True)
class Scored:
    """A candidate's out-of-fold predictions of all 7291 training images (rounds 1 and 2: no noisy, no rotated)."""

    name: str
    config: Config
    runs: list[Run]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]  # prediction mode -> probabilities
    noisy: np.ndarray | None  # predicted digits, one row per level of data.NOISE_LEVELS
    modes: tuple[str, ...] = tuple(PREDICTION_MODES)  # the modes the rule may choose from

    def errors(self, mode: str = "plain") -> int:
        return errors(self.predictions[mode], self.labels)

    @property
    def mode(self) -> str:
        """The prediction mode with the fewest out-of-fold errors (a tie takes the simpler)."""
        return min(self.modes, key=lambda m: (self.errors(m), self.modes.index(m)))

    @property
    def score(self) -> int:
        """The clean score: out-of-fold errors in :attr:`mode`."""
        return self.errors(self.mode)

    def noise_errors(self, level: float = NOISE) -> int:
        if self.noisy is None:
            raise ValueError(f"candidate {self.name!r} has no noisy out-of-fold predictions")
        return int((self.noisy[data.NOISE_LEVELS.index(level)] != self.labels).sum())

    @property
    def probabilities(self) -> np.ndarray:
        return self.predictions[self.mode]

    def p_vs(self, other: Scored) -> float:
        """The exact McNemar p of this candidate against ``other``, each in its chosen mode."""
        return stats.mcnemar_p(self.probabilities.argmax(1), other.probabilities.argmax(1), self.labels)

    @property
    def seconds(self) -> float:
        return float(sum(r.seconds for r in self.runs))

    @property
    def fit_accuracy(self) -> float:
        """Accuracy (%) on the (augmented) training batches in the last epoch, mean over folds."""
        if not self.runs:
            return float("nan")
        return 100 * float(np.mean([r.history["accuracy"][-1] for r in self.runs]))


def out_of_fold(name: str, config: Config, runs: Sequence[Run], folds: int, fold_seed: int, modes: Sequence[str],
                read_modes: Sequence[str] = tuple(PREDICTION_MODES), noisy: bool = True) -> Scored:
    """Every training image predicted once, by the fold run that did not see it, in each of ``read_modes`` (the rule
    choosing from ``modes``) and, when ``noisy``, under pixel noise."""
    _, labels = data.load_usps("train")
    predictions = {mode: np.zeros((len(labels), 10), np.float32) for mode in read_modes}
    found = np.zeros((len(data.NOISE_LEVELS), len(labels)), np.int64) if noisy else None
    seen = np.zeros(len(labels), dtype=bool)
    for result in runs:
        if result.job.seed != fold_seed:
            raise ValueError(f"run {result.key} has seed {result.job.seed}; the folds are drawn with {fold_seed}")
        _, held = data.fold_split(labels, folds, int(result.job.split.split("-")[1]), seed=fold_seed)
        if not np.array_equal(labels[held], result.labels):
            raise ValueError(f"run {result.key} does not predict the images of its fold")
        for mode in read_modes:
            predictions[mode][held] = read(result, mode)
        if found is not None:
            if result.noisy is None:
                raise ValueError(f"run {result.key} stores no noisy predictions; retrain it with `make results`")
            found[:, held] = result.noisy
        seen[held] = True
    if not seen.all():
        raise ValueError(f"the folds cover {seen.sum()} of {len(labels)} training images")
    return Scored(name, config, list(runs), labels.astype(np.int64), predictions, found, tuple(modes))


def forward_selection(probabilities: Mapping[str, np.ndarray], labels: np.ndarray, start: str) -> list[tuple[str, int]]:
    """Forward selection (Caruana et al. 2004) on out-of-fold probabilities from ``start``: add the candidate that
    lowers the averaged ensemble's errors most (a tie takes the earlier); stop when none lowers them. Each member
    with the ensemble's errors once it joined."""
    def count(names: list[str]) -> int:
        return errors(np.mean([probabilities[n] for n in names], axis=0), labels)

    members = [(start, count([start]))]
    while True:
        names = [n for n, _ in members]
        options = [(count(names + [n]), i, n) for i, n in enumerate(probabilities) if n not in names]
        if not options or min(options)[0] >= members[-1][1]:
            return members
        found, _, name = min(options)
        members.append((name, found))


@dataclass(frozen=True)
class Selection:
    """A round's rule applied to its candidates; ``previous``'s choice teaches students, its reference may be shared."""

    round: Round
    candidates: dict[str, Scored]
    previous: "Selection | None" = None

    @property
    def reference(self) -> Scored:
        if self.round.reference in self.candidates:
            return self.candidates[self.round.reference]
        assert self.previous is not None
        return self.previous.reference

    @property
    def teacher(self) -> Scored | None:
        return self.previous.chosen if self.round.teacher_mode and self.previous else None

    @property
    def choosable(self) -> dict[str, Scored]:
        return {name: c for name, c in self.candidates.items() if name != self.round.reference}

    @property
    def pool(self) -> dict[str, Scored]:
        """The candidates forward selection may add (with ``pools_previous``, the previous round's first)."""
        before = self.previous.pool if self.round.pools_previous and self.previous else {}
        return before | {name: c for name, c in self.choosable.items() if self.round.spec(name).member}

    def robust(self, name: str) -> bool:
        """A noise score at or under the reference's (every candidate, in a round without a noise score)."""
        noise = self.round.noise
        return noise is None or self.candidates[name].noise_errors(noise) <= self.reference.noise_errors(noise)

    @property
    def chosen(self) -> Scored:
        """The protocols' rule: the fewest clean errors among the robust candidates, a tie taking the earlier;
        with none robust (the fourth protocol does not say), the lowest noise score."""
        pool = list(self.choosable.values())
        if robust := [c for c in pool if self.robust(c.name)]:
            return min(robust, key=lambda c: (c.score, pool.index(c)))
        return min(pool, key=lambda c: (c.noise_errors(self.round.noise), pool.index(c)))

    @property
    def members(self) -> list[tuple[str, int]]:
        """:func:`forward_selection` from the chosen model (alone in a round without ``member_seeds``)."""
        if not self.round.member_seeds:
            return [(self.chosen.name, self.chosen.score)]
        return forward_selection({name: c.probabilities for name, c in self.pool.items()},
                                 self.chosen.labels, self.chosen.name)

    def scored(self, name: str) -> Scored:
        return self.candidates[name] if name in self.candidates else self.pool[name]

    @property
    def replaces(self) -> bool:
        """A student replaces its teacher as the best single model: robust, and fewer clean errors."""
        assert self.teacher is not None
        return self.robust(self.chosen.name) and self.chosen.score < self.teacher.score


def cross_validate(round_: Round, previous: Config | Selection, paper: Config, workers: int = 2) -> Selection:
    """A round's cross-validation runs (trained if missing) from the previous round's choice (its configuration,
    or its selection when it teaches or shares its reference)."""
    before = previous if isinstance(previous, Selection) else None
    teacher = before.chosen if before and round_.teacher_mode else None
    round_ = round_.named(before.chosen.name) if before else round_
    configs = round_.configs(before.chosen.config if before else previous, paper)
    found = _run_groups({name: round_.cv_jobs(config, teacher) for name, config in configs.items()}, workers,
                        lambda j: f"{round_.name}, CV fold {j.split[-1]}, {j.key()[:8]}")
    return Selection(round_, {name: out_of_fold(name, configs[name], runs, round_.folds, round_.fold_seed,
                                                round_.modes(name), round_.stored, noisy=round_.noise is not None)
                              for name, runs in found.items()}, before)


def _run_groups(jobs: dict[str, list[Job]], workers: int, describe: Any) -> dict[str, list[Run]]:
    """Each group's runs, trained if missing; in one call of :func:`run_many`, so that the groups share workers."""
    found = iter(run_many(sum(jobs.values(), []), workers=workers, describe=describe))
    return {name: [next(found) for _ in group] for name, group in jobs.items()}


def final_jobs(selection: Selection) -> dict[str, list[Job]]:
    """The chosen model's final seeds, each other member's member seeds; a student's taught by its teacher's."""
    r, chosen, teachers = selection.round, selection.chosen.name, ()
    if selection.teacher is not None and selection.previous is not None:
        r.check_teacher(selection.teacher)
        teachers = tuple(job.key() for job in final_jobs(selection.previous)[selection.teacher.name])
    return {name: [Job(selection.scored(name).config, seed, protocol=r.protocol_commit, teachers=teachers)
                   for seed in (r.seeds if name == chosen else r.member_seeds)]
            for name, _ in selection.members}


def ranking_jobs(selection: Selection) -> dict[str, Job]:
    """With ``ranking``: each candidate once (seed 0), to check after the choice how cross-validation ranks them
    on the test set (nothing is chosen from these)."""
    return {name: Job(c.config, 0) for name, c in selection.candidates.items()} if selection.round.ranking else {}


def training_identity(result: Run) -> tuple[Config, int, str]:
    """What determines a run's training. Weight averaging only replaces the final weights by their moving
    average at the end of the same training, so runs with and without it are one training run."""
    return result.job.config.with_(weight_average=0.0), result.job.seed, result.job.split


@dataclass(frozen=True)
class TestLook:
    """A round's look at the test set: the chosen model's seeds and the ensemble."""

    chosen: str
    modes: dict[str, str]  # member -> the prediction mode its cross-validation chose
    runs: dict[str, list[Run]]  # member -> its runs on all training images, the chosen model first

    @property
    def labels(self) -> np.ndarray:
        return self.runs[self.chosen][0].labels

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def single_errors(self) -> list[int]:
        """Each seed of the chosen model, in its prediction mode."""
        return [errors(read(r, self.modes[self.chosen]), self.labels) for r in self.runs[self.chosen]]

    @property
    def single_rates(self) -> np.ndarray:
        return 100 * np.array(self.single_errors) / self.n

    def noise_errors(self, level: float) -> list[int]:
        """Each seed of the chosen model under pixel noise ``level`` (plain prediction)."""
        found = [r.noisy_errors(level) for r in self.runs[self.chosen]]
        if any(e is None for e in found):
            raise ValueError("a run of the chosen model stores no noisy predictions; retrain it with `make results`")
        return [int(e) for e in found if e is not None]

    def member(self, name: str) -> np.ndarray:
        """The mean of a member's runs, each in the member's prediction mode."""
        return np.mean([read(r, self.modes[name]) for r in self.runs[name]], axis=0)

    @property
    def seed_ensemble_errors(self) -> int:
        return errors(self.member(self.chosen), self.labels)

    @property
    def ensemble_errors(self) -> int:
        """The ensemble as the protocols define it: members averaged with equal weight."""
        return errors(np.mean([self.member(name) for name in self.runs], axis=0), self.labels)

    @property
    def plain_ensemble_errors(self) -> int:
        """The same prediction sets averaged with equal weight each."""
        return errors(np.mean([read(r, self.modes[name]) for name, group in self.runs.items() for r in group],
                              axis=0), self.labels)

    @property
    def prediction_sets(self) -> int:
        return sum(len(group) for group in self.runs.values())

    @property
    def training_runs(self) -> int:
        """Independent training runs among the prediction sets (:func:`training_identity`)."""
        return len({training_identity(r) for group in self.runs.values() for r in group})

    def errors_by_noise(self) -> list[list[int]]:
        """Each seed's test errors at each noise level, 0 first (the clean plain prediction)."""
        clean = [r.errors for r in self.runs[self.chosen]]
        return [clean] + [self.noise_errors(level) for level in data.NOISE_LEVELS]


def test_look(selection: Selection, workers: int = 2) -> TestLook:
    """The protocol's one look: the final runs (trained if missing) read as cross-validation chose."""
    runs = _run_groups(final_jobs(selection), workers,
                       lambda j: f"{selection.round.name}, test seed {j.seed}, {j.key()[:8]}")
    return TestLook(selection.chosen.name, {name: selection.scored(name).mode for name in runs}, runs)


def selection_text(selection: Selection) -> str:
    """How a round chose, in one sentence (``summary --json``)."""
    r, chosen = selection.round, selection.chosen
    start = f"the protocol {r.protocol} (commit {r.protocol_commit[:7]}, committed before any of its runs): "
    if selection.teacher is not None:
        return (start + f"students of '{selection.teacher.name}' trained on soft targets from its runs on the same "
                f"images, {len(selection.candidates)} candidates cross-validated on the {ORDINALS[r.number - 2]} "
                f"round's folds; reported: '{chosen.name}' ({chosen.score} out-of-fold errors against the teacher's "
                f"{selection.teacher.score}); it replaces the best single model only with fewer errors than the "
                f"teacher and robust: {'yes' if selection.replaces else 'no'}; one look at the test set, to report")
    members = ", ".join(repr(name) for name, _ in selection.members)
    return (start + f"{r.folds}-fold cross-validation over the {len(chosen.labels)} training images on new folds "
            f"(fold seed {r.fold_seed}); {len(selection.choosable)} candidates; robust = out-of-fold errors under "
            f"pixel noise sigma = {r.noise} at or under the paper's network's "
            f"({selection.reference.noise_errors(r.noise)}); chosen: '{chosen.name}', the fewest clean out-of-fold "
            f"errors among the robust, read {chosen.mode}; ensemble by forward selection on the out-of-fold "
            f"predictions: {members}; one look at the test set, to report")


def cross_validation_json(selection: Selection) -> dict[str, dict[str, Any]]:
    """Each candidate's (and a teacher's) out-of-fold errors per mode, noise errors and robustness."""
    shown = {selection.teacher.name: selection.teacher, **selection.candidates} if selection.teacher \
        else selection.candidates
    return {name: {**{f"errors_{mode.replace(' ', '_')}": c.errors(mode) for mode in PREDICTION_MODES},
                   "noise_errors": c.noise_errors(selection.round.noise),
                   "robust": (None if name == selection.round.reference else True if name not in selection.candidates
                              else selection.robust(name))}
            for name, c in shown.items()}


def candidate_table(selection: Selection) -> pd.DataFrame:
    """Each candidate and what it changes against the previous round's choice; the paper's network in full."""
    r = selection.round
    previous = next(c.name for c in r.candidates if c.parent == PREVIOUS)
    base = selection.candidates[previous].config
    rows = []
    for spec in r.candidates:
        config = selection.candidates[spec.name].config
        if spec.parent == PAPER:
            changes = "the paper's recipe: " + ", ".join(f"{k} = {getattr(config, k)}" for k in (
                "filters", "kernel_size", "dense_units", "dropout", "epochs", "batch_size")) + ", no augmentation"
        elif spec.parent == PREVIOUS:
            changes = f"the {ORDINALS[r.number - 2]} round's choice: " + ", ".join(
                f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in config.as_dict().items()
                if k in ("second_block_filters", "augment_shift", "augment_rotation", "label_smoothing",
                         "weight_average"))
        else:
            changes = ", ".join(f"{k} = {v}" for k, v in config.as_dict().items() if getattr(base, k) != v)
        rows.append({"candidate": spec.name, "role": "noise reference" if spec.name == r.reference else "candidate",
                     f"changes against {previous}": changes})
    return pd.DataFrame(rows).set_index("candidate")


def cv_table(selection: Selection) -> pd.DataFrame:
    """Each candidate's clean out-of-fold errors in every prediction mode (columns named by the mode), its score
    (the fewest of its allowed modes), McNemar tests against the previous round's choice and against the
    candidate it changes (by its number ``#``), and its training time summed over the folds."""
    r, c = selection.round, selection.candidates
    previous = next(spec.name for spec in r.candidates if spec.parent == PREVIOUS)
    number = {name: i for i, name in enumerate(c)}
    rows = [{"#": number[name], "candidate": name, **{m: x.errors(m) for m in PREDICTION_MODES}, "score": x.score,
             f"p vs {previous}": "" if name in (r.reference, previous) else p_text(x.p_vs(c[previous])),
             "changes #": number[r.parent(name)] if r.parent(name) else "",
             "p vs it": p_text(x.p_vs(c[r.parent(name)])) if r.parent(name) else "",
             "time (s)": round(x.seconds)} for name, x in c.items()]
    return pd.DataFrame(rows).set_index("#")


def noise_cv_table(selection: Selection) -> pd.DataFrame:
    """Each candidate's out-of-fold errors under pixel noise at every level, and whether it is robust."""
    r = selection.round
    n = len(selection.reference.labels)
    rows = [{"#": i, "candidate": name, **{f"noise {level}": c.noise_errors(level) for level in data.NOISE_LEVELS},
             f"noise {r.noise} (%)": round(100 * c.noise_errors(r.noise) / n, 1),
             "robust": "reference" if name == r.reference else ("yes" if selection.robust(name) else "no")}
            for i, (name, c) in enumerate(selection.candidates.items())]
    return pd.DataFrame(rows).set_index("#")


def student_table(selection: Selection) -> pd.DataFrame:
    """The teacher and each student: out-of-fold errors in every prediction mode, the score, the noise score,
    whether robust, and a McNemar test of the student against the teacher (both in their modes)."""
    teacher, noise = selection.teacher, selection.round.noise
    assert teacher is not None
    rows = [{"model": W if name is None else name, **{m: c.errors(m) for m in PREDICTION_MODES}, "score": c.score,
             f"noise {noise}": c.noise_errors(noise),
             "robust": "yes" if name is None or selection.robust(name) else "no",
             "p vs W": "" if name is None else p_text(c.p_vs(teacher)),
             f"{selection.round.folds} folds (s)": round(c.seconds)}
            for name, c in [(None, teacher), *selection.candidates.items()]]
    return pd.DataFrame(rows).set_index("model")


def seeds_table(look: TestLook, ensemble: str, *more: tuple[str, int, list[Run]]) -> pd.DataFrame:
    """One row per seed of the chosen model, one for their ensemble (named ``ensemble``) and one per ``more``
    (name, test errors, runs): errors, error (%), binomial 95 % interval and training time."""
    seeds = look.runs[look.chosen]
    groups = [*((f"seed {r.job.seed}", count, [r]) for r, count in zip(seeds, look.single_errors)),
              (ensemble, look.seed_ensemble_errors, seeds), *more]
    return pd.DataFrame([{"model": name, "errors": count, "error (%)": round(100 * count / look.n, 2),
                          "95 % interval (%)": wilson_text(count, look.n),
                          "training time (s)": round(sum(r.seconds for r in group))}
                         for name, count, group in groups]).set_index("model")


def final_table(look: TestLook, noise: float = NOISE) -> pd.DataFrame:
    """:func:`seeds_table` with the ensemble too and each seed's error under pixel noise ``noise``, the chosen
    model named in the index's header."""
    mode = look.modes[look.chosen]
    more = [(f"ensemble of {len(look.runs)} members ({look.training_runs} training runs)", look.ensemble_errors,
             sum(look.runs.values(), []))] if len(look.runs) > 1 else []  # forward selection added members
    table = seeds_table(look, f"ensemble of its {len(look.runs[look.chosen])} seeds", *more)
    noisy = [round(100 * e / look.n, 1) for e in look.noise_errors(noise)]
    table.insert(3, f"σ = {noise} (%), plain", noisy + ["not measured"] * (len(table) - len(noisy)))
    return table.rename_axis(look.chosen).rename(columns={"errors": f"errors, {mode}",
                                                          "error (%)": f"error (%), {mode}"})


def student_final_table(look: TestLook, teacher_look: TestLook, noise: float = NOISE) -> pd.DataFrame:
    """Seed by seed: the student's and W's test errors (each in its prediction mode) and their errors at
    ``noise``; then both seeds' ensembles."""
    rows = []
    student_noise, teacher_noise = look.noise_errors(noise), teacher_look.noise_errors(noise)
    for i, (s, t) in enumerate(zip(look.runs[look.chosen], teacher_look.runs[teacher_look.chosen])):
        if s.job.seed != t.job.seed:
            raise ValueError("the student's and the teacher's runs are not in the same seed order")
        rows.append({"seed": str(s.job.seed), "student errors": look.single_errors[i],
                     "W errors": teacher_look.single_errors[i],
                     "student (%)": round(float(look.single_rates[i]), 2),
                     "W (%)": round(float(teacher_look.single_rates[i]), 2),
                     f"student at noise {noise} (%)": round(100 * student_noise[i] / look.n, 2),
                     f"W at noise {noise} (%)": round(100 * teacher_noise[i] / look.n, 2)})
    rows.append({"seed": "ensemble of the 5 seeds", "student errors": look.seed_ensemble_errors,
                 "W errors": teacher_look.seed_ensemble_errors,
                 "student (%)": round(100 * look.seed_ensemble_errors / look.n, 2),
                 "W (%)": round(100 * teacher_look.seed_ensemble_errors / look.n, 2),
                 f"student at noise {noise} (%)": "", f"W at noise {noise} (%)": ""})
    return pd.DataFrame(rows).set_index("seed")


def noise_table(looks: Mapping[str, TestLook], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Test error (%) at each noise level (rows; 0 is the clean plain prediction): the ``reference`` models'
    columns (:func:`helpers.evaluate.noise_robustness` of their seed 0, the same noise draws), then for each look
    (by label) its seed 0 (with a reference) and the mean of its seeds."""
    levels = (0.0, *data.NOISE_LEVELS)
    if reference is not None and tuple(reference.index) != levels:
        raise ValueError(f"the reference table's noise levels are {tuple(reference.index)}, not {levels}")
    table = pd.DataFrame(index=pd.Index(levels, name="noise sigma")) if reference is None else reference.copy()
    for label, look in looks.items():
        found = look.errors_by_noise()
        if reference is not None:
            table[f"{label}, seed 0"] = [100 * e[0] / look.n for e in found]
        table[f"{label}, mean of {len(found[0])} seeds"] = [100 * float(np.mean(e)) / look.n for e in found]
    return table


def _look_numbers(look: TestLook, r: Round) -> dict[str, Any]:
    """The chosen model's seeds on the test set (error in %, under the round's noise too) and their ensemble."""
    rates, noise = look.single_rates, 100 * np.array(look.noise_errors(r.noise)) / look.n
    low, high = stats.mean_interval(rates)
    return {"seeds": len(rates), "mean": float(rates.mean()), "std": float(rates.std(ddof=1)), "low": low,
            "high": high, "min_errors": min(look.single_errors), "max_errors": max(look.single_errors),
            "noise_mean": float(noise.mean()), "noise_min": float(noise.min()), "noise_max": float(noise.max()),
            "seed_ensemble_errors": look.seed_ensemble_errors,
            "seed_ensemble": 100 * look.seed_ensemble_errors / look.n, "target_single": r.targets["single"],
            "single_gap": float(rates.mean()) - r.targets["single"]}


def lineage_numbers(selection: Selection, look: TestLook, paper_noise: float, previous_noise: float,
                    previous: Sequence[Run]) -> dict[str, object]:
    """What the chapter and ``summary --json`` quote about the third round (keys ``r3_*``). ``paper_noise`` and
    ``previous_noise``: the test error (%) at the round's noise of the paper's network and of B (seed 0 each);
    ``previous``: B's runs on all training images (the second round's, read as its cross-validation chose)."""
    r, c, n_cv, chosen = selection.round, selection.candidates, len(selection.reference.labels), selection.chosen
    seeds = _look_numbers(look, r)
    previous_rates = [100 * errors(read(x, c[B].mode), x.labels) / len(x.labels) for x in previous]
    ensemble = 100 * look.ensemble_errors / look.n
    e_low, e_high = stats.wilson_interval(look.ensemble_errors, look.n)
    found = {
        "protocol": r.protocol_commit[:7], "budget": r.budget_minutes, "folds": r.folds,
        "fold_seed": r.fold_seed, "noise": r.noise, "candidates": len(selection.choosable), "cv_n": n_cv,
        "ref_noise_errors": selection.reference.noise_errors(r.noise), "ref_score": selection.reference.score,
        "robust": sum(selection.robust(name) for name in selection.choosable),
        "prev_score": c[B].score, "prev_noise_errors": c[B].noise_errors(r.noise),
        "noisy_score": c[NOISY].score, "noisy_noise_errors": c[NOISY].noise_errors(r.noise),
        "noise_cost": c[NOISY].score - c[B].score,
        "wider_score": c[WIDER].score, "longer_score": c[LONGER].score, "deeper_score": c[DEEPER].score,
        "prev_rotations": c[B].errors("shifts and rotations"), "lead": c[B].score - chosen.score,
        "train_noise": c[NOISY].config.augment_noise, "rotation": max(TTA_ROTATIONS),
        "copies": len(TTA_ROTATIONS) * len(TTA_SHIFTS), "level_min": min(data.NOISE_LEVELS),
        "level_max": max(data.NOISE_LEVELS), "filters": c[WIDER].config.filters,
        "filters_2": c[WIDER].config.second_block_filters, "dense": c[WIDER].config.dense_units,
        "binomial_half": 100 * float(np.diff(stats.wilson_interval(round(float(np.mean(look.single_errors))),
                                                                  look.n))[0]) / 2,
        "ref_noise_pct": 100 * selection.reference.noise_errors(r.noise) / n_cv,
        "prev_noise_pct": 100 * c[B].noise_errors(r.noise) / n_cv,
        "chosen_p": chosen.p_vs(c[B]),
        "chosen": look.chosen, "mode": chosen.mode, "chosen_score": chosen.score,
        "chosen_noise_errors": chosen.noise_errors(r.noise),
        "members": len(look.runs), "member_names": ", ".join(look.runs),
        "ensemble_cv_errors": selection.members[-1][1], **seeds,
        "noise_seed0": 100 * look.noise_errors(r.noise)[0] / look.n,
        "paper_noise": paper_noise, "previous_noise": previous_noise,
        "ensemble": ensemble, "ensemble_errors": look.ensemble_errors,
        "ensemble_low": 100 * e_low, "ensemble_high": 100 * e_high,
        "ensemble_runs": look.training_runs, "ensemble_sets": look.prediction_sets,
        "plain_ensemble_errors": look.plain_ensemble_errors, "target_ensemble": r.targets["ensemble"],
        "ensemble_gap": ensemble - r.targets["ensemble"], "noise_gap": seeds["noise_mean"] - paper_noise,
        "prev_mean": float(np.mean(previous_rates)), "prev_seeds": len(previous_rates),
        "vs_prev": seeds["mean"] - float(np.mean(previous_rates)),
        "vs_prev_p": stats.welch_p(look.single_rates, previous_rates),
    }
    return {f"r3_{key}": value for key, value in found.items()}


def student_numbers(selection: Selection, look: TestLook, teacher_look: TestLook,
                    seconds: Sequence[float]) -> dict[str, object]:
    """What the chapter and ``summary --json`` quote about a round of students (keys prefixed ``r<number>_``;
    ``seconds``: the training time of each of the round's runs, for its budget)."""
    r, student, teacher = selection.round, selection.chosen, selection.teacher
    assert teacher is not None
    seeds = _look_numbers(look, r)
    teacher_rates = teacher_look.single_rates
    found = {
        "protocol": r.protocol_commit[:7], "budget": r.budget_minutes, "candidates": len(selection.candidates),
        "teacher_score": teacher.score, "teacher_noise_errors": teacher.noise_errors(r.noise),
        **{f"score_{i}": c.score for i, c in enumerate(selection.candidates.values(), start=1)},
        **{f"noise_errors_{i}": c.noise_errors(r.noise)
           for i, c in enumerate(selection.candidates.values(), start=1)},
        "student": student.name, "weight": student.config.distill_weight,
        "temperature": student.config.distill_temperature,
        "mode": student.mode, "student_score": student.score,
        "student_noise_errors": student.noise_errors(r.noise),
        "robust": sum(selection.robust(name) for name in selection.candidates),
        "p": student.p_vs(teacher),
        "replaces": selection.replaces, "cv_gain": teacher.score - student.score, **seeds,
        "teacher_mean": float(teacher_rates.mean()), "vs_teacher": seeds["mean"] - float(teacher_rates.mean()),
        "vs_teacher_p": stats.welch_p(look.single_rates, teacher_rates),
        "seed_ensemble_runs": 2 * seeds["seeds"], "runs": len(seconds), "minutes": sum(seconds) / 60,
    }
    return {f"r{r.number}_{key}": value for key, value in found.items()}
