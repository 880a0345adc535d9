"""The training configuration of the paper's model and the run profiles.

The paper fixes the layer types, the 5x5 kernel, the 2x2 pooling, 100 epochs and a batch of 256. Everything
else is a reproduction decision, made in the model chapter on a validation split of the training set.

Two profiles, chosen by ``USPS_BOOK_PROFILE``: ``full`` (the default, the paper's recipe) and ``ci``, a small
profile for continuous integration that runs every code path with only a few epochs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from helpers import paper

Profile = Literal["full", "ci"]
ENV_PROFILE = "USPS_BOOK_PROFILE"
DEFAULT_SEED = 0  # a run's seed when none is given
#: Test-time augmentation (:func:`helpers.train.predict_tta`): each image and its four copies moved by one
#: pixel (up, down, left, right); beyond shifts, each shifted copy also turned by these angles (degrees).
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
TTA_ROTATIONS: tuple[float, ...] = (-6.0, 0.0, 6.0)


@dataclass(frozen=True)
class Config:
    """Everything that determines the model and how it is trained (the seed aside)."""

    scale: Literal["unit", "symmetric"] = "unit"
    filters: int = 32
    kernel_size: int = 5
    padding: Literal["same", "valid"] = "same"
    leaky_slope: float = 0.1
    pool_size: int = 2
    dense_units: int = 128
    dropout: float = 0.5
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = 1e-3
    epochs: int = paper.EPOCHS
    batch_size: int = paper.BATCH_SIZE
    # Beyond the paper (all off in the paper's model): see LADDER.
    schedule: Literal["constant", "cosine"] = "constant"
    augment_shift: float = 0.0  # random shifts, as a fraction of the image side
    augment_rotation: float = 0.0  # random rotations, in degrees
    batch_norm: bool = False
    second_block_filters: int = 0  # a second 3x3 convolution block when > 0
    # Beyond the best published result (all off before it): see BEST_OPTIONS. Left out of
    # `as_dict` while at their defaults, so that the runs made before they existed keep their names.
    augment_zoom: float = 0.0  # random zoom in or out, as a fraction of the image side
    augment_shear: float = 0.0  # random shear along x and y, as a fraction of the image side
    augment_elastic: float = 0.0  # elastic distortions: alpha in pixels (smoothing sigma 2 px)
    label_smoothing: float = 0.0  # the share of each label spread over the ten classes
    third_block_filters: int = 0  # a third 3x3 convolution block when > 0 (after the second)
    weight_average: float = 0.0  # when > 0: predict with an exponential moving average of the weights (its momentum)
    augment_noise: float = 0.0  # Gaussian pixel noise in training: each image's sigma uniform in [0, this]
    # Distillation (off when 0): the share of the teachers' tempered probabilities in the soft targets a
    # student is trained on, and their temperature. The teachers are named by the job (`helpers.job.Job.teachers`).
    distill_weight: float = 0.0
    distill_temperature: float = 1.0

    def with_(self, **changes: Any) -> "Config":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as a plain dictionary (for keys and JSON)."""
        return {k: v for k, v in asdict(self).items() if k not in LATE_FIELDS or v != LATE_FIELDS[k]}


#: Fields added after the ledger's first runs, with the defaults that leave them out of a run's name.
LATE_FIELDS: dict[str, Any] = {"augment_zoom": 0.0, "augment_shear": 0.0, "augment_elastic": 0.0,
                               "label_smoothing": 0.0, "third_block_filters": 0, "weight_average": 0.0,
                               "augment_noise": 0.0, "distill_weight": 0.0, "distill_temperature": 1.0}


@dataclass(frozen=True)
class ProfileSettings:
    """How long the book's runs are in one profile."""

    name: Profile
    epochs: int
    sweep_epochs: int
    sweep_seeds: tuple[int, ...]


PROFILES: dict[str, ProfileSettings] = {  # see the beyond-the-paper settings below
    "full": ProfileSettings("full", epochs=paper.EPOCHS, sweep_epochs=50, sweep_seeds=(0, 1)),
    "ci": ProfileSettings("ci", epochs=3, sweep_epochs=2, sweep_seeds=(0, 1)),
}


def profile() -> ProfileSettings:
    """The active profile, from ``USPS_BOOK_PROFILE`` (``full`` when unset)."""
    name = os.environ.get(ENV_PROFILE, "full")
    if name not in PROFILES:
        raise ValueError(f"{ENV_PROFILE}={name!r}: use one of {sorted(PROFILES)}.")
    return PROFILES[name]


#: The starting point of the decision search: common Keras defaults for this layer stack.
BASELINE = Config()


@dataclass(frozen=True)
class Decision:
    """One choice the paper leaves open, and the options tried on the validation split."""

    name: str
    paper_says: str
    options: tuple[tuple[str, dict[str, Any]], ...]  # (label, changes to BASELINE); first = baseline


DECISIONS: tuple[Decision, ...] = (
    Decision("pixel scaling", "0 = white, 1 = black",
             (("[0, 1], 1 = ink", {"scale": "unit"}), ("[-1, 1] as in the files", {"scale": "symmetric"}))),
    Decision("convolution filters", '"multiple feature maps"',
             (("32", {"filters": 32}), ("16", {"filters": 16}), ("64", {"filters": 64}))),
    Decision("padding", "not stated",
             (("same", {"padding": "same"}), ("valid", {"padding": "valid"}))),
    Decision("Leaky ReLU slope", "Leaky ReLU, slope not stated",
             (("0.1", {"leaky_slope": 0.1}), ("0.3 (Keras default)", {"leaky_slope": 0.3}))),
    Decision("dense units", "a fully connected layer, width not stated",
             (("128", {"dense_units": 128}), ("64", {"dense_units": 64}), ("256", {"dense_units": 256}))),
    Decision("dropout rate", "dropout at the fully connected layer, rate not stated",
             (("0.5", {"dropout": 0.5}), ("0.25", {"dropout": 0.25}))),
    Decision("optimizer", "not stated",
             (("Adam, lr 1e-3", {"optimizer": "adam", "learning_rate": 1e-3}),
              ("Adam, lr 3e-4", {"optimizer": "adam", "learning_rate": 3e-4}),
              ("SGD + momentum 0.9, lr 0.01", {"optimizer": "sgd", "learning_rate": 1e-2}))),
)


@dataclass(frozen=True)
class Rung:
    """One step of the ladder beyond the paper: a documented change to the previous rung."""

    name: str
    why: str
    changes: dict[str, Any]


#: The modernisation ladder, each rung adding to the one before (all trained on the 7291
#: training images only; kept or dropped by its error on holdout splits of them).
LADDER: tuple[Rung, ...] = (
    Rung("cosine learning-rate decay, half the epochs",
         "anneal the step size to zero over the run instead of a constant rate; the annealed run "
         "converges in half the paper's epochs", {"schedule": "cosine", "epochs": "half"}),
    Rung("shift and rotation augmentation", "random shifts of up to 2 pixels and rotations of up to 10 degrees, "
         "the small deformations handwriting has", {"augment_shift": 2 / 16, "augment_rotation": 10.0}),
    Rung("second convolution block", "a 3x3 convolution with 64 filters and pooling after the first block",
         {"second_block_filters": 64}),
)


@dataclass(frozen=True)
class BeyondSettings:
    """How many seeds, options and epochs the beyond-the-paper chapters use in one profile."""

    seeds: tuple[int, ...]
    dense_units: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    batch_seeds: tuple[int, ...]
    ladder_seeds: tuple[int, ...]
    holdout_seeds: tuple[int, ...]
    epochs: int
    workers: int
    reading_seeds: tuple[int, ...] = (0, 1)
    option_seeds: tuple[int, ...] = (0,)
    best_seeds: tuple[int, ...] = (0,)  # the cross-validated best model, trained on all training images

    def resolve(self, changes: dict[str, Any]) -> dict[str, Any]:
        """A rung's changes with ``epochs="half"`` or ``"double"`` made concrete for this profile."""
        if changes.get("epochs") == "half":
            return {**changes, "epochs": max(1, self.epochs // 2)}
        if changes.get("epochs") == "double":
            return {**changes, "epochs": 2 * self.epochs}
        return changes


BEYOND: dict[str, BeyondSettings] = {
    # Sized so that `make results` trains the whole book in about 90 minutes on two cores
    # (about 3 s per epoch of the paper's model on one core of the machine it was made on).
    "full": BeyondSettings(seeds=(0, 1, 2, 3, 4), dense_units=(32, 128, 512), batch_sizes=(64, 256, 1024),
                           sweep_seeds=(0,), batch_seeds=(0,), ladder_seeds=(0, 1), holdout_seeds=(0, 1),
                           epochs=paper.EPOCHS, workers=2, reading_seeds=(0, 1, 2, 3, 4), option_seeds=(0, 1, 2),
                           best_seeds=(0, 1, 2, 3, 4)),
    "ci": BeyondSettings(seeds=(0, 1, 2), dense_units=(64, 128), batch_sizes=(128, 256), sweep_seeds=(0,),
                         batch_seeds=(0,), ladder_seeds=(0, 1), holdout_seeds=(0,), epochs=2, workers=2),
}


def beyond() -> BeyondSettings:
    """The beyond-the-paper settings of the active profile."""
    return BEYOND[profile().name]


@dataclass(frozen=True)
class Reading:
    """Another reading of the paper's under-specified recipe, trained like the recipe itself."""

    name: str
    grounds: str  # what in the paper's text supports this reading
    changes: dict[str, Any]


#: The readings the verdict chapter measures against the recipe (each on the paper's 100
#: epochs and batch of 256, over ``reading_seeds``). They are reported, never chosen from.
READINGS: tuple[Reading, ...] = (
    Reading("pixels in [-1, 1] as in the files", "the files store grey levels in [-1, 1]; the text says "
            "0 = white, 1 = black", {"scale": "symmetric"}),
    Reading("Keras defaults (valid padding, slope 0.3)", "no padding or slope is stated; these are what "
            "Keras gives when none is set", {"padding": "valid", "leaky_slope": 0.3}),
    Reading("two convolution blocks", '"Leaky ReLU ... at the end of each convolution layer" allows more '
            "than one", {"second_block_filters": 64}),
    Reading("shift augmentation", 'the test set "required more tweaking to work"', {"augment_shift": 2 / 16}),
    Reading("shift and rotation augmentation", 'the test set "required more tweaking to work"',
            {"augment_shift": 2 / 16, "augment_rotation": 10.0}),
)


#: The targets this book sets beyond the paper (test error, percent): at or better than
#: human level for one model (mean over seeds), and an ensemble below that.
TARGETS: dict[str, float] = {"single": 2.3, "ensemble": 1.9}
