"""The test-set log: every evaluation on the 2007 test images, in the order it happened.

A run trained on the ``test`` split predicts the test images when it is trained, so its
``record.json`` date is the moment that look at the test set became possible. The log groups
the book's runs by the experiment that made them (:func:`helpers.experiments.experiment_runs`),
orders the groups by their first run's date, and says for each what the look was for and what
was decided after it (:data:`LOOKS`). Groups trained on the training images only (the decision
search, the ladder's holdout runs, both rounds of cross-validation) are listed too, so that the
order of choices and looks can be read off one table. A run several experiments share is a look
once, in the group that first listed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd


@dataclass(frozen=True)
class Look:
    """What a group of runs was for and what was decided after it."""

    purpose: str  # "report", "decision", "ranking check", "bound" or "training images only"
    why: str
    decided_after: str


#: Keyed by the names of :func:`helpers.experiments.experiment_runs` (the chapter in brackets).
LOOKS: dict[str, Look] = {
    "decision search (model chapter)": Look(
        "training images only", "the paper's unstated settings, chosen on 80/20 holdout splits",
        "the recipe's settings (model chapter)"),
    "the paper's model (training chapter)": Look(
        "report", "the paper's recipe, seed 0: its curves, accuracy and confusion matrix",
        "nothing: the recipe was fixed on holdout splits before"),
    "seeds (variance chapter)": Look(
        "report", "the recipe over five seeds: how far one run may fall from another",
        "nothing about the recipe; the gap to the paper led to the readings and bounds of the verdict chapter"),
    "dense-layer width (ablations chapter)": Look(
        "report", "the recipe with other dense-layer widths", "nothing: the recipe keeps the paper's width"),
    "batch size (ablations chapter)": Look(
        "report", "the recipe with other batch sizes", "nothing: the recipe keeps the paper's batch size"),
    "ladder, holdout runs (human-level chapter)": Look(
        "training images only", "each rung of the ladder on 80/20 holdout splits", "which rungs to keep"),
    "ladder, test-set runs (human-level chapter)": Look(
        "report", "each rung of the ladder, kept or not",
        "the ladder missed its targets; the best-published chapter was then written to decide by "
        "cross-validation instead of holdout splits"),
    "readings of the recipe (discussion chapter)": Look(
        "bound", "other readings of the paper's text, to explain the gap to its 2.89 %",
        "nothing chosen: the recipe stays as chosen on holdout splits"),
    "decision options on the test set (discussion chapter)": Look(
        "bound", "every option of the decision search on the test set: how low choosing on the test set goes",
        "nothing chosen: the recipe stays as chosen on holdout splits"),
    "cross-validation, first round (best-published chapter)": Look(
        "training images only", "six candidates, 3-fold cross-validation", "the first round's choice"),
    "the first round's choice (best-published chapter)": Look(
        "report", "the first round's choice on all training images, five seeds",
        "it missed the chapter's targets; the second round of cross-validation was written down after this look"),
    "ranking check on the test set (best-published chapter)": Look(
        "ranking check", "each first-round candidate once (seed 0): does cross-validation rank as the test set does?",
        "nothing chosen; the second round was written down after this look"),
    "cross-validation, second round (best-published chapter)": Look(
        "training images only", "four more levers on the first round's choice, the same folds", "the final choice"),
    "B, the second round's choice (best-published chapter)": Look(
        "report", "the final choice on all training images, five seeds",
        "nothing chosen; the single-model target is still missed (the next protocol is committed before its runs)"),
    "ensemble members chosen by cross-validation (best-published chapter)": Look(
        "report", "the ensemble's members, chosen by forward selection on out-of-fold predictions",
        "nothing chosen; the third round's protocol was committed after this look, before its runs"),
    "third round: cross-validation (best-published chapter)": Look(
        "training images only", "the third round's candidates on new folds (fold seed 1), clean and under pixel noise",
        "the chosen model and the ensemble's members, by the committed protocol"),
    "third round: the chosen model and the ensemble's members (best-published chapter)": Look(
        "report", "the protocol's one look: the chosen model's five seeds, the ensemble, noise sigma 0.1 to 0.4 "
        "(and the paper's network and B, seed 0 each from stored weights, newly read under sigma 0.1 to 0.3)",
        "nothing chosen: the protocol allows no other look"),
    "fourth round: cross-validation of the distilled students (best-published chapter)": Look(
        "training images only", "two distilled students of the third round's choice on its folds (fold seed 1)",
        "the student whose final runs are reported, by the committed protocol"),
    "fourth round: the distilled student (best-published chapter)": Look(
        "report", "the distillation protocol's one look: the chosen student's five seeds and their error under "
        "pixel noise sigma 0.1 to 0.4", "nothing chosen: the protocol allows no other look"),
}

BASELINES = Look("report", "k-nearest neighbours, logistic regression and an RBF SVM, each parameter chosen on "
                 "an 80/20 holdout split, refit and tested once", "nothing chosen")


def log(groups: Mapping[str, Sequence[Any]], baselines: Sequence[Mapping[str, Any]] = (),
        earlier: Sequence[Any] = ()) -> pd.DataFrame:
    """The test-set log of ``groups`` (name -> runs, as :func:`helpers.experiments.experiment_runs`).

    One row per group in the order of its first new run's training date: the dates, how many runs it
    scored on the test set (a run another group listed first is not counted again), their test
    errors, what the look was for and what was decided after it. ``baselines`` (the classical
    baselines' results) add one row; their entries keep no date. ``earlier``: runs an earlier
    chapter scored already (a chapter's own log then counts them as the book's log does).
    """
    missing = [name for name in groups if name not in LOOKS]
    if missing:
        raise KeyError(f"the test-set log has no entry for {missing}: add it to helpers.testlog.LOOKS")
    seen: set[str] = {r.key for r in earlier}
    rows = []  # first and last training date, experiment, runs scored on the test set, their test errors, look
    for name, runs in groups.items():
        new = [r for r in {r.key: r for r in runs}.values() if r.key not in seen]
        seen.update(r.key for r in runs)
        if new:
            dates = sorted(r.record.get("trained", "")[:16] for r in new)
            errors = [r.errors for r in new if r.job.split == "test"]
            text = (f"{min(errors)}" if len(set(errors)) == 1 else f"{min(errors)}-{max(errors)}") if errors else ""
            rows.append((dates[0], dates[-1], name, len(errors), text, LOOKS[name]))
    if baselines:
        errors = [int(b["test errors"]) for b in baselines]
        rows.append(("not recorded", "not recorded", "classical baselines (human-level chapter)", len(baselines),
                     f"{min(errors)}-{max(errors)}", BASELINES))
    table = pd.DataFrame([{"first trained (UTC)": first, "last trained (UTC)": last, "experiment": name,
                           "runs scored on the test set": count, "test errors": text, "for": look.purpose,
                           "why": look.why, "decided after it": look.decided_after}
                          for first, last, name, count, text, look in rows]
                         ).sort_values("first trained (UTC)", kind="stable").reset_index(drop=True)
    table.index = pd.RangeIndex(1, len(table) + 1, name="#")
    return table


def looks(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`log` that looked at the test set."""
    return table[table["runs scored on the test set"] > 0]


def numbers(table: pd.DataFrame) -> dict[str, Any]:
    """Looks and test-scored runs in all and in the best-published chapter, and the looks made before its second
    round was written down."""
    tested = looks(table)
    chapter = tested[tested["experiment"].str.endswith("(best-published chapter)")]
    second = table.index[table["experiment"] == "cross-validation, second round (best-published chapter)"]
    before = chapter[chapter.index < second[0]] if len(second) else chapter
    return {"log_looks": len(tested), "log_test_runs": int(tested["runs scored on the test set"].sum()),
            "log_best_looks": len(chapter), "log_best_runs": int(chapter["runs scored on the test set"].sum()),
            "log_looks_before_second": len(before),
            "log_runs_before_second": int(before["runs scored on the test set"].sum())}


def chapter_numbers(table: pd.DataFrame) -> dict[str, Any]:
    """:func:`numbers` of one chapter's own log, without ``log_looks`` and ``log_test_runs``: those names
    mean the whole book's log on every page that quotes them."""
    return {key: value for key, value in numbers(table).items() if key not in ("log_looks", "log_test_runs")}
