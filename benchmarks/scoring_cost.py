"""What the far-OOD and semantic additions cost: training seconds per detector and scoring
throughput of the paper's method, ours and ours + rotation, side by side in one run.

    OOD_PRETRAINED_DIR=<folder made by pretrain> python benchmarks/scoring_cost.py \
        --preset classroom --out results/scoring-cost

For each setting and variant: the seed-0 detector (read from the pretrained or artifacts folder;
trained there when missing), the training seconds it recorded when it was made (autoencoder,
classifier and rotation network epochs; shared autoencoders were trained once, by the first
variant of a setting, so their seconds are counted once per setting), and its scoring throughput
on the first 2,000 in-distribution test images: the variants are timed in turn, ``--repeats``
rounds, and the median round is reported, so machine noise hits every variant alike. Issue 15:
training within 10 minutes per setting on 2 cores; scoring throughput not below half of ours.
Writes ``cost.json`` and ``cost.md`` into ``--out`` together.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ood_helpers import artifacts  # noqa: E402
from ood_helpers.files import check_output_dir, write_report  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402
from ood_helpers.evaluation.reports import markdown_table  # noqa: E402
from ood_helpers.variants import VARIANTS  # noqa: E402

N_IMAGES = 2000
SETTINGS = ("mnist-cifar10", "cifar10-mnist", "mnist-near", "cifar10-near")
COST_VARIANTS = ("paper", "ours", "ours-rotation")


def measure(preset: str, settings=SETTINGS, variants=COST_VARIANTS, repeats: int = 3) -> dict:
    """Training seconds and scoring throughput per setting and variant (see the module doc)."""
    rows = []
    for setting in settings:
        data = artifacts.get_data(setting, preset)
        images = data.in_test[:N_IMAGES]
        detectors = {v: artifacts.get_detector(setting, preset, 0, variant=v, data=data, progress=False, verbose=True)
                     for v in variants}
        rounds = {v: [] for v in variants}
        for _ in range(repeats):
            for variant, detector in detectors.items():
                start = time.perf_counter()
                detector.decision_function(images)
                rounds[variant].append(len(images) / (time.perf_counter() - start))
        counted_autoencoders = set()
        for variant, detector in detectors.items():
            seconds = {stage: sum(values) for stage, values in detector.history_["epoch_seconds"].items()}
            identity = json.dumps(detector.run_identity_["config"]["noise_augment"])
            shared = identity in counted_autoencoders
            counted_autoencoders.add(identity)
            rows.append({"setting": setting, "variant": variant, "label": VARIANTS[variant].label,
                         "train_seconds": seconds, "autoencoder_shared": shared,
                         "images_per_second": statistics.median(rounds[variant]),
                         "rounds": rounds[variant]})
    for setting in settings:
        here = [r for r in rows if r["setting"] == setting]
        ours = next(r for r in here if r["variant"] == "ours")["images_per_second"]
        for row in here:
            row["throughput_vs_ours"] = row["images_per_second"] / ours
        total = sum(sum(s for stage, s in r["train_seconds"].items() if stage != "autoencoder" or not r["autoencoder_shared"])
                    for r in here)
        # the shared autoencoder may have been trained by a variant not compared here (pretrain trains
        # paper-no-aux first): then no file here records its seconds and the total leaves it out
        recorded = any(r["train_seconds"].get("autoencoder", 0) > 0 for r in here)
        for row in here:
            row["setting_train_seconds"] = total
            row["autoencoder_recorded"] = recorded
    return {"preset": preset, "images": N_IMAGES, "repeats": repeats, "rows": rows,
            "environment": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "cuda": torch.cuda.is_available(), "python": platform.python_version()}}


def markdown(results: dict, command: str) -> str:
    header = ["setting", "variant", "autoencoder s", "classifier s", "rotation s", "setting total s",
              "scoring images/s (median)", "vs ours"]
    def autoencoder(r):
        if not r.get("autoencoder_recorded", True):
            return "trained by another variant" if not r["autoencoder_shared"] else "(shared)"
        return f"{r['train_seconds'].get('autoencoder', 0):.0f}" + (" (shared)" if r["autoencoder_shared"] else "")

    body = [[r["setting"], r["label"], autoencoder(r),
             f"{r['train_seconds'].get('classifier', 0):.0f}", f"{r['train_seconds'].get('rotation', 0):.0f}",
             f"{r['setting_train_seconds']:.0f}" + ("" if r.get("autoencoder_recorded", True) else " + autoencoder"),
             f"{r['images_per_second']:.0f}", f"{r['throughput_vs_ours']:.2f}"]
            for r in results["rows"]]
    return "\n".join([
        f"# Training and scoring cost, preset `{results['preset']}`", "", "Reproduce with:", "", "```bash", command, "```", "",
        f"Training seconds are those each detector recorded when it was trained (an autoencoder shared by "
        f"variants of one setting was trained once; \"(shared)\" rows did not train it again; \"trained by another "
        f"variant\": by one not compared here, e.g. paper-no-aux in pretrain, so no file here records its seconds). "
        f"\"setting total\" sums every stage trained once for the setting's three detectors. Scoring: "
        f"{results['images']} in-distribution test images, the variants timed in turn for {results['repeats']} "
        f"rounds, median round (torch {results['environment']['torch']}, {results['environment']['torch_threads']} "
        f"threads, CUDA {'yes' if results['environment']['cuda'] else 'no'}).", "",
        markdown_table(header, body), ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="classroom")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.out:
        check_output_dir(args.out)
    get_preset(args.preset)
    results = measure(args.preset, tuple(args.settings), repeats=args.repeats)
    command = " ".join(["python", "benchmarks/scoring_cost.py", "--preset", args.preset, "--settings", *args.settings,
                        "--repeats", str(args.repeats)] + (["--out", args.out] if args.out else []))
    data_dir = os.environ.get("OOD_DATA_DIR")
    if data_dir:
        command = f"OOD_DATA_DIR={shlex.quote(os.path.relpath(data_dir))} OOD_PRETRAINED_DIR=<pretrained folder> " + command
    text = markdown(results, command)
    print(text)
    if args.out:
        write_report(args.out, "cost", {**results, "command": command}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
