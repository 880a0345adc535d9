"""The reproduction's verdict: measurements that attribute the gap to the paper's 97.11 %.

Everything here reads trained runs (from the ledger) and the test labels; nothing is
chosen from these numbers. Error rates are in percent of the 2007 test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import evaluate, paper, stats
from helpers.config import READINGS

RECIPE = "the recipe (our reproduction)"


def error_pct(run: Any) -> float:
    """Test error of a run, in percent."""
    return 100.0 * run.errors / len(run.labels)


def best_epoch(history: Mapping[str, Sequence[float]]) -> tuple[int, float]:
    """The epoch (1-based) with the highest test ("validation") accuracy, and its error in percent."""
    accuracy = np.asarray(history["val_accuracy"])
    epoch = int(accuracy.argmax())
    return epoch + 1, float(100 * (1 - accuracy[epoch]))


#: The columns of :func:`readings_table`, in two groups that the chapter shows as two tables, so that each
#: fits the page: the error over seeds, and the paired test against the recipe with what in the paper's text
#: allows the reading.
READING_ERRORS = ("seeds", "mean (%)", "std (%)", "95 % interval (%)", "min (%)", "max (%)",
                  f"seeds ≤ {paper.ERRORS} errors")
READING_PAIRS = ("McNemar: seeds with p < 0.05", "median p", "what in the paper allows it")


def variant_numbers(variants: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The readings as plain numbers (for ``gap --json``, the chapter's text and :func:`readings_table`)."""
    out = []
    for name, runs in variants.items():
        errors = np.array([error_pct(r) for r in runs])
        out.append({"name": name, "seeds": len(runs), "mean_error": float(errors.mean()),
                    "std_error": float(errors.std(ddof=1)) if len(runs) > 1 else float("nan"),
                    "min_error": float(errors.min()), "max_error": float(errors.max()),
                    "seeds_at_or_below_paper": int(sum(r.errors <= paper.ERRORS for r in runs))})
    return out


def readings_table(variants: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """:func:`variant_numbers` rounded, with the 95 % interval of the mean, paired McNemar tests against the
    recipe's run of the same seed, and what in the paper's text allows each reading (:data:`helpers.config.READINGS`;
    the recipe itself follows the model chapter's choices). With fewer than :data:`helpers.stats.MIN_SEEDS` seeds
    the spread and the interval say "1 seed" or "2 seeds"; the recipe's own row, the reference of the paired
    tests, says "—" there."""
    grounds = {r.name: r.grounds for r in READINGS}
    recipe = {r.job.seed: r for r in variants[RECIPE]}
    rows = []
    for v in variant_numbers(variants):
        name, runs, enough = v["name"], variants[v["name"]], v["seeds"] >= stats.MIN_SEEDS
        low, high = stats.mean_interval([error_pct(r) for r in runs]) if enough else (np.nan, np.nan)
        p = [stats.mcnemar_p(r.predicted, recipe[r.job.seed].predicted, r.labels)
             for r in runs if r.job.seed in recipe] if name != RECIPE else []
        rows.append({"reading": name, "seeds": v["seeds"], "mean (%)": np.round(v["mean_error"], 2),
                     "std (%)": np.round(v["std_error"], 2) if enough else np.nan,
                     "95 % interval (%)": f"{low:.2f}–{high:.2f}",
                     "min (%)": np.round(v["min_error"], 2), "max (%)": np.round(v["max_error"], 2),
                     f"seeds ≤ {paper.ERRORS} errors": v["seeds_at_or_below_paper"],
                     "McNemar: seeds with p < 0.05": f"{sum(x < 0.05 for x in p)} of {len(p)}" if p else "—",
                     "median p": f"{float(np.median(p)):.3f}" if p else "—",
                     "what in the paper allows it": grounds.get(name, "the model chapter's choices")})
    return evaluate.with_seed_counts(pd.DataFrame(rows).set_index("reading"), ["std (%)", "95 % interval (%)"])


def recipe_vs_paper(runs: Sequence[Any]) -> dict[str, float]:
    """The recipe's mean error over seeds, its t-interval, and a one-sample t-test against 2.89 %."""
    errors = np.array([error_pct(r) for r in runs])
    low, high = stats.mean_interval(errors)
    return {"seeds": len(runs), "mean_error": float(errors.mean()), "std_error": float(errors.std(ddof=1)),
            "mean_ci95": [low, high], "t_pvalue": stats.t_test_p(errors, paper.ERROR),
            "gap": float(errors.mean() - paper.ERROR), "gap_images": float(errors.mean() - paper.ERROR)
            * len(runs[0].labels) / 100}


def selection(variants: Mapping[str, Sequence[Any]],
              options: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """What picking on the test set would have printed, from the runs' per-epoch test curves.

    ``best_epoch_*``: each recipe seed stopped at its best test epoch; ``best_seed_error``: the recipe's best
    seed at 100 epochs; ``best_option_error``: the decision option (of the model chapter, ``options``) with the
    lowest mean test error over its seeds; ``test_tuned_error``: the best over every reading, option, seed and
    epoch together (the most optimistic number test-set selection could print).
    """
    recipe = variants[RECIPE]
    options = dict(options or {})
    best = [best_epoch(r.history) for r in recipe]
    unique = {r.key: (name, r) for group in (variants, options) for name, runs in group.items() for r in runs}
    everything = [(name, r.job.seed, *best_epoch(r.history)) for name, r in unique.values()]
    name, seed, epoch, tuned = min(everything, key=lambda t: t[3])
    result = {"best_epoch_error_mean": float(np.mean([e for _, e in best])),
              "best_epoch_error_min": float(min(e for _, e in best)),
              "best_seed_error": float(min(error_pct(r) for r in recipe)),
              "test_tuned_error": tuned, "test_tuned_at": {"reading": name, "seed": seed, "epoch": epoch},
              "runs_searched": len(everything),
              "epochs_searched": int(sum(len(r.history["val_accuracy"]) for _, r in unique.values()))}
    if options:
        means = {name: float(np.mean([error_pct(r) for r in runs])) for name, runs in options.items()}
        chosen = min(means, key=means.__getitem__)
        result |= {"best_option_error": means[chosen], "best_option": chosen,
                   "option_seeds": len(options[chosen]), "options": len(options)}
    return result


def options_table(options: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Each decision option trained on all training images: mean test error over its seeds."""
    rows = [{"option": v["name"], "seeds": v["seeds"], "mean (%)": round(v["mean_error"], 2),
             "min (%)": round(v["min_error"], 2), "max (%)": round(v["max_error"], 2),
             "best epoch on test, mean (%)": round(float(np.mean([best_epoch(r.history)[1]
                                                                 for r in options[v["name"]]])), 2)}
            for v in variant_numbers(options)]
    return pd.DataFrame(rows).set_index("option").sort_values("mean (%)")


def selection_table(sel: Mapping[str, Any], recipe_mean: float) -> pd.DataFrame:
    """The selection measurements as a table beside the paper's 2.89 %."""
    rows = [("the recipe, mean over seeds at epoch 100 (no selection)", recipe_mean),
            ("each seed stopped at its best test epoch, mean", sel["best_epoch_error_mean"]),
            ("the best seed at epoch 100", sel["best_seed_error"]),
            ("the best seed stopped at its best test epoch", sel["best_epoch_error_min"])]
    if "best_option_error" in sel:
        rows.append((f"the best of {sel['options']} decision options on test (mean of {sel['option_seeds']} "
                     f"seeds, epoch 100)", sel["best_option_error"]))
    rows += [(f"the best of {sel['runs_searched']} runs (every reading, option and seed) at its best test epoch",
              sel["test_tuned_error"]), ("the paper", paper.ERROR)]
    table = pd.DataFrame(rows, columns=["what is picked on the test set", "test error (%)"])
    table["errors"] = (table["test error (%)"] * paper.COUNTS["test"] / 100).round().astype(int)
    table["test error (%)"] = table["test error (%)"].round(2)
    return table.set_index("what is picked on the test set")


def per_digit_errors(variants: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Errors per true digit for every (reading, seed), with the paper's Figure 8 as the last row."""
    rows = {(name, r.job.seed): np.bincount(r.labels[r.predicted != r.labels], minlength=10)
            for name, runs in variants.items() for r in runs}
    table = pd.DataFrame(rows, index=pd.Index(paper.DIGITS, name="digit")).T
    table.index.names = ["reading", "seed"]
    labels = next(iter(variants.values()))[0].labels
    table.loc[("the paper (Figure 8)", ""), :] = paper_digit_errors(labels)
    table["total"] = table.sum(axis=1)
    return table.astype(int)


def paper_digit_errors(labels: np.ndarray) -> np.ndarray:
    """The paper's per-digit errors implied by its Figure 8 error rates and the test counts."""
    counts = np.bincount(labels, minlength=10)
    return np.rint(np.array(paper.CLASS_ERROR) * counts / 100).astype(int)


def excess_by_digit(recipe: Sequence[Any]) -> pd.DataFrame:
    """The recipe's mean errors per digit over seeds against the paper's, and each digit's share of the gap."""
    labels = recipe[0].labels
    ours = np.mean([np.bincount(r.labels[r.predicted != r.labels], minlength=10) for r in recipe], axis=0)
    theirs = paper_digit_errors(labels)
    table = pd.DataFrame({"images": np.bincount(labels, minlength=10), "paper errors": theirs,
                          "our mean errors": ours.round(1), "excess": (ours - theirs).round(1)},
                         index=pd.Index(paper.DIGITS, name="digit"))
    table["share of the excess (%)"] = (100 * table["excess"] / table["excess"].sum()).round(0)
    return table


def misreadings(runs: Sequence[Any], digit: int) -> pd.Series:
    """What images of ``digit`` are read as, summed over ``runs``."""
    counts = np.zeros(10, dtype=int)
    for r in runs:
        wrong = (r.labels == digit) & (r.predicted != digit)
        counts += np.bincount(r.predicted[wrong], minlength=10)
    series = pd.Series(counts, index=pd.Index(paper.DIGITS, name="read as"), name=f"misread {digit}s")
    return series[series > 0].sort_values(ascending=False)


@dataclass(frozen=True)
class Overlap:
    """Which test images a family of models misses, and the verdict chapter's numbers about them (``room``: the
    paper's errors beyond the images every model misses)."""

    table: pd.DataFrame
    missed_by_all: np.ndarray  # indices of test images every model misclassifies
    numbers: dict[str, Any]


def overlap(groups: Mapping[str, Mapping[str, np.ndarray]], labels: np.ndarray) -> Overlap:
    """Per group of models: images missed by any, by a majority and by every model of the group,
    and the images missed by every model of every group together."""
    everyone = {f"{g}/{m}": p for g, preds in groups.items() for m, p in preds.items()}
    rows = []
    for name, predictions in [*groups.items(), ("all of the above", everyone)]:
        counts = np.sum([p != labels for p in predictions.values()], axis=0)  # models missing each image
        n = len(predictions)
        rows.append({"models": name, "count": n, "missed by any": int((counts > 0).sum()),
                     "missed by a majority": int((counts > n / 2).sum()), "missed by all": int((counts == n).sum())})
    missed = np.flatnonzero(counts == len(everyone))
    return Overlap(pd.DataFrame(rows).set_index("models"), missed,
                   {"all_models": len(everyone), "missed_by_all": len(missed),
                    "missed_by_all_pct": 100 * len(missed) / len(labels), "room": paper.ERRORS - len(missed)})


def baseline_overlap(recipe: Sequence[Any], baselines: Mapping[str, np.ndarray], digit: int) -> pd.DataFrame:
    """Of the images of ``digit`` that most recipe seeds miss, how many each baseline misses too."""
    labels = recipe[0].labels
    hard = mostly_missed(recipe, digit)
    rows = [{"model": name, f"{digit}s the recipe's seeds mostly miss": len(hard),
             "missed by this model too": int(np.sum(pred[hard] != labels[hard])),
             f"all {digit}s this model misses": int(np.sum((labels == digit) & (pred != labels)))}
            for name, pred in baselines.items()]
    return pd.DataFrame(rows).set_index("model")


def baseline_numbers(shared: pd.DataFrame) -> dict[str, int]:
    """The verdict chapter's numbers from :func:`baseline_overlap`: the hard images, and how many of them the
    nearest-neighbour rule and the support vector machine miss too."""
    hard = next(c for c in shared.columns if "mostly miss" in c)
    return {"hard_threes": int(shared[hard].iloc[0]),
            "knn_too": int(shared.loc["k-nearest neighbours", "missed by this model too"]),
            "svm_too": int(shared.loc["RBF support vector machine", "missed by this model too"])}


def error_verdict(recipe: Mapping[str, Any], at_or_below: int) -> str:
    """Reproduced if the recipe's 95 % interval over seeds holds the paper's error, partly if a seed reaches it."""
    low, high = recipe["mean_ci95"]
    if low <= paper.ERROR <= high:
        return "reproduced"
    return "partly" if at_or_below else "not reproduced"


def summary(variants: Mapping[str, Sequence[Any]],
            options: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """``python -m helpers gap --json``: the recipe against the paper, the readings, the selection."""
    recipe = recipe_vs_paper(variants[RECIPE])
    sel = selection(variants, options)
    return {"paper_error": paper.ERROR,
            "recipe": {k: recipe[k] for k in ("seeds", "mean_error", "std_error", "mean_ci95")},
            "variants": [v for v in variant_numbers(variants) if v["name"] != RECIPE],
            "selection": {k: sel[k] for k in ("best_epoch_error_mean", "best_epoch_error_min", "best_seed_error",
                                              "best_option_error", "best_option", "test_tuned_error") if k in sel}}


def verdict_table(recipe_runs: Sequence[Any], train_labels: np.ndarray, test_labels: np.ndarray,
                  recipe_config: Any, history: Mapping[str, Sequence[float]], tolerance: float = 1.5) -> pd.DataFrame:
    """One row per claim of the paper: its value, ours, and reproduced / partly / not reproduced, from the
    recipe's seed runs. Per-digit accuracies count as reproduced within ``tolerance`` percentage points (about
    two images of the rarest digit)."""
    counts = (len(train_labels), len(test_labels))
    proportions = [np.round(np.bincount(y, minlength=10) / len(y), 2) for y in (train_labels, test_labels)]
    same_props = int(sum(np.isclose(p, paper.DISTRIBUTION[s]).sum() for p, s in zip(proportions, ("train", "test"))))
    recipe = recipe_vs_paper(recipe_runs)
    at_paper = sum(r.errors <= paper.ERRORS for r in recipe_runs)
    digits = evaluate.per_class_over_seeds(recipe_runs, tolerance)
    close, far, best, worst = (digits[k] for k in ("seeds_close", "seeds_far_digit", "seeds_best_digit",
                                                  "seeds_worst_digit"))
    over = f"mean of {len(recipe_runs)} seeds"  # the cells say which runs they average: the intro shows no evidence
    p_best, p_worst = int(np.argmax(paper.CLASS_ACCURACY)), int(np.argmin(paper.CLASS_ACCURACY))
    train_acc, test_acc = 100 * history["accuracy"][-1], 100 * history["val_accuracy"][-1]
    errors = [r.errors for r in recipe_runs]
    rows = {  # claim: (verdict, evidence, the paper's value, ours)
        "dataset and split": (
            "reproduced" if counts == (paper.COUNTS["train"], paper.COUNTS["test"]) else "not reproduced",
            "the same two files, counted", f"{paper.COUNTS['train']} / {paper.COUNTS['test']} images",
            f"{counts[0]} / {counts[1]} images"),
        "class proportions (Figure 3)": (
            "reproduced" if same_props == 20 else "partly", "proportions rounded to two decimals",
            "20 proportions", f"{same_props} of 20 equal"),
        "architecture (Figure 1)": (
            "partly", "the layer stack as stated; filters, widths, rates, padding and optimizer are not stated "
            "and were decided on the training images (model chapter)",
            "conv 5×5 + Leaky ReLU, pool 2×2, flatten, dense, dropout, softmax",
            f"the same stack; {recipe_config.filters} filters, dense {recipe_config.dense_units}, "
            f"dropout {recipe_config.dropout}"),
        "training: 100 epochs, batch 256": (
            "reproduced", "used as stated", f"{paper.EPOCHS} epochs, batch {paper.BATCH_SIZE}",
            f"{recipe_config.epochs} epochs, batch {recipe_config.batch_size}"),
        "overall accuracy 97.11 % (58 errors)": (
            error_verdict(recipe, at_paper),
            f"{recipe['seeds']} seeds; 95 % interval of the mean error {recipe['mean_ci95'][0]:.2f} to "
            f"{recipe['mean_ci95'][1]:.2f} %; {at_paper} of {recipe['seeds']} seeds at ≤ {paper.ERRORS} errors",
            f"{paper.ACCURACY} % ({paper.ERRORS} errors)",
            f"{100 - recipe['mean_error']:.2f} %, {over} ({min(errors)} to {max(errors)} errors)"),
        "per-digit accuracy (Figure 8)": (
            "reproduced" if close == 10 else "partly" if close >= 5 else "not reproduced",
            f"each digit's accuracy averaged over the {len(recipe_runs)} seeds, against Figure 8",
            f"ten digits, {min(paper.CLASS_ACCURACY)} % to {max(paper.CLASS_ACCURACY)} %",
            f"{over}: {close} of 10 within ±{tolerance}; digit {far} off by {digits['seeds_far_diff']:+.1f} points"),
        "best and worst digit (Figure 8)": (
            "reproduced" if (best, worst) == (p_best, p_worst) else "partly" if best == p_best or worst == p_worst
            else "not reproduced", f"each digit's accuracy averaged over the {len(recipe_runs)} seeds",
            f"best {p_best}, worst {p_worst}", f"{over}: best {best}, worst {worst}"),
        "curves (Figure 7): little gap between training and validation": (
            "partly", "the paper's model, seed 0, epoch 100; the shapes agree, the gap is wider",
            '"there should not be much differences"',
            f"seed 0: training {train_acc:.1f} %, test {test_acc:.1f} % accuracy"),
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["verdict", "evidence", "paper", "this book"])
    return table.rename_axis("the paper's claim")[["paper", "this book", "verdict", "evidence"]]


def selection_numbers(sel: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the verdict chapter quotes from :func:`selection`, by name."""
    numbers = {"sel_epoch_mean": sel["best_epoch_error_mean"], "sel_epoch_min": sel["best_epoch_error_min"],
               "sel_best_seed": sel["best_seed_error"], "sel_tuned": sel["test_tuned_error"],
               "sel_tuned_reading": sel["test_tuned_at"]["reading"], "sel_tuned_seed": sel["test_tuned_at"]["seed"],
               "sel_tuned_epoch": sel["test_tuned_at"]["epoch"], "sel_runs": sel["runs_searched"],
               "sel_epochs": sel["epochs_searched"],
               "sel_recipe_short": sel["best_epoch_error_min"] - paper.ERROR}
    if "best_option_error" in sel:
        numbers |= {"option_seeds": sel["option_seeds"], "n_options": sel["options"] - 1,
                    "best_option": sel["best_option"], "best_option_error": sel["best_option_error"],
                    "option_short": sel["best_option_error"] - paper.ERROR}
    return numbers


def reading_numbers(variants: Mapping[str, Sequence[Any]], names: Sequence[str]) -> dict[str, Any]:
    """``reading1_mean``, … for the readings ``names`` in order; the readings whose 95 % interval holds 2.89 %."""
    numbers: dict[str, Any] = {}
    by_name = {v["name"]: v for v in variant_numbers(variants)}
    for i, name in enumerate(names, start=1):
        v = by_name[name]
        numbers |= {f"reading{i}_mean": v["mean_error"], f"reading{i}_std": v["std_error"], f"reading{i}_min": v["min_error"],
                    f"reading{i}_at": v["seeds_at_or_below_paper"], f"reading{i}_seeds": v["seeds"]}
    holding = [name for name, runs in variants.items() if holds_paper(runs)]
    numbers |= {"readings_holding_paper": ", ".join(f"“{n}”" for n in holding) or "none",
                "n_readings_holding": len(holding)}
    return numbers


def recipe_numbers(runs: Sequence[Any]) -> dict[str, Any]:
    """The recipe-against-the-paper numbers the verdict chapter quotes, by name."""
    recipe = recipe_vs_paper(runs)
    return {"rec_seeds": recipe["seeds"], "rec_mean": recipe["mean_error"], "rec_std": recipe["std_error"],
            "rec_low": recipe["mean_ci95"][0], "rec_high": recipe["mean_ci95"][1], "rec_p": recipe["t_pvalue"],
            "gap_points": recipe["gap"], "gap_images": recipe["gap_images"],
            "rec_min_errors": min(r.errors for r in runs), "rec_max_errors": max(r.errors for r in runs)}


def excess_numbers(excess: pd.DataFrame) -> dict[str, Any]:
    """Names for :func:`excess_by_digit`: the digit with the largest excess and the totals."""
    top = excess["excess"].idxmax()
    return {"top_digit": int(top), "top_excess": float(excess.loc[top, "excess"]),
            "top_share": float(excess.loc[top, "share of the excess (%)"]),
            "top_paper": int(excess.loc[top, "paper errors"]), "top_ours": float(excess.loc[top, "our mean errors"]),
            "total_excess": float(excess["excess"].sum()), "paper_implied": int(excess["paper errors"].sum())}


def mostly_missed(runs: Sequence[Any], digit: int) -> np.ndarray:
    """Indices of the test images of ``digit`` that a majority of ``runs`` misclassify."""
    labels = runs[0].labels
    counts = np.sum([r.predicted != labels for r in runs], axis=0)
    return np.flatnonzero((labels == digit) & (counts > len(runs) / 2))


def digit_numbers(per_digit: pd.DataFrame, misread: pd.Series, digit: int, compare: str) -> dict[str, Any]:
    """One digit: the recipe's range over seeds, its commonest misreading, and reading ``compare``'s mean errors."""
    # Select by level name, never ``.loc[reading, digit]``: on the (reading, seed) index pandas
    # reads an integer digit as a *seed*, which picked one seed's row instead of a column.
    def column(reading: str) -> pd.Series:
        return per_digit.xs(reading, level="reading")[digit]

    ours = column(RECIPE)
    return {"threes_min": int(ours.min()), "threes_max": int(ours.max()), "threes_as": int(misread.index[0]),
            "threes_as_share": float(100 * misread.iloc[0] / misread.sum()),
            "threes_aug": float(column(compare).mean())}


def holds_paper(runs: Sequence[Any]) -> bool:
    """Whether the 95 % interval of the mean error over ``runs`` holds the paper's 2.89 %."""
    low, high = stats.mean_interval([error_pct(r) for r in runs])
    return bool(low <= paper.ERROR <= high)


def profile_numbers(per_digit: pd.DataFrame, reading: str, top: int = 4) -> dict[str, Any]:
    """How the paper's per-digit errors compare with every run, and where ``reading`` gains most:
    ``runs_min_3``/``runs_max_0``/``runs_min_1``: the fewest 3s, most 0s and fewest 1s any run misreads (the
    paper's Figure 8 implies 2, 10 and 3); ``gain_digits``: the ``top`` digits whose mean errors ``reading``
    lowers most against the recipe, with the mean gain."""
    runs = per_digit.drop(index=("the paper (Figure 8)", "")).drop(columns="total")
    gain = (runs.xs(RECIPE, level="reading").mean() - runs.xs(reading, level="reading").mean()).sort_values(
        ascending=False)
    paper_row = per_digit.loc[("the paper (Figure 8)", "")]
    return {"runs_total": len(runs), "runs_min_3": int(runs[3].min()), "runs_max_0": int(runs[0].max()),
            "runs_min_1": int(runs[1].min()), "paper_3": int(paper_row[3]), "paper_0": int(paper_row[0]),
            "paper_1": int(paper_row[1]),
            "gain_digits": ", ".join(f"{int(d)} ({g:.1f})" for d, g in gain.head(top).items())}
