"""What the classroom autoencoder's linear path costs a CIFAR-10-in detector on gray images (issue 23).

Issue 23 asks which change cost a CIFAR-10-in detector its generalisation to Fashion-MNIST. The
classroom preset's autoencoder has our linear path beside the ResNet (``ae_linear_path``, bought for
issue 13: CIFAR-10 reconstructions of at least 20 dB mean PSNR after 12 epochs on a CPU). A linear,
PCA-like code also rebuilds images unlike the training data, gray ones included, so the difference
image the classifier reads could carry less of what makes them outliers.

Per seed: the ``ours`` detector of ``cifar10-mnist`` at the classroom preset (from ``$OOD_PRETRAINED_DIR``
or the artifacts folder, trained there when missing) beside the same detector trained here with
``ae_linear_path=False`` (the paper's autoencoder, everything else equal). For each: the mean PSNR of
its reconstructions of the CIFAR-10 test images, and the AUROC of its score and of its classifier
logit (the paper's method's score) for CIFAR-10 test images against MNIST (the paper's pair),
Fashion-MNIST (28x28 padded or resized to 32x32, gray repeated to RGB; ``benchmarks/cifar10_fashion.py``)
and the far-OOD groups; for Fashion-MNIST also of the mean difference image alone. To tell the
autoencoder's part from the classifier's: the same parts for 2,000 validation CIFAR-10 images
(training images outside the training draw) against their ``grayscale`` outliers, a family the
classifier was trained to flag. Test sets are read for diagnosis only: nothing is chosen on them.

    OOD_DATA_DIR=../shared/data python benchmarks/linear_path_cost.py --seeds 0 1 2 \\
        --out results/linear-path-cost
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cifar10_fashion import cell, fashion_images  # noqa: E402
from benchmarks.fashion_parts import validation_images  # noqa: E402
from benchmarks.reconstruction_psnr import mean_psnr  # noqa: E402
from ood_helpers.artifacts import get_data, get_detector  # noqa: E402
from ood_helpers.detector import OODDetector  # noqa: E402
from ood_helpers.evaluation import metrics  # noqa: E402
from ood_helpers.evaluation.far_ood import far_ood_suite  # noqa: E402
from ood_helpers.evaluation.reports import markdown_table  # noqa: E402
from ood_helpers.files import check_output_dir, write_report  # noqa: E402
from ood_helpers.outliers import apply_family  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402
from ood_helpers.validation import InputError  # noqa: E402

PRESET = "classroom"
PARTS = (("score", "ours"), ("classifier", "classifier logit"), ("difference_l1", "mean difference image"))
GRAY_FAMILY = "the grayscale outlier family of validation CIFAR-10 images"
AUTOENCODERS = {"with the linear path (classroom preset)": True,
                "without it (classroom preset, ae_linear_path=False)": False}


def command(seeds, out) -> str:
    return ("OOD_DATA_DIR=../shared/data python benchmarks/linear_path_cost.py "
            f"--seeds {' '.join(map(str, seeds))} --out {out}")


def render(values: dict, seeds, out, seconds: float) -> list:
    """The markdown report's lines: one row per measure, mean ± std over seeds per autoencoder."""
    measures = list(dict.fromkeys(measure for _, measure in values))
    rows = [[measure] + [cell(values.get((label, measure), []), 4 if measure.startswith("AUROC") else 1)
                         for label in AUTOENCODERS] for measure in measures]
    return [f"# What the autoencoder's linear path costs: CIFAR-10 in, preset {PRESET}, seeds "
            f"{' '.join(map(str, seeds))}", "", "Made with:", "", "```bash", command(seeds, out), "```", "",
            "The `ours` detector of cifar10-mnist (loaded from the pretrained or artifacts folder) beside the same "
            "detector trained here without the linear path (`ae_linear_path=False`, every other setting equal). "
            "AUROC: 0.5 is chance, 1 separates every image. Mean ± std (ddof=1) over seeds; per-seed values in "
            f"results.json. Test sets for diagnosis only: nothing is chosen on them. Wall time {seconds:.0f} s.", "",
            markdown_table(["measure"] + list(AUTOENCODERS), rows), ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the cifar10-mnist detectors")
    parser.add_argument("--out", required=True, help="folder for results.md and results.json (replaced)")
    args = parser.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds: expected integers >= 0, got {args.seeds}; e.g. --seeds 0 1 2")
    try:   # before any training: a bad folder must not cost the run
        check_output_dir(args.out)
    except InputError as error:
        parser.error(f"--out: {error}")
    start = time.perf_counter()
    sets = {"MNIST (the paper's pair)": None, "Fashion-MNIST, padded": fashion_images("padded"),
            "Fashion-MNIST, resized": fashion_images("resized")}
    sets.update({f"far-OOD: {name}": images for name, images in far_ood_suite(3).items()})
    values = {}   # (autoencoder, measure) -> one value per seed
    for seed in args.seeds:
        data = get_data("cifar10-mnist", PRESET, seed)
        sets["MNIST (the paper's pair)"] = data.out_test
        valid = validation_images("cifar10-mnist", PRESET, seed, 2000)
        for label, linear_path in AUTOENCODERS.items():
            if linear_path:
                detector = get_detector("cifar10-mnist", PRESET, seed, variant="ours", data=data, progress=False,
                                        verbose=False)
            else:
                fit_start = time.perf_counter()
                detector = OODDetector(3, get_preset(PRESET, ae_linear_path=False), seed, progress=False)
                detector.fit(data.in_train)
                values.setdefault((label, "train seconds"), []).append(time.perf_counter() - fit_start)
            values.setdefault((label, "PSNR of CIFAR-10 test images, dB"), []).append(
                mean_psnr(detector.autoencoder_, data.in_test))
            scored_in = detector.score_components(data.in_test)
            for name, images in sets.items():
                scored_out = detector.score_components(images)
                for part, part_label in PARTS:
                    if part != "difference_l1" or name.startswith("Fashion"):
                        values.setdefault((label, f"AUROC, {part_label}: {name}"), []).append(
                            metrics.auroc(scored_in[part], scored_out[part]))
            # the family the classifier was trained to flag as "out", on validation images it never saw
            scored_valid = detector.score_components(valid)
            scored_gray = detector.score_components(apply_family(valid, "grayscale"))
            for part, part_label in PARTS:
                values.setdefault((label, f"AUROC, {part_label}: {GRAY_FAMILY}"), []).append(
                    metrics.auroc(scored_valid[part], scored_gray[part]))
            print(f"seed {seed}, {label}: done at {time.perf_counter() - start:.0f} s", flush=True)

    markdown = render(values, args.seeds, args.out, time.perf_counter() - start)
    write_report(args.out, "results", {
        "command": command(args.seeds, args.out), "seconds": time.perf_counter() - start, "seeds": args.seeds,
        "values": {f"{label} | {measure}": numbers for (label, measure), numbers in values.items()}},
        "\n".join(markdown))
    print("\n".join(markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
