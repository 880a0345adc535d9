"""Beyond the best published USPS result: levers chosen by cross-validation on the training images.

The ladder (human-level chapter) kept or dropped rungs on 80/20 holdout splits, where the
recipe makes about 1 % error and options differ by two images. Here every candidate is
scored by :data:`FOLDS`-fold cross-validation over all 7291 training images (every image
is predicted once, by a model that never saw it), and candidates are compared on the same
images with an exact McNemar test. The chosen candidate is then trained on all training
images with :attr:`helpers.config.BeyondSettings.best_seeds` seeds and tested once.

What is specific to rounds 1 and 2 (written before the protocols): their levers, candidates and rule
(the fewest cross-validated errors, plain or shifted), the pool of both rounds, the ranking check and
the noise anatomy. The engine is :mod:`helpers.rounds`': a candidate cross-validated is a
:class:`helpers.rounds.Scored` (:func:`helpers.rounds.out_of_fold`, without noise), a look at the
test set a :class:`helpers.rounds.TestLook`, an ensemble chosen by :func:`helpers.rounds.forward_selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import data, paper, stats, store
from helpers.rounds import forward_selection, out_of_fold, Scored, TestLook
from helpers.config import beyond, Config, profile, Rung
from helpers.job import Job
from helpers.runs import run_many, training_mode
from helpers.store import Run

FOLDS = 3
CV_SEED = 0  # one seed: every candidate sees the same folds, so they are compared on the same images
BASE = "the ladder's final model"
ALL = "all four levers"


#: The first round's levers, each documented like a rung of the ladder: a name, why it may help, its changes.
LEVERS: tuple[Rung, ...] = (
    Rung("cosine learning-rate decay", "anneal the step size to zero over the same 100 epochs",
         {"schedule": "cosine"}),
    Rung("elastic distortions", "Simard, Steinkraus & Platt (2003): a smooth random displacement field "
         "(sigma 2 px, alpha 8 px)", {"augment_elastic": 8.0}),
    Rung("scale and shear", "random zoom of up to 10 % and shear of up to 0.1, the slant and size of handwriting",
         {"augment_zoom": 0.1, "augment_shear": 0.1}),
    Rung("label smoothing", "train towards 0.9 on the label and 0.01 on each other class instead of 1 and 0",
         {"label_smoothing": 0.1}),
)


#: The second round starts from the first round's choice and adds, one at a time, what the first
#: round left untried: the other lever that helped, weight averaging, a third convolution block
#: and a longer schedule for the augmented model. Written down before any of its runs was trained.
SECOND_LEVERS: tuple[Rung, ...] = (
    Rung("elastic distortions", "the other lever that lowered cross-validated errors in the first round",
         {"augment_elastic": 8.0}),
    Rung("weight averaging", "predict with a moving average of the weights over training (momentum 0.99: "
         "about the last 100 steps, 3 to 5 epochs)", {"weight_average": 0.99}),
    Rung("a third convolution block", "a 3x3 convolution with 128 filters and pooling after the second block",
         {"third_block_filters": 128}),
    Rung("elastic distortions, twice the epochs, cosine decay", "a longer schedule with learning-rate decay "
         "for the augmented model: the first round's augmented candidates fit fewer of their training batches",
         {"augment_elastic": 8.0, "epochs": "double", "schedule": "cosine"}),
)


def lever_table(levers: Sequence[Rung]) -> pd.DataFrame:
    """What each lever does and the configuration it changes (with this profile's epochs)."""
    return pd.DataFrame([{"lever": lever.name, "what it does": lever.why,
                          "configuration": ", ".join(f"{k} = {v}" for k, v in beyond().resolve(lever.changes).items())}
                         for lever in levers]).set_index("lever")


def candidates(base: Config) -> dict[str, Config]:
    """The ladder's final model, each lever on top of it, and all levers together."""
    found = {BASE: base}
    found.update({lever.name: base.with_(**lever.changes) for lever in LEVERS})
    merged: dict[str, Any] = {}
    for lever in LEVERS:
        merged.update(lever.changes)
    found[ALL] = base.with_(**merged)
    return found


def second_candidates(name: str, config: Config) -> dict[str, Config]:
    """The first round's choice and each :data:`SECOND_LEVERS` lever added to it."""
    found = {name: config}
    found.update({f"{name} + {lever.name}": config.with_(**beyond().resolve(lever.changes))
                  for lever in SECOND_LEVERS})
    return found


def cv_jobs(config: Config) -> list[Job]:
    """The :data:`FOLDS` cross-validation runs of ``config``."""
    return [Job(config, CV_SEED, f"cv{FOLDS}-{fold}") for fold in range(FOLDS)]


def shift_errors(result: Scored) -> int | None:
    """A candidate's out-of-fold errors with test-time shifts, ``None`` when its runs predate them."""
    return result.errors("shifts") if "shifts" in result.predictions else None


def cross_validate(base: Config) -> dict[str, Scored]:
    """Every first-round candidate's cross-validation runs (trained if missing), as out-of-fold predictions."""
    return _cross_validate(candidates(base))


def _cross_validate(configs: Mapping[str, Config]) -> dict[str, Scored]:
    jobs = [job for config in configs.values() for job in cv_jobs(config)]
    names = {job: name for name, config in configs.items() for job in cv_jobs(config)}
    runs = dict(zip(jobs, run_many(jobs, workers=beyond().workers,
                                   describe=lambda j: f"CV {names[j][:30]}, fold {j.split[-1]}")))
    results = {}
    for name, config in configs.items():
        folds = [runs[job] for job in cv_jobs(config)]
        modes = ("plain", "shifts") if all(r.tta is not None for r in folds) else ("plain",)  # no rotations, no noise
        results[name] = out_of_fold(name, config, folds, FOLDS, CV_SEED, modes, modes, noisy=False)
    return results


@dataclass(frozen=True)
class TwoRounds:
    """Both rounds of cross-validation: the first round's candidates, then the second round's."""

    first: dict[str, Scored]
    second: dict[str, Scored]

    @property
    def first_choice(self) -> Scored:
        return choose(self.first)

    @property
    def chosen(self) -> Scored:
        """The final choice: the second round's fewest cross-validated errors (a tie keeps the first choice)."""
        return choose(self.second)

    @property
    def pool(self) -> dict[str, Scored]:
        """Every candidate of both rounds that can join an ensemble.

        The ladder's final model is left out: its test run predates the stored test-time-shifted
        predictions.
        """
        return {name: r for name, r in (self.first | self.second).items() if name != BASE}


_SELECTIONS: dict[tuple[Any, ...], TwoRounds] = {}


def select(base: Config) -> TwoRounds:
    """Cross-validate both rounds from the ladder's final model ``base`` (runs trained if missing).

    Kept per configuration, profile, training mode and ledger folder, so that the chapter's cells
    and the command line read the ledger once.
    """
    key = (base, profile().name, training_mode(), str(store.root()))
    if key not in _SELECTIONS:
        first = cross_validate(base)
        choice = choose(first)
        second = _cross_validate(second_candidates(choice.name, choice.config))
        _SELECTIONS[key] = TwoRounds(first, {choice.name: first[choice.name]} | {
            name: r for name, r in second.items() if name != choice.name})
    return _SELECTIONS[key]


def greedy_ensemble(pool: Mapping[str, Scored], start: str) -> list[tuple[str, int]]:
    """Ensemble members chosen by cross-validation (:func:`forward_selection` on each candidate's
    out-of-fold probabilities, test-time shifted where that lowered its errors)."""
    return forward_selection({name: r.probabilities for name, r in pool.items()}, pool[start].labels, start)


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def cv_numbers(cv: pd.DataFrame, chosen: Scored) -> dict[str, Any]:
    """The numbers the chapter quotes from :func:`cv_table`."""
    base = cv.loc[BASE]
    p = pd.to_numeric(cv["p vs base"]).fillna(1.0)
    better = cv["CV errors"] < base["CV errors"]
    chosen_p = float(p[chosen.name])
    return {"base_cv_errors": int(base["CV errors"]), "cv_n": len(chosen.labels), "cv_candidates": len(cv),
            "cv_better": int(better.sum()), "cv_significant": int((better & (p < 0.05)).sum()),
            "chosen_p": chosen_p,
            "all_cv_errors": int(cv.loc[ALL, "CV errors"]), "all_fit": float(cv.loc[ALL, "fit (%)"]),
            "base_fit": float(base["fit (%)"])}


def holdout_table(rungs: Sequence[Any]) -> pd.DataFrame:
    """The ladder's holdout evidence next to each rung's test error (why the holdout could not decide)."""
    rows = {r.name: {"holdout errors": int(r.holdout["errors"]), "holdout images": int(r.holdout["n"]),
                     "holdout error (%)": round(100 * (1 - r.holdout["accuracy"]), 2),
                     "test error (%), mean": round(float(np.mean(rates(r.runs))), 2)} for r in rungs}
    return pd.DataFrame(rows).T


def holdout_numbers(holdout: pd.DataFrame, final: str) -> dict[str, Any]:
    """What the chapter quotes from :func:`holdout_table` about the ladder's final rung ``final``."""
    row = holdout.loc[final]
    return {"ladder_holdout_errors": int(row["holdout errors"]), "ladder_holdout_n": int(row["holdout images"]),
            "ladder_holdout_pct": float(row["holdout error (%)"]), "ladder_test_mean": float(row["test error (%), mean"])}


def choose(results: Mapping[str, Scored]) -> Scored:
    """The candidate with the fewest cross-validated errors (a tie keeps the earlier, simpler one)."""
    return min(results.values(), key=lambda r: (r.score, list(results).index(r.name)))


def cv_table(results: Mapping[str, Scored]) -> pd.DataFrame:
    """Cross-validated errors of every candidate, without and with test-time shifts ("shifts"), the exact
    McNemar p against the base (the first row), the last epoch's training accuracy ("fit") and the training
    time summed over the folds."""
    base = next(iter(results.values()))  # the first candidate: the ladder's final model, or the first choice
    n = len(base.labels)
    rows = []
    for name, r in results.items():
        shifts = shift_errors(r)
        rows.append({"candidate": name, "CV errors": r.errors(), "CV (%)": round(100 * r.errors() / n, 2),
                     "shifts": shifts if shifts is not None else "not stored",
                     "shifts (%)": round(100 * shifts / n, 2) if shifts is not None else "",
                     "p vs base": "" if r is base else _two_digits(stats.mcnemar_p(
                         r.predictions["plain"].argmax(1), base.predictions["plain"].argmax(1), r.labels)),
                     "fit (%)": round(r.fit_accuracy, 1), "time (s)": round(r.seconds)})
    return pd.DataFrame(rows).set_index("candidate")


def seed_jobs(chosen: Scored) -> list[Job]:
    """The chosen candidate on all training images, one job per ``best_seeds`` seed."""
    return [Job(chosen.config, seed) for seed in beyond().best_seeds]


def final_runs(chosen: Scored) -> list[Run]:
    """The chosen candidate trained on all training images, one run per ``best_seeds`` seed."""
    return run_many(seed_jobs(chosen), workers=beyond().workers, describe=lambda j: f"best model, test seed {j.seed}")


def member_jobs(selection: TwoRounds, members: Sequence[str]) -> dict[str, list[Job]]:
    """The jobs behind each ensemble member, on all training images: the chosen model's
    ``best_seeds`` seeds, and seed 0 of every other member."""
    chosen = selection.chosen
    return {name: seed_jobs(chosen) if name == chosen.name else [Job(selection.pool[name].config, 0)]
            for name in members}


def member_runs(selection: TwoRounds, members: Sequence[str]) -> dict[str, list[Run]]:
    """The runs of :func:`member_jobs` (trained if missing), grouped by member."""
    jobs = member_jobs(selection, members)
    runs = iter(run_many(sum(jobs.values(), []), workers=beyond().workers,
                         describe=lambda j: f"ensemble member, {j.key()}"))
    return {name: [next(runs) for _ in group] for name, group in jobs.items()}


def test_jobs(selection: TwoRounds) -> dict[str, list[Job]]:
    """Every run the chapter tests, by group: the first round's choice (tested on its seeds before
    the second round was written down), the final choice's seeds, the ranking check (each
    first-round candidate once) and the members of the ensemble chosen by cross-validation."""
    members = [name for name, _ in greedy_ensemble(selection.pool, selection.chosen.name)]
    return {"the first round's choice": seed_jobs(selection.first_choice),
            "B, the second round's choice": seed_jobs(selection.chosen),
            "ranking check on the test set": list(ranking_jobs(selection.first).values()),
            "ensemble members chosen by cross-validation": sum(member_jobs(selection, members).values(), [])}


def test_look(selection: TwoRounds, runs: Mapping[str, list[Run]]) -> TestLook:
    """The test runs of ensemble members (the chosen model first), each read with test-time shifts where its
    cross-validation chose them: the members' mean probabilities averaged with equal weight."""
    return TestLook(next(iter(runs)), {name: selection.pool[name].mode for name in runs},
                    dict(runs))


def ranking_jobs(results: Mapping[str, Scored]) -> dict[str, Job]:
    """Each candidate once on all training images (seed 0), by name: the ranking check's jobs."""
    return {name: Job(r.config, 0) for name, r in results.items()}


def ranking_runs(results: Mapping[str, Scored]) -> dict[str, Run]:
    """Every candidate trained once on all training images (seed 0) and tested, to check after the fact
    how cross-validated error ranks the candidates on the test set (nothing is chosen from these)."""
    jobs = ranking_jobs(results)
    runs = run_many(list(jobs.values()), workers=beyond().workers, describe=lambda j: f"ranking check, {j.key()}")
    return dict(zip(jobs, runs))


def ranking_table(results: Mapping[str, Scored], tests: Mapping[str, Run]) -> pd.DataFrame:
    """Cross-validated error next to the test error of the same candidate (seed 0), with ranks."""
    rows = []
    for name, r in results.items():
        t = tests[name]
        rows.append({"candidate": name, "CV error (%)": round(100 * r.errors() / len(r.labels), 2),
                     "test error (%), seed 0": round(100 * t.errors / len(t.labels), 2)})
    table = pd.DataFrame(rows).set_index("candidate")
    table["CV rank"] = table["CV error (%)"].rank(method="min").astype(int)
    table["test rank"] = table["test error (%), seed 0"].rank(method="min").astype(int)
    return table


def spearman(table: pd.DataFrame) -> float:
    """Rank correlation between cross-validated and test error over the candidates."""
    return float(table["CV error (%)"].rank().corr(table["test error (%), seed 0"].rank()))


def final(chosen: Scored, runs: Sequence[Run]) -> TestLook:
    """The chosen model's seeds on the test set, read as its cross-validation chose (their ensemble: the
    mean of their probabilities)."""
    return TestLook(chosen.name, {chosen.name: chosen.mode}, {chosen.name: list(runs)})


def seed_rates(look: TestLook) -> np.ndarray:
    """Test error (%) of each seed of the chosen model, as rounds 1 and 2 print it (``errors / n * 100``,
    which may differ from :attr:`TestLook.single_rates` in the last bit)."""
    return np.array(look.single_errors) / look.n * 100


def first_round_numbers(look: TestLook) -> dict[str, Any]:
    """What the chapter quotes about the first round's choice on the test set (its seeds and their
    ensemble), tested before the second round was written down."""
    found = look.single_errors
    return {"first_target": TARGETS["single"], "first_ensemble_target": TARGETS["ensemble"],
            "first_test_mean": float(seed_rates(look).mean()), "first_test_seeds": len(found),
            "first_test_min_errors": min(found), "first_test_max_errors": max(found),
            "first_seed_ensemble": 100 * look.seed_ensemble_errors / look.n,
            "first_seed_ensemble_errors": look.seed_ensemble_errors}


def final_table(look: TestLook) -> pd.DataFrame:
    """One row per seed and one for the ensemble: errors, error rate and Wilson 95 % interval."""
    rows = []
    runs, n = look.runs[look.chosen], look.n
    for (run_, count) in [*zip(runs, look.single_errors), (None, look.seed_ensemble_errors)]:
        rows.append({"model": f"seed {run_.job.seed}" if run_ else f"ensemble of the {len(runs)} seeds",
                     "errors": count, "error (%)": round(100 * count / n, 2),
                     "95 % interval (%)": stats.wilson_text(count, n),
                     "training time (s)": round(run_.seconds if run_ else sum(r.seconds for r in runs))})
    return pd.DataFrame(rows).set_index("model")


#: The targets of this chapter (test error, percent): one model (mean over seeds) at or under the best
#: published result, and an ensemble under it.
TARGETS: dict[str, float] = {"single": 2.0, "ensemble": 1.8}


def final_numbers(result: TestLook, chosen: Scored, targets: Mapping[str, float] = TARGETS,
                  chosen_ensemble: TestLook | None = None) -> dict[str, Any]:
    """The numbers the chapter quotes about the chosen model and its ensembles.

    ``ensemble_*`` are the ensemble chosen by cross-validation when
    ``chosen_ensemble`` is given, else the ensemble of the chosen model's seeds; ``seed_ensemble_*``
    is always the latter.
    """
    rates, singles, seed_errors = seed_rates(result), result.single_errors, result.seed_ensemble_errors
    low, high = stats.mean_interval(rates) if len(rates) > 1 else (float("nan"), float("nan"))
    s_low, s_high = stats.wilson_interval(seed_errors, result.n)
    errors, size, sets = seed_errors, len(rates), len(rates)
    plain = errors
    if chosen_ensemble is not None:
        errors, size = chosen_ensemble.ensemble_errors, chosen_ensemble.training_runs
        sets = chosen_ensemble.prediction_sets
        plain = chosen_ensemble.plain_ensemble_errors
    e_low, e_high = stats.wilson_interval(errors, result.n)
    single, ensemble = float(rates.mean()), 100 * errors / result.n
    return {"chosen": result.chosen, "tta": "with" if result.modes[result.chosen] == "shifts" else "without",
            "chosen_cv_errors": chosen.errors(), "chosen_cv_tta_errors": shift_errors(chosen),
            "best_mean": single, "best_std": float(rates.std(ddof=1)) if len(rates) > 1 else float("nan"),
            "best_min": float(rates.min()), "best_max": float(rates.max()), "best_seeds": len(rates),
            "best_low": low, "best_high": high, "best_min_errors": min(singles),
            "best_max_errors": max(singles),
            "ensemble": ensemble, "ensemble_errors": errors, "ensemble_size": size, "ensemble_sets": sets,
            "plain_ensemble_errors": plain, "plain_ensemble": 100 * plain / result.n,
            "ensemble_low": 100 * e_low, "ensemble_high": 100 * e_high,
            "ensemble_members": len(chosen_ensemble.runs) if chosen_ensemble is not None else 1,
            "seed_ensemble": 100 * seed_errors / result.n, "seed_ensemble_errors": seed_errors,
            "seed_ensemble_size": len(rates), "seed_ensemble_low": 100 * s_low, "seed_ensemble_high": 100 * s_high,
            "target_single": targets["single"], "target_ensemble": targets["ensemble"],
            "single_gap": single - targets["single"], "ensemble_gap": ensemble - targets["ensemble"],
            "best_published": paper.BEST_PUBLISHED}


def rates(runs: Sequence[Run]) -> list[float]:
    """Test error (%) of each run."""
    return [100 * r.errors / len(r.labels) for r in runs]


def selection_text(selection: TwoRounds, ensemble: TestLook) -> str:
    """How the final model and the ensemble were chosen, in one sentence (``summary --json``)."""
    chosen = selection.chosen
    return (f"{FOLDS}-fold cross-validation over the 7291 training images in two rounds: first "
            f"{len(LEVERS) + 2} candidates (the ladder's final model, {len(LEVERS)} levers alone and all together; "
            f"chosen '{selection.first_choice.name}'), then {len(SECOND_LEVERS)} more levers added to that choice "
            f"one at a time; chosen: '{chosen.name}', the fewest cross-validated errors, "
            f"{'with' if chosen.mode == 'shifts' else 'without'} test-time shifts (used because they lowered its "
            f"cross-validated errors); the ensemble's members were added by forward selection on the out-of-fold "
            f"predictions ({', '.join(repr(m) for m in ensemble.runs)}: {ensemble.prediction_sets} prediction "
            f"sets from {ensemble.training_runs} independent training runs, each member weighted equally); "
            f"the test images are used only to report")


def ensemble(selection: TwoRounds) -> TestLook:
    """The ensemble :func:`greedy_ensemble` chose by cross-validation, on the test set: its members' runs on all
    training images (:func:`member_runs`), each member the mean of its runs and the members weighted equally, so
    a run's weight is ``1 / (members x runs of its member)``; its size counts independent training runs."""
    members = [name for name, _ in greedy_ensemble(selection.pool, selection.chosen.name)]
    return test_look(selection, member_runs(selection, members))


def ensemble_table(look: TestLook, pool: Mapping[str, Scored]) -> pd.DataFrame:
    """One row per member, in the order forward selection added them: its runs' seeds, the weight of each
    run, whether it is read with test-time shifts, and the ensemble's cross-validated errors once it joined
    (the choice) and its test errors (the report)."""
    n_cv = len(next(iter(pool.values())).labels)
    joined = greedy_ensemble(pool, look.chosen)
    if [name for name, _ in joined] != list(look.runs):
        raise ValueError(f"the look's members {list(look.runs)} are not the ensemble chosen from this pool")
    rows = []
    for i, (name, cv_errors) in enumerate(joined):
        group = look.runs[name]
        test_errors = TestLook(look.chosen, look.modes, dict(list(look.runs.items())[:i + 1])).ensemble_errors
        rows.append({"member (in the order added)": name,
                     "seeds": ", ".join(str(r.job.seed) for r in group),
                     "weight per run": f"1/{len(look.runs) * len(group)}",
                     "shifts": "yes" if pool[name].mode == "shifts" else "no",
                     "CV errors": cv_errors, "CV (%)": round(100 * cv_errors / n_cv, 2),
                     "test errors": test_errors, "test (%)": round(100 * test_errors / look.n, 2)})
    return pd.DataFrame(rows).set_index("member (in the order added)")


def second_numbers(selection: TwoRounds) -> dict[str, Any]:
    """The numbers the chapter quotes about the second round."""
    first, second = selection.first_choice, selection.second
    scores = {name: r.score for name, r in second.items()}
    better = [name for name, r in second.items() if r.score < first.score]
    double = [r for name, r in second.items() if "twice the epochs" in name]
    elastic = [r for name, r in second.items() if name.endswith("+ elastic distortions")]
    chosen = selection.chosen
    return {"first_choice": first.name, "first_score": first.score, "second_candidates": len(second) - 1,
            "first_errors": first.errors(), "first_tta_errors": shift_errors(first),
            "first_tta": "with" if first.mode == "shifts" else "without",
            "chosen_score": chosen.score,
            "second_better": len(better), "second_best_score": min(scores.values()),
            "second_worst_score": max(scores.values()),
            "double_fit": double[0].fit_accuracy if double else float("nan"),
            "double_score": double[0].score if double else -1, "elastic_score": elastic[0].score if elastic else -1}


def augmented_examples(images: np.ndarray, config: Config, copies: int = 4, seed: int = 0) -> np.ndarray:
    """``copies`` training-time augmentations of each image, as ``config``'s model draws them."""
    from helpers._tf import keras  # TensorFlow: only for the figure of augmented digits
    from helpers.model import build_model  # (the same)
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    augment = [layer for layer in model.layers if layer.name.startswith("augment_")]
    out = []
    for image in images:
        for _ in range(copies):
            x = image[None]
            for layer in augment:
                x = layer(x, training=True)
            out.append(np.asarray(x)[0])
    return np.array(out)


def noise_numbers(anatomy: pd.DataFrame) -> dict[str, Any]:
    """The numbers the chapter quotes from :func:`helpers.evaluate.noise_anatomy` of
    :func:`helpers.experiments.noise_models`."""
    shift, paper_net = anatomy.loc["recipe + shift augmentation"], anatomy.loc["the paper's network"]
    return {"noise_paper_share": paper_net["share of errors (%)"], "noise_paper_error": paper_net["error (%)"],
            "noise_shift_share": shift["share of errors (%)"], "noise_shift_digit": int(shift["most read as"]),
            "noise_shift_error": shift["error (%)"], "noise_shift_background": shift["noise on background only (%)"],
            "noise_shift_frame": shift["noise in the edge frame only (%)"],
            "noise_shift_grey": shift["grey background, no speckle (%)"],
            "noise_best_error": anatomy.loc["B", "error (%)"],
            "noise_final_error": anatomy.loc["the ladder's final model", "error (%)"]}
