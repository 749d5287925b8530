"""Command line: ``python -m ood_helpers {reproduce,compare,ablation,robustness,pretrain} ...``.

Every output folder is checked before any training starts. Errors in the arguments (unknown
setting or preset, an output folder that cannot be written, missing or damaged data, an unusable
checkpoint) end with a one-line message and exit status 2, not a traceback; a training run that
diverges ends with exit status 1 and says so.

``reproduce`` also runs under torchrun (``torchrun --standalone --nproc-per-node=N -m ood_helpers
reproduce ...``): DistributedDataParallel over N processes, rank 0 alone prints and writes (see
:mod:`ood_helpers.distributed`); the other commands refuse WORLD_SIZE > 1 (exit status 2).
"""
from __future__ import annotations

import argparse
import sys

from .checkpoints import CheckpointError
from .data import SETTINGS, DatasetNotFoundError
from .presets import PRESETS
from .loop import TrainingDivergedError
from .validation import InputError
from .variants import VARIANTS


def _add_compare_arguments(parser) -> None:
    from .evaluation import COMPARE_SETTINGS, DETECTORS

    parser.add_argument("--setting", required=True, choices=COMPARE_SETTINGS, help="benchmark setting")
    parser.add_argument("--preset", default=None, choices=tuple(PRESETS),
                        help="training budget of every detector (default: $OOD_PRESET, else classroom)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to repeat with (default: 0)")
    parser.add_argument("--out", default=None, help="output folder for results.json, results.md and roc.png")
    parser.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                        help=f"run only these ({', '.join(DETECTORS)}); default: all")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ood_helpers",
                                     description="The ood-notebooks detector from the command line: one command a task.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--setting", required=True, choices=sorted(SETTINGS),
                       help="in/out pair, e.g. mnist-cifar10 or cifar10-mnist")
        p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                       help="quick (CI), classroom (laptop CPU) or paper (GPU); default: $OOD_PRESET, else classroom")
        p.add_argument("--out", default=None, help="output folder for results.json, results.md and figures "
                                                   "(default: none; the table is only printed)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    reproduce = sub.add_parser("reproduce", help="train one detector variant (default: the paper's method) on one "
                                                 "setting and evaluate it")
    common(reproduce)
    reproduce.add_argument("--seed", type=int, default=0, help="seed of the whole run (default: 0)")
    reproduce.add_argument("--variant", default="paper", choices=tuple(VARIANTS),
                           help=f"{', '.join(VARIANTS)} (default: paper, the paper's method)")
    _add_compare_arguments(sub.add_parser("compare", help="every detector side by side, several seeds"))
    _add_ablation_arguments(sub.add_parser(
        "ablation", help="the paper's Table 3 like for like, and what each of our additions adds, several seeds"))
    robust = sub.add_parser("robustness", help="AUROC and false alarms under noise, with and without augmentation")
    common(robust)
    robust.add_argument("--seed", type=int, default=0, help="seed of the whole run (default: 0)")
    _add_pretrain_arguments(sub.add_parser(
        "pretrain", help="train every detector the notebooks use, once, into a folder for OOD_PRETRAINED_DIR"))
    return parser


def _add_ablation_arguments(parser) -> None:
    from .evaluation.paper import PAPER_SETTINGS

    parser.add_argument("--preset", default=None, choices=tuple(PRESETS),
                        help="training budget (default: $OOD_PRESET, else classroom)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to repeat with (default: 0 1 2)")
    parser.add_argument("--settings", nargs="+", default=list(PAPER_SETTINGS), choices=sorted(SETTINGS),
                        metavar="SETTING", help=f"default: {' '.join(PAPER_SETTINGS)}")
    parser.add_argument("--out", default=None, help="output folder for results.json and results.md")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_pretrain_arguments(parser) -> None:
    from .pretrain import NOTEBOOK_SETTINGS, NOTEBOOK_VARIANTS

    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="quick, classroom or paper; default: $OOD_PRESET, else classroom")
    parser.add_argument("--out", required=True, help="folder to fill (then: export OOD_PRETRAINED_DIR=<it>)")
    parser.add_argument("--settings", nargs="+", default=None, choices=sorted(SETTINGS), metavar="SETTING",
                        help=f"default with no --variants: every detector the notebooks use (14 for one seed); "
                             f"else {' '.join(NOTEBOOK_SETTINGS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="default: 0")
    parser.add_argument("--variants", nargs="+", default=None, choices=tuple(VARIANTS), metavar="VARIANT",
                        help=f"default with no --settings: every detector the notebooks use; else "
                             f"{' '.join(NOTEBOOK_VARIANTS)}")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    progress = not args.no_progress
    from . import distributed

    started = False
    try:
        from . import evaluation

        started = _join_torchrun(args.command)
        if args.command == "reproduce":
            results = evaluation.reproduce(args.setting, args.preset, args.seed, args.out, progress, args.variant)
            if distributed.is_main():   # under torchrun, rank 0 alone reports
                print(evaluation.results_table(results))
        elif args.command == "compare":
            results = evaluation.run_comparison(args.setting, preset=args.preset, seeds=tuple(args.seeds),
                                                out_dir=args.out, detectors=args.detectors, progress=progress)
            print(evaluation.format_table(results))
            if "files" in results:
                print(f"Wrote {', '.join(results['files'].values())} ({results['wall_seconds']:.0f} s).")
        elif args.command == "ablation":
            results = evaluation.ablation(args.settings, args.preset, tuple(args.seeds), args.out, progress)
            print(evaluation.ablation_tables(results))
            if "files" in results:
                print(f"Wrote {', '.join(results['files'].values())} ({results['wall_seconds']:.0f} s).")
        elif args.command == "pretrain":
            from .pretrain import pretrain

            pretrain(args.out, args.preset, args.settings, tuple(args.seeds), args.variants, progress=progress)
        else:
            result = evaluation.robustness(args.setting, args.preset, args.seed, args.out, progress=progress)
            for name, rows in result["rows"].items():
                print(f"{name}\n{evaluation.robustness_table(rows)}")
    except (InputError, DatasetNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if started:
            distributed.shutdown()
    return 0


def _join_torchrun(command: str) -> bool:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group; True when this call created it.

    Raises
    ------
    InputError
        A bad ``WORLD_SIZE``, or a command other than ``reproduce`` under torchrun.
    """
    from . import distributed

    try:
        world = distributed.env_world_size()
    except ValueError as err:
        raise InputError(str(err)) from err
    if world > 1 and command != "reproduce":
        raise InputError(f"{command}: only 'reproduce' trains with several processes; run it without torchrun "
                         f"(WORLD_SIZE={world}), or spread seeds over GPUs with one process each "
                         f"(CUDA_VISIBLE_DEVICES=<gpu> python -m ood_helpers {command} ...).")
    return distributed.init_from_env()


if __name__ == "__main__":
    sys.exit(main())
