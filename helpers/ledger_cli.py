"""The ledger's commands: ``check`` (``make book`` runs it first), ``results`` and ``retrain``."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from helpers import cluster, experiments, ledger, runs, store
from helpers.config import beyond
from helpers.job import Job

RETRAIN_DIR = store.REPO / "artifacts" / "retrain"
REPORT = "VERIFY.md"


def check() -> int:
    """Exit 0 when the ledger is intact and current, else 1 with one line per problem."""
    problems = ledger.check()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"results ledger: {len(store.entries())} runs, every checksum matches, none stale.")
    return 1 if problems else 0


def _ledger_jobs(folder: Path) -> list[Job]:
    return [Job.from_record(store.record(entry)) for entry in store.entries(folder)]


def _train(label: str, jobs: list[Job] | None = None, everything: bool = True) -> None:
    """Train ``jobs`` in one batch (so that a cluster's workers all get work at once), then, with ``everything``,
    what the book needs. A cluster that does not answer or refuses a run ends the command with status 4 and
    its error, which says what to do."""
    where = cluster.address() or "an embedded Dask cluster on this machine (CLUSTER=tcp://host:8786 for another)"
    if everything:
        what = f"training every run the book needs that {store.root()} lacks on {where} (progress per run; "
    else:
        what = f"{len(jobs or ())} selected runs into {RETRAIN_DIR} ("
    os.environ["USPS_TRAINING"] = "ledger"
    os.environ.setdefault("USPS_BOOK_PROFILE", "full")
    print(f"{label}: {what}interrupt and rerun to resume).", flush=True)
    try:
        if jobs:
            runs.run_many(jobs, workers=beyond().workers,
                          describe=lambda j: f"{j.split} seed {j.seed}, {j.config.epochs} epochs, {j.key()}")
        if everything:
            experiments.everything()
    except (cluster.ClusterUnavailable, cluster.WorkerRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
    finally:
        cluster.close()


def results() -> int:
    """``make results``: train what the ledger lacks or has stale, then verify it."""
    start = time.perf_counter()
    _train("make results")
    print(f"make results: done in {(time.perf_counter() - start) / 60:.1f} min.")
    return check()


def retrain(select: Sequence[str] = (), unverified: bool = False) -> int:
    """``make retrain``: re-derive runs into ``artifacts/retrain`` and write the comparison.

    Without a selection every run of the ledger is retrained; ``select`` and ``unverified`` name a subset
    (:func:`_selected`). The comparison (``results/VERIFY.md``) is written even when the call is interrupted,
    for the runs retrained so far; a later call resumes and rewrites it, keeping the earlier report's rows of
    the runs this folder has not retrained where they compared the entry as it is now (a report from another
    machine is evidence, not to be lost). Exit status 1 when a run retrained by this call in its ledger
    entry's environment is not bit-identical (elsewhere only error counts compare; the report says so).
    """
    committed = store.root()
    jobs = _ledger_jobs(committed)  # every run of the ledger in one batch, then the book's steps check them
    subset = _selected(jobs, select, unverified) if (select or unverified) else None
    earlier = ledger.report_rows(committed / REPORT)
    os.environ[store.ENV_LEDGER] = str(RETRAIN_DIR)
    RETRAIN_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        _train("make retrain", jobs if subset is None else subset, everything=subset is None)
    finally:
        fresh = ledger.compare(committed, RETRAIN_DIR)
        old = {r.key: replace(earlier[r.key], entry_trained=r.entry_trained) for r in fresh
               if r.identical is None and r.key in earlier and ledger.carried(earlier[r.key], committed / store.KIND / r.key)}
        rows = [old.get(r.key, r) for r in fresh]
        report = committed / REPORT
        report.write_text(render(rows, time.perf_counter() - start, len(old)))
        print(report.read_text())
    return 1 if any(r.same_environment and not r.identical for r in fresh if r.identical is not None) else 0


class SelectionError(ValueError):
    """A ``make retrain RUNS=...`` selection that names no ledger entry or registry group."""


def _selected(jobs: list[Job], select: Sequence[str], unverified: bool) -> list[Job]:
    """The jobs of ``jobs`` (runs of the ledger) that ``select`` names, the teachers of any student among
    them, and, with ``unverified``, those no report has retrained. ``select`` is one text (the shell splits
    ``RUNS``) of alternatives separated by commas, each entry keys (their first 8 or more characters) or words
    that all occur in a registry group's name (:func:`experiments.jobs`, case-insensitive): ``third round,
    fourth`` selects both of the third round's groups and the fourth round's."""
    by_key = {job.key(): job for job in jobs}
    groups = experiments.jobs() if select else {}
    chosen: dict[str, Job] = {}
    for item in filter(None, (part.strip() for part in " ".join(select).split(","))):
        words = item.lower().split()
        keys = [[key for key in by_key if len(word) >= 8 and key.startswith(word)] for word in words]
        named = [name for name in groups if all(word in name.lower() for word in words)]
        if all(len(found) == 1 for found in keys):
            chosen |= {found[0]: by_key[found[0]] for found in keys}
        elif named:
            chosen |= {j.key(): by_key[j.key()] for name in named for j in groups[name] if j.key() in by_key}
        else:
            raise SelectionError(
                f"{item!r} names no single ledger entry and no registry group; give an entry's key (8 characters "
                f"or more, as in results/VERIFY.md) or words of a group's name, alternatives separated by commas: "
                + "; ".join(groups))
    if unverified:
        status = ledger.verification()
        chosen |= {key: job for key, job in by_key.items() if status.get(key) not in ("identical", "differs")}
    teachers = {key for job in chosen.values() for key in getattr(job, "teachers", ()) if key in by_key}
    return [by_key[key] for key in teachers - set(chosen)] + list(chosen.values())


def _cost(done: list[ledger.Comparison]) -> list[str]:
    """What the retrained runs cost, whichever calls of ``make retrain`` trained them."""
    times = [r.retrained_seconds for r in done if r.retrained_seconds is not None]
    days = sorted({r.retrained_at for r in done if r.retrained_at})
    if not times:
        return []
    when = "" if not days else f", retrained {days[0]}" if len(days) == 1 else f", retrained {days[0]} to {days[-1]}"
    missing = len(done) - len(times)
    return [f"{len(times)} of the retrained runs record their training time: {sum(times) / 60:.0f} min summed over "
            f"runs, about {sum(times) / 120:.0f} min of wall time on two one-thread workers{when}"
            + (f"; {missing} rows from an older report do not record it." if missing else ".")]


def _by_environment(done: list[ledger.Comparison]) -> list[str]:
    """The comparisons by environment: in the ledger entry's own a run must be bit-identical; in another
    (other CPU flags, libraries or a GPU) it trains like another seed, so only its error count compares."""
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
    lines = [f"# Retraining the results ledger ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"`make retrain` retrained {len(done)} of the ledger's {len(rows)} runs from scratch into "
             f"`artifacts/retrain` ({seconds / 60:.0f} min of wall time in this call) and compared each "
             f"with its ledger entry: {identical} have identical predicted probabilities, "
             f"{same_count} differ but make the same number of errors, "
             f"{len(done) - identical - same_count} make a different number of errors, "
             f"{len(rows) - len(done)} were not retrained."
             + (f" {carried} of the retrained rows are carried from the earlier report (retrained in another "
                f"call's folder, possibly on another machine, and compared with the entry as it is now)."
                if carried else ""), "", *_cost(done), "", *_by_environment(done), "",
             "| entry | run | entry trained | errors (ledger) | errors (retrained) | identical | same environment "
             "| retraining (s) |",
             "| --- | --- | --- | ---: | ---: | --- | --- | ---: |"]
    for r in rows:
        def show(value: object) -> str:
            return "—" if value is None else ("yes" if value is True else "no" if value is False else str(value))
        seconds_ = "—" if r.retrained_seconds is None else f"{r.retrained_seconds:.0f}"
        lines.append(f"| `{r.key}` | {r.job} | {show(r.entry_trained)} | {r.ledger_errors} | "
                     f"{show(r.retrained_errors)} | {show(r.identical)} | {show(r.same_environment)} | {seconds_} |")
    return "\n".join(lines) + "\n"
