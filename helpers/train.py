"""Train models with compact progress; every result comes from the ledger, the cache or training.

A *job* is a configuration, a seed and a split: ``"test"`` trains on all 7291 training
images and predicts the 2007 test images (the paper's protocol); ``"holdout"`` trains on
a stratified 80 % of the training images and predicts the other 20 %; ``"cv5-2"`` trains
on four fifths of them and predicts fold 2 of a stratified 5-fold split (every training
image is predicted once over the five folds).

Where a job's result comes from, in order (:func:`run`):

1. the committed results ledger (``results/``, :mod:`helpers.ledger`), so every machine
   shows the published numbers;
2. the per-user cache, for runs the ledger lacks (a reader's own experiments);
3. training now, when ``USPS_TRAINING`` allows it (see :func:`training_mode`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from helpers import cache, data
from helpers._tf import THREADS, keras, tf
from helpers.config import BASELINE, DECISIONS, Config, profile
from helpers.model import build_model

DEFAULT_SEED = 0
ENV_TRAINING = "USPS_TRAINING"
Mode = Literal["allow", "forbid", "ledger"]
WEIGHTS = "model.weights.npz"  # the layers' weights only (no optimizer state), compressed


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


# --------------------------------------------------------------------------- the job


def split_parts(split: str) -> tuple[int, int] | None:
    """``(folds, fold)`` of a cross-validation split such as ``"cv5-2"``, else ``None``."""
    match = re.fullmatch(r"cv(\d+)-(\d+)", split)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Job:
    """One training run: a configuration, a seed and a split (see the module's docstring)."""

    config: Config
    seed: int = DEFAULT_SEED
    split: str = "test"

    def __post_init__(self) -> None:
        if self.split not in ("test", "holdout") and split_parts(self.split) is None:
            raise ValueError(f"split must be 'test', 'holdout' or 'cv<k>-<fold>', not {self.split!r}")

    def identity(self) -> dict[str, Any]:
        """What names the run: configuration, seed, split and the data's published checksums."""
        return {"config": self.config.as_dict(), "seed": self.seed, "split": self.split, "data": dict(data.SHA256)}

    def key(self) -> str:
        """The run's name in the ledger."""
        return cache.key_of(self.identity())

    def spec(self) -> dict[str, Any]:
        """The local cache's key: the identity plus the code hash and the environment."""
        return {**self.identity(), "code": code_hash(self.config), "env": environment()}

    def describe(self) -> str:
        return f"{self.split} seed {self.seed}"


# ------------------------------------------------------------------ the training core
# Everything from here to the end of `_predict` determines a trained model; its source
# is part of :func:`code_hash`, so keep edits here deliberate.


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's kernels deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


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


def arrays(job: Job) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images and labels, and the images and labels the job predicts."""
    x, y = data.load_usps("train", scale=job.config.scale)
    if job.split == "test":
        xt, yt = data.load_usps("test", scale=job.config.scale)
        return x, y, xt, yt
    parts = split_parts(job.split)
    if parts:
        fit_idx, held_idx = data.fold_split(y, *parts, seed=job.seed)
    else:
        fit_idx, held_idx = data.validation_split(y, seed=job.seed)
    return x[fit_idx], y[fit_idx], x[held_idx], y[held_idx]


def _predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=1024, verbose=0), dtype=np.float32)


#: Test-time augmentation: each image and its four copies moved by one pixel (up, down, left, right).
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(images: np.ndarray, dy: int, dx: int, background: float) -> np.ndarray:
    """``images`` (n x 16 x 16 x 1) moved by ``dy`` rows and ``dx`` columns, the edge filled with background."""
    out = np.full_like(images, background)
    h, w = images.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def predict_tta(model: keras.Model, images: np.ndarray, background: float) -> np.ndarray:
    """Class probabilities averaged over each image and its one-pixel shifts (:data:`TTA_SHIFTS`)."""
    return np.mean([_predict(model, shifted(images, dy, dx, background)) for dy, dx in TTA_SHIFTS], axis=0)


# ----------------------------------------------------------- what determines a model


def _read_training_sources() -> str:
    import inspect

    from helpers import _tf

    return "".join(inspect.getsource(obj) for obj in (
        _tf, data.parse, data.to_images, data.validation_split, data.fold_split, set_seed, fit, arrays, _predict))


def _training_sources() -> str:
    """The training core's source, as read when this module was imported.

    Read once at import: ``inspect`` reads source files from disk, so reading it later in a
    long-lived process, after a file was edited, would hash text the process is not running.
    """
    return _TRAINING_SOURCES


@functools.lru_cache(maxsize=None)
def code_hash(config: Config = BASELINE) -> str:
    """Hash of what determines a trained model of ``config``, the configuration's values aside.

    It covers the source of the training core (data parsing and splits, seeding, ``fit``,
    the thread settings) and the network that :func:`helpers.model.build_model` makes of
    ``config``: its Keras architecture, optimizer and loss as serialised by Keras. A change
    to the model code that does not change this configuration's network (a new option,
    off by default) leaves its hash alone; any change to its network or to training does not.
    """
    net = build_model(config, steps_per_epoch=math.ceil(data.ROWS["train"] / config.batch_size))
    built = json.dumps({"model": json.loads(net.to_json()),
                        "optimizer": keras.saving.serialize_keras_object(net.optimizer),
                        "loss": keras.saving.serialize_keras_object(net.loss)}, sort_keys=True, default=str)
    extra = ""  # the book's own layers and losses: their source is part of the hash where used
    import inspect

    from helpers.model import ElasticDistortion, SmoothedSparseCrossentropy

    if config.augment_elastic:
        extra += inspect.getsource(ElasticDistortion)
    if config.label_smoothing:
        extra += inspect.getsource(SmoothedSparseCrossentropy)
    digest = hashlib.sha256((_training_sources() + built + extra).encode())
    return digest.hexdigest()[:16]


def _cpu() -> tuple[str, str]:
    """The CPU's model name and a short hash of its feature flags (Linux; else what platform says)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
        flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
        return ((model[1].strip() if model else platform.processor()),
                hashlib.sha256((flags[1] if flags else "").encode()).hexdigest()[:12])
    except OSError:
        return platform.processor() or platform.machine(), "unknown"


def environment() -> dict[str, Any]:
    """Library versions, thread settings and machine facts that a trained model may depend on."""
    cpu, flags = _cpu()
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "machine": platform.machine(), "cpu": cpu, "cpu_flags": flags,
            "threads": THREADS, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


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


# ------------------------------------------------------------------- results of jobs


@dataclass(frozen=True)
class Run:
    """The result of a job, with where it came from."""

    job: Job
    key: str
    entry: Path
    history: dict[str, list[float]]
    seconds: float
    probabilities: np.ndarray  # on the test images, or on the held-out training images
    labels: np.ndarray
    source: Literal["ledger", "cache", "trained"] = "ledger"
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # averaged over the image and its one-pixel shifts (runs trained before it existed: None)
    tta: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def built(self) -> bool:
        return self.source == "trained"

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

    @property
    def weights(self) -> Path | None:
        path = self.entry / WEIGHTS
        return path if path.is_file() else None

    def numbers(self) -> dict[str, Any]:
        """How this run was trained, as the training chapter quotes it: epochs, batch size, seconds
        in all and per epoch, and the CPU and threads of the environment it ran in."""
        env = self.record.get("environment", {})
        return {"epochs": self.job.config.epochs, "batch_size": self.job.config.batch_size,
                "train_seconds": self.seconds, "seconds_per_epoch": self.seconds_per_epoch,
                "train_cpu": env.get("cpu", "unknown"), "train_threads": env.get("threads", "unknown")}


def build_entry(job: Job, folder: Path, progress_every: int | None = None) -> None:
    """Train ``job`` and write its evidence into ``folder``: record, predictions and weights."""
    write_files(folder, entry_files(job, arrays(job), progress_every=progress_every))


def entry_files(job: Job, xs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *,
                progress_every: int | None = None, key: str | None = None,
                checksums: dict[str, str] | None = None) -> dict[str, bytes]:
    """Train ``job`` on ``xs`` (what :func:`arrays` gives for it) and return its entry's files as bytes.

    ``key`` and ``checksums`` default to the job's key and the data's checksums here; a cluster
    worker, which has no data folder, is given the client's (:mod:`helpers.cluster`). The record
    names the environment and the host that trained the run.
    """
    x, y, xp, yp = xs
    if progress_every:
        print(f"Training {job.config.epochs} epochs on {len(y)} images (seed {job.seed}); "
              f"no stored result exists for this configuration.", flush=True)
    validation = (xp, yp) if job.split == "test" else None  # the curves of the paper's Figure 7
    model, history, seconds = fit(job.config, x, y, seed=job.seed, validation=validation,
                                  progress_every=progress_every)
    probabilities = _predict(model, xp)
    tta = predict_tta(model, xp, 0.0 if job.config.scale == "unit" else -1.0)
    record = {"job": {"config": job.config.as_dict(), "seed": job.seed, "split": job.split},
              "key": key or job.key(), "code": code_hash(job.config), "data": checksums or data.checksums(),
              "labels_sha256": hashlib.sha256(yp.astype(np.int64).tobytes()).hexdigest(),
              "n_train": int(len(y)), "n_predicted": int(len(yp)), "errors": int((probabilities.argmax(1) != yp).sum()),
              "seconds": seconds, "environment": environment(), "host": platform.node(),
              "gpus": len(tf.config.list_physical_devices("GPU")),
              "trained": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "history": history}
    return {"predictions.npz": _npz(probabilities=probabilities, labels=yp.astype(np.int8), tta=tta.astype(np.float32)),
            WEIGHTS: _npz(*model.get_weights()), "record.json": json.dumps(record, indent=1).encode()}


def _npz(*arrays_: np.ndarray, **named: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, *arrays_, **named)
    return buffer.getvalue()


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write an entry's files (from :func:`entry_files`) into ``folder``."""
    for name, content in files.items():
        (folder / name).write_bytes(content)


def load_entry(job: Job, entry: Path, source: Literal["ledger", "cache", "trained"]) -> Run:
    """A :class:`Run` from an entry folder written by :func:`build_entry`."""
    record = json.loads((entry / "record.json").read_text())
    with np.load(entry / "predictions.npz") as stored:
        probabilities, labels = stored["probabilities"], stored["labels"].astype(np.int64)
        tta = stored["tta"] if "tta" in stored.files else None
    return Run(job, job.key(), entry, record["history"], record["seconds"], probabilities, labels, source, record,
               tta)


def run(job: Job, *, progress_every: int | None = None) -> Run:
    """The result of ``job``: from the ledger, else the cache, else trained now (see the module)."""
    from helpers import ledger

    mode = training_mode()
    entry = ledger.find(job, stale_ok=mode != "forbid")
    if entry is not None:
        return load_entry(job, entry, "ledger")
    if mode == "ledger":
        entry, built = ledger.write(job, lambda f: build_entry(job, f, progress_every))
        return load_entry(job, entry, "trained" if built else "ledger")
    found = cache.lookup("models", job.spec())
    if found is not None:
        return load_entry(job, found, "cache")
    if mode == "forbid":
        raise TrainingForbidden(
            f"The results ledger ({ledger.root()}) has no run for {job.describe()} of this configuration "
            f"(key {job.key()}), and training is off ({ENV_TRAINING}=forbid). "
            f"Run `make results` to train what the book needs and add it to the ledger.")
    entry, _ = cache.get_or_build("models", job.spec(), lambda f: build_entry(job, f, progress_every))
    return load_entry(job, entry, "trained")


def available(job: Job) -> bool:
    """Whether ``job``'s result is in the ledger or the cache (nothing to train).

    A stale ledger entry stops the book (``USPS_TRAINING=forbid``); otherwise it counts as missing.
    """
    from helpers import ledger

    return (ledger.find(job, stale_ok=training_mode() != "forbid", quiet=True) is not None
            or cache.lookup("models", job.spec()) is not None)


def run_many(jobs: Sequence[Job], *, workers: int = 2,
             describe: Callable[[Job], str] = Job.describe) -> list[Run]:
    """Results of all ``jobs``; missing ones are trained on Dask distributed, one line each.

    The runs go to the scheduler named by ``USPS_CLUSTER`` (``make results CLUSTER=tcp://host:8786``),
    else to an embedded cluster of ``workers`` one-thread processes on this machine
    (:mod:`helpers.cluster`). Without a named scheduler, ``workers=1`` or a single missing run
    trains here, in this process: a cluster would only add its start-up time.
    """
    from helpers import cluster

    missing = [j for j in dict.fromkeys(jobs) if not available(j)]
    if missing and training_mode() == "forbid":
        run(missing[0])  # raises TrainingForbidden with the message that says what to do
    if missing and (cluster.address() or (workers > 1 and len(missing) > 1)):
        cluster.train(missing, total=len(set(jobs)), workers=workers, describe=describe)
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


def load_model(result: Run) -> keras.Model:
    """The Keras model of a run, rebuilt from its configuration and stored weights.

    The weights are checked against the run's stored predictions: a model that does not
    reproduce them exactly (to float32 rounding) is refused.
    """
    if result.weights is None:
        raise FileNotFoundError(
            f"The stored run {result.key} ({result.job.describe()}) keeps no weights. "
            f"Run `make results`, which stores the weights the book's chapters need.")
    keras.backend.clear_session()
    model = build_model(result.job.config)
    with np.load(result.weights) as stored:
        model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
    *_, images, _ = arrays(result.job)
    again = _predict(model, images)
    if not np.allclose(again, result.probabilities, atol=1e-5):
        raise ValueError(f"{result.weights} does not reproduce the stored predictions of {result.key}.")
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


def _decision_options() -> list[tuple[Any, int, str, Config, dict[str, Any]]]:
    """Every option of every open decision: (decision, option number, label, configuration, changes)."""
    epochs = profile().sweep_epochs
    return [(decision, number, label, BASELINE.with_(epochs=epochs, **changes), changes)
            for decision in DECISIONS for number, (label, changes) in enumerate(decision.options)]


def decision_jobs() -> list[Job]:
    """The holdout runs of :func:`decision_sweep`: every option, once per seed of ``profile().sweep_seeds``."""
    return [Job(config, seed, "holdout") for *_, config, _ in _decision_options() for seed in profile().sweep_seeds]


def decision_sweep() -> list[dict[str, Any]]:
    """Score each option of every open decision, one at a time from :data:`BASELINE`.

    Each option is trained ``profile().sweep_epochs`` epochs on the 80 % part of the
    training set and scored on the other 20 %, once per seed of ``profile().sweep_seeds``
    (each seed draws its own split); the errors are summed over seeds.
    """
    settings = profile()
    options = _decision_options()
    jobs = decision_jobs()
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


def decision_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the model chapter quotes about :func:`decision_sweep`: epochs and seeds per option, holdout
    images, the baseline's errors, and how far apart the best and the worst option are."""
    settings = profile()
    spread = max(r["errors"] for r in rows) - min(r["errors"] for r in rows)
    return {"sweep_epochs": settings.sweep_epochs, "sweep_seeds": len(settings.sweep_seeds),
            "holdout_n": rows[0]["n"], "baseline_errors": rows[0]["errors"], "sweep_spread": spread,
            "sweep_spread_pct": 100 * spread / rows[0]["n"]}


def select(rows: list[dict[str, Any]]) -> Config:
    """The configuration made of every decision's chosen option."""
    changes: dict[str, Any] = {}
    for row in chosen_options(rows).values():
        changes.update(row["changes"])
    return BASELINE.with_(**changes)


@functools.lru_cache(maxsize=None)
def _paper_config(profile_name: str) -> Config:
    return select(decision_sweep()).with_(epochs=profile().epochs)


def paper_config() -> Config:
    """The paper's recipe with every open decision made on the validation split."""
    return _paper_config(profile().name)


def paper_job(seed: int = DEFAULT_SEED) -> Job:
    """The paper's recipe trained on all training images, tested on the test images."""
    return Job(paper_config(), seed, "test")


_TRAINING_SOURCES = _read_training_sources()

if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `python -m helpers`")
