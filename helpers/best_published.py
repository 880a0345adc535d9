"""What is specific to rounds 1 and 2 of the best-published search (written before the protocols).

The ladder (human-level chapter) kept or dropped rungs on 80/20 holdout splits, where the
recipe makes about 1 % error and options differ by two images. Rounds 1 and 2 score every
candidate by 3-fold cross-validation over all 7291 training images (every image is predicted
once, by a model that never saw it) and compare candidates on the same images with an exact
McNemar test; the chosen candidate is then trained on all training images with
:attr:`helpers.config.BeyondSettings.best_seeds` seeds and tested.

The rounds themselves are data, ``helpers.rounds.ROUNDS[1]`` and ``[2]``, read by the engine of
:mod:`helpers.rounds` like the protocol rounds. Here are what their chapters print: the tables, the
numbers, the ranking check, the holdout evidence and the noise anatomy.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from helpers import paper, stats
from helpers.config import beyond, Config
from helpers.rounds import ALL, CHOICE, LADDER, ranking_jobs, Round, Scored, seeds_table, Selection, TestLook
from helpers.runs import run_many
from helpers.store import Run


def lever_table(round_: Round) -> pd.DataFrame:
    """What each lever of a round does and the configuration it changes (with this profile's epochs)."""
    return pd.DataFrame([{"lever": c.name.removeprefix(f"{CHOICE} + "), "what it does": c.why,
                          "configuration": ", ".join(f"{k} = {v}" for k, v in beyond().resolve(c.changes).items())}
                         for c in round_.candidates if c.why]).set_index("lever")


def _two_digits(value: float) -> float:
    return float(f"{value:.2g}")


def cv_numbers(cv: pd.DataFrame, chosen: Scored) -> dict[str, Any]:
    """What the chapter quotes from :func:`cv_table`."""
    base = cv.loc[LADDER]
    p = pd.to_numeric(cv["p vs base"]).fillna(1.0)
    better = cv["CV errors"] < base["CV errors"]
    return {"base_cv_errors": int(base["CV errors"]), "cv_n": len(chosen.labels), "cv_candidates": len(cv),
            "cv_better": int(better.sum()), "cv_significant": int((better & (p < 0.05)).sum()),
            "chosen_p": float(p[chosen.name]),
            "all_cv_errors": int(cv.loc[ALL, "CV errors"]), "all_fit": float(cv.loc[ALL, "fit (%)"]),
            "base_fit": float(base["fit (%)"])}


def holdout_table(rungs: Sequence[Any]) -> pd.DataFrame:
    """The ladder's holdout evidence next to each rung's test error (why the holdout could not decide)."""
    rows = {r.name: {"holdout errors": int(r.holdout["errors"]), "holdout images": int(r.holdout["n"]),
                     "holdout error (%)": round(100 * (1 - r.holdout["accuracy"]), 2),
                     "test error (%), mean": round(float(np.mean(rates(r.runs))), 2)} for r in rungs}
    return pd.DataFrame(rows).T


def holdout_numbers(holdout: pd.DataFrame, final: str) -> dict[str, Any]:
    """About the ladder's final rung ``final``."""
    row = holdout.loc[final]
    return {"ladder_holdout_errors": int(row["holdout errors"]), "ladder_holdout_n": int(row["holdout images"]),
            "ladder_holdout_pct": float(row["holdout error (%)"]), "ladder_test_mean": float(row["test error (%), mean"])}


def cv_table(results: Mapping[str, Scored]) -> pd.DataFrame:
    """Cross-validated errors of every candidate, without and with test-time shifts ("shifts"), the exact
    McNemar p against the base (the first row), the last epoch's training accuracy ("fit") and
    the training time summed over the folds."""
    base = next(iter(results.values()))  # the first candidate: the ladder's final model, or the first choice
    n = len(base.labels)
    return pd.DataFrame([{"candidate": name, "CV errors": r.errors(), "CV (%)": round(100 * r.errors() / n, 2),
                          "shifts": r.errors("shifts"), "shifts (%)": round(100 * r.errors("shifts") / n, 2),
                          "p vs base": "" if r is base else _two_digits(stats.mcnemar_p(
                              r.predictions["plain"].argmax(1), base.predictions["plain"].argmax(1), r.labels)),
                          "fit (%)": round(r.fit_accuracy, 1), "time (s)": round(r.seconds)}
                         for name, r in results.items()]).set_index("candidate")


def ranking_runs(selection: Selection) -> dict[str, Run]:
    """The ranking check's runs (:func:`helpers.rounds.ranking_jobs`), trained if missing, by candidate."""
    jobs = ranking_jobs(selection)
    runs = run_many(list(jobs.values()), workers=beyond().workers, describe=lambda j: f"ranking check, {j.key()}")
    return dict(zip(jobs, runs))


def ranking_table(results: Mapping[str, Scored], tests: Mapping[str, Run]) -> pd.DataFrame:
    """Cross-validated error next to the test error of the same candidate (seed 0), with ranks."""
    table = pd.DataFrame([{"candidate": name, "CV error (%)": round(100 * r.errors() / len(r.labels), 2),
                           "test error (%), seed 0": round(100 * tests[name].errors / len(tests[name].labels), 2)}
                          for name, r in results.items()]).set_index("candidate")
    table["CV rank"] = table["CV error (%)"].rank(method="min").astype(int)
    table["test rank"] = table["test error (%), seed 0"].rank(method="min").astype(int)
    return table


def spearman(table: pd.DataFrame) -> float:
    """Rank correlation between cross-validated and test error over the candidates."""
    return float(table["CV error (%)"].rank().corr(table["test error (%), seed 0"].rank()))


def seed_rates(look: TestLook) -> np.ndarray:
    """Test error (%) of each seed of the chosen model, as rounds 1 and 2 print it (``errors / n * 100``,
    which may differ from :attr:`TestLook.single_rates` in the last bit)."""
    return np.array(look.single_errors) / look.n * 100


def numbers(selection: Selection, look: TestLook) -> dict[str, Any]:
    """What the chapters and ``summary --json`` quote about round 1 (its choice, A, on the test set) or round 2
    (its choice B, B's ensemble, and the second round's cross-validation)."""
    if selection.round.number == 1:
        return first_round_numbers(look, selection.round.targets)
    chosen = selection.chosen
    return (final_numbers(look, selection.round.targets) | second_numbers(selection)
            | {"chosen_cv_errors": chosen.errors(), "chosen_cv_tta_errors": chosen.errors("shifts")})


#: :func:`final_numbers` as the chapter quotes them about the first round's choice on the test set (its seeds
#: and their ensemble), tested before the second round was written down.
FIRST_ROUND = {"target_single": "first_target", "target_ensemble": "first_ensemble_target",
               "best_mean": "first_test_mean", "best_seeds": "first_test_seeds",
               "best_min_errors": "first_test_min_errors", "best_max_errors": "first_test_max_errors",
               "seed_ensemble": "first_seed_ensemble", "seed_ensemble_errors": "first_seed_ensemble_errors"}


def first_round_numbers(look: TestLook, targets: Mapping[str, float]) -> dict[str, Any]:
    found = final_numbers(look, targets)
    return {name: found[key] for key, name in FIRST_ROUND.items()}


def final_table(look: TestLook) -> pd.DataFrame:
    """One row per seed and one for their ensemble."""
    return seeds_table(look, f"ensemble of the {len(look.runs[look.chosen])} seeds")


def final_numbers(look: TestLook, targets: Mapping[str, float]) -> dict[str, Any]:
    """The chosen model (``best_*``), the ensemble chosen by cross-validation (``ensemble_*``) and the ensemble
    of the chosen model's seeds (``seed_ensemble_*``) on the test set."""
    rates, singles, seed_errors = seed_rates(look), look.single_errors, look.seed_ensemble_errors
    low, high = stats.mean_interval(rates) if len(rates) > 1 else (float("nan"), float("nan"))
    s_low, s_high = stats.wilson_interval(seed_errors, look.n)
    errors, plain = look.ensemble_errors, look.plain_ensemble_errors
    e_low, e_high = stats.wilson_interval(errors, look.n)
    single, ensemble = float(rates.mean()), 100 * errors / look.n
    return {"chosen": look.chosen, "tta": "with" if look.modes[look.chosen] == "shifts" else "without",
            "best_mean": single, "best_std": float(rates.std(ddof=1)) if len(rates) > 1 else float("nan"),
            "best_min": float(rates.min()), "best_max": float(rates.max()), "best_seeds": len(rates),
            "best_low": low, "best_high": high, "best_min_errors": min(singles),
            "best_max_errors": max(singles),
            "ensemble": ensemble, "ensemble_errors": errors, "ensemble_size": look.training_runs,
            "ensemble_sets": look.prediction_sets,
            "plain_ensemble_errors": plain, "plain_ensemble": 100 * plain / look.n,
            "ensemble_low": 100 * e_low, "ensemble_high": 100 * e_high, "ensemble_members": len(look.runs),
            "seed_ensemble": 100 * seed_errors / look.n, "seed_ensemble_errors": seed_errors,
            "seed_ensemble_size": len(rates), "seed_ensemble_low": 100 * s_low, "seed_ensemble_high": 100 * s_high,
            "target_single": targets["single"], "target_ensemble": targets["ensemble"],
            "single_gap": single - targets["single"], "ensemble_gap": ensemble - targets["ensemble"],
            "best_published": paper.BEST_PUBLISHED}


def rates(runs: Sequence[Run]) -> list[float]:
    """Test error (%) of each run."""
    return [100 * r.errors / len(r.labels) for r in runs]


def selection_text(selection: Selection, ensemble: TestLook) -> str:
    """How the second round chose the final model and the ensemble, both rounds in one sentence (``summary --json``)."""
    first, chosen = selection.previous, selection.chosen
    assert first is not None
    return (f"{selection.round.folds}-fold cross-validation over the 7291 training images in two rounds: first "
            f"{len(first.candidates)} candidates (the ladder's final model, {len(first.candidates) - 2} levers alone "
            f"and all together; chosen '{first.chosen.name}'), then {len(selection.candidates) - 1} more levers added "
            f"to that choice one at a time; chosen: '{chosen.name}', the fewest cross-validated errors, "
            f"{'with' if chosen.mode == 'shifts' else 'without'} test-time shifts (used because they lowered its "
            f"cross-validated errors); the ensemble's members were added by forward selection on the out-of-fold "
            f"predictions ({', '.join(repr(m) for m in ensemble.runs)}: {ensemble.prediction_sets} prediction "
            f"sets from {ensemble.training_runs} independent training runs, each member weighted equally); "
            f"the test images are used only to report")


def ensemble_table(look: TestLook, selection: Selection) -> pd.DataFrame:
    """One row per member, in the order forward selection added them: its runs' seeds, the weight of each
    run, whether it is read with test-time shifts, and the ensemble's cross-validated errors once it joined
    (the choice) and its test errors (the report)."""
    n_cv, joined, runs = len(selection.chosen.labels), selection.members, look.runs
    if [name for name, _ in joined] != list(runs):
        raise ValueError(f"the look's members {list(runs)} are not the ensemble chosen from this pool")
    test = [TestLook(look.chosen, look.modes, dict(list(runs.items())[:i])).ensemble_errors
            for i in range(1, len(runs) + 1)]
    return pd.DataFrame([{"member (in the order added)": name, "seeds": ", ".join(str(r.job.seed) for r in runs[name]),
                          "weight per run": f"1/{len(runs) * len(runs[name])}",
                          "shifts": "yes" if selection.pool[name].mode == "shifts" else "no",
                          "CV errors": cv_errors, "CV (%)": round(100 * cv_errors / n_cv, 2),
                          "test errors": test_errors, "test (%)": round(100 * test_errors / look.n, 2)}
                         for (name, cv_errors), test_errors in zip(joined, test)]
                        ).set_index("member (in the order added)")


def second_numbers(selection: Selection) -> dict[str, Any]:
    """The numbers the chapter quotes about the second round (``selection``: its selection)."""
    assert selection.previous is not None
    first, second = selection.previous.chosen, selection.candidates
    scores = [r.score for r in second.values()]
    double = [r for name, r in second.items() if "twice the epochs" in name]
    elastic = [r for name, r in second.items() if name.endswith("+ elastic distortions")]
    return {"first_choice": first.name, "first_score": first.score, "second_candidates": len(second) - 1,
            "first_errors": first.errors(), "first_tta_errors": first.errors("shifts"),
            "first_tta": "with" if first.mode == "shifts" else "without",
            "chosen_score": selection.chosen.score,
            "second_better": sum(score < first.score for score in scores), "second_best_score": min(scores),
            "second_worst_score": max(scores),
            "double_fit": double[0].fit_accuracy if double else float("nan"),
            "double_score": double[0].score if double else -1, "elastic_score": elastic[0].score if elastic else -1}


def augmented_examples(images: np.ndarray, config: Config, copies: int = 4, seed: int = 0) -> np.ndarray:
    """``copies`` training-time augmentations of each image, as ``config``'s model draws them."""
    from helpers._tf import keras  # TensorFlow: only for the figure of augmented digits
    from helpers.model import build_model  # (the same)
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    augment = [layer for layer in model.layers if layer.name.startswith("augment_")]
    out = []
    for image in images:
        for _ in range(copies):
            x = image[None]
            for layer in augment:
                x = layer(x, training=True)
            out.append(np.asarray(x)[0])
    return np.array(out)


def noise_numbers(anatomy: pd.DataFrame) -> dict[str, Any]:
    """What the chapter quotes from :func:`helpers.evaluate.noise_anatomy` of ``experiments.noise_models``."""
    shift, paper_net = anatomy.loc["recipe + shift augmentation"], anatomy.loc["the paper's network"]
    return {"noise_paper_share": paper_net["share of errors (%)"], "noise_paper_error": paper_net["error (%)"],
            "noise_shift_share": shift["share of errors (%)"], "noise_shift_digit": int(shift["most read as"]),
            "noise_shift_error": shift["error (%)"], "noise_shift_background": shift["noise on background only (%)"],
            "noise_shift_frame": shift["noise in the edge frame only (%)"],
            "noise_shift_grey": shift["grey background, no speckle (%)"],
            "noise_best_error": anatomy.loc["B", "error (%)"],
            "noise_final_error": anatomy.loc["the ladder's final model", "error (%)"]}
