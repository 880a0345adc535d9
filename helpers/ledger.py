"""The results ledger: the committed evidence of every training run the book uses.

``results/runs/<key>/`` holds one run (``key`` names its configuration, seed, split and
the data's checksums): ``record.json`` (the job, its training history and time, the
environment it ran in, the data checksums, the checksum of the labels it predicts and the
hash of the code that determines the model), ``predictions.npz`` (its predicted
probabilities and those labels) and, for the few models whose weights a chapter needs,
``model.weights.npz``. Each entry is written into a temporary folder with a manifest of its
files' SHA-256 and renamed into place when complete; ``results/MANIFEST.json`` lists the
SHA-256 of every file of the ledger. ``make results`` fills it, ``make retrain`` re-derives
it into a separate folder and compares (:func:`compare`).

An entry is *stale* when the hash of the code that determines its model no longer
matches; a stale entry is never shown: the book stops and names the command that
refreshes it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from filelock import FileLock

from helpers import cache
from helpers.data import sha256_of

ENV_LEDGER = "USPS_LEDGER_DIR"
MANIFEST = "MANIFEST.json"
KIND = "runs"
REPO = Path(__file__).resolve().parents[1]


class LedgerError(RuntimeError):
    """The ledger is damaged, altered or stale for the current code."""


def root() -> Path:
    """The ledger's folder: ``USPS_LEDGER_DIR``, else ``results/`` beside ``helpers/``."""
    env = os.environ.get(ENV_LEDGER)
    return Path(env).expanduser().resolve() if env else REPO / "results"


def entries(folder: Path | None = None) -> list[Path]:
    """Every complete entry folder of the ledger, sorted by name."""
    runs = (folder or root()) / KIND
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []


def record(entry: Path) -> dict[str, Any]:
    """The ``record.json`` of an entry."""
    return json.loads((entry / "record.json").read_text())


def _job_of(rec: dict[str, Any]) -> "Job":  # noqa: F821
    from helpers.config import Config
    from helpers.train import Job

    job = rec["job"]
    return Job(Config(**job["config"]), job["seed"], job["split"])


def stale_reason(entry: Path) -> str | None:
    """Why an intact entry is stale for the current code, or ``None``."""
    from helpers.train import code_hash

    rec = record(entry)
    job = _job_of(rec)
    if job.key() != entry.name:
        return f"its record names another run ({job.key()})"
    current = code_hash(job.config)
    if rec["code"] != current:
        return f"trained with code {rec['code']}, the current code is {current}"
    return None


def find(job: "Job", *, stale_ok: bool = False, quiet: bool = False) -> Path | None:  # noqa: F821
    """The ledger entry of ``job`` if it is there, intact and current.

    An altered entry raises :class:`LedgerError` naming the file. A stale entry raises too,
    unless ``stale_ok`` (then it is treated as absent, with a one-line notice).
    """
    entry = root() / KIND / job.key()
    if not entry.is_dir():
        return None
    problem = cache.problem(entry)
    if problem is not None:
        raise LedgerError(f"results ledger, entry {entry}: {problem}. The committed "
                          f"ledger was altered: restore it with `git checkout -- results/`, or "
                          f"retrain the entry with `make results`.")
    reason = stale_reason(entry)
    if reason is None:
        return entry
    if not stale_ok:
        raise LedgerError(f"results ledger: entry {job.key()} ({job.describe()}) is stale: {reason}. "
                          f"Run `make results` to retrain the stale entries.")
    if not quiet:
        print(f"results ledger: entry {job.key()} is stale ({reason}); not used.", file=sys.stderr)
    return None


def write(job: "Job", build: Callable[[Path], None]) -> tuple[Path, bool]:  # noqa: F821
    """Build ``job``'s entry into the ledger (replacing a stale one) and update the manifest."""
    folder = root()
    spec = job.identity()

    def current(entry: Path) -> bool:
        return stale_reason(entry) is None

    def build_without_weights(tmp: Path) -> None:
        build(tmp)
        # Weights go to the per-user pool; `keep_weights` moves the few the book needs in.
        from helpers.train import WEIGHTS

        pool = weights_pool() / f"{job.key()}-{record_code(tmp)}-{WEIGHTS}"
        pool.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp / WEIGHTS, pool)

    entry, built = cache.get_or_build(KIND, spec, build_without_weights, folder, accept=current)
    if built:
        write_manifest(folder)
    return entry, built


def record_code(entry: Path) -> str:
    return record(entry)["code"]


def weights_pool() -> Path:
    """Where ``make results`` keeps the weights of the runs it trained (per user, not committed)."""
    from helpers.data import cache_root

    return cache_root() / "ledger-weights"


def keep_weights(jobs: Iterable["Job"]) -> list[str]:  # noqa: F821
    """Store the weights of ``jobs`` in their ledger entries; return the keys that changed.

    The weights come from the pool filled when the run was trained, or from retraining it
    (deterministic: the same machine gives the same model, which is checked against the
    stored predictions before it is kept).
    """
    from helpers import train

    changed = []
    for job in jobs:
        entry = find(job)
        if entry is None:
            raise LedgerError(f"results ledger: no entry for {job.describe()} ({job.key()}); run `make results`.")
        if (entry / train.WEIGHTS).is_file():
            continue
        pool = weights_pool() / f"{job.key()}-{record_code(entry)}-{train.WEIGHTS}"
        if not pool.is_file():
            print(f"Retraining {job.describe()} ({job.key()}) to store its weights.", flush=True)
            with tempfile.TemporaryDirectory(prefix="usps-retrain-") as folder:
                tmp = Path(folder)
                train.build_entry(job, tmp)
                pool.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(tmp / train.WEIGHTS, pool)
        shutil.copy(pool, entry / train.WEIGHTS)
        try:
            train.load_model(train.load_entry(job, entry, "ledger"))  # refuses weights of another model
        except Exception:
            (entry / train.WEIGHTS).unlink()
            raise
        manifest = json.loads((entry / cache.MANIFEST).read_text())
        manifest["files"][train.WEIGHTS] = sha256_of(entry / train.WEIGHTS)
        (entry / cache.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        changed.append(job.key())
    if changed:
        write_manifest(root())
    return changed


def drop_weights(keep: Iterable["Job"]) -> list[str]:  # noqa: F821
    """Remove the stored weights of every entry but those of ``keep`` (a chapter no longer needs
    them, e.g. after the cross-validated choice changed); return the keys whose weights went."""
    from helpers import train

    wanted = {job.key() for job in keep}
    dropped = []
    for entry in entries():
        if entry.name in wanted or not (entry / train.WEIGHTS).is_file():
            continue
        (entry / train.WEIGHTS).unlink()
        manifest = json.loads((entry / cache.MANIFEST).read_text())
        manifest["files"].pop(train.WEIGHTS, None)
        (entry / cache.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        dropped.append(entry.name)
    if dropped:
        write_manifest(root())
    return dropped


def test_scored(entry: Path) -> bool:
    """Whether an entry's run was scored on the test set (its split is ``test``: it predicted the
    2007 test images when it was trained). Such an entry is evidence of a look at the test set."""
    return record(entry)["job"]["split"] == "test"


def drop_unused(keep: set[str]) -> list[str]:
    """Remove every entry whose key is not in ``keep`` and that was never scored on the test set
    (cross-validation or holdout runs the book no longer asks for); return the removed keys.

    A run scored on the test set is never removed, whether a chapter still asks for it or not:
    every look at the test set stays on the record (the test-set log lists them all).
    """
    dropped = [entry.name for entry in entries() if entry.name not in keep and not test_scored(entry)]
    for key in dropped:
        shutil.rmtree(root() / KIND / key)
    if dropped:
        write_manifest(root())
    return dropped


def _files(folder: Path) -> list[Path]:
    """Every file of the ledger but its manifest, locks and unfinished (dot-named) entries."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not p.name.endswith(".lock") and p.suffix != ".md"
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def write_manifest(folder: Path | None = None) -> Path:
    """Rewrite ``MANIFEST.json``: the SHA-256 of every file of every complete entry."""
    folder = folder or root()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".manifest.lock")):
        files = {str(p.relative_to(folder)): sha256_of(p) for p in _files(folder)}
        target = folder / MANIFEST
        tmp = folder / f".{MANIFEST}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, target)
    return target


def verify_manifest(folder: Path | None = None) -> list[str]:
    """Problems with the ledger's files against ``MANIFEST.json`` (empty when all is well)."""
    folder = folder or root()
    path = folder / MANIFEST
    if not path.is_file():
        return [f"{path} is missing: run `make results`"]
    listed = json.loads(path.read_text())["files"]
    problems = []
    present = {str(p.relative_to(folder)) for p in _files(folder)}
    for name, digest in sorted(listed.items()):
        file = folder / name
        if not file.is_file():
            problems.append(f"{file}: listed in {MANIFEST} but missing")
        elif sha256_of(file) != digest:
            problems.append(f"{file}: SHA-256 does not match {MANIFEST} (the file was altered)")
    problems += [f"{folder / name}: not listed in {MANIFEST}" for name in sorted(present - set(listed))]
    return problems


def stale_entries(folder: Path | None = None) -> list[tuple[Path, str]]:
    """Every entry of the ledger that is stale for the current code, with the reason."""
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


def estimate_seconds(job: "Job") -> float:  # noqa: F821
    """A rough training time for ``job``, from the ledger's runs of a similar network."""
    from helpers.data import ROWS

    images = ROWS["train"] * (1.0 if job.split == "test" else 0.8)
    shape = ("second_block_filters", "augment_shift", "filters", "dense_units", "batch_size", "batch_norm")
    rates, similar = [], []
    for entry in entries():
        try:
            rec = record(entry)
        except (OSError, ValueError):
            continue
        rate = rec["seconds"] / (rec["job"]["config"]["epochs"] * rec["n_train"])
        rates.append(rate)
        if all(rec["job"]["config"][k] == getattr(job.config, k) for k in shape):
            similar.append(rate)
    # With an empty ledger: about 2.5 s per epoch of the 7291 training images, as measured
    # for the paper's model on one core of the machine the ledger was made on.
    rate = float(np.median(similar or rates)) if (similar or rates) else 2.5 / ROWS["train"]
    return rate * job.config.epochs * images


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


def same_environment(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two runs' environments match in everything a trained model may depend on."""
    return all(a.get(k) == b.get(k) for k in ("python", "tensorflow", "keras", "numpy", "machine", "cpu",
                                              "cpu_flags", "threads", "onednn"))


def compare(ledger: Path, retrained: Path) -> list[Comparison]:
    """Every entry of ``ledger`` against the entry of the same key in ``retrained``."""
    rows = []
    for entry in entries(ledger):
        rec = record(entry)
        job = f"{rec['job']['split']} seed {rec['job']['seed']}"
        other = retrained / KIND / entry.name
        if not (other / "record.json").is_file() or cache.problem(other) is not None:
            rows.append(Comparison(entry.name, job, rec["errors"], None, None, None))
            continue
        rec2 = record(other)
        with np.load(entry / "predictions.npz") as a, np.load(other / "predictions.npz") as b:
            identical = bool(np.array_equal(a["probabilities"], b["probabilities"]))
            if "tta" in a.files:  # the test-time-shifted predictions too, where the entry has them
                identical = identical and "tta" in b.files and bool(np.array_equal(a["tta"], b["tta"]))
        rows.append(Comparison(entry.name, job, rec["errors"], rec2["errors"], identical,
                               same_environment(rec["environment"], rec2["environment"]),
                               float(rec2["seconds"]), rec2["trained"][:10]))
    return rows


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M")


def stored_json(kind: str, spec: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON-able result (e.g. a classical baseline) from the ledger, the cache, or computed.

    Like a training run: the ledger first; else, by ``USPS_TRAINING``, computed into the
    ledger (``ledger``), into the per-user cache (``allow``), or refused (``forbid``).
    """
    from helpers import train

    entry = cache.entry_path(kind, spec, root())
    if entry.is_dir():
        problem = cache.problem(entry)
        if problem is not None:
            raise LedgerError(f"results ledger, entry {entry}: {problem}. Restore it with "
                              f"`git checkout -- results/` or recompute it with `make results`.")
        return json.loads((entry / "result.json").read_text())
    mode = train.training_mode()
    if mode == "forbid" and cache.lookup(kind, spec) is None:
        raise train.TrainingForbidden(f"The results ledger has no {kind} entry for {spec.get('method', spec)}; "
                                      f"run `make results`.")

    def build(folder: Path) -> None:
        (folder / "result.json").write_text(json.dumps(compute(), indent=1))

    if mode == "ledger":
        entry, built = cache.get_or_build(kind, spec, build, root())
        if built:
            write_manifest(root())
        return json.loads((entry / "result.json").read_text())
    return cache.cached_json(kind, spec, compute)


def listing(folder: Path | None = None) -> "pd.DataFrame":  # noqa: F821
    """One row per ledger entry: what it is, its errors, time, when it was trained and a label
    (A, B, ...) for the environment it was trained in, as listed by :func:`environments`."""
    import pandas as pd

    labels = _environment_labels(folder)
    rows = []
    for entry in entries(folder):
        rec = record(entry)
        config = rec["job"]["config"]
        rows.append({"entry": entry.name, "split": rec["job"]["split"], "seed": rec["job"]["seed"],
                     "epochs": config["epochs"], "errors": rec["errors"], "predicted": rec["n_predicted"],
                     "training (s)": round(rec["seconds"]), "trained": rec["trained"][:10],
                     "environment": labels[_environment_key(rec["environment"])],
                     "code": rec["code"], "weights": (entry / "model.weights.npz").is_file()})
    return pd.DataFrame(rows).set_index("entry") if rows else pd.DataFrame()


def _environment_key(env: dict[str, Any]) -> str:
    return json.dumps(env, sort_keys=True)


def _environment_labels(folder: Path | None = None) -> dict[str, str]:
    """A letter for each distinct environment, in the order of the entries' training dates."""
    recs = sorted((record(e) for e in entries(folder)), key=lambda r: r["trained"])
    labels: dict[str, str] = {}
    for rec in recs:
        labels.setdefault(_environment_key(rec["environment"]), chr(ord("A") + len(labels)))
    return labels


def environments(folder: Path | None = None) -> "pd.DataFrame":  # noqa: F821
    """One row per environment the ledger's runs were trained in (labelled as in :func:`listing`),
    with its versions, CPU and threads, and how many runs it trained."""
    import pandas as pd

    labels = _environment_labels(folder)
    counts: dict[str, int] = {}
    found: dict[str, dict[str, Any]] = {}
    for entry in entries(folder):
        env = record(entry)["environment"]
        key = _environment_key(env)
        counts[key] = counts.get(key, 0) + 1
        found.setdefault(key, env)
    rows = [{"environment": label, **found[key], "runs": counts[key]} for key, label in labels.items()]
    return pd.DataFrame(rows).set_index("environment") if rows else pd.DataFrame()


def verification(folder: Path | None = None) -> dict[str, str]:
    """Each entry's status in the last ``make retrain`` report (``results/VERIFY.md``)."""
    import re

    report = (folder or root()) / "VERIFY.md"
    if not report.is_file():
        return {}
    status = {}
    for line in report.read_text().splitlines():
        match = re.match(r"\|\s*`(\w+)`\s*\|[^|]*\|[^|]*\|\s*([^|]*?)\s*\|\s*(yes|no|—)\s*\|", line)
        if match:
            key, retrained, identical = match[1], match[2], match[3]
            status[key] = ("identical" if identical == "yes" else "not retrained" if identical == "—"
                           else "differs")
    return status


def overview() -> "tuple[pd.DataFrame, dict[str, Any]]":  # noqa: F821
    """The reproducibility chapter's view of the ledger: :func:`listing` with each entry's status in
    the last retrain report (short keys, no code hashes), and the counts the chapter quotes (its
    environments are listed by :func:`environments`)."""
    problems = check()
    table = listing()
    status = verification()
    verified = [status.get(key, "not yet") for key in table.index]
    table = table.assign(**{"make retrain": verified}).drop(columns=["code"])
    table.index = table.index.str[:8].rename("entry")
    numbers = {"ledger_runs": len(table), "ledger_problems": len(problems),
               "ledger_mb": sum(f.stat().st_size for f in root().rglob("*") if f.is_file()) / 1e6,
               "ledger_weights": int(table["weights"].sum()),
               "verified_identical": verified.count("identical"), "verified_differs": verified.count("differs"),
               "verified_pending": sum(v in ("not yet", "not retrained") for v in verified),
               "ledger_environments": int(table["environment"].nunique())}
    return table.assign(weights=table["weights"].map({True: "kept", False: ""})), numbers
