"""The ``paper`` preset on a GPU: float32 eager and the default run options side by side, then as
many epochs as a time budget allows.

The paper trains 100 + 100 epochs (autoencoder, then classifier). A borrowed GPU rarely has that
long, so this script measures instead of guessing:

1. **mode comparison**: float32 without compile, and the run options ``--precision`` and
   ``--compile-step`` select (:mod:`ood_helpers.runtime`; "auto": bf16 and compile with CUDA), one
   after the other in this run, each
   a fit of 2 + 2 epochs on ``--timing-images`` training images at the paper's settings (ResNet-18
   width 64, Adam lr 1e-4, betas (0.9, 0.99), batch 32). The second epoch of each stage is the
   steady state (the first includes torch.compile and cuDNN warm-up): seconds per step, seconds
   per epoch on the full training set (steps per epoch x seconds per step) and the projected
   100 + 100 epoch run of each mode, and their ratios;
2. a probe fit of 1 autoencoder epoch + 1 classifier epoch on every training image, with the
   selected run options, which gives the seconds per epoch of
   each stage (first epochs: warm-up included) and the AUROC after one epoch each;
3. a main fit with E + E epochs, E the most that fit in what is left of ``--budget-seconds``
   (at most 100); the learning-rate milestones stay at 40% and 80% of E, as in the paper.

    python benchmarks/paper_preset.py --setting mnist-cifar10 --budget-seconds 300 --out runs/paper

It writes ``results.json``, ``results.md`` and ``log.txt`` into ``--out`` and prints the table.
On a CPU the paper preset takes hours per epoch; ``--train-limit`` and ``--width`` shrink it for a
smoke test (the table then says so); on a CPU "auto" is float32 without compile, so both modes
run the same code there.
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
from ood_helpers.evaluation import metrics  # noqa: E402
from ood_helpers.baselines import MeanIntensityDetector  # noqa: E402
from ood_helpers.data import SETTINGS  # noqa: E402
from ood_helpers.evaluation.paper import reported_auroc  # noqa: E402
from ood_helpers.detector import build_detector  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402

MAX_EPOCHS = 100


def _stage_sizes(n_images: int, held_out_fraction: float = 0.1) -> dict:
    """Images each stage of an :class:`OODDetector` fit trains on, for ``n_images`` given to fit."""
    held = max(4, int(round(held_out_fraction * n_images)))
    fit = n_images - held
    return {"autoencoder": fit // 2, "classifier": fit - fit // 2}


def _steps(n_items: int, batch_size: int) -> int:
    """Steps per epoch of :func:`ood_helpers.loop.run_epochs` (a last batch of one is dropped)."""
    return sum(1 for i in range(0, n_items, batch_size) if min(batch_size, n_items - i) >= 2)


def _modes(args) -> dict:
    return {"fp32 eager": {"precision": "fp32", "compile_step": "off"},
            "selected": {"precision": args.precision, "compile_step": args.compile_step}}


def _time_path(data, path: str, overrides: dict, args, full_sizes: dict, log) -> dict:
    """Fit 2 + 2 epochs in one mode of :func:`_modes`; steady-state speed of each stage."""
    limit = min(args.timing_images, overrides.get("train_limit") or args.timing_images)
    preset = get_preset("paper", ae_epochs=2, clf_epochs=2, **{**overrides, "train_limit": limit})
    start = time.perf_counter()
    detector = OODDetector(data.channels, preset, args.seed, progress=False, **_modes(args)[path])
    detector.fit(data.in_train)
    seconds = time.perf_counter() - start
    row = {"path": path, "training": detector.history_["training"], "fit_seconds": seconds,
           "timing_images": detector.history_["n_images"]}
    for stage in ("autoencoder", "classifier"):
        steps = _steps(detector.history_["n_images"][stage], preset.batch_size)
        epochs = detector.history_["epoch_seconds"][stage]
        per_step = epochs[-1] / steps
        full_steps = _steps(full_sizes[stage], preset.batch_size)
        row[stage] = {"steps_timed": steps, "first_epoch_seconds": epochs[0], "steady_epoch_seconds": epochs[-1],
                      "seconds_per_step": per_step, "full_steps_per_epoch": full_steps,
                      "full_epoch_seconds": per_step * full_steps}
    row["projected_full_run_seconds"] = MAX_EPOCHS * (row["autoencoder"]["full_epoch_seconds"]
                                                      + row["classifier"]["full_epoch_seconds"])
    log(f"mode {path} ({row['training']['precision']}, compile "
        f"{row['training']['compile']}): {row['autoencoder']['seconds_per_step'] * 1e3:.2f} ms / AE step, "
        f"{row['classifier']['seconds_per_step'] * 1e3:.2f} ms / clf step; fit {seconds:.1f} s")
    return row


def _fit_and_score(data, preset, seed: int, label: str, log, run_options: dict) -> dict:
    def on_epoch_end(epoch, loss):
        log(f"  {label}: epoch {epoch} done, loss {loss:.4f}, {time.perf_counter() - start:.1f} s since fit start")

    start = time.perf_counter()
    # the paper's method (no latent distance of ours), like for like with the paper's reported number
    detector = build_detector("paper", data.channels, preset, seed, progress=False).set_params(**run_options)
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
            "n_images": detector.history_["n_images"], "device": str(detector.device_),
            "training": detector.history_["training"]}


def _table(results: dict) -> str:
    paper = results["paper_reported_auroc"]
    lines = [f"# Paper preset: {results['setting']} ({results['in']} in, {results['out']} out)", "",
             f"Command: `{results['command']}`", "",
             f"Device: {results['environment']['device_name']}; torch {results['environment']['torch']}; "
             f"budget {results['budget_seconds']:.0f} s; whole script {results['wall_seconds']:.0f} s "
             f"(data loading {results['load_seconds']:.1f} s).", ""]
    if results["shrunk"]:
        lines += [f"**Smoke test, not the paper preset:** {results['shrunk']}.", ""]
    comparison = results["path_comparison"]
    if comparison:
        lines += ["## Run options side by side (this run)", "",
                  f"Each mode: a fit of 2 + 2 epochs on {comparison['rows'][0]['timing_images']['autoencoder']} + "
                  f"{comparison['rows'][0]['timing_images']['classifier']} images; speed of the second epoch "
                  f"(steady state); full-data epochs and the {MAX_EPOCHS} + {MAX_EPOCHS} run projected from it.", "",
                  "| mode | precision | compile | ms / AE step | ms / clf step | s / AE epoch (full) | "
                  "s / clf epoch (full) | first AE epoch s | projected full run |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in comparison["rows"]:
            ae, clf, plan = row["autoencoder"], row["classifier"], row["training"]
            lines.append(f"| {row['path']} | {plan['precision']} | {'yes' if plan['compile'] else 'no'} | "
                         f"{ae['seconds_per_step'] * 1e3:.2f} | {clf['seconds_per_step'] * 1e3:.2f} | "
                         f"{ae['full_epoch_seconds']:.1f} | {clf['full_epoch_seconds']:.1f} | "
                         f"{ae['first_epoch_seconds']:.1f} | {row['projected_full_run_seconds'] / 60:.1f} min |")
        ratio = comparison["speedup"]
        lines += ["", f"Selected / float32-eager speed-up, measured side by side in this run: {ratio['autoencoder']:.2f}x per "
                      f"AE step, {ratio['classifier']:.2f}x per classifier step, {ratio['full_run']:.2f}x for the "
                      f"projected full run.", ""]
    lines += ["## Fits", "",
              "| run | epochs (AE + clf) | s / AE epoch | s / clf epoch | fit s | AUROC | AUPR | FPR95 | run options |",
              "|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        med, plan = run["median_epoch_seconds"], run["training"]
        lines.append(f"| {run['label']} | {run['ae_epochs']} + {run['clf_epochs']} | {med['autoencoder']:.1f} | "
                     f"{med['classifier']:.1f} | {run['fit_seconds']:.0f} | {run['auroc']:.4f} | {run['aupr']:.4f} | "
                     f"{run['fpr95']:.4f} | {plan['device']}, {plan['precision']}"
                     f"{', compiled' if plan['compile'] else ''} |")
    ref = results["mean_intensity"]
    lines.append(f"| mean intensity (reference) | - | - | - | - | {ref['auroc']:.4f} | {ref['aupr']:.4f} | "
                 f"{ref['fpr95']:.4f} | - |")
    if paper is not None:
        lines.append(f"| paper's method (reported in the paper, not run here) | 100 + 100 | | | | {paper:.4f} | | | |")
    lines += ["", f"At the speed of the last fit ({results['runs'][-1]['training']['precision']}, median epoch, "
              f"first-epoch warm-up included) a full {MAX_EPOCHS} + {MAX_EPOCHS} epoch run would take about "
              f"{results['full_run_estimate_seconds'] / 60:.0f} min of training."]
    if len(results["runs"]) > 1 and results["runs"][-1]["ae_epochs"] < MAX_EPOCHS:
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
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                        help="precision of the probe and main fits (default auto: bf16 with CUDA)")
    parser.add_argument("--compile-step", default="auto", choices=("auto", "on", "off"),
                        help="torch.compile of the trained network (default auto: with CUDA)")
    parser.add_argument("--timing-images", type=int, default=6400,
                        help="training images of each mode-comparison fit (default 6400: 90 steps per stage)")
    parser.add_argument("--skip-comparison", action="store_true", help="no mode comparison")
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

    overrides = {key: value for key, value in (("train_limit", args.train_limit), ("width", args.width))
                 if value is not None}
    shrunk = ", ".join(f"{key} = {value}" for key, value in overrides.items())
    wall = time.perf_counter()
    data = load_setting(args.setting, train_limit=overrides.get("train_limit"), seed=args.seed)
    load_seconds = time.perf_counter() - wall
    log(f"{data}; loaded in {load_seconds:.1f} s; cuda {torch.cuda.is_available()}")

    fits_start = time.perf_counter()
    comparison = None
    if not args.skip_comparison:
        full_sizes = _stage_sizes(len(data.in_train))
        rows = [_time_path(data, path, overrides, args, full_sizes, log) for path in _modes(args)]
        speed = {stage: rows[0][stage]["seconds_per_step"] / rows[1][stage]["seconds_per_step"]
                 for stage in ("autoencoder", "classifier")}
        speed["full_run"] = rows[0]["projected_full_run_seconds"] / rows[1]["projected_full_run_seconds"]
        comparison = {"rows": rows, "speedup": speed, "full_stage_images": full_sizes}
        log(f"selected / fp32 eager: {json.dumps({k: round(v, 3) for k, v in speed.items()})}")
    switches, run_options = overrides, _modes(args)["selected"]
    probe = _fit_and_score(data, get_preset("paper", ae_epochs=1, clf_epochs=1, **switches), args.seed,
                           "probe", log, run_options)
    log(f"probe: {json.dumps({k: probe[k] for k in ('median_epoch_seconds', 'fit_seconds', 'auroc')})}")
    runs = [probe]
    per_pair = probe["median_epoch_seconds"]["autoencoder"] + probe["median_epoch_seconds"]["classifier"]
    # what the probe spent outside its two epochs (latent density, calibration, validation) recurs once
    overhead = max(0.0, probe["fit_seconds"] - per_pair)
    warm_up = 0.0
    same_path = [row for row in (comparison or {}).get("rows", []) if row["training"] == probe["training"]]
    if same_path:   # the probe's single epochs include warm-up (compile); later epochs run at the steady speed
        steady = same_path[0]["autoencoder"]["full_epoch_seconds"] + same_path[0]["classifier"]["full_epoch_seconds"]
        warm_up, per_pair = max(0.0, per_pair - steady), min(per_pair, steady)
    left = args.budget_seconds - (time.perf_counter() - fits_start) - overhead - warm_up
    epochs = min(MAX_EPOCHS, math.floor(0.9 * left / per_pair)) if per_pair > 0 else 0
    if epochs >= 2:
        log(f"main run: {epochs} + {epochs} epochs ({left:.0f} s left, {per_pair:.1f} s per epoch pair)")
        runs.append(_fit_and_score(data, get_preset("paper", ae_epochs=epochs, clf_epochs=epochs, **switches),
                                   args.seed, "main", log, run_options))
    else:
        log(f"no main run: {left:.0f} s left is under two epoch pairs of {per_pair:.1f} s")

    reference = MeanIntensityDetector(data.channels).fit(data.in_train)
    speed = runs[-1]["median_epoch_seconds"]
    results = {"setting": args.setting, "in": data.in_name, "out": data.out_name, "seed": args.seed,
               "preset": get_preset("paper", **switches).as_dict(), "shrunk": shrunk,
               "path_comparison": comparison,
               "budget_seconds": args.budget_seconds, "load_seconds": load_seconds, "runs": runs,
               "mean_intensity": metrics.summarize(reference.decision_function(data.in_test),
                                                  reference.decision_function(data.out_test)),
               "full_run_estimate_seconds": MAX_EPOCHS * (speed["autoencoder"] + speed["classifier"]),
               "paper_reported_auroc": reported_auroc(args.setting, "paper"),
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
