"""Seconds per epoch of the paper's model: through `helpers` against a plain `model.fit`.

Run with `make bench`. Each measurement runs in a fresh process on the same machine:

- plain: the model written the way a typical Keras user writes it, trained with
  `model.fit` on NumPy arrays with per-epoch validation, TensorFlow's default threads;
- helpers: `helpers.train.fit` (one thread per process, determinism on), same model,
  same batch size, same validation data;
- many models: N models trained one after another with plain `fit`, against the same N
  trained by `helpers.runs.run_many` (two one-thread worker processes side by side).

Writes benchmarks/results.json (committed; the book's appendix glues it).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "20"))
MODELS = int(os.environ.get("BENCH_MODELS", "4"))

PLAIN = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
from keras import layers
from helpers import data, runs
from helpers.job import Job
x, y = data.load_usps("train"); xt, yt = data.load_usps("test")
epochs, models = int(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
for seed in range(models):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        layers.Conv2D(64, 5, padding="valid"), layers.LeakyReLU(negative_slope=0.1),
        layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=256, validation_data=(xt, yt), verbose=0)
print(time.perf_counter() - start)
"""

HELPERS_ONE = r"""
import sys, time
from helpers import data, train
from helpers.config import BASELINE
x, y = data.load_usps("train"); xt, yt = data.load_usps("test")
config = BASELINE.with_(filters=64, padding="valid", epochs=int(sys.argv[1]))
start = time.perf_counter()
train.fit(config, x, y, seed=0, validation=(xt, yt), progress_every=None)
print(time.perf_counter() - start)
"""

HELPERS_MANY = r"""
import sys, time
def main():
    from helpers import train
    from helpers.config import BASELINE
    config = BASELINE.with_(filters=64, padding="valid", epochs=int(sys.argv[1]))
    start = time.perf_counter()
    runs.run_many([Job(config, seed) for seed in range(int(sys.argv[2]))], workers=2)
    print(time.perf_counter() - start)
if __name__ == "__main__":
    main()
"""


def measure(code: str, *args: int, env: dict[str, str] | None = None) -> float:
    """Wall seconds reported by ``code`` run in a fresh Python process (the last stdout line)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(code)
    try:
        done = subprocess.run([sys.executable, handle.name, *map(str, args)], capture_output=True,
                              text=True, check=True, env={**os.environ, **(env or {})})
    finally:
        os.unlink(handle.name)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np
    from helpers._tf import tf

    print(f"benchmark: {EPOCHS} epochs per model, {MODELS} models for the many-model case", flush=True)
    plain_one = measure(PLAIN, EPOCHS, 1)
    print(f"  plain model.fit, one model:        {plain_one / EPOCHS:.3f} s per epoch", flush=True)
    helpers_one = measure(HELPERS_ONE, EPOCHS)
    print(f"  helpers.train.fit, one model:      {helpers_one / EPOCHS:.3f} s per epoch", flush=True)
    plain_many = measure(PLAIN, EPOCHS, MODELS)
    print(f"  plain model.fit, {MODELS} models:        {plain_many / (EPOCHS * MODELS):.3f} s per epoch-model",
          flush=True)
    with tempfile.TemporaryDirectory() as empty_cache:
        helpers_many = measure(HELPERS_MANY, EPOCHS, MODELS, env={"USPS_CACHE_DIR": empty_cache})
    print(f"  helpers.runs.run_many, {MODELS} models: {helpers_many / (EPOCHS * MODELS):.3f} s per epoch-model "
          "(including process start-up)", flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(), "tensorflow": tf.__version__, "numpy": np.__version__,
        "epochs": EPOCHS, "models": MODELS,
        "plain_single_s_per_epoch": plain_one / EPOCHS, "helpers_single_s_per_epoch": helpers_one / EPOCHS,
        "plain_many_s_per_epoch_model": plain_many / (EPOCHS * MODELS),
        "helpers_many_s_per_epoch_model": helpers_many / (EPOCHS * MODELS),
        "single_ratio": plain_one / helpers_one, "many_ratio": plain_many / helpers_many,
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"ratio plain / helpers: one model {result['single_ratio']:.2f}x, "
          f"{MODELS} models {result['many_ratio']:.2f}x  -> benchmarks/results.json")


if __name__ == "__main__":
    main()
