"""Runs: where a job's result comes from, and results derived from the ledger.

A job's result (:class:`helpers.store.Run`) comes from, in order (:func:`run`):

1. the committed results ledger (``results/``), so every machine shows the published numbers;
2. the per-user cache, for runs the ledger lacks (a reader's own experiments);
3. training now, when ``USPS_TRAINING`` allows it (:func:`training_mode`): on this machine,
   or many at a time on Dask (:func:`run_many`, :mod:`helpers.cluster`).

Training is :mod:`helpers.trainer`'s, imported only when a run is trained or a model loaded: reading
results needs no TensorFlow. :func:`derived` keeps a result computed from the ledger alone (the
rounds', the findings) for every process.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from helpers import cache, cluster, data
from helpers.config import profile
from helpers.job import CODE_STAMP, Job, code_hash, unchanged, versions
from helpers.store import LedgerError, Run, entries, find, load_entry, record, root, write, write_files, write_manifest

ENV_TRAINING = "USPS_TRAINING"
Mode = Literal["allow", "forbid", "ledger"]


class TrainingForbidden(RuntimeError):
    """A result is needed that neither the ledger nor the cache holds, and training is off."""


def training_mode() -> Mode:
    """What happens when neither the ledger nor the cache holds a run (``USPS_TRAINING``).

    ``allow`` (default, a reader in Jupyter): train it into the per-user cache.
    ``forbid`` (``make book``, ``make test``): stop with a message naming the command.
    ``ledger`` (``make results``): train it and write it into the ledger.
    """
    mode = os.environ.get(ENV_TRAINING, "allow")
    if mode not in ("allow", "forbid", "ledger"):
        raise ValueError(f"{ENV_TRAINING}={mode!r}: use allow, forbid or ledger.")
    return mode  # type: ignore[return-value]


def stored_json(kind: str, spec: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON-able result (e.g. a classical baseline), like a training run: from the ledger; else, by
    ``USPS_TRAINING``, computed into the ledger (``ledger``), into the per-user cache (``allow``), or refused."""
    entry = cache.entry_path(kind, spec, root())
    if entry.is_dir():
        problem = cache.problem(entry)
        if problem is not None:
            raise LedgerError(f"results ledger, entry {entry}: {problem}. Restore it with "
                              f"`git checkout -- results/` or recompute it with `make results`.")
        return json.loads((entry / "result.json").read_text())
    mode = training_mode()
    if mode == "forbid" and cache.lookup(kind, spec) is None:
        raise TrainingForbidden(f"The results ledger has no {kind} entry for {spec.get('method', spec)}; "
                                      f"run `make results`.")
    value = cache.cached_json(kind, spec, compute, root() if mode == "ledger" else None)
    if mode == "ledger":  # the entry is new: the ledger lacked it
        write_manifest(root())
    return value


def derived(name: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, a result derived from the ledger alone (``name``), computed once for every process.

    With ``USPS_TRAINING=forbid`` nothing is trained (a run the ledger lacks is read from a per-user cache
    entry, which never changes), so the result is determined by the code, the libraries' versions, the
    profile and the ledger's files: it is kept in the per-user cache under these, unless the code or the
    ledger changed while it was computed. In the other modes a run may be trained, so it is computed.
    """
    if training_mode() != "forbid":
        return compute()

    def ledger_digest() -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in root().rglob("*") if p.is_file()):
            digest.update(path.relative_to(root()).as_posix().encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    spec = {"result": name, "ledger folder": str(root()), "ledger": ledger_digest(), "code": CODE_STAMP,
            "profile": profile().name, "python": platform.python_version(),
            **versions("numpy", "pandas", "scipy", "tensorflow", "keras")}
    return cache.cached_pickle(f"derived/{name.replace(' ', '-')}", spec, compute, keep=3,
                               still_valid=lambda: unchanged() and ledger_digest() == spec["ledger"])


# --------------------------------------------------- the lookup: ledger, cache, training


def run(job: Job, *, progress_every: int | None = None) -> Run:
    """The result of ``job``: from the ledger, else the cache, else trained now (see the module)."""
    mode = training_mode()
    entry = find(job, stale_ok=mode != "forbid")
    if entry is not None:
        return load_entry(job, entry, "ledger")
    if mode != "ledger" and (found := cache.lookup("models", job.spec())) is not None:
        return load_entry(job, found, "cache")
    if mode == "forbid":
        raise TrainingForbidden(
            f"The results ledger ({root()}) has no run for {job.describe()} of this configuration "
            f"(key {job.key()}), and training is off ({ENV_TRAINING}=forbid). "
            f"Run `make results` to train what the book needs and add it to the ledger.")
    from helpers.trainer import build_entry  # TensorFlow: only to train
    entry, built = _build(job, lambda f: build_entry(job, f, progress_every))
    return load_entry(job, entry, "ledger" if mode == "ledger" and not built else "trained")


def available(job: Job) -> bool:
    """Whether ``job``'s result is in the ledger or the cache. A stale ledger entry stops the book
    (``USPS_TRAINING=forbid``); otherwise it counts as missing."""
    return (find(job, stale_ok=training_mode() != "forbid", quiet=True) is not None
            or cache.lookup("models", job.spec()) is not None)


def estimate_seconds(job: Job) -> float:
    """A rough training time for ``job``, from the ledger's runs of a similar network."""
    images = data.ROWS["train"] * (1.0 if job.split == "test" else 0.8)
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
    rate = float(np.median(similar or rates)) if (similar or rates) else 2.5 / data.ROWS["train"]
    return rate * job.config.epochs * images


def _build(job: Job, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Build ``job``'s entry where :func:`run` reads it: into the ledger (``USPS_TRAINING=ledger``, atomically,
    with its manifest), else into the per-user cache."""
    return write(job, build) if training_mode() == "ledger" else cache.get_or_build("models", job.spec(), build)


def _store(job: Job, files: dict[str, bytes]) -> Path:
    """Write a run's files, trained elsewhere (e.g. on a Dask worker), where :func:`run` reads them."""
    return _build(job, lambda folder: write_files(folder, files))[0]


def run_many(jobs: Sequence[Job], *, workers: int = 2,
             describe: Callable[[Job], str] = Job.describe) -> list[Run]:
    """Results of all ``jobs``; missing ones are trained on Dask distributed (:mod:`helpers.cluster`), one
    line each: on the scheduler named by ``USPS_CLUSTER``, else on an embedded cluster of ``workers``
    one-thread processes. Without a named scheduler, ``workers=1`` or a single missing run trains
    here, in this process: a cluster would only add its start-up time."""
    missing = [j for j in dict.fromkeys(jobs) if not available(j)]
    if missing and training_mode() == "forbid":
        run(missing[0])  # raises TrainingForbidden with the message that says what to do
    keys = {j.key() for j in missing}
    if any(set(j.teachers) & keys for j in missing):  # teachers first: a student's targets need them stored
        run_many([j for j in missing if not set(j.teachers) & keys], workers=workers, describe=describe)
        return run_many(jobs, workers=workers, describe=describe)
    if missing and (cluster.address() or (workers > 1 and len(missing) > 1)):
        from helpers.trainer import entry_files, training_arrays  # TensorFlow: only to train
        cluster.train(missing, total=len(set(jobs)), workers=workers, describe=describe, arrays=training_arrays,
                      code_of=code_hash, build=entry_files, store=_store, estimate=estimate_seconds)
    elif missing:
        print(f"Training {len(missing)} of {len(set(jobs))} runs here, one at a time; the others are stored.",
              flush=True)
        for done, job in enumerate(missing, start=1):
            result = run(job)
            print(f"  [{done:2d}/{len(missing)}] {describe(job):<50s} {result.seconds:5.0f} s", flush=True)
    return [run(job) for job in jobs]


def holdout_errors(runs: Sequence[Run]) -> dict[str, float]:
    """Errors, images and accuracy summed over holdout runs (one per seed)."""
    errors, n = sum(r.errors for r in runs), sum(len(r.labels) for r in runs)
    return {"errors": errors, "n": n, "accuracy": 1 - errors / n, "seconds": sum(r.seconds for r in runs)}
