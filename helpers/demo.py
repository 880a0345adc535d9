"""The in-browser demo: export models from the ledger for a small JavaScript forward pass.

The book's networks are a few layers (convolution, Leaky ReLU, max pooling, flatten, dense), so the page
runs them with about 150 lines of plain JavaScript (``_static/demo/demo.js``) instead of a runtime of several
megabytes. :func:`export` writes, at build time, one JSON description per model and its weights as
little-endian float32 (the probabilities then match Keras' to about 1e-6; float16 would not keep them within
1e-4), plus test images for the page's "a random test image" button. Nothing here is committed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from helpers import data, experiments, recipe, runs

#: Layers that are the identity at inference time.
IDENTITY = ("Dropout", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomShear", "ElasticDistortion",
            "PixelNoise", "InputLayer")


def describe(model: Any) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The model as a list of layer descriptions and the float32 arrays they refer to."""
    layers: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []

    def add(array: np.ndarray) -> int:
        arrays.append(np.ascontiguousarray(array, dtype="<f4"))
        return len(arrays) - 1

    for layer in model.layers:
        kind = type(layer).__name__
        if kind in IDENTITY:
            continue
        if kind in ("Conv2D", "Dense"):
            kernel, *rest = layer.get_weights()
            bias = rest[0] if rest else np.zeros(kernel.shape[-1], np.float32)
            conv = kind == "Conv2D"
            if conv and (layer.strides != (1, 1) or layer.dilation_rate != (1, 1)):
                raise ValueError(f"{layer.name}: only stride 1 and no dilation are supported")
            layers.append({"type": "conv" if conv else "dense", "kernel": add(kernel), "bias": add(bias),
                           "shape": list(kernel.shape), **({"padding": layer.padding} if conv else {}),
                           "activation": layer.activation.__name__})
        elif kind == "LeakyReLU":
            layers.append({"type": "leaky_relu", "slope": float(layer.negative_slope)})
        elif kind == "MaxPooling2D":
            if tuple(layer.pool_size) != tuple(layer.strides) or layer.padding != "valid":
                raise ValueError(f"{layer.name}: only non-overlapping valid pooling is supported")
            layers.append({"type": "max_pool", "size": int(layer.pool_size[0])})
        elif kind == "Flatten":
            layers.append({"type": "flatten"})
        else:
            raise ValueError(f"{layer.name}: layer type {kind} is not supported by the page's forward pass")
    return layers, arrays


def export_model(model: Any, scale: str, folder: Path, name: str) -> dict[str, Any]:
    """Write ``<name>.json`` and ``<name>.bin`` into ``folder``; return the description."""
    layers, arrays = describe(model)
    offsets = np.cumsum([0, *(array.size for array in arrays)])  # in float32 values
    spec = {"name": name, "scale": scale, "layers": layers,
            "arrays": [{"offset": int(o), "length": int(a.size)} for o, a in zip(offsets, arrays)],
            "weights": f"{name}.bin"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.bin").write_bytes(b"".join(array.tobytes() for array in arrays))
    (folder / f"{name}.json").write_text(json.dumps(spec))
    return spec


def export(folder: Path) -> dict[str, Any]:
    """Export the paper's model and W, the book's best model (:func:`helpers.experiments.robust_job`; seed 0 of
    each, from the ledger), and 200 test images drawn with seed 0 with their labels and index in the test file;
    returns the bytes written (``sizes``, by model and ``samples``) and the models' ``runs``."""
    from helpers.trainer import load_model  # TensorFlow: only to export the models
    stored = {"paper": runs.run(recipe.paper_job()), "best": runs.run(experiments.robust_job())}
    for name, result in stored.items():
        export_model(load_model(result), result.job.config.scale, folder, name)
    images, labels = data.load_usps("test", scale="symmetric")
    pick = np.sort(np.random.default_rng(0).choice(len(labels), 200, replace=False))
    sample = {"index": pick.tolist(), "labels": labels[pick].tolist(),
              "pixels": [[round(float(v), 4) for v in images[i].ravel()] for i in pick]}
    (folder / "samples.json").write_text(json.dumps(sample))
    sizes = {name: sum(f.stat().st_size for f in folder.glob(f"{name}.*")) for name in [*stored, "samples"]}
    return {"sizes": sizes, "runs": stored}


def comparison(runs: dict[str, Any], labels: np.ndarray, n: int = 10) -> tuple[list[int], list[str], int]:
    """For the static figure: ``n`` test images drawn at random (seed 0) and the first ``n`` on which the paper's
    and the best model (``runs["paper"]``, ``runs["best"]``) disagree, a caption for each, and how many differ."""
    paper, best = runs["paper"].predicted, runs["best"].predicted
    disagree = np.flatnonzero(paper != best)
    chosen = [int(i) for i in np.random.default_rng(0).choice(len(labels), n, replace=False)]
    chosen += [int(i) for i in disagree[:n]]
    titles = [f"true {labels[i]}\npaper {paper[i]} W {best[i]}" for i in chosen]
    return chosen, titles, len(disagree)
