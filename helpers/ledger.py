"""The results ledger as a whole: the committed evidence of every run the book uses.

``results/runs/<key>/`` holds one run, an entry as :mod:`helpers.store` describes it;
``results/MANIFEST.json`` lists the SHA-256 of every file of the ledger. ``make results`` fills it,
``make retrain`` re-derives it into a separate folder and compares (:func:`compare`). A stale entry
(its code hash no longer matches) is never shown: the book stops and names the command that refreshes it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from helpers import cache
from helpers.data import sha256_of
from helpers.job import Job
from helpers.store import (KIND, MANIFEST, WEIGHTS, LedgerError, entries, find, ledger_files, load_entry, record,
                           root, stale_reason, pooled_weights, write_atomic, write_manifest)


def _list_weights(entry: Path) -> None:
    """Update the entry's own manifest for its weights file, kept or removed (atomically: a killed write
    leaves the old manifest, never half a one)."""
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    manifest["files"].pop(WEIGHTS, None)
    if (entry / WEIGHTS).is_file():
        manifest["files"][WEIGHTS] = sha256_of(entry / WEIGHTS)
    write_atomic(entry / cache.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())


def keep_weights(jobs: Iterable[Job]) -> list[str]:
    """Store the weights of ``jobs`` in their ledger entries; return the keys that changed. The weights come
    from the pool filled when the run was trained, or from retraining it (deterministic: the same machine
    gives the same model, which is checked against the stored predictions before it is kept)."""
    from helpers.trainer import entry_files, load_model, training_arrays  # TensorFlow: only to retrain or check weights
    changed = []
    for job in jobs:
        entry = find(job)
        if entry is None:
            raise LedgerError(f"results ledger: no entry for {job.describe()} ({job.key()}); run `make results`.")
        if (entry / WEIGHTS).is_file():
            continue
        pool = pooled_weights(job.key(), record(entry)["code"])
        if not pool.is_file():
            print(f"Retraining {job.describe()} ({job.key()}) to store its weights.", flush=True)
            write_atomic(pool, entry_files(job, training_arrays(job))[WEIGHTS])
        shutil.copy(pool, entry / WEIGHTS)
        try:
            load_model(load_entry(job, entry, "ledger"))  # refuses weights of another model
        except Exception:
            (entry / WEIGHTS).unlink()
            raise
        _list_weights(entry)
        changed.append(job.key())
    if changed:
        write_manifest(root())
    return changed


def drop_weights(keep: Iterable[Job]) -> list[str]:
    """Remove the stored weights of every entry but those of ``keep`` (a chapter no longer needs
    them, e.g. after the cross-validated choice changed); return the keys whose weights went."""
    wanted = {job.key() for job in keep}
    dropped = [entry for entry in entries() if entry.name not in wanted and (entry / WEIGHTS).is_file()]
    for entry in dropped:
        (entry / WEIGHTS).unlink()
        _list_weights(entry)
    if dropped:
        write_manifest(root())
    return [entry.name for entry in dropped]


def drop_unused(keep: set[str]) -> list[str]:
    """Remove every entry whose key is not in ``keep`` and that was never scored on the test set (cross-validation
    or holdout runs the book no longer asks for); return the removed keys. A run scored on the test set is never
    removed: every look at the test set stays on the record (the test-set log lists them all)."""
    dropped = [entry.name for entry in entries() if entry.name not in keep and record(entry)["job"]["split"] != "test"]
    for key in dropped:
        shutil.rmtree(root() / KIND / key)
    if dropped:
        write_manifest(root())
    return dropped


def verify_manifest(folder: Path | None = None) -> list[str]:
    """Problems with the ledger's files against ``MANIFEST.json`` (empty when all is well)."""
    folder = folder or root()
    path = folder / MANIFEST
    if not path.is_file():
        return [f"{path} is missing: run `make results`"]
    listed = json.loads(path.read_text())["files"]
    problems = []
    present = {str(p.relative_to(folder)) for p in ledger_files(folder)}
    for name, digest in sorted(listed.items()):
        file = folder / name
        if not file.is_file():
            problems.append(f"{file}: listed in {MANIFEST} but missing")
        elif sha256_of(file) != digest:
            problems.append(f"{file}: SHA-256 does not match {MANIFEST} (the file was altered)")
    problems += [f"{folder / name}: not listed in {MANIFEST}" for name in sorted(present - set(listed))]
    return problems


def stale_entries(folder: Path | None = None) -> list[tuple[Path, str]]:
    """Every entry of the ledger that is stale for the current code, with why."""
    return [(entry, reason) for entry in entries(folder) if (reason := stale_reason(entry)) is not None]


def check() -> list[str]:
    """Everything that stops the book: altered files and stale entries (empty when all is well)."""
    problems = verify_manifest()
    stale = stale_entries()
    if stale:
        problems.append(f"{len(stale)} of {len(entries())} ledger entries are stale for the current code "
                        f"(e.g. {stale[0][0].name}: {stale[0][1]}); run `make results` to retrain them.")
    return problems


# ------------------------------------------------------------------ estimates, reports


@dataclass(frozen=True)
class Comparison:
    """One run of the ledger against its retraining."""

    key: str
    job: str
    ledger_errors: int
    retrained_errors: int | None
    identical: bool | None
    same_environment: bool | None
    retrained_seconds: float | None = None  # its training time, and when it was retrained
    retrained_at: str | None = None
    #: When the ledger entry compared was trained: a report's row is evidence for that entry only,
    #: not for one trained again later under the same key.
    entry_trained: str | None = None


def same_environment(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two runs (their ``record.json``) were trained in environments that match in everything a
    trained model may depend on: libraries, CPU and threads, and the number of GPUs (a GPU worker on the
    same CPU and libraries sums in another order; a record without ``gpus`` had none)."""
    env_a, env_b = a["environment"], b["environment"]
    return (all(env_a.get(k) == env_b.get(k) for k in ("python", "tensorflow", "keras", "numpy", "machine", "cpu",
                                                       "cpu_flags", "threads", "onednn"))
            and a.get("gpus", 0) == b.get("gpus", 0))


def compare(ledger: Path, retrained: Path) -> list[Comparison]:
    """Every entry of ``ledger`` against the entry of the same key in ``retrained``."""
    rows = []
    for entry in entries(ledger):
        rec = record(entry)
        job = f"{rec['job']['split']} seed {rec['job']['seed']}"
        other = retrained / KIND / entry.name
        if not (other / "record.json").is_file() or cache.problem(other) is not None:
            rows.append(Comparison(entry.name, job, rec["errors"], None, None, None, entry_trained=rec["trained"]))
            continue
        rec2 = record(other)
        with np.load(entry / "predictions.npz") as a, np.load(other / "predictions.npz") as b:
            identical = all(name in b.files and np.array_equal(a[name], b[name])  # every prediction the entry has
                            for name in ("probabilities", "tta", "tta_rotations", "noisy") if name in a.files)
        rows.append(Comparison(entry.name, job, rec["errors"], rec2["errors"], identical, same_environment(rec, rec2),
                               float(rec2["seconds"]), rec2["trained"][:10], rec["trained"]))
    return rows


def listing() -> "pd.DataFrame":
    """One row per ledger entry, with a label (A, B, ...) for its environment, as :func:`environments` lists them."""
    labels = _environment_labels()
    rows = []
    for entry in entries():
        rec = record(entry)
        config = rec["job"]["config"]
        rows.append({"entry": entry.name, "split": rec["job"]["split"], "seed": rec["job"]["seed"],
                     "epochs": config["epochs"], "errors": rec["errors"], "predicted": rec["n_predicted"],
                     "training (s)": round(rec["seconds"]), "trained": rec["trained"][:10],
                     "environment": labels[_environment_key(rec["environment"])],
                     "code": rec["code"], "weights": (entry / WEIGHTS).is_file()})
    return pd.DataFrame(rows).set_index("entry") if rows else pd.DataFrame()


def _environment_key(env: dict[str, Any]) -> str:
    return json.dumps(env, sort_keys=True)


def _environment_labels() -> dict[str, str]:
    """A letter for each distinct environment, in the order of the entries' training dates."""
    recs = sorted((record(e) for e in entries()), key=lambda r: r["trained"])
    distinct = dict.fromkeys(_environment_key(rec["environment"]) for rec in recs)  # in their first run's order
    return {key: chr(ord("A") + i) for i, key in enumerate(distinct)}


def environments() -> "pd.DataFrame":
    """One row per environment the ledger's runs were trained in (labelled as in :func:`listing`), with the
    number of runs it trained."""
    envs = [record(entry)["environment"] for entry in entries()]
    keys = [_environment_key(env) for env in envs]
    rows = [{"environment": label, **envs[keys.index(key)], "runs": keys.count(key)}
            for key, label in _environment_labels().items()]
    return pd.DataFrame(rows).set_index("environment") if rows else pd.DataFrame()


def report_rows(report: Path) -> dict[str, Comparison]:
    """The retrained rows of a ``make retrain`` report (``VERIFY.md``'s per-run table), by entry key. A row
    names the ledger entry it compared by the entry's training time; rows of reports written before that
    column existed get ``<`` the report's own time, which :func:`carried` reads as "trained before then"."""
    rows: dict[str, Comparison] = {}
    if not report.is_file():
        return rows
    text = report.read_text()
    written = re.search(r"^# .*\((\d{4}-\d{2}-\d{2} \d{2}:\d{2})\)$", text, re.M)
    flag = {"yes": True, "no": False}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].startswith("`") and cells[5] in flag:  # entry, run, trained, ...
            key, trained = cells[0].strip("`"), cells[2]
            seconds = None if cells[7] in ("", "—") else float(cells[7])
            rows[key] = Comparison(key, cells[1], int(cells[3]), int(cells[4]), flag[cells[5]], flag.get(cells[6]),
                                   seconds, None, trained)
        elif len(cells) == 6 and cells[0].startswith("`") and cells[4] in flag and written:  # the older table
            key = cells[0].strip("`")
            rows[key] = Comparison(key, cells[1], int(cells[2]), int(cells[3]), flag[cells[4]], flag.get(cells[5]),
                                   entry_trained=f"<{written[1]}")
    return rows


def carried(row: Comparison, entry: Path) -> bool:
    """Whether an earlier report's ``row`` is evidence for the ledger entry as it is now."""
    trained = record(entry)["trained"]
    if row.entry_trained and row.entry_trained.startswith("<"):
        return trained[:16] < row.entry_trained[1:]
    return row.entry_trained == trained


def verification(folder: Path | None = None) -> dict[str, str]:
    """Each entry's status in the last ``make retrain`` report (``results/VERIFY.md``)."""
    folder = folder or root()
    rows = report_rows(folder / "VERIFY.md")
    return {key: "identical" if row.identical else "differs" for key, row in rows.items()
            if (folder / KIND / key).is_dir() and carried(row, folder / KIND / key)}


def overview() -> "tuple[pd.DataFrame, dict[str, Any]]":
    """The reproducibility chapter's view of the ledger: :func:`listing` with each entry's status in the
    last retrain report (short keys, no code hashes), and the counts the chapter quotes."""
    problems = check()
    table = listing()
    status = verification()
    verified = [status.get(key, "not yet") for key in table.index]
    differing = [row for key, row in report_rows(root() / "VERIFY.md").items()
                 if key in table.index and not row.identical]
    table = table.assign(**{"make retrain": verified}).drop(columns=["code"])
    table.index = table.index.str[:8].rename("entry")
    numbers = {"ledger_runs": len(table), "ledger_problems": len(problems),
               "ledger_mb": sum(f.stat().st_size for f in root().rglob("*") if f.is_file()) / 1e6,
               "ledger_weights": int(table["weights"].sum()),
               "verified_identical": verified.count("identical"), "verified_differs": verified.count("differs"),
               "verified_pending": verified.count("not yet"),
               "verified_differs_elsewhere": sum(row.same_environment is False for row in differing),
               "verified_max_gap": max((abs(row.ledger_errors - row.retrained_errors) for row in differing), default=0),
               "ledger_environments": int(table["environment"].nunique())}
    return table.assign(weights=table["weights"].map({True: "kept", False: ""})), numbers

