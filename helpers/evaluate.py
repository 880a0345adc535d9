"""Metrics, confidence intervals and the paper-beside-ours tables."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from IPython.display import Markdown
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

from helpers import paper


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """Overall result on a labelled set."""

    n: int
    errors: int
    accuracy: float  # fraction
    interval: tuple[float, float]  # 95 % Wilson interval of the accuracy

    @property
    def error_rate(self) -> float:
        return 1.0 - self.accuracy


def score(y_true: np.ndarray, y_pred: np.ndarray) -> Score:
    """Accuracy, error count and 95 % interval of predictions."""
    accuracy = float(accuracy_score(y_true, y_pred))
    n = len(y_true)
    errors = int(round(n * (1 - accuracy)))
    return Score(n, errors, accuracy, wilson_interval(n - errors, n))


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Fraction of each digit's images classified correctly (the paper's class accuracy = recall)."""
    return np.asarray(recall_score(y_true, y_pred, labels=list(paper.DIGITS), average=None))


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The 10x10 confusion matrix, rows = true digit, columns = predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(paper.DIGITS))


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


def misclassified(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Indices of the misclassified images, in file order."""
    return np.flatnonzero(y_true != y_pred)


def markdown(table: pd.DataFrame, floatfmt: str = "g") -> Markdown:
    """A table as Markdown, which renders in Jupyter, the HTML book and the PDF alike."""
    return Markdown(table.to_markdown(floatfmt=floatfmt))
