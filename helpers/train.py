"""Fit a network and predict with it: the training core, nothing about where runs are kept.

:func:`fit` trains a fresh model of a configuration on given images (seeded, deterministic);
:func:`_predict` and :func:`predict_tta` read images with it. Which images a run trains on, how its
result is stored and found again, and when it is trained at all is :mod:`helpers.runs`'s job.
The source of :func:`set_seed`, :func:`fit` and :func:`_predict` is part of the code hash that
names a ledger entry's code (:func:`helpers.job.code_hash`): edit them deliberately.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import ndimage

from helpers._tf import keras, tf
from helpers.config import DEFAULT_SEED, TTA_ROTATIONS, TTA_SHIFTS, Config
from helpers.model import build_model


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


def _predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=1024, verbose=0), dtype=np.float32)


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


def rotated(images: np.ndarray, degrees: float, background: float) -> np.ndarray:
    """``images`` (n x 16 x 16 x 1) turned by ``degrees`` about their centre (bilinear, edge filled with background)."""
    if not degrees:
        return images
    return ndimage.rotate(images, degrees, axes=(2, 1), reshape=False, order=1, mode="constant", cval=background)


def predict_tta_rotations(model: keras.Model, images: np.ndarray, background: float) -> np.ndarray:
    """Class probabilities averaged over every shift of :data:`TTA_SHIFTS` and angle of :data:`TTA_ROTATIONS`."""
    return np.mean([_predict(model, shifted(rotated(images, angle, background), dy, dx, background))
                    for angle in TTA_ROTATIONS for dy, dx in TTA_SHIFTS], axis=0)


def soft_targets(teachers: np.ndarray, labels: np.ndarray, weight: float, temperature: float) -> np.ndarray:
    """Distillation targets: ``weight`` times the teachers' probabilities tempered by ``temperature``
    (proportional to ``p ** (1 / temperature)``) plus ``1 - weight`` times the one-hot labels (n x 10, float32)."""
    if teachers.shape != (len(labels), 10):
        raise ValueError(f"teacher probabilities of shape {teachers.shape}, expected {(len(labels), 10)}")
    tempered = np.power(np.clip(teachers.astype(np.float64), 1e-12, 1.0), 1.0 / temperature)
    tempered /= tempered.sum(axis=1, keepdims=True)
    one_hot = np.eye(10)[np.asarray(labels, dtype=np.int64)]
    return (weight * tempered + (1.0 - weight) * one_hot).astype(np.float32)


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
