"""`make retrain RUNS=...`: a subset of the ledger, chosen by key, group or --unverified, and a
report that keeps the earlier report's evidence for the runs this call did not retrain."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from helpers import ledger, ledger_cli


def _job(key: str) -> SimpleNamespace:
    return SimpleNamespace(key=lambda: key)


KEYS = ["aaaaaaaa11112222", "aaaaaaaa33334444", "bbbbbbbb55556666", "cccccccc77778888"]
GROUPS = {"third round: cross-validation (best-published chapter)": [_job(KEYS[0]), _job(KEYS[1])],
          "third round: the chosen model (best-published chapter)": [_job(KEYS[2])],
          "seeds (variance chapter)": [_job(KEYS[3])]}


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setattr(ledger_cli.experiments, "jobs", lambda: GROUPS)
    monkeypatch.setattr(ledger, "verification", lambda folder=None: {KEYS[0]: "identical", KEYS[1]: "differs",
                                                                       KEYS[2]: "not retrained"})
    return [_job(k) for k in KEYS]


def _keys(selected: list) -> set[str]:
    return {j.key() for j in selected}


def test_a_key_prefix_words_of_groups_and_unverified_select(jobs: list) -> None:
    assert _keys(ledger_cli._selected(jobs, ["bbbbbbbb"], False)) == {KEYS[2]}
    assert _keys(ledger_cli._selected(jobs, ["Third Round"], False)) == set(KEYS[:3])  # both groups
    assert _keys(ledger_cli._selected(jobs, ["seeds"], False)) == {KEYS[3]}
    assert _keys(ledger_cli._selected(jobs, [], True)) == {KEYS[2], KEYS[3]}  # no report retrained them


@pytest.mark.parametrize("item", ["aaaaaaa", "aaaaaaaa", "nothing like it"])
def test_a_selection_that_names_no_single_entry_or_group_says_what_to_give(jobs: list, item: str) -> None:
    with pytest.raises(ledger_cli.SelectionError, match="8 characters or more"):
        ledger_cli._selected(jobs, [item], False)


def test_the_report_keeps_earlier_rows_it_did_not_retrain(tmp_path) -> None:
    rows = [ledger.Comparison(KEYS[0], "test seed 0", 58, 58, True, True, 300.0, "2026-12-03"),
            ledger.Comparison(KEYS[1], "cv3-1 seed 0", 20, 21, False, False),
            ledger.Comparison(KEYS[2], "test seed 1", 60, None, None, None)]
    report = tmp_path / "VERIFY.md"
    report.write_text(ledger_cli.render(rows, 60.0))
    earlier = ledger.report_rows(report)
    assert set(earlier) == {KEYS[0], KEYS[1]}  # the unretrained row is no evidence
    assert earlier[KEYS[1]] == ledger.Comparison(KEYS[1], "cv3-1 seed 0", 20, 21, False, False)
    text = ledger_cli.render([earlier[KEYS[0]], earlier[KEYS[1]], rows[2]], 1.0, carried=2)
    assert "retrained 2 of the ledger's 3 runs" in text and "2 of the retrained rows are carried" in text
