"""Metrics, confidence intervals and the paper-beside-ours tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from IPython.display import Markdown
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from helpers import data, paper, stats


@dataclass(frozen=True)
class Score:
    """Overall result on a labelled set."""

    n: int
    errors: int
    accuracy: float  # fraction
    interval: tuple[float, float]  # 95 % Wilson interval of the accuracy


def score(y_true: np.ndarray, y_pred: np.ndarray) -> Score:
    """Accuracy, error count and 95 % interval of predictions."""
    accuracy = float(accuracy_score(y_true, y_pred))
    n = len(y_true)
    errors = int((y_true != y_pred).sum())
    return Score(n, errors, accuracy, stats.wilson_interval(n - errors, n))


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Fraction of each digit's images classified correctly (the paper's class accuracy = recall)."""
    return np.asarray(recall_score(y_true, y_pred, labels=list(paper.DIGITS), average=None))


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The 10x10 confusion matrix, rows = true digit, columns = predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(paper.DIGITS))


def top_confusion(matrix: np.ndarray) -> dict[str, int]:
    """The most frequent confusion of a :func:`confusion` matrix: true digit, predicted digit, count."""
    off_diagonal = matrix - np.diag(np.diag(matrix))
    true_digit, predicted_digit = np.unravel_index(off_diagonal.argmax(), matrix.shape)
    return {"top_confusion_true": int(true_digit), "top_confusion_pred": int(predicted_digit),
            "top_confusion_count": int(off_diagonal.max())}


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Figure 8 rebuilt: the paper's per-class accuracy and error rate beside ours (percent)."""
    ours = 100 * per_class_accuracy(y_true, y_pred)
    table = pd.DataFrame({
        "paper accuracy": paper.CLASS_ACCURACY, "our accuracy": ours.round(1),
        "paper error rate": paper.CLASS_ERROR, "our error rate": (100 - ours).round(1),
    }, index=pd.Index(paper.DIGITS, name="digit"))
    table["difference (ours - paper)"] = (table["our accuracy"] - table["paper accuracy"]).round(1)
    table["images"] = np.bincount(y_true, minlength=10)
    table["our errors"] = np.bincount(y_true[y_true != y_pred], minlength=10)
    return table


def distribution_table(train_labels: np.ndarray, test_labels: np.ndarray) -> pd.DataFrame:
    """Figure 3 rebuilt: each digit's proportion per set, the paper's beside ours."""
    rows = {}
    for split, labels in (("train", train_labels), ("test", test_labels)):
        counts = np.bincount(labels, minlength=10)
        rows[f"{split}: count"] = counts
        rows[f"{split}: ours"] = (counts / counts.sum()).round(2)
        rows[f"{split}: paper"] = paper.DISTRIBUTION[split]
    return pd.DataFrame(rows, index=pd.Index(paper.DIGITS, name="digit")).T


def distribution_numbers(distribution: pd.DataFrame) -> dict[str, Any]:
    """What the data chapter quotes from :func:`distribution_table`: whether all twenty proportions
    equal the paper's, and the training set's most and least frequent digit with their shares (%)."""
    matches = all(np.allclose(distribution.loc[f"{split}: ours"], distribution.loc[f"{split}: paper"])
                  for split in ("train", "test"))
    share = distribution.loc["train: ours"]
    return {"distribution_matches": "all twenty proportions equal the paper's" if matches
            else "some proportions differ from the paper's",
            "largest_class": int(share.idxmax()), "largest_class_share": float(share.max() * 100),
            "smallest_class": int(share.idxmin()), "smallest_class_share": float(share.min() * 100)}


def misclassified(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Indices of the misclassified images, in file order."""
    return np.flatnonzero(y_true != y_pred)


def seeds_text(n: int) -> str:
    """What a table says where a spread over fewer than :data:`helpers.stats.MIN_SEEDS` seeds would stand."""
    return f"{n} seed{'' if n == 1 else 's'}"


def with_seed_counts(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` with its spread ``columns`` (a std, an interval over seeds) replaced by "1 seed" / "2 seeds" in
    rows with fewer than :data:`helpers.stats.MIN_SEEDS` ``seeds``: no spread from so few, no cell says ``nan``."""
    few = table["seeds"] < stats.MIN_SEEDS
    out = table.copy()
    for column in columns:
        out[column] = [seeds_text(int(n)) if short else value
                       for value, n, short in zip(table[column], table["seeds"], few)]
    return out


def without_few_seed_spread(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``table`` with ``column`` (a std) emptied below :data:`helpers.stats.MIN_SEEDS` seeds: a figure draws no bar."""
    return table.assign(**{column: table[column].where(table["seeds"] >= stats.MIN_SEEDS)})


def markdown(table: pd.DataFrame, floatfmt: str = "g") -> Markdown:
    """A table as Markdown, which renders in Jupyter, the HTML book and the PDF alike."""
    return Markdown(table.to_markdown(floatfmt=floatfmt))


def markdown_across(table: pd.DataFrame, floatfmt: str = ".1f") -> Markdown:
    """A table of ten short rows (one per digit) turned across the page, where it fits in a few lines; whole
    numbers stay whole, floats get ``floatfmt``."""
    cells = pd.DataFrame({column: [f"{v:{floatfmt}}" if pd.api.types.is_float_dtype(table[column]) else str(v)
                                   for v in table[column]] for column in table.columns}, index=table.index)
    across = cells.T.rename_axis(table.index.name or "")
    return Markdown(across.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * len(table)))


def images_and_score(run: "Run") -> tuple[np.ndarray, Score]:  # noqa: F821
    """The 2007 test images a test-split :class:`helpers.store.Run` predicted (its stored labels checked against
    the test file's), and the run's overall score."""
    if run.job.split != "test":
        raise ValueError(f"{run.key} predicts {run.job.split} images, not the test set")
    images, labels = data.load_usps("test", scale=run.job.config.scale)
    if not (labels == run.labels).all():
        raise ValueError(f"{run.key}: its stored labels are not those of the test file")
    return images, score(labels, run.predicted)


def interval_check(ours: Score) -> dict[str, bool | tuple[float, float]]:
    """Whether our accuracy lies in the paper's 95 % interval, and the paper's in ours."""
    paper_interval = stats.wilson_interval(ours.n - paper.ERRORS, ours.n)
    paper_accuracy = 1 - paper.ERRORS / ours.n
    return {"paper_interval": paper_interval,
            "ours_in_paper_interval": paper_interval[0] <= ours.accuracy <= paper_interval[1],
            "paper_in_our_interval": ours.interval[0] <= paper_accuracy <= ours.interval[1]}


def decision_table(rows: list[dict], chosen: dict[str, str], paper_says: dict[str, str]) -> pd.DataFrame:
    """One row per decision: the paper's word, the option kept, the others tried (holdout errors summed over seeds)."""
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        entry = table.setdefault(row["decision"], {"the paper says": paper_says[row["decision"]],
                                                   "kept": "", "also tried": ""})
        cell = f"{row['option']} ({row['errors']})"
        if chosen[row["decision"]] == row["option"]:
            entry["kept"] = f"**{cell}**"
        else:
            tried = entry["also tried"]
            entry["also tried"] = f"{tried}; {cell}" if tried else cell
    return pd.DataFrame(table).T.rename_axis("decision")


def overall_table(ours: Score) -> pd.DataFrame:
    """:func:`headline` as a table: the paper's overall result beside ours."""
    h = headline(ours)
    return pd.DataFrame(
        {"paper": [paper.ACCURACY, paper.ERROR, paper.ERRORS, f"{h['paper_low']:.2f} to {h['paper_high']:.2f}"],
         "ours": [round(h["our_accuracy"], 2), round(h["our_error"], 2), ours.errors,
                  f"{h['our_low']:.2f} to {h['our_high']:.2f}"]},
        index=["accuracy (%)", "error rate (%)", "misclassified images", "95 % interval of the accuracy (%)"])


def headline(ours: Score) -> dict[str, float | int | str]:
    """The overall numbers the chapters quote: rates in percent, errors as image counts (the paper's own:
    :func:`helpers.book.constants`)."""
    paper_low, paper_high = interval_check(ours)["paper_interval"]  # type: ignore[misc]
    return {"our_accuracy": 100 * ours.accuracy, "our_error": 100 * (1.0 - ours.accuracy),
            "our_errors": ours.errors, "our_low": 100 * ours.interval[0], "our_high": 100 * ours.interval[1],
            "paper_low": 100 * paper_low, "paper_high": 100 * paper_high,
            "interval_width": 100 * (paper_high - paper_low), "half_width": 50 * (paper_high - paper_low),
            "accuracy_difference": 100 * ours.accuracy - paper.ACCURACY, "error_difference": ours.errors - paper.ERRORS}


def per_class_numbers(table: pd.DataFrame) -> dict[str, float | int]:
    """The per-digit numbers the chapters quote, from :func:`per_class_table`."""
    worst, best = table["our accuracy"].idxmin(), table["our accuracy"].idxmax()
    paper_best, paper_worst = int(np.argmax(paper.CLASS_ACCURACY)), int(np.argmin(paper.CLASS_ACCURACY))
    images = table["images"]
    return {"best_digit": int(best), "best_digit_acc": float(table.loc[best, "our accuracy"]),
            "worst_digit": int(worst), "worst_digit_acc": float(table.loc[worst, "our accuracy"]),
            "paper_best_digit": paper_best, "paper_best_acc": paper.CLASS_ACCURACY[paper_best],
            "paper_worst_digit": paper_worst, "paper_worst_acc": paper.CLASS_ACCURACY[paper_worst],
            "class_min_n": int(images.min()), "class_max_n": int(images.max()),
            "one_image_max": float(100 / images.min()), "one_image_min": float(100 / images.max()),
            "max_abs_class_diff": float(table["difference (ours - paper)"].abs().max()),
            "our_class_err_min": float(table["our error rate"].min()),
            "our_class_err_max": float(table["our error rate"].max()), "paper_class_err_min": min(paper.CLASS_ERROR),
            "paper_implied_errors": int(round(sum(e / 100 * n for e, n in zip(paper.CLASS_ERROR, images))))}


def per_class_over_seeds(runs: Sequence[Any], tolerance: float = 1.5) -> dict[str, float | int]:
    """Each digit's accuracy (%) averaged over ``runs`` (seeds), as the verdict table (and so the introduction)
    and the evaluation chapter quote it: the best and the worst digit, the digit farthest from the paper's
    Figure 8 and its difference, and how many digits lie within ``tolerance`` points of the paper."""
    accuracy = 100 * np.mean([per_class_accuracy(r.labels, r.predicted) for r in runs], axis=0)
    diff = accuracy - np.array(paper.CLASS_ACCURACY)
    best, worst, far = int(accuracy.argmax()), int(accuracy.argmin()), int(np.abs(diff).argmax())
    return {"seeds_n": len(runs), "seeds_best_digit": best, "seeds_best_digit_acc": float(accuracy[best]),
            "seeds_worst_digit": worst, "seeds_worst_digit_acc": float(accuracy[worst]),
            "seeds_far_digit": far, "seeds_far_diff": float(diff[far]),
            "seeds_close": int(np.sum(np.abs(diff) <= tolerance))}


def literature_table(ours: Sequence[tuple[str, float, str]]) -> pd.DataFrame:
    """Published results on this split (:data:`helpers.paper.LITERATURE`, the binomial interval of
    that many errors of 2007) beside the book's ``ours``: ``(name, error %, 95 % interval text)``."""
    rows = [{"result": name, "source": key, "test error (%)": error, "95 % interval (%)": binomial_text(error)}
            for key, (name, error) in paper.LITERATURE.items()]
    rows += [{"result": name, "source": "this book", "test error (%)": round(error, 2), "95 % interval (%)": text}
             for name, error, text in ours]
    return pd.DataFrame(rows).sort_values("test error (%)", ascending=False).set_index("result")


def binomial_text(error: float, n: int = paper.COUNTS["test"]) -> str:
    """The Wilson 95 % interval (percent) of an error rate of ``error`` % on ``n`` images, as text."""
    return stats.wilson_text(round(error / 100 * n), n)


def seed_row(name: str, rates: Sequence[float]) -> tuple[str, float, str]:
    """A row of :func:`literature_table` for a model over seeds: mean error and the t-interval of the mean
    (one seed: the binomial interval of its test score; two seeds: no interval, "2 seeds", since a
    t-interval from two values is too wide to read, e.g. 0.01-5.07 % around 2.54 %)."""
    if len(rates) < 2:
        return name, float(rates[0]), binomial_text(rates[0])
    if len(rates) < stats.MIN_SEEDS:
        return f"{name} (mean of {len(rates)} seeds)", float(np.mean(rates)), seeds_text(len(rates))
    low, high = stats.mean_interval(rates)
    return f"{name} (mean of {len(rates)} seeds)", float(np.mean(rates)), f"{low:.2f}-{high:.2f}"


def per_class_change(y_true: np.ndarray, before: np.ndarray, after: np.ndarray, names: tuple[str, str]) -> pd.DataFrame:
    """Per-digit accuracy (percent) of two sets of predictions and the change, digits as columns."""
    table = pd.DataFrame({f"{name} (%)": per_class_table(y_true, predicted)["our accuracy"]
                          for name, predicted in zip(names, (before, after))})
    table["change"] = (table.iloc[:, 1] - table.iloc[:, 0]).round(1)
    return table.T


def _error(model: "keras.Model", images: np.ndarray, labels: np.ndarray) -> float:  # noqa: F821
    return 100 * float((model.predict(images, batch_size=1024, verbose=0).argmax(1) != labels).mean())


def noise_robustness(models: dict[str, "keras.Model"], images: np.ndarray, labels: np.ndarray,  # noqa: F821
                     levels: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4), seed: int = 0) -> pd.DataFrame:
    """Test error (percent) of each model on the test images with Gaussian pixel noise of standard deviation
    ``level`` added to images in [0, 1] and clipped back; the same noise draw for every model."""
    rows = {}
    for level in levels:
        noisy = data.add_noise(images, level, seed)
        rows[level] = {name: _error(model, noisy, labels) for name, model in models.items()}
    return pd.DataFrame(rows).T.rename_axis("noise standard deviation")


def robustness_numbers(noisy: pd.DataFrame) -> dict[str, Any]:
    """What the human-level chapter quotes from :func:`noise_robustness` at the strongest noise: the
    paper's network (first column) against the ladder's final model (second), and which of the final
    model's changes alone (the other columns, ``recipe + <change>``) reads noisy digits worst and best."""
    strongest = noisy.iloc[-1]
    paper_error, final_error = float(strongest.iloc[0]), float(strongest.iloc[1])
    alone = strongest.iloc[2:]
    return {"noise_max": float(noisy.index.max()), "noise_paper": paper_error, "noise_final": final_error,
            "noise_ratio": final_error / paper_error,
            "noise_worst_alone": str(alone.idxmax()).removeprefix("recipe + "), "noise_worst_alone_error": float(alone.max()),
            "noise_best_alone": str(alone.idxmin()).removeprefix("recipe + "), "noise_best_alone_error": float(alone.min())}


def noise_anatomy(models: dict[str, "keras.Model"], images: np.ndarray, labels: np.ndarray,  # noqa: F821
                  level: float = 0.4) -> pd.DataFrame:
    """Where each model's errors under pixel noise go, and which part of the noise causes them: the error with
    noise everywhere; the digit most misreadings are read as and their share; the mean confidence of the wrong
    answers; the error with the same noise only on the background (the digit's ink untouched) and only in a
    2-pixel frame at the edge; and with a flat grey background of the noise's mean level, without speckle. The noise is
    :func:`helpers.data.add_noise`'s draw of seed 0, as in :func:`noise_robustness`."""
    noisy = data.add_noise(images, level)
    ink = images > 0
    background_only = np.where(ink, images, noisy)
    frame = np.zeros_like(ink)
    frame[:, :2], frame[:, -2:], frame[:, :, :2], frame[:, :, -2:] = True, True, True, True
    frame_only = np.where(frame, noisy, images)
    grey = np.where(ink, images, float(noisy[~ink].mean()))
    rows = {}
    for name, model in models.items():
        p = model.predict(noisy, batch_size=1024, verbose=0)
        wrong = p.argmax(1) != labels
        counts = np.bincount(p.argmax(1)[wrong], minlength=10)
        rows[name] = {"error (%)": round(100 * float(wrong.mean()), 1), "most read as": int(counts.argmax()),
                      "share of errors (%)": round(100 * counts.max() / max(1, wrong.sum()), 0),
                      "confidence when wrong": round(float(p.max(1)[wrong].mean()), 2),
                      "noise on background only (%)": round(_error(model, background_only, labels), 1),
                      "noise in the edge frame only (%)": round(_error(model, frame_only, labels), 1),
                      "grey background, no speckle (%)": round(_error(model, grey, labels), 1)}
    return pd.DataFrame(rows).T.rename_axis(f"model (sigma = {level})")


def history_numbers(history: dict[str, list[float]]) -> dict[str, float | int]:
    """The numbers the training chapter quotes from a Keras history (accuracies in percent)."""
    val_loss = history["val_loss"]
    return {"final_train_acc": 100 * history["accuracy"][-1], "final_val_acc": 100 * history["val_accuracy"][-1],
            "final_train_loss": history["loss"][-1], "final_val_loss": val_loss[-1],
            "best_val_loss_epoch": 1 + int(np.argmin(val_loss)), "best_val_loss": float(np.min(val_loss))}
