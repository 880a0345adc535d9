"""The book's statistics, one home: intervals and tests from statsmodels and SciPy, and their text in the tables.

A spread over seeds (a standard deviation, a t-interval) is shown only from :data:`MIN_SEEDS` seeds
on: from one or two it is not an estimate a reader can use, and the tables say "1 seed" or
"2 seeds" in its place (:func:`helpers.evaluate.with_seed_counts`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

#: The fewest seeds from which the book shows a standard deviation or an interval over seeds.
MIN_SEEDS = 3


def errors(probabilities: np.ndarray, labels: np.ndarray) -> int:
    """How many images' most probable digit is not their label."""
    return int((np.asarray(probabilities).argmax(1) != labels).sum())


def wilson_text(errors: int, n: int, between: str = "-") -> str:
    """The Wilson 95 % interval (percent) of ``errors`` in ``n`` images, as the tables print it."""
    low, high = wilson_interval(errors, n)
    return f"{100 * low:.2f}{between}{100 * high:.2f}"


def p_text(value: float) -> str:
    """A p-value to two significant digits, or "< 0.001"."""
    return "< 0.001" if value < 0.001 else f"{value:.2g}"


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` of ``n`` (95 % by default)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    low, high = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    return max(0.0, float(low)), min(1.0, float(high))


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``values`` (over seeds); NaNs for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):  # no spread: the interval is the value (SciPy would warn)
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(level, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return float(low), float(high)


def t_test_p(values: Sequence[float], value: float) -> float:
    """Two-sided p-value of the one-sample t-test that the mean of ``values`` is ``value``."""
    return float(stats.ttest_1samp(np.asarray(values, dtype=float), value).pvalue)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that the means of ``a`` and ``b`` are equal (e.g. two models' seeds)."""
    return float(stats.ttest_ind(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_var=False).pvalue)


def mcnemar_p(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    """Exact McNemar test of two models' predictions ``a`` and ``b`` of the same images."""
    right_a, right_b = a == labels, b == labels
    table = [[int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
             [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))]]
    return float(mcnemar(table, exact=True).pvalue)
