"""Command line for readers who don't open Jupyter.

    python -m helpers train              # train (or load) the paper model
    python -m helpers evaluate --json    # its test-set results as one JSON object
    python -m helpers summary --json     # the headline results beyond the paper
    python -m helpers gap --json         # the gap to the paper's 97.11 %: seeds, readings, selection
    python -m helpers check              # is the results ledger intact and current?
    python -m helpers results            # train what the ledger lacks or has stale (make results)
    python -m helpers retrain            # re-derive the ledger elsewhere and compare (make retrain)
    python -m helpers retrain --unverified KEY GROUP ...   # only those (make retrain RUNS=...)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any


def _evaluate(seed: int) -> dict[str, Any]:
    from helpers import evaluate, recipe, runs  # here, not at the top: `--help` needs no TensorFlow

    run = runs.run(recipe.paper_job(seed), progress_every=10)
    result = evaluate.score(run.labels, run.predicted)
    return {
        "test_accuracy": result.accuracy, "test_errors": result.errors, "test_images": result.n,
        "test_accuracy_interval95": list(result.interval),
        "per_class_accuracy": [float(a) for a in evaluate.per_class_accuracy(run.labels, run.predicted)],
        "seed": seed, "config": recipe.paper_config().as_dict(), "key": run.key, "source": run.source,
        "train_seconds": run.seconds, "seconds_per_epoch": run.seconds_per_epoch,
        "environment": run.record.get("environment"), "trained": run.record.get("trained"),
    }


def _summary() -> dict[str, Any]:
    import numpy as np

    from helpers import best_published, findings, rounds, standings  # TensorFlow only when a command needs it

    everything = findings.gather()  # every round, read once; the standings as the book prints them
    table = standings.rows(everything, findings.test_log())
    seeds, rungs, second, third, fourth = (everything.recipe, everything.rungs, everything.second, everything.third,
                                           everything.fourth)
    chosen, result = second.selection.chosen, second.look  # B, and its seeds with its ensemble
    look, r3, r4 = third.look, third.numbers, fourth.numbers
    # the fourth round's student replaces the third round's choice only by its protocol's rule (fewer
    # out-of-fold errors than its teacher, and robust); otherwise the best single model stays the third round's
    best, best_round = (fourth.look, "fourth") if r4["r4_replaces"] else (look, "third")
    best_numbers = {"mean": r4["r4_mean"], "noise": r4["r4_noise_mean"], "mode": r4["r4_mode"]} \
        if r4["r4_replaces"] else {"mean": r3["r3_mean"], "noise": r3["r3_noise_mean"], "mode": r3["r3_mode"]}
    return {
        "best": standings.BEST,
        "best_definition": f"'best' is {standings.BEST}: {standings.DEFINITIONS[standings.BEST]}",
        "standings": standings.as_json(table),
        "paper_model_seeds": [{"seed": r.job.seed, "test_accuracy": r.accuracy, "test_errors": r.errors}
                              for r in seeds],
        "paper_model_mean_error": float(np.mean([1 - r.accuracy for r in seeds])),
        "paper_model_std_error": float(np.std([1 - r.accuracy for r in seeds], ddof=1)),
        # the book's best model (standings.BEST, W) and its ensemble: the third round's, chosen by its protocol
        # (until 2026-12-01 these fields were the second round's; those are now under "second_round")
        "best_single_round": best_round, "best_single_name": f"{best.chosen}, read {best_numbers['mode']}",
        "best_single_candidate": best.chosen,
        "best_single_prediction_mode": best_numbers["mode"],
        "best_single_error": best_numbers["mean"] / 100,
        "best_single_errors": best.single_errors,
        "best_single_seeds": [r.job.seed for r in best.runs[best.chosen]],
        "best_single_noise_error": best_numbers["noise"] / 100,  # sigma = 0.4, mean over its seeds
        "best_single_noise_errors": best.noise_errors(third.selection.round.noise),
        "paper_noise_error": r3["r3_paper_noise"] / 100,  # the paper's network, seed 0, the same noise draw
        "b_noise_error": r3["r3_previous_noise"] / 100,  # B (the second round's model), seed 0
        "noise_level": third.selection.round.noise,
        "ensemble_error": r3["r3_ensemble"] / 100,
        "ensemble_errors": look.ensemble_errors,
        "ensemble_size": look.training_runs,  # independent training runs (shared ones count once)
        "ensemble_prediction_sets": look.prediction_sets,
        "ensemble_members": _members(look, modes=True),
        "plain_ensemble_error": look.plain_ensemble_errors / look.n,
        "plain_ensemble_errors": look.plain_ensemble_errors,
        "seed_ensemble_error": look.seed_ensemble_errors / look.n,
        "seed_ensemble_errors": look.seed_ensemble_errors,
        "test_images": look.n,
        "test_time_shifts": best_numbers["mode"] != "plain",
        "protocol": third.selection.round.protocol, "protocol_commit": third.selection.round.protocol_commit,
        "selection": rounds.selection_text(third.selection),
        "third_round_cross_validation": rounds.cross_validation_json(third.selection),
        "distillation": {
            "protocol": fourth.selection.round.protocol, "protocol_commit": fourth.selection.round.protocol_commit,
            "selection": rounds.selection_text(fourth.selection), "student": r4["r4_student"],
            "teacher": fourth.teacher_look.chosen if fourth.teacher_look else "",
            "prediction_mode": r4["r4_mode"],
            "replaces_best_single": r4["r4_replaces"],
            "cross_validation": rounds.cross_validation_json(fourth.selection),
            "error": r4["r4_mean"] / 100, "errors": fourth.look.single_errors,
            "seeds": [r.job.seed for r in fourth.look.runs[fourth.look.chosen]],
            "noise_error": r4["r4_noise_mean"] / 100, "noise_errors": fourth.look.noise_errors(fourth.selection.round.noise),
            "seed_ensemble_error": r4["r4_seed_ensemble"] / 100, "seed_ensemble_errors": r4["r4_seed_ensemble_errors"],
            "seed_ensemble_training_runs": r4["r4_seed_ensemble_runs"]},
        "second_round": {
            "model": standings.B, "model_name": chosen.name + (", test-time shifts" if chosen.mode == "shifts" else ""),
            "model_error": float(best_published.seed_rates(result).mean()) / 100, "model_errors": result.single_errors,
            "ensemble_error": 100 * result.ensemble_errors / result.n / 100,
            "ensemble_errors": result.ensemble_errors,
            "ensemble_size": result.training_runs, "ensemble_prediction_sets": result.prediction_sets,
            "ensemble_members": _members(result, modes=False),
            "plain_ensemble_error": 100 * result.plain_ensemble_errors / result.n / 100,
            "plain_ensemble_errors": result.plain_ensemble_errors,
            "seed_ensemble_error": 100 * result.seed_ensemble_errors / result.n / 100,
            "seed_ensemble_errors": result.seed_ensemble_errors,
            "selection": best_published.selection_text(second.selection, result)},
        "cross_validation": {name: {"errors": r.errors(), "errors_with_test_time_shifts": r.errors("shifts")}
                             for name, r in (everything.first.selection.candidates | second.selection.candidates).items()},
        "ladder": [{"rung": r.name, "kept": r.kept, "holdout_errors": r.holdout["errors"],
                    "test_errors": r.test_errors} for r in rungs],
    }


def _members(look: Any, modes: bool) -> list[dict[str, Any]]:
    """The members of a round's ensemble: each candidate's seeds (and prediction mode) and weight."""
    return [{"name": name, "seeds": [r.job.seed for r in group],
             **({"prediction_mode": look.modes[name]} if modes else {}),
             "weight": 1 / (len(look.runs) * len(group))} for name, group in look.runs.items()]


def _gap() -> dict[str, Any]:
    from helpers import discussion, experiments  # TensorFlow only when a command needs it

    return discussion.summary(experiments.readings(), experiments.decision_options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the paper model, or load it from the cache")
    eval_cmd = commands.add_parser("evaluate", help="test-set results of the paper model")
    for seed_cmd in (train_cmd, eval_cmd):
        seed_cmd.add_argument("--seed", type=int, default=0)
    summary_cmd = commands.add_parser("summary", help="seeds, ensemble and ladder results (trains what is missing)")
    gap_cmd = commands.add_parser("gap", help="the gap to the paper: seeds, readings of its recipe, test selection")
    for json_cmd in (eval_cmd, summary_cmd, gap_cmd):
        json_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("check", help="verify the ledger's checksums and that no entry is stale")
    commands.add_parser("results", help="train what the ledger lacks or has stale, into the ledger")
    retrain_cmd = commands.add_parser("retrain", help="retrain runs into a separate folder and compare with the ledger")
    retrain_cmd.add_argument("select", nargs="*", help="entry keys (8+ characters) or words of a registry group's name, alternatives separated by commas; default: all")
    retrain_cmd.add_argument("--unverified", action="store_true", help="also every entry no report has retrained")
    args = parser.parse_args(argv)
    try:
        if args.command in ("check", "results", "retrain"):
            from helpers import ledger_cli  # TensorFlow only when a command needs it

            if args.command == "retrain":
                return ledger_cli.retrain(args.select, args.unverified)
            return getattr(ledger_cli, args.command)()
        if args.command == "train":
            from helpers import recipe, runs  # TensorFlow only when a command needs it

            run = runs.run(recipe.paper_job(args.seed), progress_every=10)
            print(f"model {run.key} ({run.source}): {run.seconds:.0f} s of training, "
                  f"final validation accuracy {run.history['val_accuracy'][-1]:.4f}")
            return 0
        compute = {"evaluate": lambda: _evaluate(args.seed), "summary": _summary, "gap": _gap}[args.command]
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # JSON: progress to stderr
            result = compute()
        if args.json:
            print(json.dumps(result, indent=1))
        elif args.command == "summary":
            print(f"paper recipe: {100 * result['paper_model_mean_error']:.2f} % mean test error over "
                  f"{len(result['paper_model_seeds'])} seeds; the book's best model, {result['best']} "
                  f"({result['best_single_name']}): "
                  f"{100 * result['best_single_error']:.2f} %; ensemble of {result['ensemble_size']} training runs: "
                  f"{100 * result['ensemble_error']:.2f} %")
        elif args.command == "gap":
            recipe_gap = result["recipe"]
            print(f"paper {result['paper_error']:.2f} % test error; the recipe {recipe_gap['mean_error']:.2f} % "
                  f"(95 % interval {recipe_gap['mean_ci95'][0]:.2f} to {recipe_gap['mean_ci95'][1]:.2f}) over "
                  f"{recipe_gap['seeds']} seeds; best over readings, seeds and epochs picked on the test set: "
                  f"{result['selection']['test_tuned_error']:.2f} %")
        else:
            print(f"test accuracy {100 * result['test_accuracy']:.2f} % "
                  f"({result['test_errors']} errors of {result['test_images']})")
    except Exception as exc:  # these errors of the data, the selection, the ledger and the training mode say what to do
        # by name (and the names of its bases): the ledger's modules are not imported for this
        statuses = {"USPSDataError": 2, "SelectionError": 2, "LedgerError": 3, "TrainingForbidden": 3}
        status = next((statuses[c.__name__] for c in type(exc).__mro__ if c.__name__ in statuses), None)
        if status is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":  # workers are spawned processes that import this module again
    sys.exit(main())
