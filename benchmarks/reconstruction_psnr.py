"""How well the autoencoder rebuilds in-distribution test images: mean PSNR per preset and setting.

    OOD_PRETRAINED_DIR=<folder made by pretrain> python benchmarks/reconstruction_psnr.py \
        --presets quick classroom --out results/reconstruction

For every preset and paper setting: the autoencoder of the seed-0 ``paper`` detector
(:func:`ood_helpers.artifacts.get_autoencoder`: read from the pretrained or artifacts folder when
there, else trained alone, with the seconds it took), then the mean PSNR
(:func:`ood_helpers.evaluation.metrics.psnr`) of its reconstructions of the first 2,000 in-distribution test
images (issue 13: CIFAR-10 at the classroom preset must reach 20 dB). Writes ``psnr.json`` and
``psnr.md`` into ``--out`` (written together, :func:`ood_helpers.files.atomic_output_dir`).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ood_helpers import artifacts
from ood_helpers.evaluation import metrics  # noqa: E402
from ood_helpers.data import PAPER_SETTINGS  # noqa: E402
from ood_helpers.files import atomic_output_dir, check_output_dir  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402
from ood_helpers.evaluation.reports import markdown_table  # noqa: E402

N_IMAGES = 2000


@torch.no_grad()
def mean_psnr(autoencoder, images: torch.Tensor, batch_size: int = 250) -> float:
    """Mean PSNR in dB of ``autoencoder``'s reconstructions of ``images`` (N, C, 32, 32) in [0, 1]."""
    values = [metrics.psnr(batch, autoencoder(batch)[0].cpu()) for batch in images.split(batch_size)]
    return float(torch.cat([torch.from_numpy(v) for v in values]).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "classroom"])
    parser.add_argument("--settings", nargs="+", default=list(PAPER_SETTINGS))
    parser.add_argument("--out", default=str(ROOT / "results" / "reconstruction"))
    args = parser.parse_args(argv)
    out = check_output_dir(args.out)
    rows = []
    for preset in args.presets:
        for setting in args.settings:
            data = artifacts.get_data(setting, preset)
            start = time.perf_counter()
            autoencoder = artifacts.get_autoencoder(setting, preset, seed=0, data=data, progress=False)
            seconds = time.perf_counter() - start
            images = data.in_test[:N_IMAGES].float()
            rows.append({"preset": preset, "setting": setting, "in_distribution": data.in_name,
                         "images": len(images), "mean_psnr_db": round(mean_psnr(autoencoder, images), 2),
                         "linear_path": get_preset(preset).ae_linear_path, "seconds_to_get": round(seconds, 1)})
            print(rows[-1], flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/reconstruction_psnr.py", *(argv or sys.argv[1:])])
    pretrained = "OOD_PRETRAINED_DIR set" if os.environ.get("OOD_PRETRAINED_DIR") else "no pretrained folder"
    table = markdown_table(["preset", "in-distribution", "test images", "mean PSNR (dB)", "linear path (ours)",
                            "seconds to load or train"],
                           [[r["preset"], r["in_distribution"], r["images"], f"{r['mean_psnr_db']:.2f}",
                             "yes" if r["linear_path"] else "no", r["seconds_to_get"]] for r in rows])
    text = "\n".join(["# Reconstruction quality of the seed-0 autoencoder", "", f"Command: `{command}` ({pretrained}).",
                      "", "PSNR = 10 log10(1 / MSE) per image, pixel values in [0, 1]; mean over the first "
                      f"{N_IMAGES} in-distribution test images. The autoencoder is the one every variant "
                      "with noise augmentation of that seed shares (`artifacts.get_autoencoder`).", "", table, ""])
    with atomic_output_dir(out) as work:
        (work / "psnr.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
        (work / "psnr.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
