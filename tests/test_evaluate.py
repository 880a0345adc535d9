"""helpers.evaluate: intervals, scores, tables."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import data, evaluate, paper


def test_score_and_per_class() -> None:
    y = np.repeat(np.arange(10), 10)
    pred = y.copy()
    pred[:3] = 7  # three zeros read as sevens
    result = evaluate.score(y, pred)
    assert (result.errors, result.n) == (3, 100) and result.accuracy == pytest.approx(0.97)
    assert result.interval[0] < 0.97 < result.interval[1]
    per_class = evaluate.per_class_accuracy(y, pred)
    assert per_class[0] == pytest.approx(0.7) and per_class[1:].tolist() == [1.0] * 9
    assert evaluate.confusion(y, pred)[0, 7] == 3
    assert evaluate.top_confusion(evaluate.confusion(y, pred)) == {
        "top_confusion_true": 0, "top_confusion_pred": 7, "top_confusion_count": 3}
    assert evaluate.misclassified(y, pred).tolist() == [0, 1, 2]
    table = evaluate.per_class_table(y, pred)
    assert table.loc[0, "our accuracy"] == 70.0 and table.loc[0, "our errors"] == 3
    assert table.loc[1, "paper accuracy"] == paper.CLASS_ACCURACY[1]


def test_interval_check_against_the_paper() -> None:
    same = evaluate.score(np.zeros(2007, int), np.r_[np.ones(58, int), np.zeros(1949, int)])
    check = evaluate.interval_check(same)
    assert check["ours_in_paper_interval"] and check["paper_in_our_interval"]
    far = evaluate.score(np.zeros(2007, int), np.r_[np.ones(200, int), np.zeros(1807, int)])
    assert not evaluate.interval_check(far)["ours_in_paper_interval"]


def test_distribution_table_matches_paper_on_real_proportions() -> None:
    train = np.repeat(np.arange(10), [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644])
    test = np.repeat(np.arange(10), [359, 264, 198, 166, 200, 160, 170, 147, 166, 177])
    table = evaluate.distribution_table(train, test)
    np.testing.assert_allclose(table.loc["train: ours"], table.loc["train: paper"])
    np.testing.assert_allclose(table.loc["test: ours"], table.loc["test: paper"])
    numbers = evaluate.distribution_numbers(table)
    assert numbers["distribution_matches"] == "all twenty proportions equal the paper's"
    assert (numbers["largest_class"], numbers["smallest_class"]) == (0, 8)
    assert numbers["largest_class_share"] == pytest.approx(16.0)  # 1194 of 7291, rounded to 0.16
    table.loc["test: ours", 3] += 0.01
    assert evaluate.distribution_numbers(table)["distribution_matches"] == "some proportions differ from the paper's"


def test_markdown_table_renders_our_numbers_beside_the_paper() -> None:
    predicted = np.r_[np.ones(83, int), np.zeros(1924, int)]
    table = evaluate.overall_table(evaluate.score(np.zeros(2007, int), predicted))
    text = evaluate.markdown(table).data
    assert "| accuracy (%)" in text and "95.86" in text and str(paper.ACCURACY) in text



def test_a_table_across_keeps_whole_numbers_whole() -> None:
    y = np.repeat(np.arange(10), 10)
    text = evaluate.markdown_across(evaluate.per_class_table(y, y)).data
    lines = text.splitlines()
    assert lines[0].split("|")[1].strip() == "digit" and len(lines) == 2 + 7  # header, rule, seven rows
    images = next(line for line in lines if line.startswith("| images"))
    assert "10.0" not in images and images.count(" 10 ") == 10  # counts stay counts, not 10.0
    accuracy = next(line for line in lines if line.startswith("| our accuracy"))
    assert accuracy.count("100.0") == 10


def test_decision_table_has_one_row_per_decision() -> None:
    rows = [{"decision": "a", "option": "x", "errors": 5}, {"decision": "a", "option": "y", "errors": 4},
            {"decision": "a", "option": "z", "errors": 9}, {"decision": "b", "option": "u", "errors": 3}]
    table = evaluate.decision_table(rows, {"a": "y", "b": "u"}, {"a": "not stated", "b": "u"})
    assert table.index.tolist() == ["a", "b"]
    assert table.loc["a"].tolist() == ["not stated", "**y (4)**", "x (5); z (9)"]
    assert table.loc["b", "also tried"] == "" and table.loc["b", "kept"] == "**u (3)**"

class _InkCounter:
    """A stand-in model: reads an image as 8 when it holds more ink than any clean image, else as 1."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def predict(self, images: np.ndarray, batch_size: int = 0, verbose: int = 0) -> np.ndarray:
        ink = images.reshape(len(images), -1).sum(1)
        return np.eye(10)[np.where(ink > self.limit, 8, 1)] * 0.9 + 0.01


def test_noise_anatomy_finds_where_errors_go() -> None:
    images = np.zeros((50, 16, 16, 1), np.float32)
    images[:, 4:12, 7:9] = 1.0  # a vertical stroke: a 1
    labels = np.ones(50, int)
    table = evaluate.noise_anatomy({"ink": _InkCounter(images[0].sum() + 5)}, images, labels, level=0.4)
    row = table.loc["ink"]
    assert row["error (%)"] == 100 and row["most read as"] == 8 and row["share of errors (%)"] == 100
    assert row["confidence when wrong"] == pytest.approx(0.91)
    assert row["noise in the edge frame only (%)"] == 100  # 60 frame pixels of noise add more than 5 of ink
    assert table.index.name == "model (sigma = 0.4)"
    same = data.add_noise(images, 0.4, seed=3)
    assert np.array_equal(same, data.add_noise(images, 0.4, seed=3)) and same.min() >= 0 and same.max() <= 1


def test_no_spread_is_shown_from_fewer_than_three_seeds() -> None:
    import pandas as pd

    from helpers import stats

    assert stats.MIN_SEEDS == 3
    assert [evaluate.seeds_text(n) for n in (1, 2, 5)] == ["1 seed", "2 seeds", "5 seeds"]
    table = pd.DataFrame({"seeds": [1, 2, 3], "mean (%)": [4.0, 3.0, 2.0], "std (%)": [float("nan"), 0.5, 0.2]},
                         index=[32, 128, 512])
    shown = evaluate.with_seed_counts(table, ["std (%)"])
    assert shown["std (%)"].tolist() == ["1 seed", "2 seeds", 0.2] and table["std (%)"].iloc[1] == 0.5
    assert "nan" not in str(evaluate.markdown(shown).data)
    drawn = evaluate.without_few_seed_spread(table, "std (%)")  # for a figure: no error bar from 1 or 2 seeds
    assert drawn["std (%)"].isna().tolist() == [True, True, False] and drawn["mean (%)"].tolist() == [4.0, 3.0, 2.0]
    # the literature table's rows: one seed, the binomial interval of its score; two, no interval; more, t
    assert evaluate.seed_row("x", [2.0]) == ("x", 2.0, evaluate.binomial_text(2.0))
    assert evaluate.seed_row("x", [2.0, 3.0]) == ("x (mean of 2 seeds)", 2.5, "2 seeds")
    name, mean, interval = evaluate.seed_row("x", [2.0, 3.0, 4.0])
    low, high = stats.mean_interval([2.0, 3.0, 4.0])
    assert (name, mean, interval) == ("x (mean of 3 seeds)", 3.0, f"{low:.2f}-{high:.2f}")


def test_per_class_over_seeds_averages_each_digits_accuracy() -> None:
    from types import SimpleNamespace

    y = np.repeat(np.arange(10), 10)
    one, two = y.copy(), y.copy()
    one[30:34] = 5  # seed 0: four 3s wrong
    two[30:32], two[80:86] = 5, 0  # seed 1: two 3s and six 8s wrong
    runs = [SimpleNamespace(labels=y, predicted=p) for p in (one, two)]
    accuracy = 100 * np.mean([evaluate.per_class_accuracy(r.labels, r.predicted) for r in runs], axis=0)
    assert accuracy[3] == pytest.approx(70.0) and accuracy[8] == pytest.approx(70.0) and accuracy[0] == 100.0
    numbers = evaluate.per_class_over_seeds(runs)
    assert numbers["seeds_n"] == 2 and numbers["seeds_worst_digit"] == 3  # a tie: the first digit
    assert numbers["seeds_worst_digit_acc"] == pytest.approx(70.0) and numbers["seeds_best_digit"] == 0
    diff = accuracy - np.array(paper.CLASS_ACCURACY)
    assert numbers["seeds_far_digit"] == int(np.abs(diff).argmax())
    assert numbers["seeds_far_diff"] == pytest.approx(diff[numbers["seeds_far_digit"]])
    assert numbers["seeds_close"] == int(np.sum(np.abs(diff) <= 1.5))
