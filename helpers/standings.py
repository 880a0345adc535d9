"""The standings: every model the book put forward, on the test set, in one table.

This is the book's one answer to "how far can this data go?". The introduction, the
best-published chapter, the demo and ``python -m helpers summary --json`` all quote :func:`rows`;
nothing else ranks models. Each row gives a model's test error (mean over its seeds, or the one
number of an ensemble or a publication) with the binomial (Wilson) 95 % interval of one model
with that many errors on the 2007 test images, the range of its seeds' errors, its error under
pixel noise, how it was chosen, and how many looks at the test set the book had made before that
choice (:mod:`helpers.testlog`).

"Best" has one meaning in this book (:data:`BEST`): the model the book's last committed protocol
chose on the training images, accurate and robust to pixel noise. It is not the row with the
fewest test errors, and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from helpers import best_published, experiments, paper, stats, testlog
from helpers.rounds import ROUNDS

#: The names the book gives its models, defined once (the introduction and the best-published chapter
#: print these definitions; every page and ``summary --json`` use the same names).
RECIPE = "the recipe"
A = "A"
B = "B"
B_ENSEMBLE = "B's ensemble"
W = "W"
W_ENSEMBLE = "W's ensemble"
STUDENT = "the student"
BEST = W  # "the book's best model": W, as defined in the module docstring

DEFINITIONS: dict[str, str] = {
    RECIPE: "the paper's network as this book reads the paper, its open choices made on holdout splits "
            "of the training images",
    A: "the first round's choice by cross-validation",
    B: "the second round's choice by cross-validation",
    B_ENSEMBLE: "B with the candidates forward selection added on out-of-fold predictions",
    W: "the third round's choice, by a protocol committed before its runs: B trained with pixel noise and "
       "made wider, the most accurate candidate that reads noisy digits at least as well as the paper's network",
    W_ENSEMBLE: "W's seeds averaged (forward selection added no other candidate)",
    STUDENT: "the fourth round's reported student: W distilled from W's runs (not chosen: it made more "
             "out-of-fold errors than W)",
}

#: The round whose cross-validation chose each model (rounds 3 and 4 by a protocol).
ROUND_OF = {A: 1, B: 2, B_ENSEMBLE: 2, W: 3, W_ENSEMBLE: 3, STUDENT: 4}
#: The experiment of the test-set log (:data:`helpers.testlog.LOOKS`) whose decision chose each model.
CHOSEN_IN = {RECIPE: "decision search (model chapter)",
             **{name: f"{ROUNDS[r].groups[0]} (best-published chapter)" for name, r in ROUND_OF.items()}}
CHOSEN_BY = {RECIPE: "holdout splits",
             **{name: f"{'protocol' if ROUNDS[r].protocol else 'CV'}, round {r}" for name, r in ROUND_OF.items()}}


@dataclass(frozen=True)
class Standing:
    """One model (or published result) on the test set."""

    name: str
    errors: tuple[float, ...]          # test errors of each seed; one value for an ensemble or a publication
    n: int                             # test images
    kind: str                          # "seeds", "ensemble", "published" or "human"
    noise: float | None = None         # test error (%) under pixel noise of sigma rounds.Round.noise
    noise_of: str = ""                 # whose noise error: "seed 0" or "mean of 5 seeds"
    chosen_by: str = ""
    looks_before: int | None = None    # looks at the test set the book had made before the choice
    training_runs: int = 0             # independent training runs (an ensemble's)

    @property
    def mean_errors(self) -> float:
        return float(np.mean(self.errors))

    @property
    def error(self) -> float:
        """Test error (%): the mean over seeds, or the one number."""
        return 100 * self.mean_errors / self.n

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95 % interval (%) of one model with this many errors on the test images."""
        low, high = stats.wilson_interval(self.mean_errors, self.n)
        return 100 * low, 100 * high


def looks_before(log: pd.DataFrame, experiment: str) -> int:
    """Looks at the test set in the book's log (:func:`helpers.testlog.log`) before ``experiment``'s row."""
    rows = log.index[log["experiment"] == experiment]
    if not len(rows):
        raise KeyError(f"{experiment!r} is not in the test-set log")
    return int((testlog.looks(log).index < rows[0]).sum())


def rows(results: Any, log: pd.DataFrame) -> list[Standing]:
    """Every model the book put forward, in the order they were made, then the best published result and
    human readers. ``results``: :func:`helpers.findings.gather`; ``log``: the book's test-set log."""
    n, b = results.second.look.n, results.second.look
    third, fourth = results.third, results.fourth
    r3, r4 = third.numbers, fourth.numbers
    mark = lambda name: {"chosen_by": CHOSEN_BY[name], "looks_before": looks_before(log, CHOSEN_IN[name])}  # noqa: E731
    return [
        Standing("the paper", (paper.ERRORS,), n, "published", chosen_by="its test set"),
        Standing(RECIPE, tuple(r.errors for r in results.recipe), n, "seeds", r3["r3_paper_noise"], "seed 0",
                 **mark(RECIPE)),
        Standing(A, tuple(results.first.look.single_errors), n, "seeds", **mark(A)),
        Standing(B, tuple(b.single_errors), n, "seeds", r3["r3_previous_noise"], "seed 0", **mark(B)),
        Standing(B_ENSEMBLE, (b.ensemble_errors,), n, "ensemble", training_runs=b.training_runs, **mark(B_ENSEMBLE)),
        best(third, looks_before(log, CHOSEN_IN[W])),
        Standing(W_ENSEMBLE, (third.look.ensemble_errors,), n, "ensemble", training_runs=third.look.training_runs,
                 **mark(W_ENSEMBLE)),
        Standing(STUDENT, tuple(fourth.look.single_errors), n, "seeds", r4["r4_noise_mean"], "mean of seeds",
                 **mark(STUDENT)),
        Standing("best published (Keysers)", (paper.BEST_PUBLISHED * n / 100,), n, "published", chosen_by="published"),
    ]


def best(third: Any, looks: int | None = None) -> Standing:
    """W's row of the standings, from the third round alone (:func:`helpers.experiments.round_results`): what
    the demo quotes without reading every round."""
    return Standing(W, tuple(third.look.single_errors), third.look.n, "seeds", third.numbers["r3_noise_mean"],
                    "mean of seeds", chosen_by=CHOSEN_BY[W], looks_before=looks)


def by_name(standings: Sequence[Standing]) -> dict[str, Standing]:
    return {s.name: s for s in standings}


#: What a standings cell shows when a value does not exist for that row (defined under the table).
NOT_MEASURED = "—"


def _errors_text(s: Standing) -> str:
    if s.kind == "seeds":
        low, high = min(s.errors), max(s.errors)
        return f"{low}" if low == high else f"{low}–{high}"
    return f"{s.mean_errors:.0f}"


def _runs_text(s: Standing) -> str:
    if s.kind == "seeds":
        return f"{len(s.errors)} seeds"
    if s.kind == "ensemble":
        return f"{s.training_runs} runs"
    return "1 run" if s.name.startswith("the paper") else NOT_MEASURED


def table(standings: Sequence[Standing]) -> pd.DataFrame:
    """The standings as the book prints them (narrow enough for the text column), human readers last.
    A "—" is a value that was not measured (noise) or is not the book's (looks before a published result)."""
    out = []
    for s in standings:
        low, high = s.interval
        out.append({"model": s.name, "error (%)": f"{s.error:.2f}", "95 % (binomial)": f"{low:.1f}–{high:.1f}",
                    "errors": _errors_text(s), "runs": _runs_text(s),
                    "σ = 0.4 (%)": f"{s.noise:.1f}" if s.noise is not None else NOT_MEASURED,
                    "chosen by": s.chosen_by,
                    "looks before": str(s.looks_before) if s.looks_before is not None else NOT_MEASURED})
    out.append({"model": "human readers", "error (%)": f"{paper.HUMAN[0]:g}–{paper.HUMAN[1]:g}",
                "95 % (binomial)": NOT_MEASURED, "errors": NOT_MEASURED, "runs": NOT_MEASURED,
                "σ = 0.4 (%)": NOT_MEASURED, "chosen by": "published", "looks before": NOT_MEASURED})
    return pd.DataFrame(out).set_index("model")


def rates(standings: Sequence[Standing]) -> dict[str, list[float]]:
    """Test error (%) of each seed (or the one number) per model, for :func:`helpers.plots.standings_plot`."""
    return {s.name: [100 * e / s.n for e in s.errors] for s in standings}


def numbers(standings: Sequence[Standing]) -> dict[str, Any]:
    """The numbers the text quotes of every row: ``st_{key}_error``, ``_low``, ``_high``, ``_errors`` (mean),
    ``_noise``, ``_looks``, ``_seeds``, ``_min``/``_max`` (errors), ``_runs``; keys (:data:`KEYS`) are the names
    in lower case with one word each."""
    out: dict[str, Any] = {}
    for s in standings:
        if (key := KEYS.get(s.name)) is None:
            continue
        low, high = s.interval
        found = {"error": s.error, "low": low, "high": high, "errors": s.mean_errors}
        if s.kind == "seeds":
            found |= {"seeds": len(s.errors), "min": int(min(s.errors)), "max": int(max(s.errors))}
        if s.kind == "ensemble":
            found["runs"] = s.training_runs
        if s.noise is not None:
            found["noise"] = s.noise
        if s.looks_before is not None:
            found["looks"] = s.looks_before
        out |= {f"st_{key}_{name}": value for name, value in found.items()}
    return out


KEYS = {RECIPE: "recipe", A: "a", B: "b", B_ENSEMBLE: "b_ens", W: "w", W_ENSEMBLE: "w_ens", STUDENT: "student"}


def as_json(standings: Sequence[Standing]) -> list[dict[str, Any]]:
    """The standings for ``summary --json``: error rates as fractions, as the rest of that object."""
    out = []
    for s in standings:
        low, high = s.interval
        out.append({"name": s.name, "kind": s.kind, "test_error": s.error / 100,
                    "test_error_interval95_binomial": [low / 100, high / 100],
                    "test_errors": [float(e) if s.kind == "published" else int(e) for e in s.errors],
                    "noise_error": None if s.noise is None else s.noise / 100, "noise_error_of": s.noise_of or None,
                    "chosen_by": s.chosen_by, "test_looks_before": s.looks_before,
                    "training_runs": s.training_runs or None})
    return out


def targets(results: Any, ladder_targets: dict[str, float]) -> pd.DataFrame:
    """Every accuracy target the book set, in the order it was set, with what reached it closest.

    ``results``: :func:`helpers.findings.gather`; the targets: :data:`helpers.config.TARGETS` (the
    ladder), then each round's (:attr:`helpers.rounds.Round.targets`: rounds 1 and 2's, rounds 3 and 4's protocol's)."""
    ladder_mean = float(np.mean(best_published.rates(experiments.best_rung(results.rungs).runs)))
    b, w = results.second.numbers, results.third.numbers
    rows = [("the ladder (human level)", ladder_targets, f"final model {ladder_mean:.2f}", "no ensemble"),
            ("rounds 1 and 2 (best published)", results.second.selection.round.targets, f"B {b['best_mean']:.2f}",
             f"B's ens. {b['ensemble']:.2f}"),
            ("rounds 3 and 4 (protocols)", results.third.selection.round.targets, f"W {w['r3_mean']:.2f}",
             f"W's ens. {w['r3_ensemble']:.2f}")]
    return pd.DataFrame([{"set for": name, "one model (%)": f"{t['single']:g}", "ensemble (%)": f"{t['ensemble']:g}",
                          "one model reached": single, "ensemble reached": ensemble}
                         for name, t, single, ensemble in rows]).set_index("set for")


#: The best-published chapter's looks at the test set (:data:`helpers.testlog.LOOKS`), by the standings' names.
LOOK_NAMES = {"the first round's choice (best-published chapter)": "A's 5 seeds",
              "ranking check on the test set (best-published chapter)": "ranking check: A's rivals, seed 0",
              "B, the second round's choice (best-published chapter)": "B's 5 seeds",
              "ensemble members chosen by cross-validation (best-published chapter)": "B's ensemble's other members",
              "third round: the chosen model and the ensemble's members (best-published chapter)":
                  "W's 5 seeds (round 3's one look)",
              "fourth round: the distilled student (best-published chapter)": "the student's 5 seeds (round 4's one look)"}


def chapter_looks(log: pd.DataFrame) -> pd.DataFrame:
    """The looks of a chapter's test-set log (:func:`helpers.testlog.log`), numbered in order, by the
    standings' names: what was scored and how many new runs."""
    looks = testlog.looks(log)
    missing = sorted(set(looks["experiment"]) - set(LOOK_NAMES))
    if missing:
        raise KeyError(f"name these looks in helpers.standings.LOOK_NAMES: {missing}")
    out = pd.DataFrame({"what was scored": looks["experiment"].map(LOOK_NAMES),
                        "runs": looks["runs scored on the test set"].to_numpy()})
    out.index = pd.RangeIndex(1, len(out) + 1, name="look")
    return out
