"""The ledger's commands: ``check`` (``make book`` runs it first), ``results`` and ``retrain``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Sequence

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


def retrain(select: Sequence[str] = (), unverified: bool = False) -> int:
    """``make retrain``: re-derive runs into ``artifacts/retrain`` and write the comparison.

    Without a selection every run of the ledger is retrained. ``select`` names a subset: entry keys
    (or their first 8 or more characters) and words of registry groups' names (:func:`experiments.jobs`);
    ``unverified`` adds every entry that no report has retrained yet (:func:`_selected`). The comparison
    (``results/VERIFY.md``) is written even when the call is interrupted, for the runs retrained so
    far; a later call resumes and rewrites it, keeping the earlier report's rows of the runs this
    folder has not retrained (a report from another machine is evidence, not to be lost).
    """
    committed = ledger.root()
    jobs = _ledger_jobs(committed)  # every run of the ledger in one batch, then the book's steps check them
    subset = _selected(jobs, select, unverified) if (select or unverified) else None
    earlier = ledger.report_rows(committed / REPORT)
    os.environ[ledger.ENV_LEDGER] = str(RETRAIN_DIR)
    RETRAIN_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        if subset is None:
            _train_everything("make retrain", first=jobs)
        else:
            _train_subset(subset)
    finally:
        rows = [earlier.get(r.key, r) if r.identical is None else r for r in ledger.compare(committed, RETRAIN_DIR)]
        carried = sum(r is earlier.get(r.key) for r in rows)
        report = committed / REPORT
        report.write_text(render(rows, time.perf_counter() - start, carried))
        print(report.read_text())
    return 0 if all(r.identical or r.identical is None for r in rows) else 1


class SelectionError(ValueError):
    """A ``make retrain RUNS=...`` selection that names no ledger entry or registry group."""


def _selected(jobs: list[runs.Job], select: Sequence[str], unverified: bool) -> list[runs.Job]:
    """The jobs of ``jobs`` that ``select`` names, plus, with ``unverified``, those no report has
    retrained. An item is an entry key (its first 8 or more characters) or words of registry groups'
    names (case-insensitive: "third round" selects both of that round's groups)."""
    by_key = {job.key(): job for job in jobs}
    groups = experiments.jobs() if select else {}
    chosen: dict[str, runs.Job] = {}
    for item in select:
        keys = [key for key in by_key if len(item) >= 8 and key.startswith(item)]
        named = [name for name in groups if item.lower() in name.lower()]
        if len(keys) == 1:
            chosen[keys[0]] = by_key[keys[0]]
        elif named and not keys:
            chosen |= {j.key(): by_key.get(j.key(), j) for name in named for j in groups[name]}
        else:
            raise SelectionError(
                f"{item!r} names {len(keys) or 'no'} ledger entries and {len(named) or 'no'} registry groups; give "
                f"an entry's key (8 characters or more, as in results/VERIFY.md) or words of a group's name: "
                + "; ".join(groups))
    if unverified:
        status = ledger.verification()
        chosen |= {key: job for key, job in by_key.items() if status.get(key) not in ("identical", "differs")}
    return list(chosen.values())


def _train_subset(jobs: list[runs.Job]) -> None:
    """Train ``jobs`` (and the teachers of any student among them) into the retrain folder."""
    os.environ["USPS_TRAINING"] = "ledger"
    os.environ.setdefault("USPS_BOOK_PROFILE", "full")
    print(f"make retrain: {len(jobs)} selected runs into {RETRAIN_DIR} (interrupt and rerun to resume).", flush=True)
    try:
        runs.run_many(jobs, workers=beyond().workers,
                      describe=lambda j: f"{j.split} seed {j.seed}, {j.config.epochs} epochs, {j.key()}")
    except (cluster.ClusterUnavailable, cluster.WorkerRefused) as exc:  # they say what to do
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
    finally:
        cluster.close()


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


def render(rows: list[ledger.Comparison], seconds: float, carried: int = 0) -> str:
    """The comparison as Markdown (committed as ``results/VERIFY.md``); ``carried`` of the rows come
    from the earlier report, for runs this call's folder has not retrained."""
    done = [r for r in rows if r.identical is not None]
    identical = sum(bool(r.identical) for r in done)
    same_count = sum(r.ledger_errors == r.retrained_errors for r in done if not r.identical)
    lines = [f"# Retraining the results ledger ({ledger.timestamp()})", "",
             f"`make retrain` retrained {len(done)} of the ledger's {len(rows)} runs from scratch into "
             f"`artifacts/retrain` ({seconds / 60:.0f} min of wall time in this call) and compared each "
             f"with its ledger entry: {identical} have identical predicted probabilities, "
             f"{same_count} differ but make the same number of errors, "
             f"{len(done) - identical - same_count} make a different number of errors, "
             f"{len(rows) - len(done)} were not retrained."
             + (f" {carried} of the retrained rows are carried from the earlier report (retrained in another "
                f"call's folder, possibly on another machine)." if carried else ""), "", *_cost(done), "", *_by_environment(done), "",
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
