"""The ledger's commands: ``check`` (``make book`` runs it first), ``results`` and ``retrain``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from helpers import cluster, experiments, ledger, runs
from helpers.config import beyond

RETRAIN_DIR = ledger.REPO / "artifacts" / "retrain"
REPORT = "VERIFY.md"


def check() -> int:
    """Exit 0 when the ledger is intact and current, else 1 with one line per problem."""
    problems = ledger.check()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"results ledger: {len(ledger.entries())} runs, every checksum matches, none stale.")
    return 1 if problems else 0


def _ledger_jobs(folder: Path) -> list[runs.Job]:
    """The job of every entry of the ledger in ``folder``, from its record."""
    return [runs._job_of(ledger.record(entry)) for entry in ledger.entries(folder)]


def _train_everything(label: str, first: list[runs.Job] | None = None) -> float:
    """Train what the book needs; ``first``, when given, are submitted before, in one batch (the runs
    the book's later steps need are known then, so that a cluster's workers all get work at once)."""
    os.environ["USPS_TRAINING"] = "ledger"
    os.environ.setdefault("USPS_BOOK_PROFILE", "full")
    start = time.perf_counter()
    where = cluster.address() or "an embedded Dask cluster on this machine (CLUSTER=tcp://host:8786 for another)"
    print(f"{label}: training every run the book needs that {ledger.root()} lacks on {where} "
          f"(progress per run; interrupt and rerun to resume).", flush=True)
    try:
        if first:
            runs.run_many(first, workers=beyond().workers,
                           describe=lambda j: f"{j.split} seed {j.seed}, {j.config.epochs} epochs, {j.key()}")
        experiments.everything()
    except (cluster.ClusterUnavailable, cluster.WorkerRefused) as exc:  # they say what to do
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
    finally:
        cluster.close()
    return time.perf_counter() - start


def results() -> int:
    """``make results``: train what the ledger lacks or has stale, then verify it."""
    seconds = _train_everything("make results")
    print(f"make results: done in {seconds / 60:.1f} min.")
    return check()


def retrain() -> int:
    """``make retrain``: re-derive every run into ``artifacts/retrain`` and write the comparison.

    The comparison (``results/VERIFY.md``) is written even when the call is interrupted, for
    the runs retrained so far; a later call resumes and rewrites it.
    """
    committed = ledger.root()
    jobs = _ledger_jobs(committed)  # every run of the ledger in one batch, then the book's steps check them
    os.environ[ledger.ENV_LEDGER] = str(RETRAIN_DIR)
    RETRAIN_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        _train_everything("make retrain", first=jobs)
    finally:
        rows = ledger.compare(committed, RETRAIN_DIR)
        report = committed / REPORT
        report.write_text(render(rows, time.perf_counter() - start))
        print(report.read_text())
    return 0 if all(r.identical or r.identical is None for r in rows) else 1


def _cost(done: list[ledger.Comparison]) -> list[str]:
    """What the retrained runs cost, whichever calls of ``make retrain`` trained them."""
    times = [r.retrained_seconds for r in done if r.retrained_seconds is not None]
    days = sorted({r.retrained_at for r in done if r.retrained_at})
    if not times:
        return []
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return [f"The retrained runs took {sum(times) / 60:.0f} min of training summed over runs, about "
            f"{sum(times) / 120:.0f} min of wall time on two one-thread workers (retrained {when})."]


def _by_environment(done: list[ledger.Comparison]) -> list[str]:
    """The comparisons grouped by environment: in the ledger entry's own environment a run must be
    bit-identical; in another (other CPU flags, libraries or a GPU) it trains like another seed, so
    only its error count can be compared, with the error count stored."""
    lines = ["| retrained in | runs | identical | same errors | errors differ by (max) |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, same in (("the ledger entry's environment", True), ("another environment", False)):
        group = [r for r in done if bool(r.same_environment) == same]
        if group:
            gaps = [abs(r.ledger_errors - r.retrained_errors) for r in group if r.retrained_errors is not None]
            lines.append(f"| {label} | {len(group)} | {sum(bool(r.identical) for r in group)} | "
                         f"{sum(g == 0 for g in gaps)} | {max(gaps, default=0)} |")
    return lines if len(lines) > 2 else []


def render(rows: list[ledger.Comparison], seconds: float) -> str:
    """The comparison as Markdown (committed as ``results/VERIFY.md``)."""
    done = [r for r in rows if r.identical is not None]
    identical = sum(bool(r.identical) for r in done)
    same_count = sum(r.ledger_errors == r.retrained_errors for r in done if not r.identical)
    lines = [f"# Retraining the results ledger ({ledger.timestamp()})", "",
             f"`make retrain` retrained {len(done)} of the ledger's {len(rows)} runs from scratch into "
             f"`artifacts/retrain` ({seconds / 60:.0f} min of wall time in this call) and compared each "
             f"with its ledger entry: {identical} have identical predicted probabilities, "
             f"{same_count} differ but make the same number of errors, "
             f"{len(done) - identical - same_count} make a different number of errors, "
             f"{len(rows) - len(done)} were not retrained.", "", *_cost(done), "", *_by_environment(done), "",
             "| entry | run | errors (ledger) | errors (retrained) | identical | same environment |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for r in rows:
        def show(value: object) -> str:
            return "—" if value is None else ("yes" if value is True else "no" if value is False else str(value))
        lines.append(f"| `{r.key}` | {r.job} | {r.ledger_errors} | {show(r.retrained_errors)} | "
                     f"{show(r.identical)} | {show(r.same_environment)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(check())
