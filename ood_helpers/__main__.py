"""Command line: ``python -m ood_helpers {reproduce,compare,robustness} ...``.

Errors in the arguments (unknown setting or preset, missing data) end with a one-line message
and exit status 2, not a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .checkpoints import CheckpointError
from .data import DatasetNotFoundError, SETTINGS
from .presets import PRESETS
from .validation import InputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ood_helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--setting", required=True, choices=sorted(SETTINGS),
                       help="in/out pair, e.g. mnist-cifar10 or cifar10-mnist")
        p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                       help="quick (CI), classroom (laptop CPU) or paper (GPU); default: $OOD_PRESET, else auto")
        p.add_argument("--out", default=None, help="output folder for results.json, results.md and figures")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    reproduce = sub.add_parser("reproduce", help="train our detector on one setting and evaluate it")
    common(reproduce)
    reproduce.add_argument("--seed", type=int, default=0)

    from .compare import add_compare_arguments

    add_compare_arguments(sub.add_parser("compare", help="every detector side by side, several seeds"))

    robust = sub.add_parser("robustness", help="AUROC and false alarms under noise, with and without augmentation")
    common(robust)
    robust.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    progress = not args.no_progress
    try:
        if args.command == "reproduce":
            from .experiments import reproduce, results_table

            results = reproduce(args.setting, args.preset, args.seed, args.out, progress)
            print(results_table(results))
        elif args.command == "compare":
            from .compare import main_compare

            return main_compare(args)
        else:
            from .experiments import robustness, robustness_table

            result = robustness(args.setting, args.preset, args.seed, args.out, progress=progress)
            for name, rows in result["rows"].items():
                print(f"{name}\n{robustness_table(rows)}")
    except (InputError, DatasetNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
