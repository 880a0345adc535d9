"""The summary of findings at the top of the introduction, and its figure: every result on one axis.

Nothing here is new: :func:`gather` reads, from the results ledger, the runs the later chapters already
report (the recipe's seeds, its readings, the verdict table, the classical baselines, the ladder, every round),
and :func:`numbers` picks the values the summary quotes from the helpers that compute them for those chapters.
:func:`points` lays every result out as rows of one figure (:func:`helpers.plots.findings_plot`). Error rates
are in percent of the test images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers import (baselines, best_published, data, discussion, experiments, paper, recipe, runs, stats, store,
                     testlog)
from helpers.store import Run
from helpers.config import beyond, DECISIONS, READINGS

REPO = Path(__file__).resolve().parents[1]

#: The verdict table's row for the paper's headline number (the row :func:`helpers.discussion.verdict_table` writes).
HEADLINE = f"overall accuracy {paper.ACCURACY} % ({paper.ERRORS} errors)"
#: What the ReScience-style title says while that row is "not reproduced".
NOT_REPRODUCED_MARK = "[¬Re]"


@dataclass(frozen=True)
class Results:
    """Everything the summary quotes, as the later chapters read it from the ledger."""

    recipe: list[Run]                      # the recipe's seeds (variance chapter)
    readings: dict[str, list[Run]]         # the recipe, then each reading of it (discussion chapter)
    verdict: pd.DataFrame                  # :func:`helpers.discussion.verdict_table` (discussion chapter)
    baselines: list[dict[str, Any]]        # :func:`helpers.baselines.all_baselines`
    rungs: list[Any]                       # :func:`helpers.experiments.ladder` (human-level chapter)
    first: experiments.RoundResults                  # the first round: A on the test set (its seeds)
    second: experiments.RoundResults                 # the second round: B's seeds and its ensemble
    third: experiments.RoundResults                  # the third round: accurate and robust (its protocol)
    fourth: experiments.RoundResults                 # the fourth round: distillation (its protocol)
    ledger_seconds: list[float] = field(default_factory=list)  # ``record["seconds"]`` of every ledger entry
    workers: int = 2                       # training processes side by side (two cores)

    def runs(self) -> list[Run]:
        """Every trained run the summary rests on (for :func:`helpers.book.provenance`)."""
        return (list(self.recipe) + [r for runs in self.readings.values() for r in runs]
                + [r for rung in self.rungs for r in rung.runs]
                + [r for x in (self.first, self.second, self.third, self.fourth)
                   for group in (*(c.runs for c in x.selection.candidates.values()), *x.look.runs.values())
                   for r in group])


def gather() -> Results:
    """Read every result the summary quotes from the ledger (nothing is trained with ``USPS_TRAINING=forbid``;
    then computed once for every process, :func:`helpers.runs.derived`)."""
    return runs.derived("findings", _gather)


def _gather() -> Results:
    readings = experiments.readings()
    recipe_runs = experiments.paper_seed_runs()
    train_labels, test_labels = data.load_usps("train")[1], data.load_usps("test")[1]
    verdict = discussion.verdict_table(readings[discussion.RECIPE], train_labels, test_labels, recipe.paper_config(),
                                runs.run(recipe.paper_job()).history)  # as the discussion chapter calls it
    rungs = experiments.ladder()
    found = experiments.round_results()
    return Results(recipe=recipe_runs, readings=readings, verdict=verdict, baselines=baselines.all_baselines(),
                   rungs=rungs, first=found[1], second=found[2], third=found[3], fourth=found[4],
                   ledger_seconds=[float(store.record(e)["seconds"]) for e in store.entries()],
                   workers=beyond().workers)


def test_log() -> pd.DataFrame:
    """The book's test-set log (:func:`helpers.testlog.log`): every experiment, the classical baselines too."""
    return testlog.log(experiments.experiment_runs(), baselines.all_baselines())


def closest_readings(readings: dict[str, Sequence[Run]]) -> list[dict[str, Any]]:
    """The readings of the recipe (not the recipe itself), nearest first to the paper's errors by their
    mean errors over seeds (:func:`helpers.discussion.variant_numbers`); a tie keeps the order of the readings."""
    n = len(next(iter(readings.values()))[0].labels)
    out = []
    for v in discussion.variant_numbers(readings):
        if v["name"] == discussion.RECIPE:
            continue
        errors = v["mean_error"] * n / 100
        low, high = stats.mean_interval([discussion.error_pct(r) for r in readings[v["name"]]])
        out.append(v | {"mean_errors": errors, "distance": round(abs(errors - paper.ERRORS), 6),
                        "low": low, "high": high})
    return sorted(out, key=lambda v: v["distance"])  # stable: ties stay in the readings' order


def verdict_lines(verdict: pd.DataFrame) -> pd.DataFrame:
    """The verdict table without its evidence."""
    return verdict[["paper", "this book", "verdict"]]


def headline_verdict(verdict: pd.DataFrame) -> str:
    """The verdict on the paper's headline accuracy (the [¬Re] of the book's title)."""
    return str(verdict.loc[HEADLINE, "verdict"])


def numbers(results: Results) -> dict[str, Any]:
    """Every number the summary of findings quotes, by name: the recipe's seed 0 and its seeds, how many of the
    paper's claims the verdict table finds reproduced, partly, not reproduced, the two readings closest to the
    paper, the digit with the largest excess, the best single model and the ensemble of each round against the
    best published result and human readers, and the cost of retraining the ledger."""
    recipe = results.recipe
    n = len(recipe[0].labels)
    seed0 = next(r for r in recipe if r.job.seed == 0)
    rates = [discussion.error_pct(r) for r in recipe]
    claims = results.verdict["verdict"].value_counts()
    out: dict[str, Any] = {
        "seed0_errors": seed0.errors, "seed0_accuracy": 100 * seed0.accuracy, "seed0_minutes": seed0.seconds / 60,
        **discussion.recipe_numbers(recipe),
        "rec_accuracy": 100 - float(np.mean(rates)), "rec_min": min(rates), "rec_max": max(rates),
        "claims": len(results.verdict), "claims_reproduced": int(claims.get("reproduced", 0)),
        "claims_partly": int(claims.get("partly", 0)), "claims_not": int(claims.get("not reproduced", 0)),
        "n_decisions": len(DECISIONS), "decision_names": ", ".join(d.name for d in DECISIONS),
        "n_readings": len(READINGS), "reading_seeds": len(results.readings[discussion.RECIPE]),
    }
    excess = discussion.excess_numbers(discussion.excess_by_digit(recipe))
    out |= {"top_digit": excess["top_digit"], "top_share": excess["top_share"]}
    for i, v in enumerate(closest_readings(results.readings)[:2], start=1):
        out |= {f"close{i}_name": v["name"], f"close{i}_mean": v["mean_error"], f"close{i}_errors": v["mean_errors"],
                f"close{i}_low": v["low"], f"close{i}_high": v["high"]}
    final = results.second.numbers
    out |= {key: final[key] for key in (
        "chosen", "best_mean", "best_low", "best_high", "best_seeds", "ensemble", "ensemble_errors",
        "ensemble_size", "ensemble_sets", "ensemble_low", "ensemble_high", "best_published")}
    out |= {"ensemble_vs_published_images": round(paper.BEST_PUBLISHED * n / 100) - final["ensemble_errors"],
            "human_low": paper.HUMAN[0], "human_high": paper.HUMAN[1]}
    out |= {key: results.third.numbers[key] for key in (
        "r3_chosen", "r3_mode", "r3_seeds", "r3_noise", "r3_binomial_half", "r3_mean", "r3_low", "r3_high", "r3_noise_mean", "r3_paper_noise",
        "r3_previous_noise", "r3_ensemble", "r3_ensemble_errors", "r3_ensemble_runs", "r3_ensemble_low",
        "r3_ensemble_high", "r3_target_single", "r3_target_ensemble", "r3_protocol")}
    out |= {key: results.fourth.numbers[key] for key in (
        "r4_protocol", "r4_seeds", "r4_mean", "r4_replaces", "r4_student_score", "r4_teacher_score")}
    hours = sum(results.ledger_seconds) / 3600
    out |= {"ledger_runs": len(results.ledger_seconds), "train_hours": hours,
            "retrain_wall_hours": hours / results.workers, "retrain_workers": results.workers}
    return out


def short_citation(name: str) -> str:
    """A short row label: 'Keysers, Paredes, Ney & Vidal 2002, tangent vectors and local representations'
    -> 'Keysers et al. 2002: tangent vectors' (authors, year, the method up to its first comma or "and")."""
    match = re.match(r"^(?P<authors>.*?) (?P<year>(?:19|20)\d\d)(?:, (?P<what>.*))?$", name)
    if not match:
        return name
    authors = match["authors"]
    names = [a for a in re.split(r",\s*|\s*&\s*", authors) if a]
    if len(names) > 2:
        authors = f"{names[0]} et al."
    what = re.split(r",| and ", match["what"])[0] if match["what"] else ""
    return f"{authors} {match['year']}" + (f": {what}" if what else "")


@dataclass(frozen=True)
class Row:
    """One row of the figure: a result's test error (%) per run (one value for a single number),
    or a shaded band (``band``: the lowest and highest value)."""

    group: str
    label: str
    errors: tuple[float, ...]
    band: bool = False

    @property
    def mean(self) -> float:
        return float(np.mean(self.errors))


def points(results: Results) -> list[Row]:
    """Every result on one axis, top to bottom: the paper, the recipe's seeds, the readings, the classical
    baselines, the ladder's kept rungs, the standings, the published results, and the human band (last)."""
    rates = best_published.rates
    rows = [Row("the paper", "Karim & Kaur 2020, one run", (paper.ERROR,)),
            Row("our reproduction", f"the paper's recipe, {len(results.recipe)} seeds",
                tuple(rates(results.recipe)))]
    rows += [Row("readings of the recipe", name, tuple(rates(runs)))
             for name, runs in results.readings.items() if name != discussion.RECIPE]
    rows += [Row("classical baselines", b["method"], (float(b["test error rate (%)"]),)) for b in results.baselines]
    rows += [Row("the ladder (kept rungs)", f"+ {r.name}", tuple(rates(r.runs)))
             for r in results.rungs[1:] if r.kept]
    group = "the standings"
    a, b, look, student = results.first.look, results.second.look, results.third.look, results.fourth.look
    rows += [Row(group, label, tuple(map(float, values))) for label, values in (
        (f"A (round 1), {len(a.single_errors)} seeds", best_published.seed_rates(a)),
        (f"B (round 2), {len(b.single_errors)} seeds", best_published.seed_rates(b)),
        (f"B's ensemble, {b.training_runs} training runs", (100 * b.ensemble_errors / b.n,)),
        (f"W (round 3), {len(look.single_errors)} seeds", look.single_rates),
        (f"W's ensemble, {look.training_runs} training runs", (100 * look.ensemble_errors / look.n,)),
        (f"the student (round 4), {len(student.single_errors)} seeds"
         + ("" if results.fourth.numbers["r4_replaces"] else ", not chosen"), student.single_rates))]
    human = {"bromley1991", "chaaban2007"}
    rows += [Row("published on this split", short_citation(name), (error,))
             for key, (name, error) in sorted(paper.LITERATURE.items(), key=lambda item: -item[1][1])
             if key not in human | {"karim2020"}]
    rows.append(Row("human readers", "human readers", paper.HUMAN, band=True))
    return rows


def book_title(config: Path = REPO / "_config.yml") -> str:
    """The book's ``title:`` in ``_config.yml`` (the HTML and the PDF title)."""
    match = re.search(r"^title:\s*(.+?)\s*$", config.read_text(encoding="utf-8"), re.M)
    if not match:
        raise ValueError(f"{config} has no title")
    return match[1].strip("\"'")


def augmenting_readings() -> set[str]:
    """The readings of the recipe that augment the training images (shifts, rotations)."""
    return {r.name for r in READINGS if any(key.startswith("augment_") for key in r.changes)}


def profile_differs(results: Results) -> bool:
    """Whether every run of every reading errs differently per digit from the paper's Figure 8: more
    3s and 1s and fewer 0s misread (:func:`helpers.discussion.profile_numbers`, as the discussion chapter checks)."""
    profile = discussion.profile_numbers(discussion.per_digit_errors(results.readings), discussion.RECIPE)
    return bool(profile["runs_min_3"] > profile["paper_3"] and profile["runs_min_1"] > profile["paper_1"]
                and profile["runs_max_0"] < profile["paper_0"])
