"""Classical baselines on the same split: k-nearest neighbours, logistic regression, RBF SVM.

Each method's one hyperparameter is chosen on a stratified 80/20 split of the training
set; the chosen model is then refit on all 7291 training images and scored once on the
test set. Results are cached.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from typing import Any, Callable

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from helpers import data, runs

#: method name -> (hyperparameter name, candidate values, estimator factory)
METHODS: dict[str, tuple[str, tuple[Any, ...], Callable[[Any], Any]]] = {
    "k-nearest neighbours": ("k", (1, 3, 5, 7), lambda k: KNeighborsClassifier(n_neighbors=k)),
    "logistic regression": ("C", (0.01, 0.1, 1.0),
                            lambda c: LogisticRegression(C=c, max_iter=2000)),
    "RBF support vector machine": ("C", (1.0, 10.0, 100.0), lambda c: SVC(C=c, kernel="rbf", gamma="scale")),
}


def _flat(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = data.load_usps(split, scale="unit")  # type: ignore[arg-type]
    return images.reshape(len(images), -1), labels


def evaluate_method(name: str) -> dict[str, Any]:
    """Choose the hyperparameter on the holdout split, refit on all training images, test once."""
    parameter, values, make = METHODS[name]
    x, y = _flat("train")
    xt, yt = _flat("test")
    fit_idx, hold_idx = data.validation_split(y, seed=0)
    holdout = {}
    for value in values:
        model = make(value).fit(x[fit_idx], y[fit_idx])
        holdout[value] = int((model.predict(x[hold_idx]) != y[hold_idx]).sum())
    chosen = min(values, key=lambda v: (holdout[v], values.index(v)))
    start = time.perf_counter()
    model = make(chosen).fit(x, y)
    seconds = time.perf_counter() - start
    predicted = model.predict(xt)
    errors = int((predicted != yt).sum())
    return {"method": name, "parameter": parameter, "holdout errors": {str(k): v for k, v in holdout.items()},
            "chosen": chosen, "test errors": errors, "test error rate (%)": 100 * errors / len(yt),
            "fit seconds": seconds, "test predictions": [int(p) for p in predicted],
            "sklearn": sklearn.__version__}


def code_hash() -> str:
    """Hash of the code that determines a baseline's result: the methods and their parameter values,
    how the images are read and how a method is chosen and tested (not the rest of this file)."""
    factories = "".join(inspect.getsource(make) for _, _, make in METHODS.values())
    values = repr({name: (parameter, values) for name, (parameter, values, _) in METHODS.items()})
    source = inspect.getsource(_flat) + inspect.getsource(evaluate_method) + factories + values
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def all_baselines() -> list[dict[str, Any]]:
    """Every baseline's result, from the ledger (keyed by the data checksums and :func:`code_hash`)."""
    code = code_hash()
    return [runs.stored_json("baselines", {"what": "baseline", "method": name, "data": dict(data.SHA256),
                                             "code": code}, lambda n=name: evaluate_method(n))
            for name in METHODS]
