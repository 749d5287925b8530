"""CIFAR-10 in / Fashion-MNIST out with the CIFAR-10 detectors of ``cifar10-mnist`` (issue 23's regression check).

The detectors of ``cifar10-mnist`` (from ``$OOD_PRETRAINED_DIR`` or the artifacts folder, trained there
when missing) score that setting's CIFAR-10 test images against 2,000 Fashion-MNIST test images
(drawn like every setting's outliers), in two geometries, gray repeated to RGB: 28x28 zero-padded to
32x32 (like MNIST in the paper's setting, :func:`ood_helpers.data.to_geometry`) and 28x28 resized to
32x32 (bilinear, antialiased: issue 23's geometry). Prints, per variant and geometry, the AUROC of the
score and of each of its parts, and the share of Fashion-MNIST images flagged at ``threshold_``
(which keeps 95% of held-out CIFAR-10 training images in); mean ± std over seeds.

    OOD_DATA_DIR=../shared/data python benchmarks/cifar10_fashion.py --preset classroom --seeds 0 1 2 \\
        --out results/cifar10-fashion
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.functional import InterpolationMode, resize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood_helpers.artifacts import get_detector  # noqa: E402
from ood_helpers.data import EVAL_SEED, EVAL_SIZE, load_images, to_geometry  # noqa: E402
from ood_helpers.artifacts import get_data  # noqa: E402
from ood_helpers.evaluation import metrics  # noqa: E402
from ood_helpers.evaluation.reports import markdown_table  # noqa: E402
from ood_helpers.files import check_output_dir, write_report  # noqa: E402
from ood_helpers.presets import PRESETS  # noqa: E402
from ood_helpers.validation import InputError  # noqa: E402
from ood_helpers.variants import VARIANTS  # noqa: E402

PARTS = {"score": "score", "classifier": "classifier logit (the paper's score)",
         "latent": "nearest-latent distance (ours)", "two_sided": "two-sided Mahalanobis term (ours)",
         "difference_l1": "mean difference image"}
GEOMETRIES = ("padded", "resized")


def fashion_images(geometry: str) -> torch.Tensor:
    """2,000 Fashion-MNIST test images as float (N, 3, 32, 32): 28x28 ``padded`` or ``resized`` to 32x32."""
    padded = to_geometry(load_images("fmnist", "test", limit=EVAL_SIZE, seed=EVAL_SEED + 1)[0], 3)
    if geometry == "padded":
        return padded
    return resize(padded[..., 2:30, 2:30], [32, 32], interpolation=InterpolationMode.BILINEAR,
                  antialias=True).clamp(0, 1)


def cell(numbers: list, digits: int = 4) -> str:
    """One value, or mean ± sample std (ddof=1, as ``compare``) over seeds; — when there is none."""
    if not numbers:
        return "—"
    if len(numbers) == 1:
        return f"{numbers[0]:.{digits}f}"
    return f"{np.mean(numbers):.{digits}f} ± {np.std(numbers, ddof=1):.{digits}f}"


def render(table: dict, command: str, preset: str, seeds: list, seconds: float) -> str:
    """The report: one row per "variant / geometry" of ``table`` (part -> one value per seed)."""
    rows = [name.split(" / ") + [cell(row.get(part, [])) for part in (*PARTS, "flagged")]
            for name, row in table.items()]
    header = (["variant", "Fashion-MNIST geometry"] + [f"AUROC: {label}" for label in PARTS.values()]
              + ["Fashion-MNIST flagged at threshold_ (which keeps 95% of held-out CIFAR-10 images in)"])
    return "\n".join([
        f"# CIFAR-10 in / Fashion-MNIST out, preset {preset}, seeds {' '.join(map(str, seeds))}",
        "", "Made with:", "", "```bash", command, "```", "",
        f"The detectors of cifar10-mnist (same CIFAR-10 training draw per seed); {EVAL_SIZE} CIFAR-10 and "
        f"{EVAL_SIZE} Fashion-MNIST test images, gray repeated to RGB, 28x28 either zero-padded to 32x32 "
        f"(a black border, like MNIST in the paper's setting) or resized to 32x32 (bilinear, antialiased; the "
        f"geometry of the first measurement). AUROC: 0.5 is chance, 1 separates every image. Mean ± std "
        f"(ddof=1) over seeds. Wall time {seconds:.0f} s.", "", markdown_table(header, rows), ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="classroom", choices=sorted(PRESETS), help="training preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the cifar10-mnist detectors")
    parser.add_argument("--variants", nargs="+", default=["paper", "ours"], choices=sorted(VARIANTS),
                        help="detector variants (ood_helpers.variants)")
    parser.add_argument("--out", required=True, help="folder for results.md and results.json (replaced)")
    args = parser.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds: expected integers >= 0, got {args.seeds}; e.g. --seeds 0 1 2")
    try:
        check_output_dir(args.out)
    except InputError as error:
        parser.error(f"--out: {error}")
    start = time.perf_counter()
    fashion = {geometry: fashion_images(geometry) for geometry in GEOMETRIES}
    table = {}   # "variant / geometry" -> part -> one value per seed
    for seed in args.seeds:
        data = get_data("cifar10-mnist", args.preset, seed)
        for variant in args.variants:
            detector = get_detector("cifar10-mnist", args.preset, seed, variant=variant, progress=False,
                                    verbose=False)
            scored_in = detector.score_components(data.in_test)
            for geometry, images in fashion.items():
                scored_out = detector.score_components(images)
                for scored in (scored_in, scored_out):
                    if "mahalanobis" in scored:   # the term as the score uses it: |m(z) - its held-out mean|
                        scored["two_sided"] = np.abs(scored["mahalanobis"] - detector.calibration_.mahalanobis_centre)
                row = table.setdefault(f"{variant} / {geometry}", {})
                for part in PARTS:
                    if part in scored_in:
                        row.setdefault(part, []).append(metrics.auroc(scored_in[part], scored_out[part]))
                row.setdefault("flagged", []).append(float(np.mean(scored_out["score"] > detector.threshold_)))
    command = "OOD_DATA_DIR=../shared/data python benchmarks/cifar10_fashion.py " + " ".join(
        f"--{key} {' '.join(map(str, value)) if isinstance(value, list) else value}" for key, value in vars(args).items())
    seconds = time.perf_counter() - start
    markdown = render(table, command, args.preset, args.seeds, seconds)
    write_report(args.out, "results", {"command": command, "preset": args.preset, "seeds": args.seeds,
                                       "seconds": seconds, "auroc": table}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
