"""A job: what names a training run (a configuration, a seed and a split) and the images it uses.

Splits: ``"test"`` trains on all 7291 training images and predicts the 2007 test images (the paper's
protocol); ``"holdout"`` trains on a stratified 80 % of the training images and predicts the other 20 %;
``"cv5-2"`` trains on four fifths of them and predicts fold 2 of a stratified 5-fold split (every
training image is predicted once over the five folds). A distilled student also names its teachers.

Its name in the ledger (:meth:`Job.key`) hashes what the job is; the code hash (:func:`code_hash`) what
determines the model it trains. The local cache's key (:meth:`Job.spec`) adds both the code hash and the
environment (:func:`environment`), because a reader's own run depends on both.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers import cache, codehash, data
from helpers.config import BASELINE, DEFAULT_SEED, Config
from helpers.stamp import code_stamp

PACKAGE = Path(__file__).resolve().parent

#: The training core, hashed for every configuration: the thread settings, data parsing and splits,
#: seeding, training and prediction. Each is named by where it is defined, ``"module:name"`` of
#: ``helpers`` (a whole module: ``"module"``), and read from that file's text, not imported.
TRAINING_CORE: tuple[str, ...] = ("_tf", "data:parse", "data:to_images", "data:validation_split", "data:fold_split",
                                  "train:set_seed", "train:fit", "job:arrays", "train:_predict")
#: The book's own code behind a configuration option, hashed where the configuration uses it: its
#: layers and losses, and a distilled student's soft targets.
OPTION_CODE: dict[str, tuple[str, ...]] = {
    "augment_elastic": ("model:ElasticDistortion",), "label_smoothing": ("model:SmoothedSparseCrossentropy",),
    "augment_noise": ("model:PixelNoise",),
    "distill_weight": ("trainer:training_arrays", "trainer:teacher_probabilities", "train:soft_targets",
                       "train:predict_tta")}


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
    #: (part of its name; see :func:`helpers.trainer.training_arrays`).
    teachers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.split not in ("test", "holdout") and split_parts(self.split) is None:
            raise ValueError(f"split must be 'test', 'holdout' or 'cv<k>-<fold>', not {self.split!r}")
        if bool(self.config.distill_weight) != bool(self.teachers):
            raise ValueError("a distilled configuration (distill_weight > 0) needs teachers, and only it: "
                             f"distill_weight = {self.config.distill_weight}, {len(self.teachers)} teachers")

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Job:
        job = rec["job"]
        return cls(Config(**job["config"]), job["seed"], job["split"], teachers=tuple(job.get("teachers", ())))

    def identity(self) -> dict[str, Any]:
        """What names the run: configuration, seed, split, the data's published checksums and its teachers."""
        teachers = {"teachers": list(self.teachers)} if self.teachers else {}
        return {"config": self.config.as_dict(), "seed": self.seed, "split": self.split, **teachers,
                "data": dict(data.SHA256)}

    def key(self) -> str:
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
    from helpers._tf import THREADS, keras, tf  # TensorFlow: not to read the ledger
    cpu, flags = _cpu()
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "machine": platform.machine(), "cpu": cpu, "cpu_flags": flags,
            "threads": THREADS, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


# ----------------------------------------------------------- what determines a model

#: The normalised source of everything :func:`code_hash` may hash, by name. Read once, at import: read later
#: in a long-lived process, after a file was edited, it would hash code the process is not running.
_CODE = codehash.read_named(dict.fromkeys(TRAINING_CORE + sum(OPTION_CODE.values(), ())), PACKAGE)
#: The package's code stamp (without the ledger) at import, for the same reason: the key of what this
#: process computes into the cache (:func:`unchanged`).
CODE_STAMP = code_stamp(ledger=False)


def unchanged() -> bool:
    """Whether the package's code is still what this process imported (:data:`CODE_STAMP`)."""
    return code_stamp(ledger=False) == CODE_STAMP


def versions(*packages: str) -> dict[str, str]:
    """The installed version of each package (from its metadata, without importing it)."""
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed under this name"
    return found


def serialised_network(config: Config) -> str:
    """The Keras architecture, optimizer and loss that :func:`helpers.model.build_model` makes of ``config``,
    as one JSON text. Kept in the per-user cache under what determines it (the configuration, the package's
    code and the versions of TensorFlow and Keras): reading the ledger then needs no TensorFlow."""
    def serialise() -> str:
        from helpers._tf import keras  # TensorFlow: only for a network the cache lacks
        from helpers.model import build_model  # TensorFlow, as keras
        net = build_model(config, steps_per_epoch=math.ceil(data.ROWS["train"] / config.batch_size))
        return json.dumps({"model": json.loads(net.to_json()),
                           "optimizer": keras.saving.serialize_keras_object(net.optimizer),
                           "loss": keras.saving.serialize_keras_object(net.loss)}, sort_keys=True, default=str)

    spec = {"network": config.as_dict(), "code": CODE_STAMP, **versions("tensorflow", "keras")}
    return cache.cached_json("networks", spec, serialise, still_valid=unchanged)


@functools.lru_cache(maxsize=None)
def code_hash(config: Config = BASELINE) -> str:
    """Hash of what determines a trained model of ``config``, the configuration's values aside: the code of
    the training core (:data:`TRAINING_CORE`), the book's layers and losses where ``config`` uses them
    (:data:`OPTION_CODE`), each read for what it does (:mod:`helpers.codehash`), and the network made of
    ``config`` (:func:`serialised_network`). A change to the model code that does not change this
    configuration's network (a new option, off by default) leaves its hash alone."""
    places = TRAINING_CORE + tuple(w for option, code in OPTION_CODE.items() if getattr(config, option) for w in code)
    code = codehash.fingerprint({name: _CODE[name] for name in (w.partition(":")[2] or w for w in places)})
    return hashlib.sha256((code + serialised_network(config)).encode()).hexdigest()[:16]
