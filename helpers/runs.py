"""Runs: where a job's result comes from, and training it.

Where a job's result (:class:`helpers.store.Run`) comes from, in order (:func:`run`):

1. the committed results ledger (``results/``; :func:`helpers.store.find`), so every machine
   shows the published numbers;
2. the per-user cache, for runs the ledger lacks (a reader's own experiments);
3. training now, when ``USPS_TRAINING`` allows it (see :func:`training_mode`): on this machine,
   or many at a time on Dask (:func:`run_many`, :mod:`helpers.cluster`).

Training a job (:func:`entry_files`) fits its network on what :func:`training_arrays` gives
(a distilled student's labels are its teachers' soft targets) and returns the entry's files.
What names a job is :mod:`helpers.job`'s; the entry's files and the ledger's lookup are
:mod:`helpers.store`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from helpers import cache, cluster, data
from helpers._tf import keras, tf

from helpers.config import Config
from helpers.job import DEFAULT_SEED, Job, arrays, code_hash, environment
from helpers.model import build_model
from helpers.store import (KIND, WEIGHTS, LedgerError, Run, entries, find, load_entry, npz, record, root, weights_pool, write,
                           write_files, write_manifest)
from helpers.train import _predict, fit, predict_tta, predict_tta_rotations, soft_targets

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


def training_arrays(job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`arrays` gives, with a distilled student's labels replaced by its soft targets
    (:func:`helpers.train.soft_targets` of its teachers' probabilities, :func:`teacher_probabilities`)."""
    x, y, xp, yp = arrays(job)
    if not job.teachers:
        return x, y, xp, yp
    targets = soft_targets(teacher_probabilities(job, x), y, job.config.distill_weight, job.config.distill_temperature)
    return x, targets, xp, yp


def teacher_probabilities(job: Job, x: np.ndarray) -> np.ndarray:
    """The mean of the teachers' probabilities of ``x`` (the student's training images), each read with
    test-time shifts, from their stored weights (:func:`teacher_model`).

    Every teacher must be a current ledger entry trained on exactly ``x``.
    """
    found = []
    for key in job.teachers:
        entry = root() / KIND / key
        if not entry.is_dir():
            raise LedgerError(f"teacher {key} of {job.describe()} is not in the results ledger ({root()}): "
                              f"run `make results`, which trains the teachers before their students.")
        teacher = _job_of(record(entry))
        if find(teacher) is None or not np.array_equal(arrays(teacher)[0], x):
            raise ValueError(f"teacher {key} was not trained on the student's training images ({job.describe()})")
        background = 0.0 if teacher.config.scale == "unit" else -1.0
        found.append(predict_tta(teacher_model(load_entry(teacher, entry, "ledger")), x, background))
    return np.mean(found, axis=0)


def teacher_model(result: Run) -> keras.Model:
    """A teacher's model from its weights: kept in the ledger, else in the per-user pool of
    ``make results`` (:func:`weights_pool`), else retrained into the pool (a line says so)."""
    if result.weights is None:
        pool = weights_pool() / f"{result.key}-{result.record['code']}-{WEIGHTS}"
        if not pool.is_file():
            print(f"Retraining teacher {result.key} ({result.job.describe()}): its weights are not stored here.",
                  flush=True)
            files = entry_files(result.job, arrays(result.job))
            pool.parent.mkdir(parents=True, exist_ok=True)
            pool.write_bytes(files[WEIGHTS])
        return load_model(result, weights=pool, check=False)
    return load_model(result)


def _job_of(rec: dict[str, Any]) -> Job:  # the name the hashed teacher_probabilities calls it by
    return Job.from_record(rec)


# ------------------------------------------------------------------ training a job


def build_entry(job: Job, folder: Path, progress_every: int | None = None) -> None:
    """Train ``job`` and write its evidence into ``folder``: record, predictions and weights."""
    write_files(folder, entry_files(job, training_arrays(job), progress_every=progress_every))


def entry_files(job: Job, xs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *,
                progress_every: int | None = None, key: str | None = None,
                checksums: dict[str, str] | None = None) -> dict[str, bytes]:
    """Train ``job`` on ``xs`` (what :func:`training_arrays` gives for it) and return its entry's files as bytes.

    ``key`` and ``checksums`` default to the job's key and the data's checksums here; a cluster
    worker, which has no data folder, is given the client's (:mod:`helpers.cluster`). The record
    names the environment and the host that trained the run.
    """
    x, y, xp, yp = xs
    if progress_every:
        print(f"Training {job.config.epochs} epochs on {len(y)} images (seed {job.seed}); "
              f"no stored result exists for this configuration.", flush=True)
    validation = None
    if job.split == "test":  # the curves of the paper's Figure 7 (one-hot for a student's soft-target loss)
        validation = (xp, np.eye(10, dtype=np.float32)[yp] if y.ndim == 2 else yp)
    model, history, seconds = fit(job.config, x, y, seed=job.seed, validation=validation,
                                  progress_every=progress_every)
    probabilities = _predict(model, xp)
    background = 0.0 if job.config.scale == "unit" else -1.0
    tta = predict_tta(model, xp, background)
    extra: dict[str, np.ndarray] = {
        "tta_rotations": predict_tta_rotations(model, xp, background).astype(np.float16)}
    if job.config.scale == "unit":  # the noise is defined on images in [0, 1]
        extra["noisy"] = np.array([_predict(model, data.add_noise(xp, level)).argmax(1)
                                   for level in data.NOISE_LEVELS], dtype=np.int8)
    teachers = {"teachers": list(job.teachers)} if job.teachers else {}
    record = {"job": {"config": job.config.as_dict(), "seed": job.seed, "split": job.split, **teachers},
              "key": key or job.key(), "code": code_hash(job.config), "data": checksums or data.checksums(),
              "labels_sha256": hashlib.sha256(yp.astype(np.int64).tobytes()).hexdigest(),
              "n_train": int(len(y)), "n_predicted": int(len(yp)), "errors": int((probabilities.argmax(1) != yp).sum()),
              "seconds": seconds, "environment": environment(), "host": platform.node(),
              "gpus": len(tf.config.list_physical_devices("GPU")),
              "trained": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "history": history}
    if job.protocol:
        record["protocol"] = job.protocol
    if y.ndim == 2:  # a distilled student: the checksum of the soft targets it was trained on
        record["targets_sha256"] = hashlib.sha256(np.ascontiguousarray(y, dtype=np.float32).tobytes()).hexdigest()
    return {"predictions.npz": npz(probabilities=probabilities, labels=yp.astype(np.int8), tta=tta.astype(np.float32),
                                    **extra),
            WEIGHTS: npz(*model.get_weights()), "record.json": json.dumps(record, indent=1).encode()}


def stored_json(kind: str, spec: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON-able result (e.g. a classical baseline) from the ledger, the cache, or computed.

    Like a training run: the ledger first; else, by ``USPS_TRAINING``, computed into the
    ledger (``ledger``), into the per-user cache (``allow``), or refused (``forbid``).
    """
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

    def build(folder: Path) -> None:
        (folder / "result.json").write_text(json.dumps(compute(), indent=1))

    if mode == "ledger":
        entry, built = cache.get_or_build(kind, spec, build, root())
        if built:
            write_manifest(root())
        return json.loads((entry / "result.json").read_text())
    return cache.cached_json(kind, spec, compute)


# --------------------------------------------------- the lookup: ledger, cache, training


def run(job: Job, *, progress_every: int | None = None) -> Run:
    """The result of ``job``: from the ledger, else the cache, else trained now (see the module)."""
    mode = training_mode()
    entry = find(job, stale_ok=mode != "forbid")
    if entry is not None:
        return load_entry(job, entry, "ledger")
    if mode == "ledger":
        entry, built = write(job, lambda f: build_entry(job, f, progress_every))
        return load_entry(job, entry, "trained" if built else "ledger")
    found = cache.lookup("models", job.spec())
    if found is not None:
        return load_entry(job, found, "cache")
    if mode == "forbid":
        raise TrainingForbidden(
            f"The results ledger ({root()}) has no run for {job.describe()} of this configuration "
            f"(key {job.key()}), and training is off ({ENV_TRAINING}=forbid). "
            f"Run `make results` to train what the book needs and add it to the ledger.")
    entry, _ = cache.get_or_build("models", job.spec(), lambda f: build_entry(job, f, progress_every))
    return load_entry(job, entry, "trained")


def available(job: Job) -> bool:
    """Whether ``job``'s result is in the ledger or the cache (nothing to train).

    A stale ledger entry stops the book (``USPS_TRAINING=forbid``); otherwise it counts as missing.
    """
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


def _store(job: Job, files: dict[str, bytes]) -> Path:
    """Write a run's files (trained elsewhere, e.g. on a Dask worker) where :func:`run` reads them:
    the ledger (``USPS_TRAINING=ledger``, atomically, with its manifest), else the per-user cache."""
    def build(folder: Path) -> None:
        write_files(folder, files)

    if training_mode() == "ledger":
        return write(job, build)[0]
    return cache.get_or_build("models", job.spec(), build)[0]


def run_many(jobs: Sequence[Job], *, workers: int = 2,
             describe: Callable[[Job], str] = Job.describe) -> list[Run]:
    """Results of all ``jobs``; missing ones are trained on Dask distributed, one line each.

    The runs go to the scheduler named by ``USPS_CLUSTER`` (``make results CLUSTER=tcp://host:8786``),
    else to an embedded cluster of ``workers`` one-thread processes on this machine
    (:mod:`helpers.cluster`). Without a named scheduler, ``workers=1`` or a single missing run
    trains here, in this process: a cluster would only add its start-up time.
    """
    missing = [j for j in dict.fromkeys(jobs) if not available(j)]
    if missing and training_mode() == "forbid":
        run(missing[0])  # raises TrainingForbidden with the message that says what to do
    keys = {j.key() for j in missing}
    if any(set(j.teachers) & keys for j in missing):  # teachers first: a student's targets need them stored
        run_many([j for j in missing if not set(j.teachers) & keys], workers=workers, describe=describe)
        return run_many(jobs, workers=workers, describe=describe)
    if missing and (cluster.address() or (workers > 1 and len(missing) > 1)):
        cluster.train(missing, total=len(set(jobs)), workers=workers, describe=describe, arrays=training_arrays,
                      code_of=code_hash, build=entry_files, store=_store, estimate=estimate_seconds)
    elif missing:
        print(f"Training {len(missing)} of {len(set(jobs))} runs here, one at a time; the others are stored.",
              flush=True)
        for done, job in enumerate(missing, start=1):
            result = run(job)
            print(f"  [{done:2d}/{len(missing)}] {describe(job):<50s} {result.seconds:5.0f} s", flush=True)
    return [run(job) for job in jobs]


@dataclass
class TrainedModel:
    """A model trained on all 7291 training images, with its training history."""

    model: keras.Model
    config: Config
    seed: int
    history: dict[str, list[float]]
    seconds: float
    key: str
    source: str
    record: dict[str, Any]

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.config.epochs


def load_model(result: Run, *, weights: Path | None = None, check: bool = True) -> keras.Model:
    """The Keras model of a run, rebuilt from its configuration and stored weights (``weights``: another file).

    The weights are checked against the run's stored predictions: a model that does not
    reproduce them exactly (to float32 rounding) is refused. ``check=False``: weights retrained
    elsewhere may differ from the ledger's by the machine-to-machine spread.
    """
    weights = weights or result.weights
    if weights is None:
        raise FileNotFoundError(
            f"The stored run {result.key} ({result.job.describe()}) keeps no weights. "
            f"Run `make results`, which stores the weights the book's chapters need.")
    keras.backend.clear_session()
    model = build_model(result.job.config)
    with np.load(weights) as stored:
        model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
    *_, images, _ = arrays(result.job)
    again = _predict(model, images)
    if not np.allclose(again, result.probabilities, atol=1e-5):
        if check:
            raise ValueError(f"{weights} does not reproduce the stored predictions of {result.key}.")
        print(f"Teacher {result.key}: weights retrained here; they differ from the ledger's run "
              f"(largest probability difference {np.abs(again - result.probabilities).max():.2g}).", flush=True)
    return model


def trained_model(config: Config, seed: int = DEFAULT_SEED, *, progress_every: int | None = 10) -> TrainedModel:
    """The model of ``config`` and ``seed`` trained on all training images, with its history.

    As in the paper it trains on the whole training set, and the 2007 test images are
    passed as Keras' validation data only to draw the curves (nothing is chosen on them).
    """
    result = run(Job(config, seed, "test"), progress_every=progress_every)
    return TrainedModel(load_model(result), config, seed, result.history, result.seconds, result.key,
                        result.source, result.record)


def holdout_errors(runs: Sequence[Run]) -> dict[str, float]:
    """Errors, images and accuracy summed over holdout runs (one per seed)."""
    errors, n = sum(r.errors for r in runs), sum(len(r.labels) for r in runs)
    return {"errors": errors, "n": n, "accuracy": 1 - errors / n, "seconds": sum(r.seconds for r in runs)}

