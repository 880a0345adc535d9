"""Command line for readers who don't open Jupyter.

    python -m helpers train              # train (or load) the paper model
    python -m helpers evaluate --json    # its test-set results as one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from helpers.data import USPSDataError


def _evaluate(seed: int) -> dict[str, Any]:
    from helpers import evaluate, train

    config = train.paper_config()
    trained = train.trained_model(config, seed)
    report = evaluate.test_report(trained.model, config.scale)
    result = report.score
    return {
        "test_accuracy": result.accuracy, "test_errors": result.errors, "test_images": result.n,
        "test_accuracy_interval95": list(result.interval),
        "per_class_accuracy": [float(a) for a in evaluate.per_class_accuracy(report.labels, report.predicted)],
        "seed": seed, "config": config.as_dict(), "cache_key": trained.key,
        "train_seconds": trained.seconds, "seconds_per_epoch": trained.seconds_per_epoch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the paper model, or load it from the cache")
    train_cmd.add_argument("--seed", type=int, default=0)
    eval_cmd = commands.add_parser("evaluate", help="test-set results of the paper model")
    eval_cmd.add_argument("--seed", type=int, default=0)
    eval_cmd.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from helpers import train

            trained = train.trained_model(train.paper_config(), args.seed)
            print(f"model {trained.key}: {trained.seconds:.0f} s of training, "
                  f"final validation accuracy {trained.history['val_accuracy'][-1]:.4f}")
        else:
            if args.json:  # progress goes to stderr so that stdout is one JSON object
                real_stdout, sys.stdout = sys.stdout, sys.stderr
                try:
                    result = _evaluate(args.seed)
                finally:
                    sys.stdout = real_stdout
                print(json.dumps(result, indent=1))
            else:
                result = _evaluate(args.seed)
                print(f"test accuracy {100 * result['test_accuracy']:.2f} % "
                      f"({result['test_errors']} errors of {result['test_images']})")
    except USPSDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
