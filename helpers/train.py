"""Train models with compact progress, cached by everything that determines them.

A *job* is a configuration, a seed and a split: ``"test"`` trains on all 7291 training
images and predicts the 2007 test images (the paper's protocol); ``"holdout"`` trains on
a stratified 80 % of the training images and predicts the other 20 % (how this book makes
every choice without the test set). Each job's result (history, timing, predicted
probabilities, and for ``"test"`` jobs the Keras model) is one cache entry; several
missing jobs are trained side by side in one-thread worker processes.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import json
import math
import multiprocessing
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from helpers import cache, data
from helpers._tf import THREADS, keras, tf
from helpers.config import BASELINE, DECISIONS, Config, profile
from helpers.model import build_model

DEFAULT_SEED = 0
Split = Literal["test", "holdout"]
def _determining_code() -> list[str]:
    """Source of everything that determines a trained model, given its spec.

    The modules that build and train it in full, and the functions that read and split
    the data (their error messages and the download code are left out: editing them
    cannot change a model). A Config's fields are in the spec itself.
    """
    import inspect

    from helpers import _tf, model

    return [inspect.getsource(obj) for obj in (
        _tf, model, data.parse, data.to_images, data.load_usps, data.validation_split,
        set_seed, fit, Job, _arrays, _build)]


def code_hash() -> str:
    """Hash of the code that determines a trained model (see :func:`_determining_code`)."""
    digest = hashlib.sha256()
    for source in _determining_code():
        digest.update(source.encode())
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    """Library versions, thread settings and machine facts that a trained model depends on."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "machine": platform.machine(),
            "threads": THREADS}


def spec_for(what: str, config: Config | None, seed: int, **extra: Any) -> dict[str, Any]:
    """The cache spec: configuration, seed, data checksums, library versions and code hash."""
    return {"what": what, "config": config.as_dict() if config else None, "seed": seed,
            "data": data.checksums(), "env": environment(), "code": code_hash(), **extra}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's kernels deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class Progress(keras.callbacks.Callback):
    """Prints one short line every ``every`` epochs instead of Keras' progress bars."""

    def __init__(self, epochs: int, every: int = 10, label: str = "") -> None:
        super().__init__()
        self.epochs, self.every, self.label = epochs, max(1, every), label
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        done = epoch + 1
        if done % self.every and done != self.epochs:
            return
        logs = logs or {}
        parts = [f"{k} {v:.4f}" for k, v in logs.items() if "loss" in k or "accuracy" in k]
        print(f"{self.label}epoch {done:3d}/{self.epochs}  " + "  ".join(parts)
              + f"  [{time.perf_counter() - self.start:5.1f} s]", flush=True)


def fit(config: Config, x: np.ndarray, y: np.ndarray, *, seed: int = DEFAULT_SEED,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        progress_every: int | None = 10, label: str = "") -> tuple[keras.Model, dict[str, list[float]], float]:
    """Train a fresh model; return ``(model, history, seconds)``."""
    keras.backend.clear_session()
    set_seed(seed)
    model = build_model(config, steps_per_epoch=math.ceil(len(x) / config.batch_size))
    callbacks = [Progress(config.epochs, progress_every, label)] if progress_every else []
    start = time.perf_counter()
    history = model.fit(x, y, epochs=config.epochs, batch_size=config.batch_size,
                        validation_data=validation, verbose=0, callbacks=callbacks, shuffle=True)
    seconds = time.perf_counter() - start
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, seconds


@dataclass(frozen=True)
class Job:
    """One training run: a configuration, a seed and a split (see the module's docstring)."""

    config: Config
    seed: int = DEFAULT_SEED
    split: Split = "test"

    def spec(self) -> dict[str, Any]:
        what = "paper-model" if self.split == "test" else "holdout-run"
        return spec_for(what, self.config, self.seed)


@dataclass(frozen=True)
class Run:
    """The cached result of a job."""

    job: Job
    key: str
    entry: Path
    history: dict[str, list[float]]
    seconds: float
    probabilities: np.ndarray  # on the test images, or on the holdout images
    labels: np.ndarray
    built: bool

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def errors(self) -> int:
        return int((self.predicted != self.labels).sum())

    @property
    def accuracy(self) -> float:
        return 1.0 - self.errors / len(self.labels)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.job.config.epochs


def _arrays(job: Job) -> tuple[np.ndarray, ...]:
    """Training images and labels, and the images and labels the job predicts."""
    x, y = data.load_usps("train", scale=job.config.scale)
    if job.split == "test":
        xt, yt = data.load_usps("test", scale=job.config.scale)
        return x, y, xt, yt
    fit_idx, hold_idx = data.validation_split(y, seed=job.seed)
    return x[fit_idx], y[fit_idx], x[hold_idx], y[hold_idx]


def _build(job: Job, folder: Path, progress_every: int | None) -> None:
    x, y, xp, yp = _arrays(job)
    if progress_every:
        print(f"Training {job.config.epochs} epochs on {len(y)} images (seed {job.seed}); "
              f"nothing usable is cached for this configuration.", flush=True)
    validation = (xp, yp) if job.split == "test" else None  # the curves of the paper's Figure 7
    model, history, seconds = fit(job.config, x, y, seed=job.seed, validation=validation,
                                  progress_every=progress_every)
    np.save(folder / "probabilities.npy", model.predict(xp, batch_size=1024, verbose=0))
    np.save(folder / "labels.npy", yp)
    if job.split == "test":
        model.save(folder / "model.keras")
    (folder / "history.json").write_text(json.dumps(history))
    (folder / "info.json").write_text(json.dumps({"seconds": seconds, "env": environment()}))


def run(job: Job, *, progress_every: int | None = None) -> Run:
    """The result of ``job``, from the cache or trained now (and cached)."""
    entry, built = cache.get_or_build("models", job.spec(), lambda f: _build(job, f, progress_every))
    info = json.loads((entry / "info.json").read_text())
    return Run(job, entry.name, entry, json.loads((entry / "history.json").read_text()), info["seconds"],
               np.load(entry / "probabilities.npy"), np.load(entry / "labels.npy"), built)


def _work(job: Job) -> tuple[str, float, bool]:
    result = run(job)
    return result.key, result.seconds, result.built


def run_many(jobs: Sequence[Job], *, workers: int = 2,
             describe: Callable[[Job], str] = lambda j: f"{j.split} seed {j.seed}") -> list[Run]:
    """Results of all ``jobs``; missing ones are trained ``workers`` at a time, one line each."""
    missing = [j for j in dict.fromkeys(jobs) if cache.lookup("models", j.spec()) is None]
    if missing:
        start = time.perf_counter()
        print(f"Training {len(missing)} of {len(set(jobs))} runs ({workers} at a time); "
              f"the others come from the cache.", flush=True)
        if workers > 1 and len(missing) > 1:
            context = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(min(workers, len(missing)), mp_context=context) as pool:
                pending = {pool.submit(_work, job): job for job in missing}
                for done, future in enumerate(futures.as_completed(pending), start=1):
                    _, seconds, _ = future.result()
                    print(f"  [{done:2d}/{len(missing)}] {describe(pending[future]):<45s} "
                          f"{seconds:5.0f} s  (elapsed {time.perf_counter() - start:5.0f} s)", flush=True)
        else:
            for done, job in enumerate(missing, start=1):
                _, seconds, _ = _work(job)
                print(f"  [{done:2d}/{len(missing)}] {describe(job):<45s} {seconds:5.0f} s", flush=True)
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
    from_cache: bool

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.config.epochs


def trained_model(config: Config, seed: int = DEFAULT_SEED, *, progress_every: int | None = 10) -> TrainedModel:
    """The model of ``config`` and ``seed``, loaded from the cache or trained and cached.

    As in the paper it trains on the whole training set, and the 2007 test images are
    passed as Keras' validation data only to draw the curves (nothing is chosen on them).
    """
    result = run(Job(config, seed, "test"), progress_every=progress_every)
    if not result.built:
        print(f"Loaded the trained model {result.key} from the cache "
              f"(trained in {result.seconds:.0f} s).", flush=True)
    model = keras.saving.load_model(result.entry / "model.keras")
    return TrainedModel(model, config, seed, result.history, result.seconds, result.key, not result.built)


def holdout_errors(runs: Sequence[Run]) -> dict[str, float]:
    """Errors, images and accuracy summed over holdout runs (one per seed)."""
    errors, n = sum(r.errors for r in runs), sum(len(r.labels) for r in runs)
    return {"errors": errors, "n": n, "accuracy": 1 - errors / n, "seconds": sum(r.seconds for r in runs)}


def decision_sweep() -> list[dict[str, Any]]:
    """Score each option of every open decision, one at a time from :data:`BASELINE`.

    Each option is trained ``profile().sweep_epochs`` epochs on the 80 % part of the
    training set and scored on the other 20 %, once per seed of ``profile().sweep_seeds``
    (each seed draws its own split); the errors are summed over seeds.
    """
    settings = profile()
    options = [(decision, number, label, BASELINE.with_(epochs=settings.sweep_epochs, **changes), changes)
               for decision in DECISIONS for number, (label, changes) in enumerate(decision.options)]
    jobs = [Job(config, seed, "holdout") for *_, config, _ in options for seed in settings.sweep_seeds]
    names: dict[Job, str] = {}
    for decision, _, label, config, _ in options:  # an option shared by decisions keeps its first name
        for seed in settings.sweep_seeds:
            names.setdefault(Job(config, seed, "holdout"), f"{decision.name}: {label} (seed {seed})")
    results = dict(zip(jobs, run_many(jobs, describe=names.__getitem__)))
    return [{"decision": decision.name, "option": label, "baseline": number == 0, "changes": changes,
             **holdout_errors([results[Job(config, seed, "holdout")] for seed in settings.sweep_seeds])}
            for decision, number, label, config, changes in options]


def chosen_options(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each decision the sweep row with the fewest holdout errors (a tie keeps the baseline)."""
    return {decision.name: min((r for r in rows if r["decision"] == decision.name),
                               key=lambda r: (r["errors"], not r["baseline"]))
            for decision in DECISIONS}


def select(rows: list[dict[str, Any]]) -> Config:
    """The configuration made of every decision's chosen option."""
    changes: dict[str, Any] = {}
    for row in chosen_options(rows).values():
        changes.update(row["changes"])
    return BASELINE.with_(**changes)


def paper_config() -> Config:
    """The paper's recipe with every open decision made on the validation split."""
    return select(decision_sweep()).with_(epochs=profile().epochs)
