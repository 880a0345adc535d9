"""`make retrain RUNS=...`: a subset of the ledger, chosen by key, group or --unverified, and a
report that keeps the earlier report's evidence for the runs this call did not retrain."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from helpers import ledger, ledger_cli


def _job(key: str, teachers: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(key=lambda: key, teachers=teachers)


KEYS = ["aaaaaaaa11112222", "aaaaaaaa33334444", "bbbbbbbb55556666", "cccccccc77778888", "dddddddd99990000"]
GROUPS = {"third round: cross-validation (best-published chapter)": [_job(KEYS[0]), _job(KEYS[1])],
          "third round: the chosen model (best-published chapter)": [_job(KEYS[2])],
          "seeds (variance chapter)": [_job(KEYS[3])],
          "fourth round: students (best-published chapter)": [_job(KEYS[4], teachers=(KEYS[2],)),
                                                                _job("eeeeeeee00000000")]}  # not in the ledger


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setattr(ledger_cli.experiments, "jobs", lambda: GROUPS)
    monkeypatch.setattr(ledger, "verification", lambda folder=None: {KEYS[0]: "identical", KEYS[1]: "differs",
                                                                       KEYS[2]: "not retrained"})
    return [_job(k) for k in KEYS[:4]] + [_job(KEYS[4], teachers=(KEYS[2],))]


def _keys(selected: list) -> set[str]:
    return {j.key() for j in selected}


def test_a_key_prefix_words_of_groups_and_unverified_select(jobs: list) -> None:
    assert _keys(ledger_cli._selected(jobs, ["bbbbbbbb"], False)) == {KEYS[2]}
    assert _keys(ledger_cli._selected(jobs, ["bbbbbbbb", "cccccccc"], False)) == {KEYS[2], KEYS[3]}
    # the shell splits RUNS="third round": every word must occur in the group's name (both groups here)
    assert _keys(ledger_cli._selected(jobs, ["Third", "Round"], False)) == set(KEYS[:3])
    assert _keys(ledger_cli._selected(jobs, ["third", "round", "chosen"], False)) == {KEYS[2]}
    assert _keys(ledger_cli._selected(jobs, ["seeds,", "third", "round", "chosen"], False)) == {KEYS[2], KEYS[3]}
    assert _keys(ledger_cli._selected(jobs, ["seeds"], False)) == {KEYS[3]}
    assert _keys(ledger_cli._selected(jobs, [], True)) == {KEYS[2], KEYS[3], KEYS[4]}  # no report retrained them


def test_a_student_brings_its_teachers_and_runs_outside_the_ledger_are_left_out(jobs: list) -> None:
    selected = ledger_cli._selected(jobs, ["fourth"], False)
    assert [j.key() for j in selected] == [KEYS[2], KEYS[4]]  # the teacher first; eeee... is not in the ledger


@pytest.mark.parametrize("item", ["aaaaaaa", "aaaaaaaa", "nothing like it", "third seeds"])
def test_a_selection_that_names_no_single_entry_or_group_says_what_to_give(jobs: list, item: str) -> None:
    with pytest.raises(ledger_cli.SelectionError, match="8 characters or more"):
        ledger_cli._selected(jobs, item.split(), False)


def test_the_report_keeps_earlier_rows_it_did_not_retrain(tmp_path) -> None:
    rows = [ledger.Comparison(KEYS[0], "test seed 0", 58, 58, True, True, 300.0, "2026-12-03", "2026-11-01 10:00:00 UTC"),
            ledger.Comparison(KEYS[1], "cv3-1 seed 0", 20, 21, False, False, 100.0, "2026-12-03", "2026-11-02 10:00:00 UTC"),
            ledger.Comparison(KEYS[2], "test seed 1", 60, None, None, None)]
    report = tmp_path / "VERIFY.md"
    report.write_text(ledger_cli.render(rows, 60.0))
    earlier = ledger.report_rows(report)
    assert set(earlier) == {KEYS[0], KEYS[1]}  # the unretrained row is no evidence
    assert earlier[KEYS[1]] == ledger.Comparison(KEYS[1], "cv3-1 seed 0", 20, 21, False, False, 100.0, None,
                                                 "2026-11-02 10:00:00 UTC")
    text = ledger_cli.render([earlier[KEYS[0]], earlier[KEYS[1]], rows[2]], 1.0, carried=2)
    assert "retrained 2 of the ledger's 3 runs" in text and "2 of the retrained rows are carried" in text
    assert "2 of the retrained runs record their training time: 7 min summed" in text  # carried rows count too


def _entry(folder, key: str, trained: str):
    entry = folder / "runs" / key
    entry.mkdir(parents=True)
    (entry / "record.json").write_text(json.dumps({"trained": trained}))
    return entry


def test_a_row_is_carried_only_for_the_entry_it_compared(tmp_path) -> None:
    """Keys do not include the code hash: an entry retrained under the same key is another entry."""
    row = ledger.Comparison(KEYS[0], "test seed 0", 58, 58, True, True, 300.0, None, "2026-11-01 10:00:00 UTC")
    assert ledger.carried(row, _entry(tmp_path / "a", KEYS[0], "2026-11-01 10:00:00 UTC"))
    assert not ledger.carried(row, _entry(tmp_path / "b", KEYS[0], "2026-12-01 09:00:00 UTC"))


def test_rows_of_the_older_six_column_report_are_carried_for_entries_trained_before_it(tmp_path) -> None:
    report = tmp_path / "VERIFY.md"
    report.write_text("# Retraining the results ledger (2026-12-03 10:10)\n\n"
                      "| entry | run | errors (ledger) | errors (retrained) | identical | same environment |\n"
                      "| --- | --- | ---: | ---: | --- | --- |\n"
                      f"| `{KEYS[0]}` | test seed 0 | 58 | 58 | yes | yes |\n")
    row = ledger.report_rows(report)[KEYS[0]]
    assert ledger.carried(row, _entry(tmp_path / "a", KEYS[0], "2026-12-02 23:00:00 UTC"))
    assert not ledger.carried(row, _entry(tmp_path / "b", KEYS[0], "2026-12-03 11:00:00 UTC"))


def test_the_exit_status_counts_only_this_calls_runs_in_their_own_environment(tmp_path, monkeypatch) -> None:
    fresh = [ledger.Comparison(KEYS[0], "test seed 0", 58, 59, False, False, 300.0, "2026-12-03", "t"),  # another CPU
             ledger.Comparison(KEYS[1], "test seed 1", 60, None, None, None, entry_trained="t")]
    # retrain() points the process at the retrain folder (USPS_LEDGER_DIR, USPS_TRAINING): undone after the test
    monkeypatch.setenv(ledger_cli.store.ENV_LEDGER, str(tmp_path))
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    monkeypatch.setattr(ledger_cli.store, "root", lambda: tmp_path)
    monkeypatch.setattr(ledger_cli, "RETRAIN_DIR", tmp_path / "retrain")
    monkeypatch.setattr(ledger_cli, "_ledger_jobs", lambda folder: [])
    monkeypatch.setattr(ledger_cli, "_train", lambda label, jobs, everything: None)
    monkeypatch.setattr(ledger_cli, "_selected", lambda jobs, select, unverified: [])
    monkeypatch.setattr(ledger_cli.ledger, "compare", lambda committed, retrained: fresh)
    assert ledger_cli.retrain(["x"]) == 0
    fresh[0] = ledger.Comparison(KEYS[0], "test seed 0", 58, 58, False, True, 300.0, "2026-12-03", "t")
    assert ledger_cli.retrain(["x"]) == 1  # same environment, not bit-identical
