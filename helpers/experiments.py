"""The experiments beyond the paper: seeds, ensembles, sweeps, the modernisation ladder and the protocol rounds.

Every experiment is a list of :class:`helpers.job.Job` trained (or loaded) through
:func:`helpers.runs.run_many`, so each model is trained once, cached, and shared by every
chapter that needs it.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import baselines, best_published, data, evaluate, ledger, recipe, rounds, runs, stats, store
from helpers.config import beyond, Config, DECISIONS, LADDER, profile, READINGS
from helpers.job import Job
from helpers.runs import holdout_errors, run_many
from helpers.store import Run
from helpers.recipe import decision_jobs, paper_config, paper_job


def _recipe() -> Config:
    """The paper's recipe at the beyond-the-paper chapters' epochs."""
    return paper_config().with_(epochs=beyond().epochs)


def paper_seed_runs() -> list[Run]:
    """The paper's recipe trained once per seed of the profile."""
    return run_many([Job(_recipe(), seed) for seed in beyond().seeds], workers=beyond().workers,
                    describe=lambda j: f"paper recipe, seed {j.seed}")


def seed_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: test errors, error rate and the 95 % interval of the error rate."""
    return pd.DataFrame([{"seed": r.job.seed, "test errors": r.errors,
                          "error rate (%)": round(100 * (1 - r.accuracy), 2),
                          "95 % interval (%)": stats.wilson_text(r.errors, len(r.labels), " to "),
                          "training time (s)": round(r.seconds)} for r in runs]).set_index("seed")


def ensemble_errors(runs: Sequence[Run]) -> pd.DataFrame:
    """Test error of averaged softmax outputs for every ensemble size and every subset of runs."""
    n = len(runs[0].labels)
    rows = []
    for size in range(1, len(runs) + 1):
        errors = [stats.errors(np.mean([runs[i].probabilities for i in subset], axis=0), runs[0].labels)
                  for subset in itertools.combinations(range(len(runs)), size)]
        mean = float(np.mean(errors))
        rows.append({"ensemble size": size, "subsets": len(errors), "mean errors": mean, "min errors": min(errors),
                     "max errors": max(errors), "mean error rate (%)": 100 * mean / n,
                     "min error rate (%)": 100 * min(errors) / n, "max error rate (%)": 100 * max(errors) / n})
    return pd.DataFrame(rows).set_index("ensemble size")


def seed_numbers(runs: Sequence[Run], paper_error: float) -> dict[str, Any]:
    """The seed chapter's numbers about :func:`seed_table`'s runs, from the exact error rates (the table's are
    rounded): mean, spread and range over seeds, and the paper's single run as a z-score."""
    rates = np.array([100 * r.errors / len(r.labels) for r in runs])
    mean, std = float(rates.mean()), float(rates.std(ddof=1))
    return {"n_seeds": len(rates), "seed_mean": mean, "seed_std": std,
            "seed_min": float(rates.min()), "seed_max": float(rates.max()),
            "paper_z": (paper_error - mean) / std,
            "seed_mean_errors": float(np.mean([r.errors for r in runs]))}


def ensemble_numbers(ensembles: pd.DataFrame) -> dict[str, Any]:
    """The seed chapter's numbers about :func:`ensemble_errors`: largest ensemble's and one model's error, the gain."""
    single, full = ensembles.iloc[0], ensembles.iloc[-1]
    return {"ensemble_size": int(ensembles.index[-1]), "ensemble_error": float(full["mean error rate (%)"]),
            "ensemble_errors": float(full["mean errors"]), "single_mean_error": float(single["mean error rate (%)"]),
            "ensemble_gain": float(single["mean errors"] - full["mean errors"])}


def ensemble_predictions(runs: Sequence[Run]) -> np.ndarray:
    """Predicted digits of the average of the runs' softmax outputs."""
    return np.mean([r.probabilities for r in runs], axis=0).argmax(axis=1)


def sweep_jobs(field: str, values: Sequence[Any], seeds: Sequence[int]) -> list[Job]:
    """The paper's recipe with ``field`` set to each value, once per seed."""
    return [Job(_recipe().with_(**{field: value}), seed) for value in values for seed in seeds]


def sweep_runs(field: str, values: Sequence[Any], seeds: Sequence[int]) -> list[Run]:
    """The runs of :func:`sweep_jobs` (trained if missing)."""
    return run_many(sweep_jobs(field, values, seeds), workers=beyond().workers,
                    describe=lambda j: f"{field} = {getattr(j.config, field)}, seed {j.seed}")


def sweep(field: str, values: Sequence[Any], seeds: Sequence[int]) -> pd.DataFrame:
    """Test error and training time of the paper's recipe with ``field`` set to each value."""
    return pd.DataFrame([{field: getattr(r.job.config, field), "seed": r.job.seed, "errors": r.errors,
                          "error rate (%)": 100 * (1 - r.accuracy), "seconds": r.seconds,
                          "seconds per epoch": r.seconds_per_epoch} for r in sweep_runs(field, values, seeds)])


def sweep_summary(frame: pd.DataFrame, field: str) -> pd.DataFrame:
    """Mean and spread over seeds of a :func:`sweep`."""
    grouped = frame.groupby(field)
    return pd.DataFrame({"seeds": grouped["seed"].count(),
                         "mean error rate (%)": grouped["error rate (%)"].mean().round(2),
                         "std (%)": grouped["error rate (%)"].std(ddof=1).round(2),
                         "mean errors": grouped["errors"].mean().round(1),
                         "seconds per run": grouped["seconds"].mean().round(0),
                         "seconds per epoch": grouped["seconds per epoch"].mean().round(2)})


def sweep_numbers(summary: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """A chapter's numbers about a :func:`sweep_summary`, each key starting with ``prefix``: the seeds per
    setting, the lowest, highest and best setting with their mean error, the range of the means and the
    training time of each end over the other."""
    error, seconds = summary["mean error rate (%)"], summary["seconds per run"]
    seeds = int(summary["seeds"].min())
    best = summary.index[error.argmin()]
    return {f"{prefix}_seeds": f"{seeds} seed{'s' if seeds > 1 else ''}",
            f"{prefix}_best": int(best), f"{prefix}_best_error": float(error[best]),
            f"{prefix}_low": int(summary.index.min()), f"{prefix}_low_error": float(error.iloc[0]),
            f"{prefix}_high": int(summary.index.max()), f"{prefix}_high_error": float(error.iloc[-1]),
            f"{prefix}_range": float(error.max() - error.min()),
            f"{prefix}_time_high_over_low": float(seconds.iloc[-1] / seconds.iloc[0]),
            f"{prefix}_time_low_over_high": float(seconds.iloc[0] / seconds.iloc[-1])}


@dataclass(frozen=True)
class RungResult:
    """A ladder rung: its holdout evidence, whether it was kept, and its test runs."""

    name: str
    why: str
    config: Config
    holdout: dict[str, float]
    previous_holdout: dict[str, float] | None
    kept: bool
    runs: list[Run]

    @property
    def test_errors(self) -> list[int]:
        return [r.errors for r in self.runs]

    @property
    def test_rates(self) -> np.ndarray:
        """Test error (%) per seed."""
        return np.array(self.test_errors) / len(self.runs[0].labels) * 100


def ladder() -> list[RungResult]:
    """Climb :data:`helpers.config.LADDER` from the paper's recipe. Each rung is scored on holdout splits of
    the training set against the configuration it builds on, and kept when it makes no more holdout errors;
    the test set is used once per rung, to report. Rung 0 is the recipe, with the seeds of
    :func:`paper_seed_runs` so that the book quotes one number for it."""
    settings = beyond()
    steps = [("the paper's recipe (our reproduction)", "the starting point", {})]
    steps += [(rung.name, rung.why, settings.resolve(rung.changes)) for rung in LADDER]
    current = _recipe()
    results: list[RungResult] = []
    base_holdout: dict[str, float] | None = None
    for name, why, changes in steps:
        config = current.with_(**changes)
        holdout_jobs = [Job(config, seed, "holdout") for seed in settings.holdout_seeds]
        test_jobs = [Job(config, seed) for seed in (settings.ladder_seeds if results else settings.seeds)]
        runs = run_many(holdout_jobs + test_jobs, workers=settings.workers,
                        describe=lambda j, n=name: f"{n[:30]}: {j.split} seed {j.seed}")
        holdout = holdout_errors(runs[:len(holdout_jobs)])
        kept = base_holdout is None or holdout["errors"] <= base_holdout["errors"]
        results.append(RungResult(name, why, config, holdout, base_holdout, kept, runs[len(holdout_jobs):]))
        if kept:
            current, base_holdout = config, holdout
    return results


def ladder_table(results: Sequence[RungResult]) -> pd.DataFrame:
    """The ladder: holdout errors (the decision), kept or not, and the test error over seeds."""
    return pd.DataFrame([{
        "rung": r.name, "holdout errors (vs before)": f"{r.holdout['errors']:.0f}" + (
            f" (vs {r.previous_holdout['errors']:.0f})" if r.previous_holdout else ""),
        "kept": "yes" if r.kept else "no", "test error (%) mean": round(float(r.test_rates.mean()), 2),
        "std": round(float(r.test_rates.std(ddof=1)), 2) if len(r.runs) > 1 else float("nan"),
        "seeds": len(r.runs), "seconds per run": round(float(np.mean([x.seconds for x in r.runs])))}
        for r in results]).set_index("rung")


def best_rung(results: Sequence[RungResult]) -> RungResult:
    """The last kept rung: the ladder's final model (chosen by holdout, never by test)."""
    return [r for r in results if r.kept][-1]


def jobs() -> dict[str, list[Job]]:
    """The one registry of the book's runs: each experiment (and its chapter) with its jobs, in the order
    ``make results`` and ``make retrain`` train them (:func:`everything`). Pruning keeps these and every run
    scored on the test set; the cost table, the test-set log and the reproducibility chapter read them.
    Some jobs follow from others' results (the recipe from the decision search, the rungs from their holdout
    runs, the best-published test runs from cross-validation): listing them reads (or trains) those."""
    settings = beyond()
    rungs = ladder()
    selections = round_selections()
    first, second = selections[1], selections[2]
    registry = {
        "decision search (model chapter)": sorted(set(decision_jobs()), key=lambda j: j.key()),
        "the paper's model (training chapter)": [paper_job()],
        "seeds (variance chapter)": [Job(_recipe(), seed) for seed in settings.seeds],
        "dense-layer width (ablations chapter)": sweep_jobs("dense_units", settings.dense_units, settings.sweep_seeds),
        "batch size (ablations chapter)": sweep_jobs("batch_size", settings.batch_sizes, settings.batch_seeds),
        "ladder, test-set runs (human-level chapter)": [x.job for r in rungs for x in r.runs],
        "ladder, holdout runs (human-level chapter)": [Job(r.config, seed, "holdout") for r in rungs
                                                      for seed in settings.holdout_seeds],
        "readings of the recipe (discussion chapter)": sum(reading_jobs().values(), []),
        "decision options on the test set (discussion chapter)": sum(option_jobs().values(), []),
        # rounds 1 and 2 in the registry's order before they were data: both cross-validations, then their looks
        first.round.groups[0]: [r.job for c in first.candidates.values() for r in c.runs],
        second.round.groups[0]: [r.job for name, c in second.candidates.items() if name not in first.candidates
                                 for r in c.runs],
        first.round.groups[1]: rounds.final_jobs(first)[first.chosen.name],
        "B, the second round's choice": rounds.final_jobs(second)[second.chosen.name],
        "ranking check on the test set": list(rounds.ranking_jobs(first).values()),
        second.round.groups[1]: sum(rounds.final_jobs(second).values(), []),
        **{name: group for x in selections.values() if x.round.protocol for name, group in (
            (x.round.groups[0], [r.job for c in x.candidates.values() for r in c.runs]),
            (x.round.groups[1], sum(rounds.final_jobs(x).values(), [])))},
    }
    return {name if "chapter)" in name else f"{name} (best-published chapter)": group
            for name, group in registry.items()}


def _group_runs(name: str, group: Sequence[Job]) -> list[Run]:
    return run_many(group, workers=beyond().workers, describe=lambda j: f"{name[:40]}, {j.describe()}")


def experiment_runs(chapter: str = "") -> dict[str, list[Run]]:
    """Every trained run of the book (:func:`jobs`), grouped by the experiment that needs it; with
    ``chapter`` (e.g. ``"best-published"``) only that chapter's experiments."""
    return {name: _group_runs(name, group) for name, group in jobs().items() if name.endswith(f"{chapter} chapter)")}


def best_runs() -> dict[str, list[Run]]:
    """The runs of the best-published chapter (its groups of :func:`jobs`)."""
    return experiment_runs("best-published")


def cost_table(groups: Mapping[str, Sequence[Run]]) -> pd.DataFrame:
    """Training time of each group of runs; a run shared by two counts once, in the first."""
    seen: set[str] = set()
    rows = {}
    for name, group in groups.items():
        new = [r for r in group if r.key not in seen]
        seen.update(r.key for r in group)
        rows[name] = {"runs": len(group), "new runs": len(new),
                      "training time of the new runs (s)": round(sum(r.seconds for r in new))}
    table = pd.DataFrame(rows).T
    table.index.name = "experiment"
    return table


def cost_numbers(cost: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """The totals of a :func:`cost_table` a chapter quotes: distinct runs, minutes of training summed
    over runs, and the wall-clock minutes on two workers side by side."""
    minutes = float(cost["training time of the new runs (s)"].sum()) / 60
    return {f"{prefix}_runs": int(cost["new runs"].sum()), f"{prefix}_minutes": minutes,
            f"{prefix}_wall_minutes": minutes / 2}


def _variant_jobs(changes: Iterable[tuple[str, dict[str, Any]]], seeds: Sequence[int]) -> dict[str, list[Job]]:
    """The recipe (:func:`_recipe`) and each named change to it, once per seed."""
    recipe_ = _recipe()
    variants = {"the recipe (our reproduction)": recipe_, **{name: recipe_.with_(**change) for name, change in changes}}
    return {name: [Job(config, seed) for seed in seeds] for name, config in variants.items()}


def _variant_runs(groups: dict[str, list[Job]], what: str, seed_major: bool = False) -> dict[str, list[Run]]:
    """The runs of each group of :func:`_variant_jobs` (trained if missing); ``seed_major`` trains them seed by
    seed, so that an interrupted ``make results`` has whole seeds of every group."""
    names = {job: name for name, group in groups.items() for job in group}
    order = sum(groups.values(), [])
    if seed_major:
        order = [group[i] for i in range(len(next(iter(groups.values())))) for group in groups.values()]
    found = {r.job: r for r in run_many(order, workers=beyond().workers,
                                        describe=lambda j: f"{what} {names[j][:40]}, seed {j.seed}")}
    return {name: [found[job] for job in group] for name, group in groups.items()}


def reading_jobs() -> dict[str, list[Job]]:
    """The recipe and each of :data:`helpers.config.READINGS`, once per reading seed."""
    return _variant_jobs(((r.name, r.changes) for r in READINGS), beyond().reading_seeds)


def readings() -> dict[str, list[Run]]:
    """The runs of :func:`reading_jobs` (trained if missing), by reading."""
    return _variant_runs(reading_jobs(), "reading")


def option_jobs() -> dict[str, list[Job]]:
    """Every option of the model chapter's decision search that changes the recipe, trained like it once per
    option seed and scored on the test set: only to report what choosing on the test set would have given
    (the verdict chapter); the recipe was chosen on holdout splits and does not change."""
    recipe_ = _recipe()
    return _variant_jobs(((f"{decision.name}: {label}", changes) for decision in DECISIONS
                          for label, changes in decision.options if recipe_.with_(**changes) != recipe_),
                         beyond().option_seeds)


def decision_options() -> dict[str, list[Run]]:
    """The runs of :func:`option_jobs` (trained if missing), by option."""
    return _variant_runs(option_jobs(), "option", seed_major=True)


def _final(rungs: Sequence[RungResult]) -> tuple[RungResult, pd.Series]:
    """The ladder's final rung and the row of :func:`ensemble_errors` for all its seeds."""
    final = best_rung(rungs)
    return final, ensemble_errors(final.runs).iloc[-1]


def ladder_numbers(rungs: Sequence[RungResult], targets: dict[str, float]) -> dict[str, Any]:
    """The numbers the human-level chapter quotes: the final rung, its ensemble, the targets."""
    final, ensemble = _final(rungs)
    errors = final.test_rates
    single, combined = float(errors.mean()), float(ensemble["mean error rate (%)"])
    return {
        "final_rung": final.name, "final_mean": single,
        "final_std": float(errors.std(ddof=1)) if len(errors) > 1 else float("nan"),
        "final_seeds": len(errors), "final_ensemble": combined, "final_ensemble_errors": ensemble["mean errors"],
        "final_ensemble_size": len(final.runs), "rungs_kept": sum(r.kept for r in rungs[1:]),
        "rungs_tried": len(rungs) - 1, "target_single": targets["single"], "target_ensemble": targets["ensemble"],
        "single_gap": single - targets["single"], "ensemble_gap": combined - targets["ensemble"],
    }


def ladder_standings(recipe: Sequence[Run], rungs: Sequence[RungResult],
                     classical: pd.DataFrame) -> list[tuple[str, float, str]]:
    """The book's rows of the human-level chapter's literature table (:func:`helpers.evaluate.literature_table`):
    the recipe and the ladder's final model over their seeds (t-interval of the mean), the final model's
    seeds' ensemble and each baseline (binomial interval)."""
    final, ensemble = _final(rungs)
    combined = float(ensemble["mean error rate (%)"])
    rows = [evaluate.seed_row("the paper's recipe, our reproduction", [100 * (1 - r.accuracy) for r in recipe]),
            evaluate.seed_row(f"ladder: {final.name}", list(final.test_rates)),
            (f"ladder: ensemble of its {len(final.runs)} seeds", combined, evaluate.binomial_text(combined))]
    rows += [(f"{name} ({row['parameter']} = {row['chosen']:g})", float(row["test error rate (%)"]),
              evaluate.binomial_text(float(row["test error rate (%)"]))) for name, row in classical.iterrows()]
    return rows


#: The readings whose seed-0 weights the ledger keeps, to tell which change makes the final
#: model read noisy digits worse (the human-level chapter's noise table).
NOISE_READINGS: tuple[str, ...] = ("two convolution blocks", "shift augmentation", "shift and rotation augmentation")


def noise_jobs() -> dict[str, Job]:
    """Seed 0 of each reading in :data:`NOISE_READINGS` (their weights are kept in the ledger)."""
    return {r.name: Job(_recipe().with_(**r.changes), 0) for r in READINGS if r.name in NOISE_READINGS}


def final_job() -> Job:
    """The ladder's final model, seed 0 (its weights are kept for the noise table and the demo)."""
    final = best_rung(ladder())
    return Job(final.config, final.runs[0].job.seed)


def best_job() -> Job:
    """The cross-validated best model, seed 0 (its weights are kept for the noise table)."""
    second = round_selections()[2]
    return Job(second.chosen.config, second.round.seeds[0])


def robust_job() -> Job:
    """The third round's chosen model, seed 0 (its weights are kept for the noise table and the demo)."""
    third = round_selections()[3]
    return rounds.final_jobs(third)[third.chosen.name][0]


def round_selections() -> dict[int, rounds.Selection]:
    """Every round of :data:`helpers.rounds.ROUNDS` cross-validated (runs trained if missing), each from the
    round before, the first from the ladder's final model; kept per profile, training mode and ledger folder."""
    return _round_selections(profile().name, runs.training_mode(), str(store.root()))


@functools.cache
def _round_selections(*_key: str) -> dict[int, rounds.Selection]:
    previous: Config | rounds.Selection = best_rung(ladder()).config
    found = {}
    for number, entry in rounds.ROUNDS.items():
        found[number] = previous = rounds.cross_validate(entry, previous, _recipe(), workers=beyond().workers)
    return found


@dataclass(frozen=True)
class RoundResults:
    """A round as its chapter section and ``summary --json`` report it."""

    selection: rounds.Selection
    look: rounds.TestLook  # the round's look at the test set: the chosen model's seeds and the ensemble
    numbers: dict[str, Any]
    teacher_look: rounds.TestLook | None = None  # a student's teacher's final runs (the previous round's look)
    reference: pd.DataFrame | None = None  # test error (%) by noise level of the paper's network and B, seed 0 each


def round_results() -> dict[int, RoundResults]:
    """Every round's cross-validation and look at the test set, by number; the third with the noise comparison
    (the paper's network and B from their stored weights, on the chosen model's noise draws), a student's
    beside its teacher's look. Chapters, findings and CLI read them here; kept like :func:`round_selections`."""
    return _round_results(profile().name, runs.training_mode(), str(store.root()))


@functools.cache
def _round_results(*_key: str) -> dict[int, RoundResults]:
    return runs.derived("round results", _read_rounds)


def _read_rounds() -> dict[int, RoundResults]:
    found: dict[int, RoundResults] = {}
    for number, selection in round_selections().items():
        look = rounds.test_look(selection, workers=beyond().workers)
        if not selection.round.protocol:  # rounds 1 and 2
            found[number] = RoundResults(selection, look, best_published.numbers(selection, look))
            continue
        if selection.teacher is not None:
            teacher = found[number - 1].look
            seconds = [r.seconds for c in selection.candidates.values() for r in c.runs] + \
                [r.seconds for r in look.runs[look.chosen]]
            found[number] = RoundResults(selection, look, rounds.student_numbers(selection, look, teacher, seconds),
                                         teacher_look=teacher)
            continue
        models = noise_models()
        images, labels = data.load_usps("test")
        reference = evaluate.noise_robustness({rounds.PAPER: models["the paper's network"], rounds.B: models["B"]},
                                              images, labels, levels=(0.0, *data.NOISE_LEVELS))
        strongest = reference.loc[selection.round.noise]
        previous = run_many([Job(selection.candidates[rounds.B].config, seed) for seed in selection.round.final_seeds],
                            workers=beyond().workers)
        numbers = rounds.lineage_numbers(selection, look, paper_noise=float(strongest[rounds.PAPER]),
                                         previous_noise=float(strongest[rounds.B]), previous=previous)
        found[number] = RoundResults(selection, look, numbers, reference=reference)
    return found


def noise_models(with_best: bool = True) -> dict[str, Any]:
    """Seed 0 of the models whose weights the ledger keeps: the paper's network, the ladder's final
    model, each of its changes alone on the recipe and (``with_best``) the cross-validated best model."""
    from helpers.trainer import load_model  # TensorFlow: only where models are loaded
    models = {"the paper's network": load_model(runs.run(recipe.paper_job())),
              "the ladder's final model": load_model(runs.run(final_job()))}
    models |= {f"recipe + {name}": load_model(runs.run(job)) for name, job in noise_jobs().items()}
    if with_best:
        models["B"] = load_model(runs.run(best_job()))
    return models


def everything() -> dict[str, int]:
    """Every run of the registry (:func:`jobs`), in its order; returns the runs per experiment.

    ``USPS_TRAINING=ledger`` (``make results``) trains what the ledger lacks into it, ``forbid`` fails on
    the first missing run, ``allow`` trains into the per-user cache; an interrupted call resumes. In the
    full profile and ledger mode it then keeps the weights the chapters load and prunes from the ledger
    every entry that is not a run of the registry and was never scored on the test set.
    """
    stages: dict[str, int] = {}
    registry = jobs()  # reads (and in ledger mode trains) what the other jobs follow from
    for name, group in registry.items():
        stages[name] = len(_group_runs(name, group))
        print(f"== {name}: {stages[name]} runs stored", flush=True)
    stages["classical baselines"] = len(baselines.all_baselines())
    if runs.training_mode() == "ledger" and profile().name == "full":
        # Only the full profile's registry is the book's: pruning after another profile's runs
        # would empty the ledger of the book's own.
        needed = [recipe.paper_job(), final_job(), *noise_jobs().values(), best_job(), robust_job()]
        kept, dropped = ledger.keep_weights(needed), ledger.drop_weights(needed)
        print(f"== weights stored in the ledger: {len(kept)} new, {len(dropped)} no longer needed removed",
              flush=True)
        unused = ledger.drop_unused({job.key() for group in registry.values() for job in group})
        print(f"== ledger entries outside the registry and never scored on the test set: {len(unused)} removed"
              + "".join(f"\n   removed {key}" for key in unused), flush=True)
    return stages


def ledger_by_experiment(table: pd.DataFrame) -> pd.DataFrame:
    """The ledger's entries (:func:`helpers.ledger.overview`'s table, indexed by short key) with the
    experiment that first lists each (:func:`experiment_runs`; "outside the registry" for the rest)."""
    groups = experiment_runs()
    named = {r.key[:8]: name for name, group in reversed(groups.items()) for r in group}  # the first group wins
    outside = "outside the registry (kept: scored on the test set)"
    order = [*groups, outside]  # the experiments in the order the book made them
    return table.assign(experiment=pd.Categorical([named.get(key, outside) for key in table.index], categories=order))


def ledger_groups(listing: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment of :func:`ledger_by_experiment`: its chapter, its runs, how many were scored on
    the test set, and how many ``make retrain`` found bit-identical (and how many differ, if any)."""
    rows = []
    for name, group in listing.groupby("experiment", sort=True, observed=True):
        status = group["make retrain"]
        experiment, _, chapter = name.removesuffix(")").partition(" (")
        identical, differ = int((status == "identical").sum()), int((status == "differs").sum())
        rows.append({"experiment": experiment,
                     "chapter": chapter.removesuffix(" chapter").replace("-", "\u2011"),  # a hyphen that does not wrap
                     "runs": len(group), "test set": int((group["split"] == "test").sum()),
                     "identical": f"{identical} of {len(group)}" + (f" ({differ} differ)" if differ else "")})
    return pd.DataFrame(rows).set_index("experiment")
