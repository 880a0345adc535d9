"""Train the paper's model with compact progress, cached by everything that determines it."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from helpers import cache, data
from helpers._tf import keras, tf
from helpers.config import BASELINE, DECISIONS, Config, profile
from helpers.model import build_model

DEFAULT_SEED = 0
_CODE_FILES = ("data.py", "config.py", "model.py", "train.py")


def code_hash() -> str:
    """Hash of the helpers modules that determine a trained model."""
    digest = hashlib.sha256()
    for name in _CODE_FILES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def environment() -> dict[str, str]:
    """Library versions and machine facts that a trained model depends on."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "machine": platform.machine()}


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
    model = build_model(config)
    callbacks = [Progress(config.epochs, progress_every, label)] if progress_every else []
    start = time.perf_counter()
    history = model.fit(x, y, epochs=config.epochs, batch_size=config.batch_size,
                        validation_data=validation, verbose=0, callbacks=callbacks, shuffle=True)
    seconds = time.perf_counter() - start
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, seconds


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
    spec = spec_for("paper-model", config, seed)

    def build(folder: Path) -> None:
        x, y = data.load_usps("train", scale=config.scale)
        xt, yt = data.load_usps("test", scale=config.scale)
        print(f"Training {config.epochs} epochs on {len(y)} images (seed {seed}); "
              f"nothing usable is cached for this configuration.", flush=True)
        model, history, seconds = fit(config, x, y, seed=seed, validation=(xt, yt),
                                      progress_every=progress_every)
        model.save(folder / "model.keras")
        (folder / "history.json").write_text(json.dumps(history))
        (folder / "info.json").write_text(json.dumps({"seconds": seconds, "env": environment()}))

    entry, built = cache.get_or_build("models", spec, build)
    info = json.loads((entry / "info.json").read_text())
    model = keras.saving.load_model(entry / "model.keras")
    if not built:
        print(f"Loaded the trained model {entry.name} from the cache "
              f"(trained in {info['seconds']:.0f} s).", flush=True)
    return TrainedModel(model, config, seed, json.loads((entry / "history.json").read_text()),
                        info["seconds"], entry.name, not built)


def _split_data(scale: str, seed: int) -> tuple[np.ndarray, ...]:
    x, y = data.load_usps("train", scale=scale)  # type: ignore[arg-type]
    fit_idx, hold_idx = data.validation_split(y, seed=seed)
    return x[fit_idx], y[fit_idx], x[hold_idx], y[hold_idx]


def holdout_score(config: Config, seed: int = DEFAULT_SEED, label: str = "") -> dict[str, float]:
    """Train on 80 % of the training set and score on the other 20 % (never the test set)."""
    xf, yf, xh, yh = _split_data(config.scale, seed)
    model, _, seconds = fit(config, xf, yf, seed=seed, progress_every=None)
    predicted = model.predict(xh, batch_size=1024, verbose=0).argmax(axis=1)
    errors = int((predicted != yh).sum())
    print(f"  {label:<40s} holdout accuracy {100 * (1 - errors / len(yh)):6.2f} %  "
          f"({errors} errors, {seconds:4.0f} s)", flush=True)
    return {"accuracy": 1 - errors / len(yh), "errors": errors, "n": len(yh), "seconds": seconds}


def decision_sweep() -> list[dict[str, Any]]:
    """Score each option of every open decision, one at a time from :data:`BASELINE`.

    Each option is trained ``profile().sweep_epochs`` epochs on the 80 % part of the
    training set and scored on the other 20 %, once per seed of ``profile().sweep_seeds``
    (each seed draws its own split); the errors are summed over seeds. Cached.
    """
    settings = profile()
    epochs, seeds = settings.sweep_epochs, settings.sweep_seeds
    spec = spec_for("decision-sweep", BASELINE.with_(epochs=epochs), seeds[0], seeds=list(seeds),
                    decisions=[[d.name, d.options] for d in DECISIONS])

    def compute() -> list[dict[str, Any]]:
        print(f"Decision search: {epochs} epochs per run, seeds {list(seeds)}, "
              f"on 80/20 splits of the training set.", flush=True)
        rows, scored = [], {}
        for decision in DECISIONS:
            for number, (label, changes) in enumerate(decision.options):
                config = BASELINE.with_(epochs=epochs, **changes)
                if config not in scored:
                    runs = [holdout_score(config, seed, f"{decision.name}: {label} (seed {seed})")
                            for seed in seeds]
                    errors, n = sum(r["errors"] for r in runs), sum(r["n"] for r in runs)
                    scored[config] = {"errors": errors, "n": n, "accuracy": 1 - errors / n,
                                      "seconds": sum(r["seconds"] for r in runs)}
                rows.append({"decision": decision.name, "option": label, "baseline": number == 0,
                             "changes": changes, **scored[config]})
        return rows

    return cache.cached_json("sweeps", spec, compute)


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
