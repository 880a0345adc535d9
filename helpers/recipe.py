"""The paper's recipe: the choices the paper leaves open, made on holdout splits (the model chapter).

:func:`decision_sweep` scores every option of every open decision (:data:`helpers.config.DECISIONS`)
on 80/20 holdout splits of the training images; :func:`paper_config` is the recipe with each
decision's best option, the configuration every later chapter starts from.
"""

from __future__ import annotations

import functools
from typing import Any

from helpers.config import BASELINE, DECISIONS, DEFAULT_SEED, Config, profile
from helpers.job import Job
from helpers.runs import holdout_errors, run_many


def _decision_options() -> list[tuple[Any, int, str, Config, dict[str, Any]]]:
    """Every option of every open decision: (decision, option number, label, configuration, changes)."""
    epochs = profile().sweep_epochs
    return [(decision, number, label, BASELINE.with_(epochs=epochs, **changes), changes)
            for decision in DECISIONS for number, (label, changes) in enumerate(decision.options)]


def decision_jobs() -> list[Job]:
    """The holdout runs of :func:`decision_sweep`: every option, once per seed of ``profile().sweep_seeds``."""
    return [Job(config, seed, "holdout") for *_, config, _ in _decision_options() for seed in profile().sweep_seeds]


def decision_sweep() -> list[dict[str, Any]]:
    """Score each option of every open decision, one at a time from :data:`BASELINE`: trained
    ``profile().sweep_epochs`` epochs on 80 % of the training set and scored on the other 20 %, once per seed
    of ``profile().sweep_seeds`` (each seed draws its own split); the errors are summed over seeds."""
    seeds, options, jobs = profile().sweep_seeds, _decision_options(), decision_jobs()
    names: dict[Job, str] = {}
    for decision, _, label, config, _ in options:  # an option shared by decisions keeps its first name
        for seed in seeds:
            names.setdefault(Job(config, seed, "holdout"), f"{decision.name}: {label} (seed {seed})")
    results = dict(zip(jobs, run_many(jobs, describe=names.__getitem__)))
    return [{"decision": decision.name, "option": label, "baseline": number == 0, "changes": changes,
             **holdout_errors([results[Job(config, seed, "holdout")] for seed in seeds])}
            for decision, number, label, config, changes in options]


def chosen_options(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each decision the sweep row with the fewest holdout errors (a tie keeps the baseline)."""
    return {decision.name: min((r for r in rows if r["decision"] == decision.name),
                               key=lambda r: (r["errors"], not r["baseline"]))
            for decision in DECISIONS}


def decision_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the model chapter quotes about :func:`decision_sweep`: epochs and seeds per option, holdout
    images, the baseline's errors, and how far apart the best and the worst option are."""
    spread = max(r["errors"] for r in rows) - min(r["errors"] for r in rows)
    return {"sweep_epochs": profile().sweep_epochs, "sweep_seeds": len(profile().sweep_seeds),
            "holdout_n": rows[0]["n"], "baseline_errors": rows[0]["errors"], "sweep_spread": spread,
            "sweep_spread_pct": 100 * spread / rows[0]["n"]}


def select(rows: list[dict[str, Any]]) -> Config:
    """The configuration made of every decision's chosen option."""
    return BASELINE.with_(**{k: v for row in chosen_options(rows).values() for k, v in row["changes"].items()})


@functools.lru_cache(maxsize=None)
def _paper_config(profile_name: str) -> Config:
    return select(decision_sweep()).with_(epochs=profile().epochs)


def paper_config() -> Config:
    """The paper's recipe with every open decision made on the validation split (kept per profile)."""
    return _paper_config(profile().name)


def paper_job(seed: int = DEFAULT_SEED) -> Job:
    """The paper's recipe trained on all training images, tested on the test images."""
    return Job(paper_config(), seed, "test")
