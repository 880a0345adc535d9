"""helpers.stats: the Wilson interval, the t-interval and t-test of a mean, the exact McNemar test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from helpers import stats as hstats


def test_wilson_interval_known_values() -> None:
    low, high = hstats.wilson_interval(1949, 2007)  # the paper's 58 errors
    assert low == pytest.approx(0.96282, abs=1e-5) and high == pytest.approx(0.97757, abs=1e-5)
    assert hstats.wilson_interval(0, 10)[0] == 0.0
    assert hstats.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        hstats.wilson_interval(11, 10)


def test_mean_interval_is_students_t() -> None:
    values = [3.8, 3.9, 4.1, 3.7, 4.0]
    low, high = hstats.mean_interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert (low, high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    assert all(np.isnan(hstats.mean_interval([1.0])))


def test_mcnemar_is_exact_on_discordant_pairs() -> None:
    labels = np.zeros(100, int)
    a, b = labels.copy(), labels.copy()
    assert hstats.mcnemar_p(a, b, labels) == 1.0  # identical predictions: no evidence at all
    b[:10] = 1  # b wrong on 10 images that a gets right, never the reverse
    assert hstats.mcnemar_p(a, b, labels) == pytest.approx(2 * 0.5 ** 10)
    a[10:12] = 1  # two discordant pairs the other way
    assert hstats.mcnemar_p(a, b, labels) == pytest.approx(stats.binomtest(2, 12).pvalue)


def test_t_test_against_the_paper_is_scipys() -> None:
    errors = [100 * e / 2007 for e in (76, 75, 78, 83, 78)]
    assert hstats.t_test_p(errors, 2.89) == pytest.approx(stats.ttest_1samp(errors, 2.89).pvalue)
    assert hstats.t_test_p([2.8, 3.0, 2.9], 2.9) == pytest.approx(1.0)


def test_welch_p_from_its_formula() -> None:
    a = np.array([49, 45, 45, 43, 49]) / 2007 * 100  # two models' seeds, test error (%)
    b = np.array([43, 44, 44, 42, 45]) / 2007 * 100
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert hstats.welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert hstats.welch_p(a, a) == pytest.approx(1.0)
