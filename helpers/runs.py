"""Runs: what names a training run, its files, and where its result comes from.

A *job* is a configuration, a seed and a split: ``"test"`` trains on all 7291 training
images and predicts the 2007 test images (the paper's protocol); ``"holdout"`` trains on
a stratified 80 % of the training images and predicts the other 20 %; ``"cv5-2"`` trains
on four fifths of them and predicts fold 2 of a stratified 5-fold split (every training
image is predicted once over the five folds).

Where a job's result comes from, in order (:func:`run`):

1. the committed results ledger (``results/``; :func:`find`), so every machine shows the
   published numbers;
2. the per-user cache, for runs the ledger lacks (a reader's own experiments);
3. training now, when ``USPS_TRAINING`` allows it (see :func:`training_mode`): on this machine,
   or many at a time on Dask (:func:`run_many`, :mod:`helpers.cluster`).

A run's entry is a folder: ``record.json`` (the job, its training history and time, the
environment it ran in, the data checksums, the checksum of the labels it predicts and the
hash of the code that determines the model: :func:`code_hash`), ``predictions.npz`` and, for
the few models a chapter loads, :data:`WEIGHTS`. It is written into a temporary folder and
renamed into place when complete (:func:`write`); ``MANIFEST.json`` lists the SHA-256 of every
file of the ledger. What is done with the ledger as a whole (checks, pruning, the retrain
comparison, listings) is :mod:`helpers.ledger`'s.

One module, over the usual length, because it is one idea read top to bottom: a run's name,
its files, and the lookup ledger -> cache -> training; split, each part would import the others.
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
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
from filelock import FileLock

from helpers import _tf, cache, cluster, codehash, data
from helpers._tf import THREADS, keras, tf
from helpers.config import BASELINE, Config
from helpers.data import sha256_of
from helpers.model import ElasticDistortion, PixelNoise, SmoothedSparseCrossentropy, build_model
from helpers.train import DEFAULT_SEED, _predict, fit, predict_tta, predict_tta_rotations, set_seed, soft_targets

ENV_TRAINING = "USPS_TRAINING"
ENV_LEDGER = "USPS_LEDGER_DIR"
MANIFEST = "MANIFEST.json"
KIND = "runs"
REPO = Path(__file__).resolve().parents[1]
Mode = Literal["allow", "forbid", "ledger"]
WEIGHTS = "model.weights.npz"  # the layers' weights only (no optimizer state), compressed


class TrainingForbidden(RuntimeError):
    """A result is needed that neither the ledger nor the cache holds, and training is off."""


class LedgerError(RuntimeError):
    """The ledger is damaged, altered or stale for the current code."""


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
    #: The commit of the protocol a run was trained under (recorded, not part of its name).
    protocol: str = field(default="", compare=False)
    #: A distilled student's teachers: the ledger keys of runs trained on exactly its training images
    #: (part of its name; see :func:`training_arrays`).
    teachers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.split not in ("test", "holdout") and split_parts(self.split) is None:
            raise ValueError(f"split must be 'test', 'holdout' or 'cv<k>-<fold>', not {self.split!r}")
        if bool(self.config.distill_weight) != bool(self.teachers):
            raise ValueError("a distilled configuration (distill_weight > 0) needs teachers, and only it: "
                             f"distill_weight = {self.config.distill_weight}, {len(self.teachers)} teachers")

    def identity(self) -> dict[str, Any]:
        """What names the run: configuration, seed, split, the data's published checksums and its teachers."""
        teachers = {"teachers": list(self.teachers)} if self.teachers else {}
        return {"config": self.config.as_dict(), "seed": self.seed, "split": self.split, **teachers,
                "data": dict(data.SHA256)}

    def key(self) -> str:
        """The run's name in the ledger."""
        return cache.key_of(self.identity())

    def spec(self) -> dict[str, Any]:
        """The local cache's key: the identity plus the code hash and the environment."""
        return {**self.identity(), "code": code_hash(self.config), "env": environment()}

    def describe(self) -> str:
        return f"{self.split} seed {self.seed}"


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


# ----------------------------------------------------------- what determines a model


#: The training core, hashed for every configuration: the thread settings, data parsing and splits,
#: seeding, training and prediction.
TRAINING_CORE: tuple[Any, ...] = (_tf, data.parse, data.to_images, data.validation_split, data.fold_split, set_seed,
                                  fit, arrays, _predict)
#: The book's own code behind a configuration option, hashed where the configuration uses it: its
#: layers and losses, and a distilled student's soft targets.
OPTION_CODE: dict[str, tuple[Any, ...]] = {
    "augment_elastic": (ElasticDistortion,), "label_smoothing": (SmoothedSparseCrossentropy,),
    "augment_noise": (PixelNoise,),
    "distill_weight": (training_arrays, teacher_probabilities, soft_targets, predict_tta)}


def hashed_code(config: Config) -> tuple[Any, ...]:
    """The functions, classes and module whose code :func:`code_hash` covers for ``config``."""
    return TRAINING_CORE + tuple(obj for option, code in OPTION_CODE.items() if getattr(config, option)
                                 for obj in code)


def _read_code() -> dict[str, str]:
    """The normalised source (:func:`helpers.codehash.normalise`) of every object :func:`hashed_code` may name.

    Read once, at import: ``inspect`` reads source files from disk, so reading it later in a
    long-lived process, after a file was edited, would hash code the process is not running.
    """
    return codehash.read(dict.fromkeys(TRAINING_CORE + tuple(obj for code in OPTION_CODE.values() for obj in code)))


_CODE = _read_code()


def serialised_network(config: Config) -> str:
    """The network :func:`helpers.model.build_model` makes of ``config``: its Keras architecture,
    optimizer and loss as serialised by Keras (one JSON text)."""
    net = build_model(config, steps_per_epoch=math.ceil(data.ROWS["train"] / config.batch_size))
    return json.dumps({"model": json.loads(net.to_json()),
                       "optimizer": keras.saving.serialize_keras_object(net.optimizer),
                       "loss": keras.saving.serialize_keras_object(net.loss)}, sort_keys=True, default=str)


@functools.lru_cache(maxsize=None)
def code_hash(config: Config = BASELINE) -> str:
    """Hash of what determines a trained model of ``config``, the configuration's values aside.

    It covers the code of the training core (data parsing and splits, seeding, ``fit``, the
    thread settings; :data:`TRAINING_CORE`), the book's own layers and losses where ``config``
    uses them (:data:`OPTION_CODE`) and the network that :func:`helpers.model.build_model` makes
    of ``config`` (:func:`serialised_network`). The code counts by what it does, not by how it is
    written: each function by its name and its syntax tree without docstrings
    (:mod:`helpers.codehash`), so a comment, a docstring, a line break or a function moved to
    another module leaves the hash alone, and a changed constant, argument or statement does not.
    A change to the model code that does not change this configuration's network (a new option,
    off by default) leaves its hash alone; any change to its network does not.
    """
    code = codehash.fingerprint({name: _CODE[name] for name in map(codehash.name_of, hashed_code(config))})
    return hashlib.sha256((code + serialised_network(config)).encode()).hexdigest()[:16]


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


# ------------------------------------------------------------------ a run and its files


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
    # averaged over the shifts and small rotations (train.TTA_ROTATIONS; stored in half precision)
    tta_rotations: np.ndarray | None = field(default=None, compare=False, repr=False)
    # the digits read under pixel noise, one row per level of `data.NOISE_LEVELS` (same draws for every run)
    noisy: np.ndarray | None = field(default=None, compare=False, repr=False)

    def noisy_errors(self, level: float) -> int | None:
        """Errors on the predicted images with pixel noise of standard deviation ``level`` (None: not stored)."""
        if self.noisy is None:
            return None
        return int((self.noisy[data.NOISE_LEVELS.index(level)] != self.labels).sum())

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
    return {"predictions.npz": _npz(probabilities=probabilities, labels=yp.astype(np.int8), tta=tta.astype(np.float32),
                                    **extra),
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
        optional = {name: stored[name] if name in stored.files else None for name in ("tta", "tta_rotations", "noisy")}
    if optional["tta_rotations"] is not None:
        optional["tta_rotations"] = optional["tta_rotations"].astype(np.float32)
    return Run(job, job.key(), entry, record["history"], record["seconds"], probabilities, labels, source, record,
               **optional)


# ------------------------------------------------------------- the ledger folder


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
    job = rec["job"]
    return Job(Config(**job["config"]), job["seed"], job["split"], teachers=tuple(job.get("teachers", ())))


def stale_reason(entry: Path) -> str | None:
    """Why an intact entry is stale for the current code, or ``None``."""
    rec = record(entry)
    job = _job_of(rec)
    if job.key() != entry.name:
        return f"its record names another run ({job.key()})"
    current = code_hash(job.config)
    if rec["code"] != current:
        return f"trained with code {rec['code']}, the current code is {current}"
    for key in job.teachers:  # a student learnt from its teachers as they were when it was trained
        teacher = entry.parent / key
        if not (teacher / "record.json").is_file():
            return f"its teacher {key} is not in the ledger"
        if record(teacher)["trained"] > rec["trained"]:
            return f"its teacher {key} was trained again after it"
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
    return data.cache_root() / "ledger-weights"


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


def estimate_seconds(job: "Job") -> float:  # noqa: F821
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

