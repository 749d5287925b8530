"""The ``paper`` preset on a GPU, for as many epochs as a time budget allows.

The paper trains 100 + 100 epochs (autoencoder, then classifier). A borrowed GPU rarely has that
long, so this script measures instead of guessing:

1. a probe fit of 1 autoencoder epoch + 1 classifier epoch at the paper's settings (ResNet-18
   width 64, Adam lr 1e-4, betas (0.9, 0.99), batch 32, every training image), which gives the
   seconds per epoch of each stage and the AUROC after one epoch each;
2. a main fit with E + E epochs, E the most that fit in what is left of ``--budget-seconds``
   (at most 100); the learning-rate milestones stay at 40% and 80% of E, as in the paper;
3. the time a full 100 + 100 epoch run would take at the measured speed.

    python benchmarks/paper_preset.py --setting mnist-cifar10 --budget-seconds 300 --out runs/paper

It writes ``results.json`` and ``results.md`` into ``--out`` and prints the table. On a CPU the
paper preset takes hours per epoch; ``--train-limit`` and ``--width`` shrink it for a smoke test
(the table then says so).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood_helpers import OODDetector, load_setting  # noqa: E402
from ood_helpers import metrics  # noqa: E402
from ood_helpers.baselines import MeanIntensityDetector  # noqa: E402
from ood_helpers.data import SETTINGS  # noqa: E402
from ood_helpers.paper import reported_auroc  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402

MAX_EPOCHS = 100


def _fit_and_score(data, preset, seed: int, label: str, log) -> dict:
    def on_epoch_end(epoch, loss):
        log(f"  {label}: epoch {epoch} done, loss {loss:.4f}, {time.perf_counter() - start:.1f} s since fit start")

    start = time.perf_counter()
    detector = OODDetector(data.channels, preset, seed, progress=False)
    detector.fit(data.in_train, on_epoch_end=on_epoch_end)
    if detector.device_.type == "cuda":
        torch.cuda.synchronize()
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    in_scores, out_scores = detector.decision_function(data.in_test), detector.decision_function(data.out_test)
    score_seconds = time.perf_counter() - start
    epochs = detector.history_["epoch_seconds"]
    return {"label": label, "ae_epochs": preset.ae_epochs, "clf_epochs": preset.clf_epochs,
            **metrics.summarize(in_scores, out_scores),
            "fit_seconds": fit_seconds, "score_seconds": score_seconds, "epoch_seconds": epochs,
            "median_epoch_seconds": {stage: statistics.median(s) for stage, s in epochs.items()},
            "final_losses": {"autoencoder_l1": detector.history_["autoencoder_l1"][-1],
                             "classifier_ce": detector.history_["classifier_ce"][-1]},
            "n_images": detector.history_["n_images"], "device": str(detector.device_)}


def _table(results: dict) -> str:
    paper = results["paper_reported_auroc"]
    lines = [f"# Paper preset: {results['setting']} ({results['in']} in, {results['out']} out)", "",
             f"Command: `{results['command']}`", "",
             f"Device: {results['environment']['device_name']}; torch {results['environment']['torch']}; "
             f"budget {results['budget_seconds']:.0f} s; whole script {results['wall_seconds']:.0f} s "
             f"(data loading {results['load_seconds']:.1f} s).", ""]
    if results["shrunk"]:
        lines += [f"**Smoke test, not the paper preset:** {results['shrunk']}.", ""]
    lines += ["| run | epochs (AE + clf) | s / AE epoch | s / clf epoch | fit s | AUROC | AUPR | FPR95 |",
              "|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        med = run["median_epoch_seconds"]
        lines.append(f"| {run['label']} | {run['ae_epochs']} + {run['clf_epochs']} | {med['autoencoder']:.1f} | "
                     f"{med['classifier']:.1f} | {run['fit_seconds']:.0f} | {run['auroc']:.4f} | "
                     f"{run['aupr']:.4f} | {run['fpr95']:.4f} |")
    ref = results["mean_intensity"]
    lines.append(f"| mean intensity (reference) | - | - | - | - | {ref['auroc']:.4f} | {ref['aupr']:.4f} | "
                 f"{ref['fpr95']:.4f} |")
    if paper is not None:
        lines.append(f"| paper's method (reported in the paper, not run here) | 100 + 100 | | | | {paper:.4f} | | |")
    lines += ["", f"At the measured speed a full {MAX_EPOCHS} + {MAX_EPOCHS} epoch run would take about "
              f"{results['full_run_estimate_seconds'] / 60:.0f} min of training."]
    if results["runs"][-1]["ae_epochs"] < MAX_EPOCHS:
        lines.append(f"The main run's learning-rate milestones sit at 40% and 80% of its "
                     f"{results['runs'][-1]['ae_epochs']} epochs, not at epochs 40 and 80.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="mnist-cifar10", choices=sorted(SETTINGS))
    parser.add_argument("--budget-seconds", type=float, default=300.0,
                        help="wall seconds for both fits together (data loading and scoring not counted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-limit", type=int, default=None, help="smoke tests only: cap the training images")
    parser.add_argument("--width", type=int, default=None, help="smoke tests only: narrower networks")
    args = parser.parse_args(argv)
    if args.budget_seconds <= 0:
        parser.error(f"--budget-seconds: expected a positive number of seconds, got {args.budget_seconds}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "log.txt").open("a")

    def log(message):
        print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True   # fixed 32x32 shapes: let cuDNN pick its fastest kernels
    overrides = {key: value for key, value in (("train_limit", args.train_limit), ("width", args.width))
                 if value is not None}
    shrunk = ", ".join(f"{key} = {value}" for key, value in overrides.items())
    wall = time.perf_counter()
    data = load_setting(args.setting, train_limit=overrides.get("train_limit"), seed=args.seed)
    load_seconds = time.perf_counter() - wall
    log(f"{data}; loaded in {load_seconds:.1f} s; cuda {torch.cuda.is_available()}")

    fits_start = time.perf_counter()
    probe = _fit_and_score(data, get_preset("paper", ae_epochs=1, clf_epochs=1, **overrides), args.seed,
                           "probe", log)
    log(f"probe: {json.dumps({k: probe[k] for k in ('median_epoch_seconds', 'fit_seconds', 'auroc')})}")
    runs = [probe]
    per_pair = probe["median_epoch_seconds"]["autoencoder"] + probe["median_epoch_seconds"]["classifier"]
    # what the probe spent outside its two epochs (latent density, calibration, validation) recurs once
    overhead = max(0.0, probe["fit_seconds"] - per_pair)
    left = args.budget_seconds - (time.perf_counter() - fits_start) - overhead
    epochs = min(MAX_EPOCHS, math.floor(0.9 * left / per_pair)) if per_pair > 0 else 0
    if epochs >= 2:
        log(f"main run: {epochs} + {epochs} epochs ({left:.0f} s left, {per_pair:.1f} s per epoch pair)")
        runs.append(_fit_and_score(data, get_preset("paper", ae_epochs=epochs, clf_epochs=epochs, **overrides),
                                   args.seed, "main", log))
    else:
        log(f"no main run: {left:.0f} s left is under two epoch pairs of {per_pair:.1f} s")

    reference = MeanIntensityDetector(data.channels).fit(data.in_train)
    speed = runs[-1]["median_epoch_seconds"]
    results = {"setting": args.setting, "in": data.in_name, "out": data.out_name, "seed": args.seed,
               "preset": get_preset("paper", **overrides).as_dict(), "shrunk": shrunk,
               "budget_seconds": args.budget_seconds, "load_seconds": load_seconds, "runs": runs,
               "mean_intensity": metrics.summarize(reference.decision_function(data.in_test),
                                                  reference.decision_function(data.out_test)),
               "full_run_estimate_seconds": MAX_EPOCHS * (speed["autoencoder"] + speed["classifier"]),
               "paper_reported_auroc": reported_auroc(args.setting, "ours"),
               "command": "python " + " ".join(["benchmarks/paper_preset.py", *(argv or sys.argv[1:])]),
               "environment": {"torch": torch.__version__, "python": platform.python_version(),
                               "cuda": torch.cuda.is_available(),
                               "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                               else f"CPU ({torch.get_num_threads()} torch threads)"},
               "wall_seconds": time.perf_counter() - wall}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = _table(results)
    (out / "results.md").write_text(table)
    log(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
