"""End-to-end runs behind the CLI: reproduce one paper setting, and measure robustness to noise."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .baselines import MeanIntensityDetector
from .data import PAPER_SETTINGS, SETTINGS, OODData, load_setting
from .detector import OODDetector
from .noise import NOISE_FAMILIES, add_noise
from .presets import get_preset
from .validation import check_choice

# the paper's Tables 1 and 2, shown only as labelled references beside measured numbers
PAPER_REPORTED = {"mnist-cifar10": 0.9718, "cifar10-mnist": 0.5908}
NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3)


def reproduce(setting: str, preset=None, seed: int = 0, out_dir=None, progress: bool = True) -> dict:
    """Train our detector on the setting's in-distribution train split, score the fixed test draw
    (2000 in + 2000 out), write results.json, results.md and roc.png into ``out_dir``.

    With ``out_dir`` the training state is kept there each epoch (classroom and paper presets),
    so an interrupted run restarted with the same folder resumes.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    preset = get_preset(preset)
    out = Path(out_dir) if out_dir is not None else None
    data = load_setting(setting, train_limit=preset.train_limit, seed=seed)
    detector = OODDetector(data.channels, preset, seed, progress=progress)
    detector.fit(data.in_train, work_dir=out / "train_state" if out else None)
    start = time.perf_counter()
    in_scores, out_scores = detector.score(data.in_test), detector.score(data.out_test)
    score_seconds = time.perf_counter() - start
    reference = MeanIntensityDetector(data.channels).fit(data.in_train)
    ref_in, ref_out = reference.score(data.in_test), reference.score(data.out_test)
    results = {"setting": setting, "in": data.in_name, "out": data.out_name, "preset": preset.name, "seed": seed,
               **metrics.summarize(in_scores, out_scores),
               "auroc_ci95": metrics.bootstrap_auroc_ci(in_scores, out_scores, n_boot=500, seed=seed),
               "train_seconds": detector.history_["train_seconds"], "score_seconds": score_seconds,
               "n_train": detector.history_["n_images"], "n_test": {"in": len(in_scores), "out": len(out_scores)},
               "validation_auroc_by_family": detector.validation_,
               "mean_intensity_baseline": metrics.summarize(ref_in, ref_out),
               "paper_reported_auroc": PAPER_REPORTED.get(setting)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        (out / "results.md").write_text(results_table(results))
        _save_roc(out / "roc.png", {"ours": (in_scores, out_scores), "mean intensity": (ref_in, ref_out)},
                  f"{data.in_name} in / {data.out_name} out ({preset.name}, seed {seed})")
        detector.save(out / "detector.pt")
    return results


def results_table(results: dict) -> str:
    """Markdown table of a :func:`reproduce` result."""
    low, high = results["auroc_ci95"]
    base = results["mean_intensity_baseline"]
    paper = results["paper_reported_auroc"]
    lines = [f"{results['in']} in / {results['out']} out, preset {results['preset']}, seed {results['seed']}",
             "", "| detector | AUROC | 95% CI | AUPR | FPR95 | train s |", "| --- | --- | --- | --- | --- | --- |",
             f"| ours (measured) | {results['auroc']:.4f} | {low:.4f}-{high:.4f} | {results['aupr']:.4f} | "
             f"{results['fpr95']:.4f} | {results['train_seconds']:.0f} |",
             f"| mean intensity (measured) | {base['auroc']:.4f} | | {base['aupr']:.4f} | {base['fpr95']:.4f} | 0 |"]
    if paper is not None:
        lines.append(f"| paper's method (reported in the paper, not run here) | {paper:.4f} | | | | |")
    return "\n".join(lines) + "\n"


def _save_roc(path: Path, curves: dict, title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plots import plot_roc_curves

    fig, ax = plt.subplots(figsize=(5, 5))
    plot_roc_curves(curves, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def noise_robustness(detector: OODDetector, data: OODData, families=NOISE_FAMILIES, levels=NOISE_LEVELS,
                     seed: int = 0) -> list[dict]:
    """How noise on in-distribution test images changes detection, one row per (family, level).

    ``auroc_vs_ood``: noisy in-distribution test images against the clean OOD test set (should
    stay high: noise must not make normal images look abnormal). ``fpr_noisy_in``: share of noisy
    in-distribution images flagged at the threshold that keeps 95% of clean ones (0.05 = no change).
    ``auroc_noisy_ood``: clean in-distribution against noisy OOD images (noisy outliers still caught).
    """
    clean_in, clean_out = detector.score(data.in_test), detector.score(data.out_test)
    rows = []
    for family in families:
        for level in levels:
            generator = torch.Generator().manual_seed(seed)
            noisy_in = detector.score(add_noise(data.in_test, family, level, generator))
            noisy_out = detector.score(add_noise(data.out_test, family, level, generator))
            rows.append({"family": family, "level": float(level),
                         "auroc_vs_ood": metrics.auroc(noisy_in, clean_out),
                         "auroc_noisy_ood": metrics.auroc(clean_in, noisy_out),
                         "fpr_noisy_in": metrics.fpr_at_threshold(clean_in, noisy_in, 0.95)})
    return rows


def robustness_table(rows: list[dict]) -> str:
    lines = ["| noise | level | AUROC noisy-in vs OOD | AUROC in vs noisy-OOD | FPR on noisy in (95% clean kept) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['family']} | {r['level']:.2f} | {r['auroc_vs_ood']:.4f} | {r['auroc_noisy_ood']:.4f} | "
              f"{r['fpr_noisy_in']:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"


def robustness(setting: str, preset=None, seed: int = 0, out_dir=None, families=NOISE_FAMILIES,
               levels=NOISE_LEVELS, progress: bool = True) -> dict:
    """Noise robustness with and without noise augmentation (the paper's claim), as rows + table.

    The two detectors come from :func:`artifacts.get_detector`: reused when the notebooks or a
    comparison already trained them, trained and saved there otherwise.
    """
    from .artifacts import get_data, get_detector

    check_choice(setting, tuple(SETTINGS), "setting")
    preset = get_preset(preset)
    data = get_data(setting, preset, seed)
    result = {"setting": setting, "preset": preset.name, "seed": seed, "rows": {}}
    for augment in (True, False):
        detector = get_detector(setting, preset, seed, noise_augment=augment, data=data, progress=progress)
        result["rows"]["with augmentation" if augment else "without augmentation"] = noise_robustness(
            detector, data, families, levels, seed)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.json").write_text(json.dumps(result, indent=2))
        (out / "robustness.md").write_text("".join(f"### {name}\n\n{robustness_table(rows)}\n"
                                                   for name, rows in result["rows"].items()))
    return result


def auroc_drop(rows: list[dict], family: str = "gaussian", level: float = 0.1) -> float:
    """Clean AUROC minus AUROC at ``family``/``level``, from :func:`noise_robustness` rows."""
    clean = next(r["auroc_vs_ood"] for r in rows if r["family"] == family and r["level"] == 0.0)
    noisy = next(r["auroc_vs_ood"] for r in rows if r["family"] == family and np.isclose(r["level"], level))
    return clean - noisy


__all__ = ["reproduce", "results_table", "noise_robustness", "robustness_table", "robustness", "auroc_drop",
           "PAPER_REPORTED", "PAPER_SETTINGS"]
