"""An independent second computation of the book's numbers.

Reads only the raw USPS files and the results ledger (``results/``) and shares no code with
the book's package: nothing here imports it (a test checks). numpy and json do the work;
scipy.stats gives the t quantiles and p-values. Runs are identified by their
``record.json`` (configuration, seed, split), never by the book's names for them.

``recompute()`` returns ``{chapter: {number name: value}}`` plus ``"cli"``: ``{JSON path: value}``
for ``python -m helpers summary|gap|evaluate --json``. A value is a number or a string, or
``Verdict(word, holds)``: the glued word must equal ``word`` exactly when ``holds`` is true
(so the other wording of a verdict is never guessed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
from collections import Counter
from functools import cache, cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
N_TEST = 2007

# The paper (../shared/paper/paper.txt, section 3.3 and its Figure 8), copied by hand.
PAPER_ACCURACY, PAPER_ERROR, PAPER_ERRORS, PAPER_EPOCHS, PAPER_BATCH = 97.11, 2.89, 58, 100, 256
PAPER_DIGIT_ERROR = [2.8, 1.2, 2.6, 1.3, 3.5, 5.0, 2.3, 5.3, 4.2, 3.3]  # % per digit 0-9
# The book's own targets and the best published result, as the chapters state them.
LADDER_TARGETS = (2.3, 1.9)  # human-level: single model, ensemble (%)
BEST_TARGETS, BEST_PUBLISHED = (2.0, 1.8), 2.0  # best-published
HUMAN = (2.37, 2.5)  # human readers' error (%), as the human-level chapter quotes them (Chaaban; Bromley)

# Configurations, as the chapters' tables describe them (differences from the recipe).
SHIFT, ROTATE, BLOCK2 = {"augment_shift": 0.125}, {"augment_rotation": 10.0}, {"second_block_filters": 64}
OPTIONS = {  # model chapter, "Reproduction decisions": every option tried besides the baseline
    "pixel scaling: [-1, 1] as in the files": {"scale": "symmetric"},
    "convolution filters: 16": {"filters": 16}, "convolution filters: 64": {"filters": 64},
    "padding: valid": {"padding": "valid"}, "Leaky ReLU slope: 0.3 (Keras default)": {"leaky_slope": 0.3},
    "dense units: 64": {"dense_units": 64}, "dense units: 256": {"dense_units": 256},
    "dropout rate: 0.25": {"dropout": 0.25}, "optimizer: Adam, lr 3e-4": {"learning_rate": 0.0003},
    "optimizer: SGD + momentum 0.9, lr 0.01": {"optimizer": "sgd", "learning_rate": 0.01},
}
READINGS = {  # discussion chapter, "Other readings of the paper's recipe" (r1 to r5)
    "pixels in [-1, 1] as in the files": {"scale": "symmetric"},
    "Keras defaults (valid padding, slope 0.3)": {"padding": "valid", "leaky_slope": 0.3},
    "two convolution blocks": BLOCK2,
    "shift augmentation": SHIFT,
    "shift and rotation augmentation": SHIFT | ROTATE,
}
LADDER = {  # human-level chapter, "The ladder": each rung builds on the last kept one
    "the paper's recipe (our reproduction)": {},
    "cosine learning-rate decay, half the epochs": {"schedule": "cosine", "epochs": 50},
    "shift and rotation augmentation": SHIFT | ROTATE,
    "second convolution block": SHIFT | ROTATE | BLOCK2,
}
LEVERS = {  # best-published chapter, first round (added to the ladder's final model)
    "cosine learning-rate decay": {"schedule": "cosine"},
    "elastic distortions": {"augment_elastic": 8.0},
    "scale and shear": {"augment_zoom": 0.1, "augment_shear": 0.1},
    "label smoothing": {"label_smoothing": 0.1},
}
SECOND_LEVERS = {  # second round (added to the first round's choice)
    "elastic distortions": {"augment_elastic": 8.0},
    "weight averaging": {"weight_average": 0.99},
    "a third convolution block": {"third_block_filters": 128},
    "elastic distortions, twice the epochs, cosine decay":
        {"augment_elastic": 8.0, "epochs": 200, "schedule": "cosine"},
}
ABLATION_WIDTHS, ABLATION_BATCHES = (32, 128, 512), (64, 256, 1024)  # ablations chapter, seed 0
# Third round (protocols/accurate-and-robust.md): the readings in the rule's order (a tie takes the
# earlier, simpler one) and the arrays that hold them; the noise levels of the stored ``noisy`` rows.
ARRAYS = {"plain": "probabilities", "shifts": "tta", "shifts and rotations": "tta_rotations"}
NOISE_LEVELS, NOISE = (0.1, 0.2, 0.3, 0.4), 0.4
R3_FOLDS, R3_FOLD_SEED, R3_SEEDS, R3_MEMBER_SEEDS = 3, 1, 5, 3
R3_TARGETS = (1.8, 1.5)  # single model (mean of seeds), ensemble (%)
PROTOCOL = REPO / "protocols" / "accurate-and-robust.md"
NOISY = {"augment_noise": 0.5}
WIDER = {"filters": 64, "second_block_filters": 128, "dense_units": 256}
# The introduction's summary quotes these numbers of the third round (the best-published chapter's).
INTRO_R3 = ("r3_chosen", "r3_mode", "r3_seeds", "r3_mean", "r3_low", "r3_high", "r3_noise_mean", "r3_paper_noise",
            "r3_previous_noise", "r3_ensemble", "r3_ensemble_errors", "r3_ensemble_runs", "r3_ensemble_low",
            "r3_ensemble_high", "r3_target_single", "r3_target_ensemble", "r3_protocol", "r3_noise", "r3_binomial_half")
# ... and these of the fourth round (distillation).
INTRO_R4 = ("r4_protocol", "r4_student_score", "r4_teacher_score", "r4_mean", "r4_seeds", "r4_replaces")
# ... and these of the second round (B and its ensemble) and of the recipe (the discussion chapter's).
INTRO_BEST = ("best_mean", "best_low", "best_high", "best_seeds", "chosen", "ensemble", "ensemble_errors",
              "ensemble_low", "ensemble_high", "ensemble_sets", "ensemble_size")
INTRO_RECIPE = ("rec_seeds", "rec_mean", "rec_std", "rec_low", "rec_high", "rec_p", "rec_min_errors", "rec_max_errors",
                "gap_points", "gap_images", "top_digit", "top_share")
R3_NAMES = ("the paper's network", "B", "B + pixel noise", "B + pixel noise, wider",
            "B + pixel noise, wider, twice the epochs", "B + pixel noise, third block")


class Verdict(NamedTuple):
    word: str
    holds: bool


# ---------------------------------------------------------------- data and ledger

def data_dir() -> Path | None:
    folder = Path(os.environ.get("USPS_DATA_DIR") or REPO.parent / "shared" / "data" / "usps")
    return folder if all((folder / f"zip.{s}.gz").is_file() for s in ("train", "test")) else None


@cache
def read_usps(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, pixels) of zip.<split>.gz: each row is a label and 256 grey values."""
    with gzip.open(data_dir() / f"zip.{split}.gz", "rt") as f:
        rows = np.array([[float(v) for v in line.split()] for line in f if line.strip()])
    return rows[:, 0].astype(int), rows[:, 1:]


class Run:
    def __init__(self, folder: Path):
        self.folder = folder
        self.record = json.loads((folder / "record.json").read_text())
        self.config, self.seed, self.split = (self.record["job"][k] for k in ("config", "seed", "split"))
        self.seconds, self.history = self.record["seconds"], self.record["history"]

    @cached_property
    def npz(self) -> dict:
        with np.load(self.folder / "predictions.npz") as f:
            return {k: f[k] for k in f.files}

    @property
    def labels(self) -> np.ndarray:
        return self.npz["labels"].astype(int)

    def probs(self, tta: bool = False) -> np.ndarray:
        return self.npz["tta" if tta else "probabilities"]

    def read(self, reading: str) -> np.ndarray:
        """The probabilities in a reading of the third round (rotated ones are stored in float16)."""
        return self.npz[ARRAYS[reading]].astype(np.float32)

    def noisy_wrong(self, sigma: float) -> np.ndarray:
        """Which images the run misreads under pixel noise of ``sigma`` (its stored plain predictions)."""
        return self.npz["noisy"][NOISE_LEVELS.index(sigma)].astype(int) != self.labels

    def wrong(self, tta: bool = False) -> np.ndarray:
        return self.probs(tta).argmax(1) != self.labels

    @property
    def errors(self) -> int:  # counted from the stored probabilities, not the record's "errors"
        return int(self.wrong().sum())

    @property
    def training(self) -> str:
        """Runs with the same seed, split and curves are one training (weight averaging only
        swaps the final weights)."""
        return json.dumps([self.seed, self.split, self.history], sort_keys=True)


class Ledger:
    def __init__(self):
        self.runs = [Run(d) for d in sorted((RESULTS / "runs").iterdir()) if (d / "record.json").is_file()]
        # The decision sweep (50-epoch holdout runs) changes one decision at a time around the
        # baseline, so the baseline is each setting's most common value there; the recipe is
        # that baseline with the paper's 100 epochs, unless an option beat it (checked below).
        sweep = [r for r in self.runs if r.split == "holdout" and r.config["epochs"] == 50]
        keys = [k for k in sweep[0].config if all(k in r.config for r in sweep)]  # in the records' order
        mode = {k: Counter(json.dumps(r.config[k]) for r in sweep).most_common(1)[0][0] for k in keys}
        self.base = {k: json.loads(v) for k, v in mode.items()} | {"epochs": PAPER_EPOCHS}

    def diff(self, config: dict) -> dict:
        return {k: v for k, v in config.items() if self.base.get(k, "absent") != v}

    def find(self, split: str, change: dict, seeds=None) -> list[Run]:
        """The runs of the recipe with ``change`` on ``split``, by seed."""
        runs = sorted((r for r in self.runs if r.split == split and self.diff(r.config) == change
                       and (seeds is None or r.seed in seeds)), key=lambda r: r.seed)
        assert runs, f"no {split} run of {change}"
        return runs

    def cv(self, change: dict) -> list[Run]:
        return [self.find(f"cv3-{fold}", change, [0])[0] for fold in range(3)]


# ---------------------------------------------------------------- statistics

def pct(errors, n=N_TEST) -> float:
    return 100 * errors / n


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n, in %."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half) / (1 + z * z / n), 100 * (centre + half) / (1 + z * z / n)


def mean_std(values) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1))


def t_interval(values) -> tuple[float, float]:
    mean, std = mean_std(values)
    half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
    return mean - half, mean + half


def t_test_p(values, mu: float) -> float:
    mean, std = mean_std(values)
    t = (mean - mu) / (std / math.sqrt(len(values)))
    return float(2 * stats.t.sf(abs(t), len(values) - 1))


def mcnemar_p(wrong_a: np.ndarray, wrong_b: np.ndarray) -> float:
    """Exact (binomial) McNemar test on the discordant pairs."""
    b, c = int((wrong_a & ~wrong_b).sum()), int((~wrong_a & wrong_b).sum())
    return min(1.0, 2 * float(stats.binom.cdf(min(b, c), b + c, 0.5))) if b + c else 1.0


def welch_p(a, b) -> float:
    """Two-sided Welch's t-test (unequal variances) of two samples."""
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def protocol_budget() -> int:
    """The third round's training budget in minutes, as its protocol states it ("At most N minutes")."""
    return int(re.search(r"At most (\d+) minutes", " ".join(PROTOCOL.read_text().split())).group(1))


def spearman(x, y) -> float:
    rank = lambda v: stats.rankdata(v)  # average ranks for ties
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def per_digit_errors(run: Run, tta: bool = False) -> np.ndarray:
    return np.bincount(run.labels[run.wrong(tta)], minlength=10)


def seed_results(runs: list, reading: str) -> tuple:
    """A model's final runs (one per seed) read in ``reading``: the test labels, each seed's errors and error
    rate (%), their mean, standard deviation and t interval, and each seed's errors under every noise level."""
    labels = runs[0].labels
    errors = [int((r.read(reading).argmax(1) != labels).sum()) for r in runs]
    rates = [pct(e) for e in errors]
    mean, std = mean_std(rates)
    low, high = t_interval(rates)
    noise = {s: [int(r.noisy_wrong(s).sum()) for r in runs] for s in NOISE_LEVELS}
    return labels, errors, rates, mean, std, low, high, noise


def ensemble_wrong(prob_sets, labels) -> np.ndarray:
    return np.mean(prob_sets, axis=0).argmax(1) != labels


# ---------------------------------------------------------------- chapters

def eda() -> dict:
    (y_train, x_train), (y_test, x_test) = read_usps("train"), read_usps("test")
    share = 100 * np.bincount(y_train, minlength=10) / len(y_train)
    return {"file_n_train": len(y_train), "file_n_test": len(y_test), "n_pixels": x_train.shape[1],
            "nulls_train": int(np.isnan(x_train).sum()), "nulls_test": int(np.isnan(x_test).sum()),
            "largest_class": int(share.argmax()), "largest_class_share": share.max(),
            "smallest_class": int(share.argmin()), "smallest_class_share": share.min()}


def model(L: Ledger) -> dict:
    sweep = {name: L.find("holdout", change | {"epochs": 50}) for name, change in ({"baseline": {}} | OPTIONS).items()}
    errors = {name: sum(r.errors for r in runs) for name, runs in sweep.items()}
    assert min(errors.values()) == errors["baseline"], "an option beat the baseline: the recipe is not the baseline"
    holdout_n = sum(r.record["n_predicted"] for r in sweep["baseline"])
    images = sum(r.record["n_train"] + r.record["n_predicted"] for r in sweep["baseline"])  # fit + held out
    c = L.base  # the network: conv (same padding), pool, dense, softmax
    side = 16 if c["padding"] == "same" else 16 - c["kernel_size"] + 1
    flat = (side // c["pool_size"]) ** 2 * c["filters"]
    params = (c["kernel_size"] ** 2 + 1) * c["filters"] + (flat + 1) * c["dense_units"] + (c["dense_units"] + 1) * 10
    spread = max(errors.values()) - min(errors.values())
    return {"sweep_epochs": sweep["baseline"][0].config["epochs"], "sweep_seeds": len(sweep["baseline"]),
            "holdout_n": holdout_n, "holdout_share": pct(holdout_n, images),
            "baseline_errors": errors["baseline"], "sweep_spread": spread,
            "sweep_spread_pct": pct(spread, holdout_n), "n_params": params,
            **{f"baseline_{k}": v for k, v in L.base.items()}}


def training(L: Ledger) -> dict:
    run = L.find("test", {}, [0])[0]
    h, epochs = run.history, run.config["epochs"]
    best = int(np.argmin(h["val_loss"]))
    return {"final_train_acc": 100 * h["accuracy"][-1], "final_val_acc": 100 * h["val_accuracy"][-1],
            "final_train_loss": h["loss"][-1], "final_val_loss": h["val_loss"][-1],
            "best_val_loss_epoch": best + 1, "best_val_loss": h["val_loss"][best],
            "epochs": epochs, "batch_size": run.config["batch_size"], "train_seconds": run.seconds,
            "seconds_per_epoch": run.seconds / epochs, "train_cpu": run.record["environment"]["cpu"],
            "train_threads": run.record["environment"]["threads"]}


def evaluation(L: Ledger) -> dict:
    run = L.find("test", {}, [0])[0]
    n, errors = len(run.labels), int(run.wrong().sum())
    accuracy = 100 - pct(errors, n)
    low, high = wilson(n - errors, n)
    paper_low, paper_high = wilson(n - PAPER_ERRORS, n)
    sizes = np.bincount(run.labels, minlength=10)
    digit_acc = 100 * (1 - per_digit_errors(run) / sizes)
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (run.labels, run.probs().argmax(1)), 1)
    np.fill_diagonal(confusion, 0)
    true, pred = np.unravel_index(confusion.argmax(), confusion.shape)
    return {"n_train": run.record["n_train"], "n_test": n, "our_accuracy": accuracy, "our_error": pct(errors, n),
            "our_errors": errors, "our_low": low, "our_high": high, "paper_low": paper_low, "paper_high": paper_high,
            "interval_width": paper_high - paper_low, "half_width": (paper_high - paper_low) / 2,
            "accuracy_difference": accuracy - PAPER_ACCURACY, "error_difference": errors - PAPER_ERRORS,
            "ours_in_paper": Verdict("lies outside", not paper_low <= accuracy <= paper_high),
            "paper_in_ours": Verdict("lies outside", not low <= PAPER_ACCURACY <= high),
            "best_digit": int(digit_acc.argmax()), "best_digit_acc": digit_acc.max(),
            "worst_digit": int(digit_acc.argmin()), "worst_digit_acc": digit_acc.min(),
            "class_min_n": int(sizes.min()), "class_max_n": int(sizes.max()),
            "one_image_max": 100 / sizes.min(), "one_image_min": 100 / sizes.max(),
            "max_abs_class_diff": np.abs(digit_acc - (100 - np.array(PAPER_DIGIT_ERROR))).max(),
            "our_class_err_min": 100 - digit_acc.max(), "our_class_err_max": 100 - digit_acc.min(),
            "paper_implied_errors": int(paper_digit_errors(sizes).sum()),
            "top_confusion_true": int(true), "top_confusion_pred": int(pred),
            "top_confusion_count": int(confusion.max()), "n_wrong": errors, "eval_seed": run.seed,
            # the same per-digit numbers averaged over the recipe's seeds (as the verdict table gives them)
            **seeds_per_digit(L.find("test", {})),
            # the paper's own numbers, as the book quotes them
            "paper_accuracy": PAPER_ACCURACY, "paper_error": PAPER_ERROR, "paper_errors": PAPER_ERRORS,
            "paper_epochs": PAPER_EPOCHS, "paper_batch": PAPER_BATCH,
            "paper_class_min": 100 - max(PAPER_DIGIT_ERROR), "paper_class_max": 100 - min(PAPER_DIGIT_ERROR),
            "paper_class_min_digit": int(np.argmax(PAPER_DIGIT_ERROR)),
            "paper_class_max_digit": int(np.argmin(PAPER_DIGIT_ERROR)),
            "paper_class_err_max": max(PAPER_DIGIT_ERROR), "paper_short_of_98": 98 - PAPER_ACCURACY}


def seeds_per_digit(runs: list[Run]) -> dict:
    """Each digit's accuracy (%) averaged over the runs: best, worst, farthest from Figure 8 (ties: lowest digit)."""
    acc = np.mean([100 * (1 - per_digit_errors(r) / np.bincount(r.labels, minlength=10)) for r in runs], axis=0)
    diff = acc - (100 - np.array(PAPER_DIGIT_ERROR))
    far = int(np.abs(diff).argmax())
    return {"seeds_n": len(runs), "seeds_best_digit": int(acc.argmax()), "seeds_best_digit_acc": acc.max(),
            "seeds_worst_digit": int(acc.argmin()), "seeds_worst_digit_acc": acc.min(),
            "seeds_far_digit": far, "seeds_far_diff": diff[far], "seeds_close": int((np.abs(diff) <= 1.5).sum())}


def paper_digit_errors(sizes) -> np.ndarray:
    """The paper's Figure 8 error rates applied to the test set's class sizes."""
    return np.round(np.array(PAPER_DIGIT_ERROR) * sizes / 100).astype(int)


def recipe_numbers(runs: list[Run]) -> dict:
    rates = [pct(r.errors) for r in runs]
    mean, std = mean_std(rates)
    low, high = t_interval(rates)
    return {"rec_seeds": len(runs), "rec_mean": mean, "rec_std": std, "rec_low": low, "rec_high": high,
            "rec_p": t_test_p(rates, PAPER_ERROR), "gap_points": mean - PAPER_ERROR,
            "gap_images": (mean - PAPER_ERROR) * N_TEST / 100,
            "rec_min_errors": min(r.errors for r in runs), "rec_max_errors": max(r.errors for r in runs)}


def variance(L: Ledger) -> dict:
    runs = L.find("test", {})
    rates = [pct(r.errors) for r in runs]
    mean, std = mean_std(rates)
    wrong = ensemble_wrong([r.probs() for r in runs], runs[0].labels)
    ensemble_digits = np.bincount(runs[0].labels[wrong], minlength=10)
    return {"n_seeds": len(runs), "seed_mean": mean, "seed_std": std, "seed_min": min(rates), "seed_max": max(rates),
            "paper_z": (PAPER_ERROR - mean) / std,
            "paper_vs_seeds": Verdict("outside", not min(rates) <= PAPER_ERROR <= max(rates)),
            "seed_mean_errors": float(np.mean([r.errors for r in runs])), "ensemble_size": len(runs),
            "ensemble_error": pct(wrong.sum()), "ensemble_errors": int(wrong.sum()), "single_mean_error": mean,
            "ensemble_gain": float(np.mean([r.errors for r in runs]) - wrong.sum()),
            "digits_improved": int((ensemble_digits < per_digit_errors(runs[0])).sum())}


def val_errors(run: Run) -> list[float]:
    return [(1 - a) * 100 for a in run.history["val_accuracy"]]


def discussion(L: Ledger, baselines: dict) -> dict:
    recipe = L.find("test", {})
    readings = {"recipe": recipe} | {name: L.find("test", change) for name, change in READINGS.items()}
    out = recipe_numbers(recipe)
    # what picking on the test set would have printed
    options = {"the recipe (our reproduction)": recipe[:3]} | {n: L.find("test", c, [0, 1, 2]) for n, c in OPTIONS.items()}
    option_means = {n: float(np.mean([pct(r.errors) for r in runs])) for n, runs in options.items()}
    best_option = min(option_means, key=option_means.get)
    best_epochs = [min(val_errors(r)) for r in recipe]
    pool = {r.folder.name: (name, r) for name, runs in readings.items() for r in runs}
    pool |= {r.folder.name: (name, r) for name, runs in options.items() for r in runs if r.folder.name not in pool}
    # the lowest test error of any run at any epoch; on a tie, the first in the chapter's order
    tuned = min((e, i, name, r.seed, epoch + 1) for i, (name, r) in enumerate(pool.values())
                for epoch, e in enumerate(val_errors(r)))
    tuned = (tuned[0], *tuned[2:])
    out |= {"sel_epoch_mean": float(np.mean(best_epochs)), "sel_epoch_min": min(best_epochs),
            "sel_best_seed": min(pct(r.errors) for r in recipe), "sel_tuned": tuned[0],
            "sel_tuned_reading": tuned[1], "sel_tuned_seed": tuned[2], "sel_tuned_epoch": tuned[3],
            "sel_runs": len(pool), "sel_epochs": sum(len(r.history["val_accuracy"]) for _, r in pool.values()),
            "sel_recipe_reaches": Verdict("does not reach", min(best_epochs) > PAPER_ERROR),
            "sel_recipe_short": min(best_epochs) - PAPER_ERROR,
            "sel_tuned_reaches": Verdict("reaches", tuned[0] <= PAPER_ERROR),
            "option_seeds": len(options[best_option]), "n_options": len(OPTIONS),
            "best_option": best_option, "best_option_error": option_means[best_option],
            "option_reaches": Verdict("does not reach", option_means[best_option] > PAPER_ERROR),
            "option_short": option_means[best_option] - PAPER_ERROR}
    # other readings
    holding = set()
    for i, name in enumerate(READINGS, 1):
        rates = [pct(r.errors) for r in readings[name]]
        mean, std = mean_std(rates)
        out |= {f"reading{i}_mean": mean, f"reading{i}_std": std, f"reading{i}_min": min(rates),
                f"reading{i}_at": sum(r.errors <= PAPER_ERRORS for r in readings[name]), f"reading{i}_seeds": len(rates)}
        low, high = t_interval(rates)
        if low <= PAPER_ERROR <= high:
            holding.add(name)
    out |= {"readings_holding_paper": holding, "n_readings_holding": len(holding)}
    # digit 3
    sizes = np.bincount(recipe[0].labels, minlength=10)
    paper = paper_digit_errors(sizes)
    digits = {name: np.array([per_digit_errors(r) for r in runs]) for name, runs in readings.items()}
    excess = digits["recipe"].mean(0) - paper
    top = int(excess.argmax())
    threes = digits["recipe"][:, 3]
    as_what = Counter(int(p) for r in recipe for p in r.probs().argmax(1)[r.wrong() & (r.labels == 3)])
    gains = digits["recipe"].mean(0) - digits["shift augmentation"].mean(0)
    every = np.concatenate(list(digits.values()))
    out |= {"top_digit": top, "top_ours": digits["recipe"].mean(0)[top], "top_paper": int(paper[top]),
            "top_excess": excess[top], "total_excess": excess.sum(), "top_share": 100 * excess[top] / excess.sum(),
            "paper_implied": int(paper.sum()), "threes_min": int(threes.min()), "threes_max": int(threes.max()),
            "threes_as": as_what.most_common(1)[0][0], "threes_as_share": 100 * as_what.most_common(1)[0][1] / threes.sum(),
            "threes_aug": float(digits["shift augmentation"][:, 3].mean()),
            "gain_digits": sorted(((int(d), float(g)) for d, g in enumerate(gains)), key=lambda x: -x[1]),
            "runs_total": len(every), "runs_min_3": int(every[:, 3].min()), "runs_min_1": int(every[:, 1].min()),
            "runs_max_0": int(every[:, 0].max()), "paper_3": int(paper[3]), "paper_1": int(paper[1]),
            "paper_0": int(paper[0])}
    # the 3s the recipe mostly misses, and the images every model misses
    labels = recipe[0].labels
    misses = np.array([r.wrong() for r in recipe])
    hard = (labels == 3) & (misses.sum(0) > len(recipe) / 2)
    final = L.find("test", LADDER["second convolution block"])
    base_wrong = {name: np.array(b["test predictions"]) != labels for name, b in baselines.items()}
    every_model = np.array([*misses, *(r.wrong() for r in final), *base_wrong.values()])
    missed = int(every_model.all(0).sum())
    out |= {"hard_threes": int(hard.sum()), "knn_too": int((hard & base_wrong["k-nearest neighbours"]).sum()),
            "svm_too": int((hard & base_wrong["RBF support vector machine"]).sum()),
            "all_models": len(every_model), "missed_by_all": missed, "missed_by_all_pct": pct(missed, len(labels)),
            "room": PAPER_ERRORS - missed}
    return out


def sweep_numbers(runs: list[Run], values, prefix: str) -> dict:
    """Ablations: one setting changed, one seed each."""
    rate = {v: pct(r.errors) for v, r in zip(values, runs)}
    secs = {v: r.seconds for v, r in zip(values, runs)}
    low, high, best = values[0], values[-1], min(rate, key=rate.get)
    return {f"{prefix}_best": best, f"{prefix}_best_error": rate[best], f"{prefix}_low": low,
            f"{prefix}_low_error": rate[low], f"{prefix}_high": high, f"{prefix}_high_error": rate[high],
            f"{prefix}_range": max(rate.values()) - min(rate.values()),
            f"{prefix}_time_high_over_low": secs[high] / secs[low], f"{prefix}_time_low_over_high": secs[low] / secs[high]}


def ablations(L: Ledger) -> dict:
    width = [L.find("test", {"dense_units": w} if w != L.base["dense_units"] else {}, [0])[0] for w in ABLATION_WIDTHS]
    batch = [L.find("test", {"batch_size": b} if b != L.base["batch_size"] else {}, [0])[0] for b in ABLATION_BATCHES]
    return (sweep_numbers(width, ABLATION_WIDTHS, "width") | sweep_numbers(batch, ABLATION_BATCHES, "batch")
            | {"recipe_width": L.base["dense_units"]} | recipe_numbers(L.find("test", {})))


def ladder(L: Ledger) -> list[dict]:
    rungs, last_kept = [], None
    for name, change in LADDER.items():
        holdout = sum(r.errors for r in L.find("holdout", change, [0, 1]))
        test = L.find("test", change) if not change else L.find("test", change, [0, 1])
        kept = last_kept is None or holdout < last_kept["holdout"]
        rungs.append({"name": name, "change": change, "holdout": holdout, "kept": kept, "runs": test,
                      "holdout_n": sum(r.record["n_predicted"] for r in L.find("holdout", change, [0, 1]))})
        last_kept = rungs[-1] if kept else last_kept
    return rungs


def human_level(L: Ledger) -> dict:
    rungs = ladder(L)
    final = [r for r in rungs if r["kept"]][-1]
    mean, std = mean_std([pct(r.errors) for r in final["runs"]])
    ens = int(ensemble_wrong([r.probs() for r in final["runs"]], final["runs"][0].labels).sum())
    return {"final_rung": final["name"], "final_mean": mean, "final_std": std, "final_seeds": len(final["runs"]),
            "final_min": min(pct(r.errors) for r in final["runs"]), "final_max": max(pct(r.errors) for r in final["runs"]),
            "final_ensemble": pct(ens), "final_ensemble_errors": float(ens), "final_ensemble_size": len(final["runs"]),
            "rungs_kept": sum(r["kept"] for r in rungs[1:]), "rungs_tried": len(rungs) - 1,
            "single_verdict": Verdict("misses", mean > LADDER_TARGETS[0]), "single_gap": mean - LADDER_TARGETS[0],
            "ensemble_verdict": Verdict("misses", pct(ens) > LADDER_TARGETS[1]), "ensemble_gap": pct(ens) - LADDER_TARGETS[1]}


class Candidate:
    """A configuration scored by 3-fold cross-validation (seed 0)."""

    def __init__(self, L: Ledger, name: str, change: dict):
        self.name, self.change, self.runs = name, change, L.cv(change)
        self.labels = np.concatenate([r.labels for r in self.runs])
        self.errors = sum(int(r.wrong().sum()) for r in self.runs)
        self.tta_errors = sum(int(r.wrong(True).sum()) for r in self.runs)
        self.tta = self.tta_errors < self.errors  # shifts are used only where they lower the errors
        self.score = min(self.errors, self.tta_errors)
        self.fit = float(np.mean([100 * r.history["accuracy"][-1] for r in self.runs]))

    def probs(self, tta=None) -> np.ndarray:
        return np.concatenate([r.probs(self.tta if tta is None else tta) for r in self.runs])

    def wrong(self, tta=False) -> np.ndarray:
        return self.probs(tta).argmax(1) != self.labels


def best_published(L: Ledger) -> tuple[dict, dict]:
    rungs = ladder(L)
    final = [r for r in rungs if r["kept"]][-1]
    base = Candidate(L, "the ladder's final model", final["change"])
    first = [base] + [Candidate(L, n, final["change"] | c) for n, c in LEVERS.items()]
    first.append(Candidate(L, "all four levers", final["change"] | {k: v for c in LEVERS.values() for k, v in c.items()}))
    choice1 = min(first, key=lambda c: c.score)  # min keeps the first on a tie
    second = [Candidate(L, f"{choice1.name} + {n}", choice1.change | c) for n, c in SECOND_LEVERS.items()]
    chosen = min([choice1] + second, key=lambda c: c.score)
    assert all(np.array_equal(c.labels, base.labels) for c in first + second), "candidates predict different images"
    lever = dict(zip(SECOND_LEVERS, second))
    elastic, double = lever["elastic distortions"], lever["elastic distortions, twice the epochs, cosine decay"]
    better = [c for c in first[1:] if c.errors < base.errors]
    p_chosen = mcnemar_p(choice1.wrong(), base.wrong())
    out = {"ladder_holdout_errors": final["holdout"], "ladder_holdout_n": final["holdout_n"],
           "ladder_holdout_pct": pct(final["holdout"], final["holdout_n"]),
           "ladder_test_mean": float(np.mean([pct(r.errors) for r in final["runs"]])),
           "folds": len(base.runs), "cv_n": len(base.labels), "cv_candidates": len(first),
           "base_cv_errors": base.errors, "cv_better": len(better),
           "cv_significant": sum(mcnemar_p(c.wrong(), base.wrong()) < 0.05 for c in better),
           "chosen_p": p_chosen, "chosen_significance": Verdict("not significant", p_chosen >= 0.05),
           "all_cv_errors": first[-1].errors, "all_fit": first[-1].fit, "base_fit": base.fit,
           "first_choice": choice1.name, "first_errors": choice1.errors, "first_tta_errors": choice1.tta_errors,
           "first_tta": Verdict("with", choice1.tta), "first_score": choice1.score,
           "second_candidates": len(second), "second_better": sum(c.score < choice1.score for c in second),
           "second_best_score": min(c.score for c in second), "second_worst_score": max(c.score for c in second),
           "final_choice_changed": Verdict("a new candidate", chosen is not choice1),
           "chosen": chosen.name, "tta": Verdict("with", chosen.tta), "chosen_cv_errors": chosen.errors,
           "chosen_cv_tta_errors": chosen.tta_errors, "chosen_score": chosen.score,
           "elastic_score": elastic.score, "elastic_verdict": Verdict("do not add up", elastic.score >= choice1.score),
           "double_score": double.score, "double_fit": double.fit}
    # the first round's choice on the test set (its seeds), tested before the second round
    first_runs = L.find("test", choice1.change)
    first_errors = [int(r.wrong(choice1.tta).sum()) for r in first_runs]
    first_ens = int(ensemble_wrong([r.probs(choice1.tta) for r in first_runs], first_runs[0].labels).sum())
    out |= {"first_test_seeds": len(first_runs), "first_test_mean": float(np.mean([pct(e) for e in first_errors])),
            "first_test_min_errors": min(first_errors), "first_test_max_errors": max(first_errors),
            "first_seed_ensemble": pct(first_ens), "first_seed_ensemble_errors": first_ens}
    # the chosen model on the test set (its seeds; shifted predictions where CV chose them)
    runs = L.find("test", chosen.change)
    errors = [int(r.wrong(chosen.tta).sum()) for r in runs]
    rates = [pct(e) for e in errors]
    mean, std = mean_std(rates)
    low, high = t_interval(rates)
    labels = runs[0].labels
    seed_ens = int(ensemble_wrong([r.probs(chosen.tta) for r in runs], labels).sum())
    out |= {"best_seeds": len(runs), "best_mean": mean, "best_std": std, "best_min": min(rates), "best_max": max(rates),
            "best_min_errors": min(errors), "best_max_errors": max(errors),
            "best_low": low, "best_high": high, "seed_ensemble_size": len(runs), "seed_ensemble": pct(seed_ens),
            "seed_ensemble_errors": seed_ens,
            **dict(zip(("seed_ensemble_low", "seed_ensemble_high"), wilson(seed_ens, N_TEST)))}
    # ensemble by forward selection on the out-of-fold predictions (pool: both rounds but the ladder's model)
    members, pool = [chosen], [c for c in first[1:] + second if c is not chosen]
    score = lambda group: int(ensemble_wrong([c.probs() for c in group], base.labels).sum())
    while pool:
        best = min(pool, key=lambda c: score(members + [c]))
        if score(members + [best]) >= score(members):
            break
        members.append(best)
        pool.remove(best)
    sets = {c.name: [(r, c.tta) for r in (runs if c is chosen else L.find("test", c.change, [0]))] for c in members}
    member_probs = [np.mean([r.probs(t) for r, t in s], axis=0) for s in sets.values()]
    ens = int(ensemble_wrong(member_probs, labels).sum())
    flat = [(r, t) for s in sets.values() for r, t in s]
    plain = int(ensemble_wrong([r.probs(t) for r, t in flat], labels).sum())
    e_low, e_high = wilson(ens, N_TEST)
    out |= {"ensemble_members": len(members), "ensemble_size": len({r.training for r, _ in flat}),
            "ensemble_sets": len(flat), "plain_ensemble_errors": plain, "plain_ensemble": pct(plain),
            "ensemble_errors": ens, "ensemble": pct(ens), "ensemble_low": e_low, "ensemble_high": e_high,
            "single_verdict": Verdict("misses", mean > BEST_TARGETS[0]), "single_gap": mean - BEST_TARGETS[0],
            "ensemble_verdict": Verdict("misses", pct(ens) > BEST_TARGETS[1]), "ensemble_gap": pct(ens) - BEST_TARGETS[1],
            "single_vs_published": Verdict("below", mean < BEST_PUBLISHED),
            "ensemble_vs_published": Verdict("below", pct(ens) < BEST_PUBLISHED)}
    # ranking check: first-round candidates, seed 0 on the test set
    tests = [L.find("test", c.change, [0])[0] for c in first]
    out["spearman"] = spearman([c.errors for c in first], [r.errors for r in tests])
    # cost: the chapter's distinct runs (CV rounds, the first round's choice and the chosen model on
    # the test set, the ranking check, the ensemble's members)
    distinct = [*(r for c in first + second for r in c.runs), *first_runs, *runs, *tests, *(r for r, _ in flat)]
    distinct = {r.folder.name: r for r in distinct}
    minutes = sum(r.seconds for r in distinct.values()) / 60
    out |= {"cost_runs": len(distinct), "cost_minutes": minutes, "cost_wall_minutes": minutes / 2}
    extra = {"first": first, "second": second, "chosen": chosen, "runs": runs, "rungs": rungs, "cost_runs": distinct,
             "prediction_sets": len(flat), "plain_ensemble_errors": plain, "choice1": choice1,
             "first_runs": first_runs, "first_errors": first_errors, "errors": errors, "tests": tests,
             "ensemble_runs": [r for r, _ in flat],
             "members": [{"name": n, "seeds": [r.seed for r, _ in s], "weight": 1 / len(sets) / len(s)}
                         for n, s in sets.items()]}
    return out, extra


# ---------------------------------------------------------------- a numpy forward pass (stored weights)

@cache
def test_images() -> np.ndarray:
    """The test images as the networks see them: (2007, 16, 16, 1) float32 in [0, 1], ink 1."""
    return ((read_usps("test")[1] + 1) / 2).reshape(-1, 16, 16, 1).astype(np.float32)


@cache
def noisy_test_images(sigma: float) -> np.ndarray:
    """The test images with Gaussian pixel noise of ``sigma``, clipped to [0, 1]; a fresh draw of
    seed 0 for each level, the same for every model."""
    images = test_images()
    if not sigma:
        return images
    rng = np.random.default_rng(0)
    return np.clip(images + sigma * rng.standard_normal(images.shape).astype(np.float32), 0, 1)


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A Keras Conv2D with "same" padding (cross-correlation), channels last."""
    k, (n, h, w, c) = kernel.shape[0], x.shape
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # n, h, w, c, k, k
    return (windows.reshape(n * h * w, c * k * k) @ kernel.transpose(2, 0, 1, 3).reshape(c * k * k, -1)
            + bias).reshape(n, h, w, -1)


def max_pool(x: np.ndarray, size: int) -> np.ndarray:
    n, h, w, c = x.shape
    return x[:, :h // size * size, :w // size * size].reshape(n, h // size, size, w // size, size, c).max((2, 4))


def forward(weights: list[np.ndarray], config: dict, x: np.ndarray) -> np.ndarray:
    """Softmax outputs of the network: [conv "same" -> LeakyReLU -> max pool] per block, flatten,
    dense ReLU, dense softmax (dropout and the augmentation layers are identity at inference).
    ``weights`` are the Keras layers' arrays in order (kernel, bias per layer)."""
    *blocks, (w1, b1), (w2, b2) = zip(weights[::2], weights[1::2])
    for kernel, bias in blocks:
        z = conv_same(x, kernel, bias)
        x = max_pool(np.where(z > 0, z, config["leaky_slope"] * z), config["pool_size"])
    hidden = np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@cache
def _weights_predict(folder: Path, sigma: float) -> np.ndarray:
    run = Run(folder)
    with np.load(folder / "model.weights.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    return forward(weights, run.config, noisy_test_images(sigma)).argmax(1)


def weights_predict(run: Run, sigma: float = 0.0) -> np.ndarray:
    """The digits a run's stored weights read on the test images under noise ``sigma``."""
    return _weights_predict(run.folder, sigma)


def second_round_noise(L: Ledger, chosen: Candidate) -> dict:
    """The second round's look at pixel noise (sigma 0.4, seed 0 of each model, from the weights)."""
    models = {"paper": L.find("test", {}, [0])[0], "shift": L.find("test", READINGS["shift augmentation"], [0])[0],
              "final": L.find("test", LADDER["second convolution block"], [0])[0],
              "best": L.find("test", chosen.change, [0])[0]}
    read = {k: weights_predict(r, NOISE) for k, r in models.items()}
    labels = models["paper"].labels
    out = {f"noise_{k}_error": pct(int((p != labels).sum())) for k, p in read.items()}
    as_what = Counter(int(d) for d in read["shift"][read["shift"] != labels])
    digit = as_what.most_common(1)[0][0]
    share = lambda k: 100 * int(((read[k] != labels) & (read[k] == digit)).sum()) / int((read[k] != labels).sum())
    return out | {"noise_shift_digit": digit, "noise_shift_share": share("shift"), "noise_paper_share": share("paper")}


# ---------------------------------------------------------------- third round (accurate and robust)

class MissingRuns(Exception):
    """A run of the third round is not in the ledger yet."""


class Candidate3:
    """A configuration of the third round scored on 3 folds drawn with fold seed 1 (out of fold)."""

    def __init__(self, L: Ledger, index: int, name: str, change: dict, readings: tuple):
        self.index, self.name, self.change = index, name, change
        self.runs = [r for fold in range(R3_FOLDS) for r in L.runs if r.split == f"cv3-{fold}"
                     and r.seed == R3_FOLD_SEED and L.diff(r.config) == change]
        if len(self.runs) < R3_FOLDS:
            raise MissingRuns(f"{len(self.runs)} of the {R3_FOLDS} cross-validation runs of {name!r}")
        assert [r.split for r in self.runs] == [f"cv3-{fold}" for fold in range(R3_FOLDS)], f"{name}: duplicate runs"
        self.labels = np.concatenate([r.labels for r in self.runs])
        self.errors = {k: int((self.probs(k).argmax(1) != self.labels).sum()) for k in ARRAYS}
        self.reading = min(readings, key=lambda k: self.errors[k])  # min keeps the earlier on a tie
        self.score = self.errors[self.reading]
        self.noise = {s: int(np.concatenate([r.noisy_wrong(s) for r in self.runs]).sum()) for s in NOISE_LEVELS}
        self.robust = None

    def probs(self, reading: str | None = None) -> np.ndarray:
        return np.concatenate([r.read(reading or self.reading) for r in self.runs])


def third_round(L: Ledger, previous: Candidate) -> tuple[dict, dict]:
    """The third round: cross-validation on fold seed 1, the rule, the one look at the test set."""
    B = previous.change
    changes = [{}, B, B | NOISY, B | NOISY | WIDER, B | NOISY | WIDER | {"epochs": 200, "schedule": "cosine"},
               B | NOISY | {"third_block_filters": 128}]
    every = tuple(ARRAYS)
    cands = [Candidate3(L, i, name, change, every if i != 1 else every[:2])  # B's test runs store no rotations
             for i, (name, change) in enumerate(zip(R3_NAMES, changes))]
    ref, choosable = cands[0], cands[1:]
    assert all(np.array_equal(c.labels, ref.labels) for c in cands), "candidates predict different images"
    for c in choosable:
        c.robust = c.noise[NOISE] <= ref.noise[NOISE]
    robust = [c for c in choosable if c.robust]
    chosen = (min(robust, key=lambda c: c.score) if robust
              else min(choosable, key=lambda c: c.noise[NOISE]))
    # forward selection on the out-of-fold probabilities, each candidate in its reading
    score = lambda group: int(ensemble_wrong([c.probs() for c in group], ref.labels).sum())
    members, pool, joins = [chosen], [c for c in choosable if c is not chosen], [score([chosen])]
    while pool:
        best = min(pool, key=lambda c: score(members + [c]))
        if score(members + [best]) >= joins[-1]:
            break
        members.append(best)
        pool.remove(best)
        joins.append(score(members))
    by = {c.index: c for c in cands}
    out = {"r3_protocol": ref.runs[0].record["protocol"][:7], "r3_folds": R3_FOLDS, "r3_fold_seed": R3_FOLD_SEED,
           "r3_noise": NOISE, "r3_candidates": len(choosable), "r3_cv_n": len(ref.labels),
           "r3_ref_noise_errors": ref.noise[NOISE], "r3_ref_score": ref.score, "r3_robust": len(robust),
           "r3_prev_score": by[1].score, "r3_prev_noise_errors": by[1].noise[NOISE],
           "r3_noisy_score": by[2].score, "r3_noisy_noise_errors": by[2].noise[NOISE],
           "r3_noise_cost": by[2].score - by[1].score, "r3_wider_score": by[3].score,
           "r3_longer_score": by[4].score, "r3_deeper_score": by[5].score,
           "r3_chosen": chosen.name, "r3_mode": chosen.reading, "r3_chosen_score": chosen.score,
           "r3_chosen_noise_errors": chosen.noise[NOISE], "r3_members": len(members),
           "r3_member_names": ", ".join(c.name for c in members), "r3_ensemble_cv_errors": joins[-1],
           "r3_target_single": R3_TARGETS[0], "r3_target_ensemble": R3_TARGETS[1],
           # B read with rotations (not its reading: its test runs store none), the noise errors in % of
           # the held-out images, and McNemar of the chosen model against B, each read in its reading
           "r3_prev_rotations": by[1].errors["shifts and rotations"],
           "r3_ref_noise_pct": pct(ref.noise[NOISE], len(ref.labels)),
           "r3_prev_noise_pct": pct(by[1].noise[NOISE], len(ref.labels)),
           "r3_chosen_p": mcnemar_p(chosen.probs().argmax(1) != chosen.labels, by[1].probs().argmax(1) != ref.labels),
           "r3_budget": protocol_budget(),
           # the chosen model's lead over B in clean out-of-fold errors, and the stated widths of the wider network
           "r3_lead": by[1].score - chosen.score}
    extra = {"candidates": cands, "chosen": chosen, "member_candidates": members, "joins": joins,
             "protocol": ref.runs[0].record["protocol"], "final": False}
    # the final runs on all training images (the one look at the test set)
    runs = [r for r in L.runs if r.split == "test" and L.diff(r.config) == chosen.change and r.seed < R3_SEEDS]
    others = {c.name: [r for r in L.runs if r.split == "test" and L.diff(r.config) == c.change and r.seed < R3_MEMBER_SEEDS]
              for c in members[1:]}
    if len(runs) < R3_SEEDS or any(len(rs) < R3_MEMBER_SEEDS for rs in others.values()):
        return out, extra
    runs = L.find("test", chosen.change, list(range(R3_SEEDS)))
    labels, errors, rates, mean, std, low, high, noise = seed_results(runs, chosen.reading)
    sets = {c.name: (c, runs if c is chosen else L.find("test", c.change, list(range(R3_MEMBER_SEEDS))))
            for c in members}
    member_probs = [np.mean([r.read(c.reading) for r in rs], axis=0) for c, rs in sets.values()]
    flat = [r.read(c.reading) for c, rs in sets.values() for r in rs]
    ens = int(ensemble_wrong(member_probs, labels).sum())
    plain = int(ensemble_wrong(flat, labels).sum())
    seed_ens = int(ensemble_wrong(member_probs[:1], labels).sum())
    trainings = {json.dumps([r.config | {"weight_average": 0}, r.seed, r.split], sort_keys=True)
                 for _, rs in sets.values() for r in rs}
    e_low, e_high = wilson(ens, N_TEST)
    paper, prev = L.find("test", {}, [0])[0], L.find("test", B, [0])[0]
    reference = {name: {s: int((weights_predict(r, s) != labels).sum()) for s in (0.0, *NOISE_LEVELS)}
                 for name, r in (("paper", paper), ("previous", prev))}
    out |= {"r3_seeds": len(runs), "r3_mean": mean, "r3_std": std, "r3_low": low, "r3_high": high,
            "r3_min_errors": min(errors), "r3_max_errors": max(errors),
            "r3_noise_mean": float(np.mean([pct(e) for e in noise[NOISE]])), "r3_noise_seed0": pct(noise[NOISE][0]),
            "r3_noise_min": pct(min(noise[NOISE])), "r3_noise_max": pct(max(noise[NOISE])),
            "r3_paper_noise": pct(reference["paper"][NOISE]), "r3_previous_noise": pct(reference["previous"][NOISE]),
            "r3_seed_ensemble": pct(seed_ens), "r3_seed_ensemble_errors": seed_ens,
            "r3_ensemble": pct(ens), "r3_ensemble_errors": ens, "r3_ensemble_low": e_low, "r3_ensemble_high": e_high,
            "r3_ensemble_runs": len(trainings), "r3_ensemble_sets": len(flat), "r3_plain_ensemble_errors": plain,
            "r3_single_gap": mean - R3_TARGETS[0], "r3_ensemble_gap": pct(ens) - R3_TARGETS[1]}
    out["r3_noise_gap"] = out["r3_noise_mean"] - out["r3_paper_noise"]
    # B on clean test digits: its second-round test runs (seeds 0-4) read in its third-round reading
    prev_runs = L.find("test", B, list(range(R3_SEEDS)))
    prev_rates = [pct(int((r.read(by[1].reading).argmax(1) != labels).sum())) for r in prev_runs]
    out |= {"r3_prev_mean": float(np.mean(prev_rates)), "r3_prev_seeds": len(prev_runs),
            "r3_vs_prev": mean - float(np.mean(prev_rates)), "r3_vs_prev_p": welch_p(rates, prev_rates),
            # half the width of the Wilson interval of one model making the seeds' mean error count (rounded)
            "r3_binomial_half": (lambda lo_hi: (lo_hi[1] - lo_hi[0]) / 2)(wilson(round(float(np.mean(errors))), N_TEST))}
    extra |= {"final": True, "runs": runs, "ensemble_runs": [r for _, rs in sets.values() for r in rs], "errors": errors, "noise": noise, "reference": reference,
              "members": [{"name": c.name, "prediction_mode": c.reading, "seeds": [r.seed for r in rs],
                           "weight": 1 / len(sets) / len(rs)} for c, rs in sets.values()]}
    return out, extra


def third_round_cost(earlier: dict, x3: dict) -> dict:
    """The cost over every group of the chapter (``cost_*``) and over the third round's two groups
    (``r3_cost_*``: its cross-validation runs, then the chosen model's and the members' final runs),
    a run counted once, in the first group that lists it; wall minutes on two cores."""
    new = {}
    for group in ([r for c in x3["candidates"] for r in c.runs], x3["ensemble_runs"]):
        new |= {r.folder.name: r for r in group if r.folder.name not in earlier and r.folder.name not in new}
    x3["cost_runs"] = earlier | new  # the fourth round's groups come after these
    out = {}
    for prefix, runs in (("cost", earlier | new), ("r3_cost", new)):
        minutes = sum(r.seconds for r in runs.values()) / 60
        out |= {f"{prefix}_runs": len(runs), f"{prefix}_minutes": minutes, f"{prefix}_wall_minutes": minutes / 2}
    return out


# ---------------------------------------------------------------- fourth round (distillation)

R4_PROTOCOL = REPO / "protocols" / "distillation.md"
# protocols/distillation.md, "Candidates": W with label smoothing replaced by soft targets (a, T), in order
R4_STUDENTS = {"distilled, a = 1, T = 1": (1.0, 1.0), "distilled, a = 0.5, T = 2": (0.5, 2.0)}
R4_SEEDS, R4_TARGET_SINGLE = 5, 1.8  # final runs (seeds 0-4); the chapter's single-model target (%)
# A record leaves out a late setting at its "off" value (no label smoothing, no distillation, T = 1: the
# students' records of a = 1, T = 1 hold neither label_smoothing nor distill_temperature).
R4_OFF = {"label_smoothing": 0.0, "distill_weight": 0.0, "distill_temperature": 1.0}


def distill_budget() -> int:
    """The fourth round's training budget in minutes, as its protocol states it ("at most N minutes")."""
    text = " ".join(R4_PROTOCOL.read_text().replace("*", "").split())
    return int(re.search(r"may use at most (\d+) minutes", text).group(1))


def fourth_round(L: Ledger, x3: dict) -> tuple[dict, dict]:
    """The fourth round: born-again students of the third round's choice W, taught by W's runs on the
    same images; cross-validation on the third round's folds, its rule, and the one look."""
    W, ref = x3["chosen"], x3["candidates"][0]
    w_config = W.runs[0].config
    students = []
    for i, (name, (a, T)) in enumerate(R4_STUDENTS.items(), 1):
        wanted = R4_OFF | w_config | {"label_smoothing": 0.0, "distill_weight": a, "distill_temperature": T}
        found = [r for r in L.runs if R4_OFF | r.config == wanted]
        if not found:
            raise MissingRuns(f"no run of {name!r}")
        change = L.diff(found[0].config)
        assert all(L.diff(r.config) == change for r in found), f"{name}: its runs' records differ"
        students.append(Candidate3(L, i, name, change, tuple(ARRAYS)))  # raises MissingRuns
    assert all(np.array_equal(c.labels, W.labels) for c in students), "students predict other images than W"
    for c in students:
        c.robust = c.noise[NOISE] <= ref.noise[NOISE]
    robust = [c for c in students if c.robust]
    student = (min(robust, key=lambda c: c.score) if robust  # min keeps candidate 1 on a tie
               else min(students, key=lambda c: c.noise[NOISE]))
    replaces = bool(student.robust and student.score < W.score)
    by = {c.index: c for c in students}
    a, T = R4_STUDENTS[student.name]
    out = {"r4_protocol": students[0].runs[0].record["protocol"][:7], "r4_budget": distill_budget(),
           "r4_candidates": len(students), "r4_teacher_score": W.score, "r4_teacher_noise_errors": W.noise[NOISE],
           **{f"r4_score_{i}": c.score for i, c in by.items()},
           **{f"r4_noise_errors_{i}": c.noise[NOISE] for i, c in by.items()},
           "r4_student": student.name, "r4_weight": a, "r4_temperature": T, "r4_mode": student.reading,
           "r4_student_score": student.score, "r4_student_noise_errors": student.noise[NOISE],
           "r4_robust": len(robust),
           "r4_p": mcnemar_p(student.probs().argmax(1) != student.labels, W.probs().argmax(1) != W.labels),
           "r4_replaces": replaces, "r4_cv_gain": W.score - student.score}
    # each student's CV run is taught by W's run on the same fold (its ledger key)
    teachers_ok = all(r.record["job"].get("teachers") == [w.folder.name]
                      for c in students for r, w in zip(c.runs, W.runs))
    extra = {"students": students, "student": student, "W": W, "replaces": replaces, "final": False,
             "protocol": students[0].runs[0].record["protocol"], "cv_teachers_ok": teachers_ok}
    runs = [r for r in L.runs if r.split == "test" and L.diff(r.config) == student.change and r.seed < R4_SEEDS]
    if len(runs) < R4_SEEDS:
        return out, extra
    runs = L.find("test", student.change, list(range(R4_SEEDS)))
    labels, errors, rates, mean, std, low, high, noise = seed_results(runs, student.reading)
    teacher_rates = [pct(e) for e in x3["errors"]]  # W's 5 final runs in W's reading
    seed_ens = int(ensemble_wrong([r.read(student.reading) for r in runs], labels).sum())
    teacher_keys = {r.folder.name for r in x3["runs"]}
    trainings = teacher_keys | {r.folder.name for r in runs}
    own = [r for c in students for r in c.runs] + runs
    minutes = sum(r.seconds for r in own) / 60
    out |= {"r4_seeds": len(runs), "r4_mean": mean, "r4_std": std, "r4_low": low, "r4_high": high,
            "r4_min_errors": min(errors), "r4_max_errors": max(errors),
            "r4_teacher_mean": float(np.mean(teacher_rates)), "r4_vs_teacher": mean - float(np.mean(teacher_rates)),
            "r4_vs_teacher_p": welch_p(rates, teacher_rates),
            "r4_noise_mean": float(np.mean([pct(e) for e in noise[NOISE]])),
            "r4_noise_min": pct(min(noise[NOISE])), "r4_noise_max": pct(max(noise[NOISE])),
            "r4_seed_ensemble_errors": seed_ens, "r4_seed_ensemble": pct(seed_ens),
            "r4_seed_ensemble_runs": len(trainings), "r4_target_single": R4_TARGET_SINGLE,
            "r4_single_gap": mean - R4_TARGET_SINGLE, "r4_runs": len(own), "r4_minutes": minutes}
    extra |= {"final": True, "runs": runs, "errors": errors, "noise": noise, "seed_ensemble_errors": seed_ens,
              "trainings": len(trainings),
              "final_teachers_ok": all(sorted(r.record["job"].get("teachers") or []) == sorted(teacher_keys)
                                       for r in runs)}
    return out, extra


def fourth_round_cost(earlier: dict, x4: dict) -> dict:
    """The fourth round's two groups of the cost table (its cross-validation runs, its final runs), after
    every earlier group: ``r4_cost_*``, and the runs they add to the chapter's ``cost_*``."""
    new = {}
    for group in ([r for c in x4["students"] for r in c.runs], x4["runs"]):
        new |= {r.folder.name: r for r in group if r.folder.name not in earlier and r.folder.name not in new}
    out = {}
    for prefix, runs in (("cost", earlier | new), ("r4_cost", new)):
        minutes = sum(r.seconds for r in runs.values()) / 60
        out |= {f"{prefix}_runs": len(runs), f"{prefix}_minutes": minutes, f"{prefix}_wall_minutes": minutes / 2}
    return out


# ---------------------------------------------------------------- the test-set log and the standings

def first_trained(runs) -> str:
    """The earliest training date of some runs (record.json "trained", "YYYY-MM-DD HH:MM:SS UTC")."""
    return min(r.record["trained"] for r in runs)


def test_log(L: Ledger, extra: dict, third: tuple | None, fourth: tuple | None, n_baselines: int) -> list[dict]:
    """The book's test-set log (reproducibility chapter) rebuilt from the ledger: one row per experiment,
    ordered by the first training date of its runs (a tie keeps the chapters' order; the classical
    baselines have no date and come last); a run two experiments share counts once, in the first row.
    Each row: name, first date, the runs it scores on the test set (0: training images only), and
    whether it belongs to the best-published chapter. The experiments are grouped as the chapters
    describe them."""
    recipe, rungs = L.find("test", {}), extra["rungs"]
    sweep = [r for change in [{}, *OPTIONS.values()] for r in L.find("holdout", change | {"epochs": 50})]
    rows = [  # (name, runs, on the test set, best-published chapter)
        ("decision search (model chapter)", sweep, False, False),
        ("the paper's model (training chapter)", recipe[:1], True, False),
        ("seeds (variance chapter)", recipe, True, False),
        ("dense-layer width (ablations chapter)", [L.find("test", {"dense_units": w} if w != L.base["dense_units"]
                                                          else {}, [0])[0] for w in ABLATION_WIDTHS], True, False),
        ("batch size (ablations chapter)", [L.find("test", {"batch_size": b} if b != L.base["batch_size"] else {},
                                                   [0])[0] for b in ABLATION_BATCHES], True, False),
        ("ladder, holdout runs (human-level chapter)",
         [r for rung in rungs for r in L.find("holdout", rung["change"], [0, 1])], False, False),
        ("ladder, test-set runs (human-level chapter)", [r for rung in rungs for r in rung["runs"]], True, False),
        ("readings of the recipe (discussion chapter)",
         [r for change in READINGS.values() for r in L.find("test", change)], True, False),
        ("decision options on the test set (discussion chapter)",
         [r for change in OPTIONS.values() for r in L.find("test", change, [0, 1, 2])], True, False),
        ("cross-validation, first round", [r for c in extra["first"] for r in c.runs], False, True),
        ("the first round's choice", extra["first_runs"], True, True),
        ("ranking check on the test set", extra["tests"], True, True),
        ("cross-validation, second round", [r for c in extra["second"] for r in c.runs], False, True),
        ("B, the second round's choice", extra["runs"], True, True),
        ("ensemble members chosen by cross-validation", extra["ensemble_runs"], True, True)]
    if third is not None:
        rows.append(("third round: cross-validation", [r for c in third[1]["candidates"] for r in c.runs], False, True))
        if third[1]["final"]:
            rows.append(("third round: the chosen model and the ensemble's members", third[1]["ensemble_runs"], True, True))
    if fourth is not None:
        rows.append(("fourth round: cross-validation of the distilled students",
                     [r for c in fourth[1]["students"] for r in c.runs], False, True))
        if fourth[1]["final"]:
            rows.append(("fourth round: the distilled student", fourth[1]["runs"], True, True))
    # In the order of training: the experiment whose runs not yet counted were trained first comes next
    # (a tie keeps the chapters' order) and counts them; a shared run is thus counted by the experiment
    # that trained it first, and an experiment's dates are those of the runs it counts.
    seen, log, left = set(), [], list(range(len(rows)))
    while left:
        fresh = {i: [r for r in rows[i][1] if r.folder.name not in seen] or rows[i][1] for i in left}
        i = min(left, key=lambda i: (first_trained(fresh[i]), i))
        left.remove(i)
        name, runs, test, chapter = rows[i]
        new = {r.folder.name for r in runs} - seen
        seen |= new
        log.append({"name": name, "first": first_trained(fresh[i]), "runs": len(new) if test else 0,
                    "chapter": chapter, "keys": new if test else set()})
    log.append({"name": "classical baselines (human-level chapter)", "first": None, "runs": n_baselines,
                "chapter": False, "keys": set()})
    return log


def log_numbers(log: list[dict]) -> dict:
    """The log's counts: looks (rows that score at least one run on the test set) and runs, in all and in the
    best-published chapter, and the chapter's before its second round of cross-validation was trained."""
    looks = [row for row in log if row["runs"]]
    chapter = [row for row in looks if row["chapter"]]
    second = next(row["first"] for row in log if row["name"] == "cross-validation, second round")
    before = [row for row in chapter if row["first"] < second]
    return {"log_looks": len(looks), "log_test_runs": sum(row["runs"] for row in looks),
            "log_best_looks": len(chapter), "log_best_runs": sum(row["runs"] for row in chapter),
            "log_looks_before_second": len(before), "log_runs_before_second": sum(row["runs"] for row in before)}


def looks_before(log: list[dict], experiment: str) -> int:
    """The looks at the test set that come before an experiment's row in the log."""
    index = next(i for i, row in enumerate(log) if row["name"] == experiment)
    return sum(bool(row["runs"]) for row in log[:index])


# The standings (best-published chapter, "The standings"), in the table's order: glue key, name, kind,
# "chosen by", and the experiment of the test-set log that chose it; names and labels copied from the table.
STANDINGS = (("recipe", "the recipe", "seeds", "holdout splits", "decision search (model chapter)"),
             ("a", "A", "seeds", "CV, round 1", "cross-validation, first round"),
             ("b", "B", "seeds", "CV, round 2", "cross-validation, second round"),
             ("b_ens", "B's ensemble", "ensemble", "CV, round 2", "cross-validation, second round"),
             ("w", "W", "seeds", "protocol, round 3", "third round: cross-validation"),
             ("w_ens", "W's ensemble", "ensemble", "protocol, round 3", "third round: cross-validation"),
             ("student", "the student", "seeds", "protocol, round 4",
              "fourth round: cross-validation of the distilled students"))
PUBLISHED = (("the paper", PAPER_ERRORS, "its test set"),  # before the models
             ("best published (Keysers)", BEST_PUBLISHED * N_TEST / 100, "published"))  # after them


def standings(L: Ledger, best: dict, extra: dict, third: tuple | None, fourth: tuple | None,
              log: list[dict]) -> list[dict]:
    """Every model of the standings: its test errors (each seed's, or the ensemble's one count), its error
    under pixel noise of sigma 0.4 and whose it is (seed 0 from the stored weights for the recipe and B,
    the mean of the seeds' stored noisy predictions for W and the student; A and the ensembles: not
    measured), its independent training runs (ensembles) and the looks at the test set before the
    experiment that chose it. Only the models whose runs are all in the ledger."""
    data = {"recipe": ([r.errors for r in L.find("test", {})], best["noise_paper_error"], "seed 0", None),
            "a": (extra["first_errors"], None, None, None),
            "b": (extra["errors"], best["noise_best_error"], "seed 0", None),
            "b_ens": ([best["ensemble_errors"]], None, None, best["ensemble_size"])}
    if third is not None and third[1]["final"]:
        r3, x3 = third
        data |= {"w": (x3["errors"], r3["r3_noise_mean"], "mean of seeds", None),
                 "w_ens": ([r3["r3_ensemble_errors"]], None, None, r3["r3_ensemble_runs"])}
    if fourth is not None and fourth[1]["final"]:
        data["student"] = (fourth[1]["errors"], fourth[0]["r4_noise_mean"], "mean of seeds", None)
    rows = []
    for key, name, kind, chosen_by, experiment in STANDINGS:
        if key in data:
            errors, noise, noise_of, runs = data[key]
            rows.append({"key": key, "name": name, "kind": kind, "errors": errors, "noise": noise,
                         "noise_of": noise_of, "chosen_by": chosen_by, "looks": looks_before(log, experiment),
                         "runs": runs})
    published = [{"key": None, "name": name, "kind": "published", "errors": [float(e)], "noise": None,
                  "noise_of": None, "chosen_by": chosen_by, "looks": None, "runs": None}
                 for name, e, chosen_by in PUBLISHED]
    return [published[0], *rows, published[1]]


def standings_numbers(rows: list[dict]) -> dict:
    """The standings' glue keys st_<model>_*: the test error (%) of the mean error count, the Wilson 95 %
    interval of that many errors out of the test images (not the spread of the seeds), and so on."""
    out = {}
    for row in rows:
        if row["key"] is None:
            continue
        k, errors = f"st_{row['key']}", row["errors"]
        mean = float(np.mean(errors))
        low, high = wilson(mean, N_TEST)
        out |= {f"{k}_error": pct(mean), f"{k}_low": low, f"{k}_high": high, f"{k}_errors": mean,
                f"{k}_looks": row["looks"]}
        if row["kind"] == "seeds":
            out |= {f"{k}_seeds": len(errors), f"{k}_min": min(errors), f"{k}_max": max(errors)}
        if row["noise"] is not None:
            out[f"{k}_noise"] = row["noise"]
        if row["runs"] is not None:
            out[f"{k}_runs"] = row["runs"]
    if "st_w_errors" in out:
        out["st_w_minus_b"] = out["st_w_errors"] - out["st_b_errors"]
    return out


def demo(L: Ledger, chosen: Candidate | Candidate3) -> dict:
    """The demo's two models: the paper's network and the book's best single model (since the third
    round its choice), seed 0 each, plain predictions."""
    paper, best = L.find("test", {}, [0])[0], L.find("test", chosen.change, [0])[0]
    return {"n_disagree": int((paper.probs().argmax(1) != best.probs().argmax(1)).sum())}


def reproducibility(L: Ledger) -> dict:
    manifest = json.loads((RESULTS / "MANIFEST.json").read_text())["files"]
    problems = sum(not (RESULTS / f).is_file() or hashlib.sha256((RESULTS / f).read_bytes()).hexdigest() != h
                   for f, h in manifest.items())
    # a row of the retrain report counts for the entry it compared: same key, same training time
    verify = re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \| (\d+) \| (\d+) \| (yes|no) \| (yes|no) \| [^|]* \|$",
                        (RESULTS / "VERIFY.md").read_text(), re.M)
    trained = {r.folder.name: r.record["trained"] for r in L.runs}
    verify = [(k, a, b, ok, same) for k, when, a, b, ok, same in verify if trained.get(k) == when.strip()]
    # a report written before that column existed counts for the entries trained before it was written
    text = (RESULTS / "VERIFY.md").read_text()
    written = re.search(r"^# .*\((\d{4}-\d\d-\d\d \d\d:\d\d)\)$", text, re.M)
    older = re.findall(r"^\| `(\w+)` \| [^|]* \| (\d+) \| (\d+) \| (yes|no) \| (yes|no) \|$", text, re.M)
    verify += [row for row in older if written and row[0] in trained and trained[row[0]][:16] < written[1]]
    keys = set(trained)
    checked = {k: ok for k, _, _, ok, _ in verify}
    differ = [(int(a), int(b), same) for k, a, b, ok, same in verify if ok == "no"]
    recipe = [r.errors for r in L.find("test", {})]
    minutes = sum(r.seconds for r in L.runs) / 60
    return {"ledger_runs": len(L.runs), "ledger_problems": problems,
            "ledger_mb": sum(f.stat().st_size for f in RESULTS.rglob("*") if f.is_file()) / 1e6,
            "ledger_weights": sum((r.folder / "model.weights.npz").is_file() for r in L.runs),
            "ledger_environments": len({json.dumps(r.record["environment"], sort_keys=True) for r in L.runs}),
            "verified_identical": sum(ok == "yes" for ok in checked.values()),
            "verified_differs": sum(ok == "no" for ok in checked.values()),
            "verified_pending": len(keys - set(checked)), "total_runs": len(L.runs),
            "verified_differs_elsewhere": sum(same == "no" for _, _, same in differ),
            "verified_max_gap": max((abs(a - b) for a, b, _ in differ), default=0),
            "recipe_seeds": len(recipe), "recipe_seed_span": max(recipe) - min(recipe),
            "total_minutes": minutes, "total_wall_minutes": minutes / 2}


def baselines() -> dict:
    return {b["method"]: b for b in (json.loads(p.read_text()) for p in sorted((RESULTS / "baselines").glob("*/result.json")))}


# ---------------------------------------------------------------- the CLI's JSON answers

def cli(L: Ledger, best: dict, extra: dict, disc: dict, third: tuple | None, fourth: tuple | None = None,
        table: list[dict] = ()) -> dict:
    recipe = L.find("test", {})
    rates = [pct(r.errors) for r in recipe]
    mean, std = mean_std(rates)
    out = {}
    # the standings (fractions, not %)
    for i, row in enumerate(table):
        key, mean_errors = f"summary.standings[{i}]", float(np.mean(row["errors"]))
        out |= {f"{key}.name": row["name"], f"{key}.kind": row["kind"], f"{key}.test_error": mean_errors / N_TEST,
                **{f"{key}.test_error_interval95_binomial[{j}]": v / 100
                   for j, v in enumerate(wilson(mean_errors, N_TEST))},
                **{f"{key}.test_errors[{j}]": e for j, e in enumerate(row["errors"])},
                f"{key}.noise_error": None if row["noise"] is None else row["noise"] / 100,
                f"{key}.noise_error_of": row["noise_of"], f"{key}.chosen_by": row["chosen_by"],
                f"{key}.test_looks_before": row["looks"], f"{key}.training_runs": row["runs"]}
    for i, r in enumerate(recipe):
        out |= {f"summary.paper_model_seeds[{i}].seed": r.seed, f"summary.paper_model_seeds[{i}].test_errors": r.errors,
                f"summary.paper_model_seeds[{i}].test_accuracy": 1 - r.errors / N_TEST}
    out |= {"summary.best": "W",  # the book's one meaning of "best" (its standings define it)
            "summary.paper_model_mean_error": mean / 100, "summary.paper_model_std_error": std / 100,
            "summary.test_images": N_TEST}
    # the second round, moved under "second_round"
    chosen, sr = extra["chosen"], "summary.second_round"
    out |= {f"{sr}.model": "B", f"{sr}.model_name": chosen.name + (", test-time shifts" if chosen.tta else ""),
            f"{sr}.model_error": best["best_mean"] / 100,
            f"{sr}.ensemble_error": best["ensemble"] / 100, f"{sr}.ensemble_errors": best["ensemble_errors"],
            f"{sr}.ensemble_size": best["ensemble_size"], f"{sr}.ensemble_prediction_sets": extra["prediction_sets"],
            f"{sr}.plain_ensemble_errors": extra["plain_ensemble_errors"],
            f"{sr}.plain_ensemble_error": extra["plain_ensemble_errors"] / N_TEST,
            f"{sr}.seed_ensemble_errors": best["seed_ensemble_errors"],
            f"{sr}.seed_ensemble_error": best["seed_ensemble_errors"] / N_TEST}
    for i, r in enumerate(extra["runs"]):
        out[f"{sr}.model_errors[{i}]"] = int(r.wrong(chosen.tta).sum())
    for i, m in enumerate(extra["members"]):
        out |= {f"{sr}.ensemble_members[{i}].name": m["name"], f"{sr}.ensemble_members[{i}].weight": m["weight"],
                **{f"{sr}.ensemble_members[{i}].seeds[{j}]": s for j, s in enumerate(m["seeds"])}}
    # the third round: best_single_* and ensemble_* describe it
    if third is not None:
        r3, x3 = third
        for c in x3["candidates"]:
            key = f"summary.third_round_cross_validation.{c.name}"
            out |= {f"{key}.errors_{k.replace(' ', '_')}": v for k, v in c.errors.items()}
            out |= {f"{key}.noise_errors": c.noise[NOISE], f"{key}.robust": c.robust}
        out |= {"summary.protocol": "protocols/accurate-and-robust.md", "summary.protocol_commit": x3["protocol"],
                "summary.noise_level": NOISE}
    if third is not None and x3["final"]:
        c3 = x3["chosen"]
        out |= {"summary.best_single_round": "third",  # the summary's best single model is the third round's
                "summary.best_single_candidate": c3.name, "summary.best_single_prediction_mode": c3.reading,
                "summary.best_single_name": f"{c3.name}, read {c3.reading}",
                "summary.best_single_error": r3["r3_mean"] / 100, "summary.test_time_shifts": c3.reading != "plain",
                "summary.best_single_noise_error": r3["r3_noise_mean"] / 100,
                "summary.paper_noise_error": r3["r3_paper_noise"] / 100,
                "summary.b_noise_error": r3["r3_previous_noise"] / 100,
                "summary.ensemble_error": r3["r3_ensemble"] / 100, "summary.ensemble_errors": r3["r3_ensemble_errors"],
                "summary.ensemble_size": r3["r3_ensemble_runs"], "summary.ensemble_prediction_sets": r3["r3_ensemble_sets"],
                "summary.plain_ensemble_errors": r3["r3_plain_ensemble_errors"],
                "summary.plain_ensemble_error": r3["r3_plain_ensemble_errors"] / N_TEST,
                "summary.seed_ensemble_errors": r3["r3_seed_ensemble_errors"],
                "summary.seed_ensemble_error": r3["r3_seed_ensemble_errors"] / N_TEST}
        for i, (r, e, ne) in enumerate(zip(x3["runs"], x3["errors"], x3["noise"][NOISE])):
            out |= {f"summary.best_single_seeds[{i}]": r.seed, f"summary.best_single_errors[{i}]": e,
                    f"summary.best_single_noise_errors[{i}]": ne}
        for i, m in enumerate(x3["members"]):
            out |= {f"summary.ensemble_members[{i}].{k}": m[k] for k in ("name", "prediction_mode", "weight")}
            out |= {f"summary.ensemble_members[{i}].seeds[{j}]": s for j, s in enumerate(m["seeds"])}
    # the fourth round (distillation): its own object; best_single_* become the student's only if it replaces W
    if fourth is not None:
        r4, x4 = fourth
        d, student = "summary.distillation", x4["student"]
        out |= {f"{d}.protocol": "protocols/distillation.md", f"{d}.protocol_commit": x4["protocol"],
                f"{d}.student": student.name, f"{d}.teacher": x4["W"].name, f"{d}.prediction_mode": student.reading,
                f"{d}.replaces_best_single": x4["replaces"]}
        for c in [x4["W"]] + x4["students"]:
            key = f"{d}.cross_validation.{c.name}"
            out |= {f"{key}.errors_{k.replace(' ', '_')}": v for k, v in c.errors.items()}
            out |= {f"{key}.noise_errors": c.noise[NOISE], f"{key}.robust": c.robust}
    if fourth is not None and fourth[1]["final"]:
        out |= {f"{d}.error": r4["r4_mean"] / 100, f"{d}.noise_error": r4["r4_noise_mean"] / 100,
                f"{d}.seed_ensemble_errors": r4["r4_seed_ensemble_errors"],
                f"{d}.seed_ensemble_error": r4["r4_seed_ensemble_errors"] / N_TEST,
                f"{d}.seed_ensemble_training_runs": r4["r4_seed_ensemble_runs"]}
        for i, (r, e, ne) in enumerate(zip(x4["runs"], x4["errors"], x4["noise"][NOISE])):
            out |= {f"{d}.seeds[{i}]": r.seed, f"{d}.errors[{i}]": e, f"{d}.noise_errors[{i}]": ne}
        if x4["replaces"]:  # the protocol's rule: the student becomes the book's best single model
            out |= {"summary.best_single_round": "fourth", "summary.best_single_candidate": student.name,
                    "summary.best_single_prediction_mode": student.reading,
                    "summary.best_single_name": f"{student.name}, read {student.reading}",
                    "summary.best_single_error": r4["r4_mean"] / 100,
                    "summary.test_time_shifts": student.reading != "plain",
                    "summary.best_single_noise_error": r4["r4_noise_mean"] / 100}
            for i, (r, e, ne) in enumerate(zip(x4["runs"], x4["errors"], x4["noise"][NOISE])):
                out |= {f"summary.best_single_seeds[{i}]": r.seed, f"summary.best_single_errors[{i}]": e,
                        f"summary.best_single_noise_errors[{i}]": ne}
    for c in extra["first"] + extra["second"]:
        out |= {f"summary.cross_validation.{c.name}.errors": c.errors,
                f"summary.cross_validation.{c.name}.errors_with_test_time_shifts": c.tta_errors}
    for i, rung in enumerate(extra["rungs"]):
        out |= {f"summary.ladder[{i}].rung": rung["name"], f"summary.ladder[{i}].kept": rung["kept"],
                f"summary.ladder[{i}].holdout_errors": rung["holdout"],
                **{f"summary.ladder[{i}].test_errors[{j}]": r.errors for j, r in enumerate(rung["runs"])}}
    # gap --json
    out |= {"gap.paper_error": PAPER_ERROR, "gap.recipe.seeds": disc["rec_seeds"], "gap.recipe.mean_error": disc["rec_mean"],
            "gap.recipe.std_error": disc["rec_std"], "gap.recipe.mean_ci95[0]": disc["rec_low"],
            "gap.recipe.mean_ci95[1]": disc["rec_high"]}
    for i, name in enumerate(READINGS):
        k = f"reading{i + 1}"
        out |= {f"gap.variants[{i}].name": name, f"gap.variants[{i}].seeds": disc[f"{k}_seeds"],
                f"gap.variants[{i}].mean_error": disc[f"{k}_mean"], f"gap.variants[{i}].std_error": disc[f"{k}_std"],
                f"gap.variants[{i}].min_error": disc[f"{k}_min"],
                f"gap.variants[{i}].max_error": max(pct(r.errors) for r in L.find("test", READINGS[name])),
                f"gap.variants[{i}].seeds_at_or_below_paper": disc[f"{k}_at"]}
    out |= {"gap.selection.best_epoch_error_mean": disc["sel_epoch_mean"],
            "gap.selection.best_epoch_error_min": disc["sel_epoch_min"],
            "gap.selection.best_seed_error": disc["sel_best_seed"],
            "gap.selection.best_option_error": disc["best_option_error"],
            "gap.selection.best_option": disc["best_option"],
            "gap.selection.test_tuned_error": disc["sel_tuned"]}
    # evaluate --json: the paper's model, seed 0
    run, ev = recipe[0], evaluation(L)
    sizes = np.bincount(run.labels, minlength=10)
    out |= {"evaluate.test_accuracy": ev["our_accuracy"] / 100, "evaluate.test_errors": ev["our_errors"],
            "evaluate.test_images": ev["n_test"], "evaluate.test_accuracy_interval95[0]": ev["our_low"] / 100,
            "evaluate.test_accuracy_interval95[1]": ev["our_high"] / 100, "evaluate.seed": run.seed,
            "evaluate.key": run.folder.name, "evaluate.train_seconds": run.seconds,
            "evaluate.seconds_per_epoch": run.seconds / run.config["epochs"], "evaluate.trained": run.record["trained"],
            **{f"evaluate.per_class_accuracy[{d}]": 1 - e / n for d, (e, n) in enumerate(zip(per_digit_errors(run), sizes))},
            **{f"evaluate.config.{k}": v for k, v in run.config.items()},
            **{f"evaluate.environment.{k}": v for k, v in run.record["environment"].items()}}
    return out


def prose(E: dict, third: tuple | None = None, fourth: tuple | None = None) -> dict:
    """Verdicts the chapters now write as fixed words: {(chapter, phrase): does it hold?}."""
    ev, var, dis, hl, bp = (E[c] for c in ("evaluation", "variance", "discussion", "human-level", "best-published"))
    r3 = {}
    if fourth is not None:
        r3 |= {
            ("best-published", "Here distillation made the network worse on the training images"):
                bp["r4_score_1"] > bp["r4_teacher_score"] and bp["r4_score_2"] > bp["r4_teacher_score"],
            ("best-published", "The two students tie at {eval}`n[\"r4_score_1\"]` out-of-fold errors each"):
                bp["r4_score_1"] == bp["r4_score_2"],
            ("best-published", "so the rule reports the first"):
                bp["r4_score_1"] == bp["r4_score_2"] and bp["r4_student"] == next(iter(R4_STUDENTS)),
            ("best-published", "It is worse than W on the same images"):
                bp["r4_student_score"] > bp["r4_teacher_score"] and bp["r4_p"] < 0.05,
            ("best-published", "Both students stay robust"): bp["r4_robust"] == bp["r4_candidates"],
            ("best-published", "By the protocol's rule the student does not replace W"): not bp["r4_replaces"],
            ("best-published", "does distillation help W? No."): not bp["r4_replaces"]}
    if fourth is not None and fourth[1]["final"]:
        r3 |= {
            ("best-published", "The test set agrees with the cross-validation"): bp["r4_vs_teacher"] > 0,
            ("best-published", "**misses the {eval}`n[\"r4_target_single\"]` % target"): bp["r4_single_gap"] > 0,
            ("best-published", "It stays robust: under noise"): bp["r4_noise_max"] <= bp["r3_paper_noise"],
            ("best-published", "more than W's seeds' ensemble"):
                bp["r4_seed_ensemble_errors"] > bp["r3_seed_ensemble_errors"],
            ("best-published", "on the test set the student is also worse than W, not significantly"):
                bp["r4_mean"] > bp["r4_teacher_mean"] and bp["r4_vs_teacher_p"] >= 0.05,
            ("best-published", "the students reach neither that nor one W"):
                bp["r4_mean"] > bp["r3_seed_ensemble"] and bp["r4_mean"] > bp["r4_teacher_mean"],
            # W stays the book's best: the fourth round's rule did not let the student replace it
            ("introduction", "The book's **best** model means one thing: **W**"): not bp["r4_replaces"],
            ("best-published", "**Best** means one thing in this book: **W**"): not bp["r4_replaces"]}
    if third is not None:
        cands = third[1]["candidates"]
        r3 |= {
            ("best-published", "Noise in training removes the fragility: every noise-trained candidate is robust"):
                all(c.robust for c in cands[2:]),
            ("best-published", "B itself is not"): not cands[1].robust,
            ("best-published", "is not significant (McNemar p = {eval}`n[\"r3_chosen_p:.2f\"]`)"): bp["r3_chosen_p"] >= 0.05,
            ("best-published", "Test-time rotations help none of the noise-trained candidates; B alone would read "
                               "best with them"):
                all(c.reading != "shifts and rotations" for c in cands[2:])
                and cands[1].errors["shifts and rotations"] < cands[1].score,
            ("best-published", "Forward selection finds no candidate"): bp["r3_members"] == 1}
    if third is not None and third[1]["final"]:
        r3 |= {
            ("best-published", "on clean digits it is no better than B"): bp["r3_vs_prev"] >= 0,
            ("best-published", "the robustness condition holds for every seed"):
                bp["r3_noise_max"] <= bp["r3_paper_noise"],
            ("best-published", "Its seeds' ensemble, which is the protocol's ensemble here"):
                bp["r3_ensemble_errors"] == bp["r3_seed_ensemble_errors"],
            ("best-published", "and does not reach B's ensemble"): bp["r3_ensemble"] > bp["ensemble"],
            ("best-published", "No: W is robust but not more accurate than B, and neither W nor its ensemble meets its"):
                bp["r3_noise_max"] <= bp["r3_paper_noise"] and bp["r3_vs_prev"] >= 0
                and bp["r3_single_gap"] > 0 and bp["r3_ensemble_gap"] > 0,
            ("best-published", "**misses the {eval}`n[\"r3_target_single\"]` % target"): bp["r3_single_gap"] > 0,
            ("best-published", "**misses the {eval}`n[\"r3_target_ensemble\"]` % target"): bp["r3_ensemble_gap"] > 0,
            }
    return r3 | {
        ("evaluation", "lies outside the paper's 95 % interval"): ev["ours_in_paper"].holds,
        ("evaluation", "and the paper's lies outside ours"): ev["paper_in_ours"].holds,
        ("variance", "lies below the range of our runs"): PAPER_ERROR < var["seed_min"],
        ("discussion", "does not reach the paper's {eval}`n[\"paper_error\"]` %"): dis["sel_epoch_min"] > PAPER_ERROR,
        ("discussion", "does not reach the paper's number either"): dis["best_option_error"] > PAPER_ERROR,
        ("discussion", "reaches the paper's number: once the recipe itself may change"): dis["sel_tuned"] <= PAPER_ERROR,
        ("human-level", "the single model misses its target"): hl["single_gap"] > 0,
        ("human-level", "ensemble misses its target"): hl["ensemble_gap"] > 0,
        ("human-level", "too few seeds for a standard deviation or an interval"): hl["final_seeds"] < 3,
        ("best-published", "not significant on its own"): bp["chosen_p"] >= 0.05,
        ("best-published", "The rule picks a new candidate"): bp["final_choice_changed"].holds,
        ("best-published", "levers that helped in the first round do not add up"): bp["elastic_score"] >= bp["first_score"],
        ("best-published", "cost more than the extra epochs win back"): bp["double_score"] >= bp["first_score"],
        ("best-published", "B misses the single-model target of"): bp["single_gap"] > 0,
        ("best-published", "B's ensemble misses its {eval}`n[\"target_ensemble\"]` %"): bp["ensemble_gap"] > 0,
        ("best-published", "B's mean is not below the best published"): bp["best_mean"] >= BEST_PUBLISHED,
        ("best-published", "B's ensemble is below it, but the best published result lies inside the ensemble's "
                           "binomial 95 % interval"):
            bp["ensemble"] < BEST_PUBLISHED and bp["ensemble_low"] <= BEST_PUBLISHED <= bp["ensemble_high"],
        ("best-published", "A missed the targets on the test set"):
            bp["first_test_mean"] > BEST_TARGETS[0] and bp["first_seed_ensemble"] > BEST_TARGETS[1],
    } | standings_prose(bp, E["introduction"])


def standings_prose(bp: dict, intro: dict) -> dict:
    """The verdicts the overview page and the introduction write about the standings."""
    if "st_student_error" not in bp:
        return {}
    models = ("recipe", "a", "b", "b_ens", "w", "w_ens", "student")
    fewest = min(models, key=lambda m: bp[f"st_{m}_error"])
    inside = bp["st_b_ens_low"] <= BEST_PUBLISHED <= bp["st_b_ens_high"]
    targets = {"a": BEST_TARGETS[0], "b": BEST_TARGETS[0], "b_ens": BEST_TARGETS[1], "w": R3_TARGETS[0],
               "w_ens": R3_TARGETS[1], "student": R4_TARGET_SINGLE}
    none_met = all(bp[f"st_{m}_error"] > t for m, t in targets.items())
    human = all(bp[f"st_{m}_low"] < HUMAN[0] and bp[f"st_{m}_high"] > HUMAN[1] for m in models if m != "recipe")
    return {
        ("best-published", "reads noisy digits far better than the paper's network"):
            bp["st_w_noise"] < bp["st_recipe_noise"],
        ("best-published", "The model with the fewest test errors, B's ensemble"): fewest == "b_ens",
        ("best-published", "lies inside its binomial 95 % interval"): inside,
        ("best-published", "No target was met"): none_met,
        ("best-published", "It is not the row with the fewest test errors. B makes fewer clean errors"):
            fewest != "w" and bp["st_b_error"] < bp["st_w_error"],
        ("introduction", "makes fewer clean errors, {eval}`n[\"st_b_error:.2f\"]` %"): bp["st_b_error"] < bp["st_w_error"],
        ("introduction", "B's ensemble makes the fewest"): fewest == "b_ens",
        ("introduction", "as few as the best published result ({eval}`n[\"best_published\"]` %) within its interval"):
            inside,
        ("introduction", "the interval of every model beyond the recipe reaches below and above that band"): human,
        ("introduction", "None met its targets"): none_met,
    }


def recompute() -> dict:
    L = Ledger()
    base = baselines()
    disc = discussion(L, base)
    best, extra = best_published(L)
    best |= second_round_noise(L, extra["chosen"])
    try:
        third = third_round(L, extra["chosen"])
    except MissingRuns:  # a cross-validation run of the third round is not in the ledger yet
        third = None
    best |= third[0] if third else {}
    fourth = None
    if third and third[1]["final"]:
        try:
            fourth = fourth_round(L, third[1])
        except MissingRuns:  # a cross-validation run of the fourth round is not in the ledger yet
            fourth = None
    best |= fourth[0] if fourth else {}
    train_labels, test_labels = read_usps("train")[0], read_usps("test")[0]
    cv_labels = np.concatenate([r.labels for r in L.cv(LADDER["second convolution block"])])
    checks = {"every test run's labels equal zip.test.gz": all(np.array_equal(r.labels, test_labels)
                                                               for r in L.runs if r.split == "test"),
              "every record's error count equals its probabilities' argmax errors":
                  all(r.errors == r.record["errors"] for r in L.runs),
              "the 3 CV folds hold each training image once (label counts)":
                  np.array_equal(np.bincount(cv_labels), np.bincount(train_labels)),
              "every cross-validation run of the third round is in the ledger": third is not None,
              "every final run of the third round is in the ledger": bool(third and third[1]["final"])}
    if third:
        r3_labels = np.concatenate([r.labels for r in third[1]["candidates"][0].runs])
        checks |= {"the third round's 3 folds hold each training image once (label counts)":
                       np.array_equal(np.bincount(r3_labels), np.bincount(train_labels)),
                   "every run of the third round records the protocol's commit": all(
                       r.record.get("protocol") == third[1]["protocol"] for c in third[1]["candidates"] for r in c.runs)}
    # the numpy forward pass against the predictions the runs stored (a near-tie may flip: at most 1 image)
    checks["the stored weights of the paper's network and B (seed 0) reproduce their stored test predictions"] = all(
        int((weights_predict(r) != r.probs().argmax(1)).sum()) <= 1
        for r in (L.find("test", {}, [0])[0], L.find("test", extra["chosen"].change, [0])[0]))
    if third and third[1]["final"]:
        x3 = third[1]
        checks["the third round's new test runs record the protocol's commit"] = all(
            r.record.get("protocol") == x3["protocol"] for r in x3["runs"]) or x3["chosen"].index == 1
        # the noise draws: the digits a final run stored under noise equal those its weights read on our
        # draws (the runs that keep their weights; at most 1 image per level for a near-tie)
        kept = [r for r in x3["runs"] if (r.folder / "model.weights.npz").is_file()]
        checks["the third round's stored noisy test predictions equal the forward pass on the same noise draws"] = (
            bool(kept) and all(int((weights_predict(r, s) != r.npz["noisy"][i]).sum()) <= 1
                               for r in kept for i, s in enumerate(NOISE_LEVELS)))
    # The chapter's cost table counts the third round's two groups after the earlier ones; a run
    # listed by an earlier group (B's test seeds, by the second round) counts there only.
    notes = {}
    if third and third[1]["final"]:
        best |= third_round_cost(extra["cost_runs"], third[1])
        own = [r for r in L.runs if r.record.get("protocol") == third[1]["protocol"]]
        minutes = sum(r.seconds for r in own) / 60
        notes["the third round's own runs (runs, minutes, wall minutes on 2 cores; budget 240)"] = (
            len(own), minutes, minutes / 2)
    if third and third[1]["final"]:
        checks |= {"every cross-validation run of the fourth round is in the ledger": fourth is not None,
                   "every final run of the fourth round is in the ledger": bool(fourth and fourth[1]["final"])}
    if fourth:
        x4 = fourth[1]
        checks |= {"every run of the fourth round records its protocol's commit": all(
                       r.record.get("protocol") == x4["protocol"] for c in x4["students"] for r in c.runs)
                       and all(r.record.get("protocol") == x4["protocol"] for r in x4.get("runs", [])),
                   "each student's cross-validation run is taught by W's run on the same fold": x4["cv_teachers_ok"],
                   "every run of the fourth round records the hash of its targets": all(
                       r.record.get("targets_sha256") for c in x4["students"] for r in c.runs + x4.get("runs", []))}
    if fourth and fourth[1]["final"]:
        x4 = fourth[1]
        best |= fourth_round_cost(third[1]["cost_runs"], x4)
        checks["each final student is taught by W's 5 final runs"] = x4["final_teachers_ok"]
        own = [r for r in L.runs if r.record.get("protocol") == x4["protocol"]]
        minutes = sum(r.seconds for r in own) / 60
        notes["the fourth round's own runs (runs, minutes, wall minutes on 2 cores; budget 60)"] = (
            len(own), minutes, minutes / 2)
    # the test-set log (reproducibility chapter) and the standings (best-published chapter)
    log = test_log(L, extra, third, fourth, len(base))
    checks["every test run of the ledger is in one experiment of the test-set log"] = (
        set().union(*(row["keys"] for row in log)) == {r.folder.name for r in L.runs if r.split == "test"})
    table = standings(L, best, extra, third, fourth, log)
    st, logged = standings_numbers(table), log_numbers(log)
    quoted = {"human_low": HUMAN[0], "human_high": HUMAN[1], "best_published": BEST_PUBLISHED}  # as the book quotes them
    best |= st | logged | quoted | {"one_image": 100 / N_TEST}
    # the chapter's pages glue the counts of the chapter's own log under the log's names too (not cited)
    best |= {"log_looks": logged["log_best_looks"], "log_test_runs": logged["log_best_runs"]}
    if third and third[1]["final"]:  # the third round's page quotes B's ensemble
        best |= {"r3_b_ensemble": best["ensemble"], "r3_b_ensemble_errors": best["ensemble_errors"]}
    best |= {"target_single": BEST_TARGETS[0], "target_ensemble": BEST_TARGETS[1],  # the first two rounds' targets
             "first_target": BEST_TARGETS[0], "first_ensemble_target": BEST_TARGETS[1]}
    intro = {k: best[k] for k in INTRO_R3 + INTRO_R4 + INTRO_BEST if k in best} | logged | quoted
    intro |= {k: disc[k] for k in INTRO_RECIPE}
    intro |= {k: v for k, v in st.items() if k != "st_w_minus_b"}
    out = {"eda": eda(), "model": model(L), "training": training(L), "evaluation": evaluation(L),
           "variance": variance(L), "discussion": disc, "ablations": ablations(L),
           "human-level": human_level(L) | {k: quoted[k] for k in ("human_low", "human_high")},
           "best-published": best, "introduction": intro, "reproducibility": reproducibility(L) | logged,
           "demo": demo(L, third[1]["chosen"] if third and third[1]["final"] else extra["chosen"])
           | {k: v for k, v in st.items() if k.startswith("st_w_") and not k.startswith(("st_w_ens_", "st_w_minus"))},
           "cli": cli(L, best, extra, disc, third, fourth, table), "checks": checks, "notes": notes}
    return out | {"prose": prose(out, third, fourth)}


if __name__ == "__main__":
    import pprint
    pprint.pprint(recompute(), width=120)
