"""Before/after rows for each design idea of the detector (issue: beat every baseline honestly).

One row per idea, AUROC mean +- std over seeds, both paper settings, on the fixed test draw:

    python benchmarks/design_steps.py --preset quick --seeds 0 1 2 --out results/design_steps.md

Rows that share a fit are read from ``score_components`` of the same detector, so each row
differs from the one above it by one idea only. Designs were chosen on validation data
(held-out training images vs synthetic outliers, see ``OODDetector.validation_``); this script
only reports how the choices did on the test sets.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ood_helpers import OODDetector, get_preset, load_setting
from ood_helpers.baselines import MeanIntensityDetector
from ood_helpers.evaluation.metrics import auroc

CLASSIC_FAMILIES = ("cutpaste", "mixup", "invert", "patch_shuffle")


def run(setting: str, preset, seed: int) -> dict:
    data = load_setting(setting, train_limit=preset.train_limit, seed=seed)
    rows = {}
    reference = MeanIntensityDetector(data.channels).fit(data.in_train)
    rows["mean intensity, distance of the mean pixel from the training mean (reference)"] = auroc(
        reference.decision_function(data.in_test), reference.decision_function(data.out_test))
    classic = OODDetector(data.channels, preset, seed, outlier_families=CLASSIC_FAMILIES, progress=False).fit(data.in_train)
    full = OODDetector(data.channels, preset, seed, progress=False).fit(data.in_train)
    for name, det in (("classic", classic), ("all", full)):
        parts_in, parts_out = det.score_components(data.in_test), det.score_components(data.out_test)
        if name == "classic":
            rows["1. autoencoder mean L1 difference (paper's difference image as a score)"] = auroc(parts_in["difference_l1"], parts_out["difference_l1"])
            rows["2. autoencoder mean squared (L2) difference"] = auroc(parts_in["difference_l2"], parts_out["difference_l2"])
            rows["3. classifier, classic outliers (cutpaste, mixup, invert, patch shuffle)"] = auroc(parts_in["classifier"], parts_out["classifier"])
        else:
            rows["4. classifier, + simpler/smoother outliers (grayscale, exposure, posterize, edges, smooth)"] = auroc(parts_in["classifier"], parts_out["classifier"])
            rows["5. latent Mahalanobis distance alone"] = auroc(parts_in["latent"], parts_out["latent"])
            rows["6. final: classifier (4) + latent distance (5), standardised sum"] = auroc(parts_in["score"], parts_out["score"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["mnist-cifar10", "cifar10-mnist"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    preset = get_preset(args.preset)
    lines = [f"Design steps, preset {preset.name}, seeds {args.seeds} (AUROC mean +- std over seeds)", "",
             "command: python benchmarks/design_steps.py --preset " + preset.name + " --seeds " + " ".join(map(str, args.seeds)), ""]
    for setting in args.settings:
        start = time.perf_counter()
        per_seed = [run(setting, preset, seed) for seed in args.seeds]
        lines += [f"### {setting} ({time.perf_counter() - start:.0f} s)", "", "| step | AUROC | per seed |", "| --- | --- | --- |"]
        for key in per_seed[0]:
            values = np.array([r[key] for r in per_seed])
            lines.append(f"| {key} | {values.mean():.4f} +- {values.std():.4f} | {', '.join(f'{v:.4f}' for v in values)} |")
        lines.append("")
        print("\n".join(lines[-len(per_seed[0]) - 4:]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
