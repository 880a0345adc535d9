"""The store: a run's entry in the results ledger, and the ledger's lookup.

A run's entry is a folder named by its job's key (:meth:`helpers.job.Job.key`): ``record.json`` (the job,
its training history and time, the environment it ran in, the data checksums, the checksum of the labels
it predicts and the code hash, :func:`helpers.job.code_hash`), ``predictions.npz`` and, for the few models
a chapter loads, :data:`WEIGHTS`. It is written into a temporary folder and renamed into place when
complete (:func:`write`); ``MANIFEST.json`` lists the SHA-256 of every file of the ledger. An entry is
*current* when its record names its key and its code hash is the current code's (:func:`stale_reason`).
The ledger as a whole is :mod:`helpers.ledger`'s; how a result is obtained is :mod:`helpers.runs`'s.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from filelock import FileLock

from helpers import cache, data
from helpers.data import sha256_of
from helpers.job import Job, code_hash

ENV_LEDGER = "USPS_LEDGER_DIR"
MANIFEST = "MANIFEST.json"
KIND = "runs"
REPO = Path(__file__).resolve().parents[1]
WEIGHTS = "model.weights.npz"  # the layers' weights only (no optimizer state), compressed
Source = Literal["ledger", "cache", "trained"]


class LedgerError(RuntimeError):
    """The ledger is damaged, altered or stale for the current code."""


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
    source: Source = "ledger"
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # averaged over the image and its one-pixel shifts (runs trained before it existed: None)
    tta: np.ndarray | None = field(default=None, compare=False, repr=False)
    # averaged over the shifts and small rotations (config.TTA_ROTATIONS; stored in half precision)
    tta_rotations: np.ndarray | None = field(default=None, compare=False, repr=False)
    # the digits read under pixel noise, one row per level of `data.NOISE_LEVELS` (same draws for every run)
    noisy: np.ndarray | None = field(default=None, compare=False, repr=False)

    def noisy_errors(self, level: float) -> int | None:
        """Errors on the predicted images with pixel noise of standard deviation ``level`` (None: not stored)."""
        return None if self.noisy is None else int((self.noisy[data.NOISE_LEVELS.index(level)] != self.labels).sum())

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
        """How this run was trained, as the training chapter quotes it."""
        env = self.record.get("environment", {})
        return {"epochs": self.job.config.epochs, "batch_size": self.job.config.batch_size,
                "train_seconds": self.seconds, "seconds_per_epoch": self.seconds_per_epoch,
                "train_cpu": env.get("cpu", "unknown"), "train_threads": env.get("threads", "unknown")}


def npz(*arrays_: np.ndarray, **named: np.ndarray) -> bytes:
    """The bytes of a compressed ``.npz`` file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, *arrays_, **named)
    return buffer.getvalue()


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write an entry's files (from :func:`helpers.trainer.entry_files`) into ``folder``."""
    for name, content in files.items():
        (folder / name).write_bytes(content)


def load_entry(job: Job, entry: Path, source: Source) -> Run:
    rec = record(entry)
    with np.load(entry / "predictions.npz") as stored:
        probabilities, labels = stored["probabilities"], stored["labels"].astype(np.int64)
        optional = {name: stored[name] if name in stored.files else None for name in ("tta", "tta_rotations", "noisy")}
    if optional["tta_rotations"] is not None:
        optional["tta_rotations"] = optional["tta_rotations"].astype(np.float32)
    return Run(job, job.key(), entry, rec["history"], rec["seconds"], probabilities, labels, source, rec,
               **optional)


# ------------------------------------------------------------- the ledger folder


def root() -> Path:
    """The ledger's folder: ``USPS_LEDGER_DIR``, else ``results/`` beside ``helpers/``."""
    env = os.environ.get(ENV_LEDGER)
    return Path(env).expanduser().resolve() if env else REPO / "results"


def entries(folder: Path | None = None) -> list[Path]:
    """Every complete entry folder of the ledger, sorted."""
    runs = (folder or root()) / KIND
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []


def record(entry: Path) -> dict[str, Any]:
    return json.loads((entry / "record.json").read_text())


def stale_reason(entry: Path) -> str | None:
    """Why an intact entry is stale for the current code, or ``None``."""
    rec = record(entry)
    job = Job.from_record(rec)
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


def find(job: Job, *, stale_ok: bool = False, quiet: bool = False) -> Path | None:
    """The ledger entry of ``job`` if it is there, intact and current. An altered entry raises
    :class:`LedgerError`; so does a stale one, unless ``stale_ok`` (then it is absent, with a notice)."""
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


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``path`` (making its folder) so that a write killed half-way leaves no file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def pooled_weights(key: str, code: str) -> Path:
    """Where ``make results`` keeps the weights of the run ``key`` trained by code ``code`` (per user, not
    committed; the ledger keeps only the weights the chapters load)."""
    return data.cache_root() / "ledger-weights" / f"{key}-{code}-{WEIGHTS}"


def write(job: Job, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Build ``job``'s entry into the ledger (replacing a stale one) and update the manifest."""
    folder = root()

    def build_without_weights(tmp: Path) -> None:
        build(tmp)
        # Weights go to the per-user pool; `ledger.keep_weights` moves the few the book needs in.
        write_atomic(pooled_weights(job.key(), record(tmp)["code"]), (tmp / WEIGHTS).read_bytes())
        (tmp / WEIGHTS).unlink()

    entry, built = cache.get_or_build(KIND, job.identity(), build_without_weights, folder,
                                        accept=lambda entry: stale_reason(entry) is None)
    if built:
        write_manifest(folder)
    return entry, built


def ledger_files(folder: Path) -> list[Path]:
    """Every file of the ledger but its manifest, locks and unfinished (dot-named) entries."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not p.name.endswith(".lock") and p.suffix != ".md"
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def write_manifest(folder: Path) -> Path:
    """Rewrite ``folder``'s ``MANIFEST.json``: the SHA-256 of every file of every complete entry."""
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".manifest.lock")):
        files = {str(p.relative_to(folder)): sha256_of(p) for p in ledger_files(folder)}
        write_atomic(folder / MANIFEST, (json.dumps({"files": files}, indent=1, sort_keys=True) + "\n").encode())
    return folder / MANIFEST
