"""The test-set log: every look at the test set, in order, a shared run counted once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import testlog
from helpers.config import BASELINE
from helpers.job import Job
from helpers.store import Run

LABELS = np.repeat(np.arange(10), 20)


def run(config, seed: int, split: str, trained: str, errors: int = 3) -> Run:
    predicted = LABELS.copy()
    predicted[:errors] = (LABELS[:errors] + 1) % 10
    job = Job(config, seed, split)
    return Run(job, job.key(), Path("."), {}, 1.0, np.eye(10)[predicted], LABELS, "ledger",
               {"trained": trained + " UTC"})


def test_log_orders_experiments_by_date_and_counts_a_shared_run_once() -> None:
    smooth, averaged = BASELINE.with_(label_smoothing=0.1), BASELINE.with_(label_smoothing=0.1, weight_average=0.99)
    first = [run(smooth, s, "test", f"2026-11-27 23:0{s}:00", errors=40 + s) for s in range(5)]
    groups = {
        "cross-validation, first round (best-published chapter)":
            [run(smooth, 0, f"cv3-{f}", f"2026-11-27 22:1{f}:00") for f in range(3)],
        "cross-validation, second round (best-published chapter)":
            [run(averaged, 0, f"cv3-{f}", f"2026-11-28 01:2{f}:00") for f in range(3)],
        "the first round's choice (best-published chapter)": first,
        "B, the second round's choice (best-published chapter)":
            [run(averaged, s, "test", f"2026-11-28 02:1{s}:00", errors=44) for s in range(5)],
        # seed 0 of the first choice again (one look), and one candidate of its own
        "ranking check on the test set (best-published chapter)":
            [first[0], run(BASELINE, 0, "test", "2026-11-27 23:30:00", errors=50)],
    }
    table = testlog.log(groups, [{"test errors": 95}, {"test errors": 110}])
    assert list(table["experiment"])[:4] == ["cross-validation, first round (best-published chapter)",
                                              "the first round's choice (best-published chapter)",
                                              "ranking check on the test set (best-published chapter)",
                                              "cross-validation, second round (best-published chapter)"]
    assert list(table["runs scored on the test set"]) == [0, 5, 1, 0, 5, 2]  # the shared seed-0 run once
    assert table.loc[2, "test errors"] == "40-44" and table.loc[5, "test errors"] == "44"
    assert table.iloc[-1]["first trained (UTC)"] == "not recorded"  # the baselines keep no date
    numbers = testlog.numbers(table)
    assert numbers["log_looks"] == 4 and numbers["log_test_runs"] == 13
    assert (numbers["log_best_looks"], numbers["log_best_runs"]) == (3, 11)
    assert (numbers["log_looks_before_second"], numbers["log_runs_before_second"]) == (2, 6)
    # a run an earlier chapter scored is not counted again
    again = testlog.log(groups, earlier=[groups["ranking check on the test set (best-published chapter)"][1]])
    assert list(again["runs scored on the test set"]) == [0, 5, 0, 5] and testlog.numbers(again)["log_test_runs"] == 10


def test_log_refuses_an_experiment_it_has_no_entry_for() -> None:
    with pytest.raises(KeyError, match="testlog.LOOKS"):
        testlog.log({"a new experiment": [run(BASELINE, 0, "test", "2026-12-01 10:00:00")]})
