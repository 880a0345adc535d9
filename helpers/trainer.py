"""Training a job into its ledger entry, and a stored run's model rebuilt from its weights.

The TensorFlow side of a run (besides :func:`helpers.job.environment` and
:func:`helpers.job.serialised_network`, which import it only when they need it): what a job trains on
(:func:`training_arrays`), its entry's files (:func:`entry_files`) and a stored run's Keras model
(:func:`load_model`). :mod:`helpers.runs` imports this module only when it trains or loads a model,
so that reading results from the ledger does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from helpers import data
from helpers._tf import keras, tf
from helpers.job import Job, arrays, code_hash, environment
from helpers.model import build_model
from helpers.store import (KIND, WEIGHTS, LedgerError, Run, find, load_entry, npz, pooled_weights, record,
                           root, write_atomic, write_files)
from helpers.train import _predict, fit, predict_tta, predict_tta_rotations, soft_targets


def training_arrays(job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`arrays` gives, with a distilled student's labels replaced by its teachers' soft targets."""
    x, y, xp, yp = arrays(job)
    if not job.teachers:
        return x, y, xp, yp
    targets = soft_targets(teacher_probabilities(job, x), y, job.config.distill_weight, job.config.distill_temperature)
    return x, targets, xp, yp


def teacher_probabilities(job: Job, x: np.ndarray) -> np.ndarray:
    """The mean of the teachers' probabilities of ``x`` (the student's training images), each read with
    test-time shifts. Every teacher must be a current ledger entry trained on exactly ``x``."""
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
    ``make results`` (:func:`helpers.store.pooled_weights`), else retrained into the pool (a line says so)."""
    if result.weights is None:
        pool = pooled_weights(result.key, result.record["code"])
        if not pool.is_file():
            print(f"Retraining teacher {result.key} ({result.job.describe()}): its weights are not stored here.",
                  flush=True)
            write_atomic(pool, entry_files(result.job, arrays(result.job))[WEIGHTS])
        return load_model(result, weights=pool, check=False)
    return load_model(result)


def _job_of(rec: dict[str, Any]) -> Job:  # the name the hashed teacher_probabilities calls it by
    return Job.from_record(rec)


def build_entry(job: Job, folder: Path, progress_every: int | None = None) -> None:
    """Train ``job`` and write its entry's files into ``folder``."""
    write_files(folder, entry_files(job, training_arrays(job), progress_every=progress_every))


def entry_files(job: Job, xs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *,
                progress_every: int | None = None, key: str | None = None,
                checksums: dict[str, str] | None = None) -> dict[str, bytes]:
    """Train ``job`` on ``xs`` (:func:`training_arrays`) and return its entry's files as bytes: record,
    predictions and weights; the record names the environment and host that trained it. A cluster worker,
    which has no data folder, is given the client's ``key`` and ``checksums`` (:mod:`helpers.cluster`)."""
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


def load_model(result: Run, *, weights: Path | None = None, check: bool = True) -> keras.Model:
    """The Keras model of a run, rebuilt from its stored weights (or ``weights``), which must reproduce its
    stored predictions to float32 rounding; ``check=False``: weights retrained elsewhere may differ from the
    ledger's by the machine-to-machine spread (a line says by how much)."""
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
