"""Evaluation: reproduce one setting, compare every detector side by side, measure noise robustness.

    from ood_helpers.evaluation import run_comparison, format_table
    results = run_comparison("mnist-cifar10", preset="quick", seeds=(0,), out_dir="results/compare")
    print(format_table(results))

or from the command line ``python -m ood_helpers compare --setting mnist-cifar10 --preset quick
--seeds 0 --out results/compare``.

Every detector is trained on the same in-distribution training images (``load_setting`` with the
preset's ``train_limit``, drawn per seed) and scored on the same fixed test draw. For each one:
AUROC (mean and standard deviation over seeds), AUPR and FPR at 95% TPR (means), train and
scoring seconds (means). The paper's own numbers sit in a separate "paper (reported)" column;
they were not reproduced by this code.

The paper's method and ours are separate, labelled rows (:mod:`ood_helpers.variants`): ``paper``
is our reimplementation of the paper's Figure 2, ``ours`` adds our two latent distances (nearest training latent, two-sided Mahalanobis). Both
train their classifier with our synthetic negatives made from in-distribution training images
(the paper never states its negatives). The paper's Table 3 ablations and what each of our
additions adds are measured by :func:`ablation` (``python -m ood_helpers ablation``).

Settings: those of :data:`ood_helpers.data.SETTINGS` plus two noisy ones, ``mnist-cifar10+noise``
and ``cifar10-mnist+noise``: the in-distribution *test* images are corrupted with Gaussian noise
of standard deviation 0.05, 0.1 and 0.2 (seeded) and still count as in-distribution; the
out-of-distribution set is the paper's. One row group per noise level (after the clean one)
reports how well each detector still separates noisy in-distribution images from real outliers.

Every setting without noise also gets the far-OOD sanity groups (:mod:`ood_helpers.evaluation.far_ood`):
the clean in-distribution test images against uniform noise, Gaussian noise and constant-colour
images, one row group each. A detector tuned to the paper's pair can fail them badly.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..evaluation import metrics
from ..artifacts import get_data, get_detector
from ..baselines import (BASELINES, PYOD_BASELINES, PYOD_MISSING, MeanIntensityDetector, make_detector,
                         pyod_available)
from ..data import SETTINGS, OODData, data_root, load_setting
from ..detector import AutoencoderDifferenceDetector
from .far_ood import FAR_OOD_SETS, RELATED_FAMILY, far_ood_suite
from ..files import atomic_output_dir, check_output_dir
from ..runtime import interactive
from ..noise import NOISE_FAMILIES, add_noise
from .paper import LITERATURE_REPORTED, PAPER_REPORTED, PAPER_SETTINGS, REPORTED_IN
from ..presets import PRESETS, default_preset_name, get_preset
from .reports import format_value, markdown_table
from ..validation import InputError, check_choice, check_seed
from ..variants import ADDITION_VARIANTS, NEGATIVES_NOTE, TABLE3_VARIANTS, VARIANTS, get_variant
from ..detector import build_detector

# Gaussian noise (standard deviation, pixel units in [0, 1]) on in-distribution test images: the
# noisy row groups of ``compare`` and, after a clean 0.0, the robustness curves
NOISE_LEVELS = (0.05, 0.1, 0.2)
NOISE_SEED = 20240602          # fixed: the noisy test images are the same for every seed and detector
NOISY_SETTINGS = {"mnist-cifar10+noise": "mnist-cifar10", "cifar10-mnist+noise": "cifar10-mnist"}
COMPARE_SETTINGS = tuple(SETTINGS) + tuple(NOISY_SETTINGS)

# the variants of ood_helpers.variants that compare runs: the paper's method and ours, one row each
# (their ablations are measured by ``ablation``)
COMPARE_VARIANTS = ("paper", "ours", "ours-rotation")
AE_DIFFERENCE = "ae-difference"
LABELS = {**{key: VARIANTS[key].label for key in COMPARE_VARIANTS},
          AE_DIFFERENCE: "autoencoder difference (mean |I - D(E(I))|)",
          **{key: cls.name for key, cls in BASELINES.items()}}
DETECTORS = tuple(LABELS)   # the order of the table

PAPER_COLUMN = "paper (reported)"
LITERATURE_COLUMN = "reported by its source"
ORIGIN_COLUMN = "method from"


def origin_of(key: str) -> str:
    """Where a row's method comes from, in plain words: the paper, ours, or a baseline's published
    source (its class's ``origin``; "" when the class names none)."""
    if key in VARIANTS:
        return VARIANTS[key].origin_label
    if key == AE_DIFFERENCE:
        return "the paper's autoencoder, scored by its mean difference alone (a baseline)"
    return getattr(BASELINES[key], "origin", "")


# -- argument handling ------------------------------------------------------------------------------
def resolve_detectors(detectors=None) -> list[str]:
    """Detector keys in table order; ``detectors`` may hold keys (``"vae"``) or labels (``"VAE"``)."""
    if detectors is None:
        return list(DETECTORS)
    if isinstance(detectors, str):
        detectors = [detectors]
    aliases = {**{key: key for key in DETECTORS}, **{label: key for key, label in LABELS.items()}}
    chosen = {aliases[check_choice(name, tuple(aliases), "detectors")] for name in detectors}
    if not chosen:
        raise InputError("detectors: expected at least one detector name, got none.")
    return [key for key in DETECTORS if key in chosen]


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise InputError("seeds: expected at least one seed, got none.")
    seeds = [check_seed(seed, "seeds") for seed in seeds]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds: expected distinct seeds, got {seeds}.")
    return seeds


def command_line(setting: str, preset: str, seeds, out_dir, detectors=None) -> str:
    """The shell command that reproduces a comparison, with the data folder relative to the working
    directory (results files are committed: they must not carry one machine's absolute paths)."""
    parts = ["compare", "--setting", setting, "--preset", preset, "--seeds", *map(str, seeds)]
    if out_dir is not None:
        parts += ["--out", str(out_dir)]
    if detectors is not None:
        parts += ["--detectors", *detectors]
    return _shell_command(parts)


def _shell_command(arguments) -> str:
    """``OOD_DATA_DIR=<data folder relative to the working directory> python -m ood_helpers <arguments>``."""
    parts = ["python", "-m", "ood_helpers", *arguments]
    data = os.path.relpath(data_root()) if data_root().is_absolute() else str(data_root())
    return f"OOD_DATA_DIR={shlex.quote(data)} " + " ".join(shlex.quote(part) for part in parts)


# -- one run ----------------------------------------------------------------------------------------
FAR_OOD_PREFIX = "far-OOD: "


def _test_sets(data, levels, far_ood: bool) -> tuple[dict, list]:
    """Every test image set, scored once each (name -> images), and the row groups as (group
    name, in-set name, out-set name): clean first, then one noisy in-distribution copy per level
    against the setting's outliers, then (``far_ood``) the clean images against each far-OOD set."""
    sets = {"in": data.in_test, "out": data.out_test}
    groups = [("clean", "in", "out")]
    for index, level in enumerate(levels):
        generator = torch.Generator().manual_seed(NOISE_SEED + index)
        name = f"gaussian noise {level:g}"
        sets[name] = add_noise(data.in_test, "gaussian", level, generator)
        groups.append((name, name, "out"))
    if far_ood:
        for name, images in far_ood_suite(data.channels, len(data.in_test)).items():
            sets[FAR_OOD_PREFIX + name] = images
            groups.append((FAR_OOD_PREFIX + name, "in", FAR_OOD_PREFIX + name))
    return sets, groups


def fitted_detector(key: str, setting: str, data: OODData, preset: str, seed: int, progress: bool = True,
                    fitted: dict | None = None):
    """A fitted detector for one row of the comparison, and its train seconds.

    The paper's method and ours come through the artifacts cache (the notebooks and a later
    comparison reuse what one run trained); the autoencoder difference reuses the ``paper``
    detector's autoencoder (the same for ``ours``); every baseline is fitted on ``data.in_train``.
    ``fitted`` caches detectors between rows of one seed.

    Returns
    -------
    (BaseDetector, float, str)
        The detector, the seconds its training took, and a note for the table ("" if none).
    """
    fitted = {} if fitted is None else fitted
    if key in VARIANTS:
        if key not in fitted:
            fitted[key] = get_detector(setting, preset, seed, variant=key, data=data, progress=progress, verbose=False)
        return fitted[key], fitted[key].history_["train_seconds"], ""
    if key == AE_DIFFERENCE:
        paper, seconds, _ = fitted_detector("paper", setting, data, preset, seed, progress, fitted)
        return (AutoencoderDifferenceDetector.from_detector(paper), seconds,
                "autoencoder difference: the autoencoder of the paper's method (the same as ours), no extra "
                "training; train s = that detector's")
    detector = make_detector(key, data.channels, preset=preset, seed=seed, progress=progress)
    begin = time.perf_counter()
    detector.fit(data.in_train)
    return detector, time.perf_counter() - begin, ""


def _score_all(score, sets: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    scores = {name: score(images) for name, images in sets.items()}
    return scores, time.perf_counter() - start


def _mean(values):
    return float(np.mean(values)) if values else None


def _std(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def run_comparison(setting: str, preset: str = "quick", seeds=(0,), out_dir=None, detectors=None,
                   progress: bool = True) -> dict:
    """Train and score every detector on ``setting`` for each seed; return (and, with ``out_dir``,
    write) the comparison.

    Parameters
    ----------
    setting : a key of ``data.SETTINGS`` or ``"mnist-cifar10+noise"`` / ``"cifar10-mnist+noise"``.
    preset : "quick", "classroom" or "paper": our detector's preset and every baseline's budget
        (None = ``$OOD_PRESET``, else classroom).
    seeds : seeds to repeat everything with (training draw, weights, noise); AUROC std is over these.
    out_dir : folder for ``results.json``, ``results.md`` and ``roc.png`` (created); None = write nothing.
    detectors : keys or labels of :data:`DETECTORS` to run (None = all). The PyOD peers are noted as
        skipped when PyOD is not installed.
    progress : tqdm progress bars.

    Returns a dict with ``groups`` (one per test condition, each with ``rows``: one per detector
    with ``auroc_mean``, ``auroc_std``, ``auroc_per_seed``, ``aupr_mean``, ``fpr95_mean``,
    ``train_seconds``, ``score_seconds``, ``paper_reported``), ``skipped`` and the run's metadata.

    Raises
    ------
    InputError
        Unknown setting, preset or detector, bad seeds, or an output folder that cannot be written
        (:class:`~ood_helpers.files.OutputPathError`), all before any training.
    DatasetNotFoundError
        The data is missing or damaged.
    """
    setting = check_choice(setting, COMPARE_SETTINGS, "setting")
    preset = default_preset_name() if preset is None else check_choice(preset, tuple(PRESETS), "preset")
    seeds = _check_seeds(seeds)
    if out_dir is not None:
        check_output_dir(out_dir)  # before hours of training, not after
    requested = None if detectors is None else resolve_detectors(detectors)
    keys = requested if requested is not None else list(DETECTORS)
    base_setting = NOISY_SETTINGS.get(setting, setting)
    levels = NOISE_LEVELS if setting in NOISY_SETTINGS else ()
    far_ood = setting not in NOISY_SETTINGS
    train_limit = get_preset(preset).train_limit

    skipped = {}
    if not pyod_available():
        skipped.update({key: PYOD_MISSING for key in keys if key in PYOD_BASELINES})
    run_keys = [key for key in keys if key not in skipped]

    start_all = time.perf_counter()
    per_seed = {key: {"metrics": [], "train": [], "score": [], "notes": set()} for key in run_keys}
    roc: dict = {}
    data = None
    jobs = tqdm(total=len(seeds) * len(run_keys), desc="compare", disable=not progress or not interactive())
    for seed_index, seed in enumerate(seeds):
        data = load_setting(base_setting, train_limit=train_limit, seed=seed)
        sets, test_groups = _test_sets(data, levels, far_ood)
        fitted_ours = {}
        for key in run_keys:
            if key in skipped:  # a peer that failed on an earlier seed
                continue
            jobs.set_description(f"seed {seed}: {LABELS[key]}")
            try:
                detector, train_seconds, note = fitted_detector(key, base_setting, data, preset, seed, progress,
                                                                fitted_ours)
                score = detector.decision_function
                scores, score_seconds = _score_all(score, sets)
            except Exception as err:  # an external peer's failure must not sink a long run
                if key not in PYOD_BASELINES:
                    raise
                skipped[key] = f"failed: {type(err).__name__}: {err}"
                per_seed.pop(key, None)
                for curves in roc.values():
                    curves.pop(LABELS[key], None)
                jobs.update(len(seeds) - seed_index)
                continue
            record = per_seed[key]
            record["metrics"].append({group: metrics.summarize(scores[in_key], scores[out_key])
                                      for group, in_key, out_key in test_groups})
            record["train"].append(train_seconds)
            record["score"].append(score_seconds)
            if note:
                record["notes"].add(note)
            if seed_index == 0:
                for group, in_key, out_key in test_groups:
                    roc.setdefault(group, {})[LABELS[key]] = (scores[in_key], scores[out_key])
            jobs.update(1)
    jobs.close()

    paper = PAPER_REPORTED.get(base_setting, {})
    literature = {key: {"auroc": value, "source": source}
                  for key, (value, source) in LITERATURE_REPORTED.get(base_setting, {}).items()}
    groups = []
    for group, in_key, out_key in test_groups:
        rows = []
        for key in run_keys:
            if key not in per_seed:
                continue
            record = per_seed[key]
            values = {name: [m[group][name] for m in record["metrics"]] for name in ("auroc", "aupr", "fpr95")}
            rows.append({
                "key": key, "detector": LABELS[key],
                "auroc_mean": _mean(values["auroc"]), "auroc_std": _std(values["auroc"]),
                "auroc_per_seed": values["auroc"],
                "aupr_mean": _mean(values["aupr"]), "aupr_std": _std(values["aupr"]),
                "fpr95_mean": _mean(values["fpr95"]), "fpr95_std": _std(values["fpr95"]),
                "train_seconds": _mean(record["train"]), "score_seconds": _mean(record["score"]),
                "paper_reported": paper.get(key) if group == "clean" else None,
                "origin": origin_of(key),
                "literature_reported": literature.get(key) if group == "clean" else None,
                "note": "; ".join(sorted(record["notes"])),
            })
        far = out_key.startswith(FAR_OOD_PREFIX)
        related = RELATED_FAMILY.get(out_key.removeprefix(FAR_OOD_PREFIX)) if far else None
        groups.append({"name": group, "kind": "far-OOD" if far else ("noisy" if in_key != "in" else "clean"),
                       "related_family": related,
                       "noise_level": _level_of(group),
                       "out_set": out_key.removeprefix(FAR_OOD_PREFIX) if far else data.out_name,
                       "in_images": len(sets[in_key]), "out_images": len(sets[out_key]), "rows": rows})

    results = {
        "setting": setting, "base_setting": base_setting,
        "in_distribution": data.in_name, "out_of_distribution": data.out_name,
        "preset": preset, "seeds": seeds, "detectors": keys,
        "noise_levels": list(levels), "noise_family": "gaussian" if levels else None,
        "far_ood_sets": list(FAR_OOD_SETS) if far_ood else [],
        "train_images": len(data.in_train),
        "command": command_line(setting, preset, seeds, out_dir, None if requested is None else keys),
        "groups": groups,
        "skipped": {key: {"detector": LABELS[key], "reason": reason} for key, reason in skipped.items()},
        "paper_reported": {LABELS[key] if key in LABELS else VARIANTS[key].label: value for key, value in paper.items()},
        "roc_seed": seeds[0],
        "wall_seconds": time.perf_counter() - start_all,
        "environment": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                        "cuda": torch.cuda.is_available(), "python": platform.python_version(),
                        "machine": platform.machine()},
    }
    if out_dir is not None:
        results["files"] = write_results(results, roc, out_dir)
    return results


def _level_of(group: str) -> float:
    return float(group.rsplit(" ", 1)[1]) if group.startswith("gaussian noise ") else 0.0


def against_clean(detector, in_test, test_sets: dict) -> dict:
    """How a fitted detector treats each of ``test_sets`` next to the clean in-distribution test
    images: the AUROC of the set against them, and the share of the set flagged at the detector's
    ``threshold_`` (which keeps ``threshold_quantile`` of held-out in-distribution images in).

    Parameters
    ----------
    detector : a fitted detector with ``decision_function`` and ``threshold_``
    in_test : (N, C, 32, 32) clean in-distribution test images
    test_sets : dict of str -> (M, C, 32, 32) images
        E.g. noisy in-distribution images (should stay in: AUROC near 0.5, about 5% flagged) and
        far-OOD sets (:func:`ood_helpers.evaluation.far_ood.far_ood_suite`; should be out: AUROC near 1).

    Returns
    -------
    dict of str -> {"auroc": float in [0, 1], "flagged": float in [0, 1]}

    Raises
    ------
    InputError, NotFittedError
        From the detector, for bad images or an unfitted detector.
    """
    if not isinstance(test_sets, dict) or not test_sets:
        raise InputError(f"test_sets: expected a non-empty dict of name -> images, got {type(test_sets).__name__}. "
                         f"Fix: e.g. test_sets=far_ood_suite(data.channels).")
    if not hasattr(detector, "decision_function"):
        raise InputError(f"detector: expected a detector with decision_function and threshold_, got "
                         f"{type(detector).__name__}. Fix: pass a fitted OODDetector or baseline.")
    clean = detector.decision_function(in_test)   # raises NotFittedError before threshold_ is read
    results = {}
    for name, images in test_sets.items():
        scores = detector.decision_function(images)
        results[name] = {"auroc": metrics.auroc(clean, scores), "flagged": float(np.mean(scores > detector.threshold_))}
    return results


# -- output -----------------------------------------------------------------------------------------
def _group_title(results: dict, group: dict) -> str:
    head = (f"{results['setting']}: in = {results['in_distribution']}, out = {results['out_of_distribution']}; "
            f"preset {results['preset']}, seeds {' '.join(map(str, results['seeds']))}")
    if group["name"] == "clean":
        return f"{head} — clean in-distribution test images"
    if group.get("kind") == "far-OOD":
        kind = (f"its kind is that of the outlier family {group['related_family']}, made from training images"
                if group.get("related_family") else "no outlier family of its kind: a held-out check")
        return (f"{head} — far-OOD sanity set: clean in-distribution test images against {group['out_set']} "
                f"(synthetic, never seen in training; {kind})")
    return (f"{head} — in-distribution test images + Gaussian noise (std {group['noise_level']:g}), "
            f"still counted as in-distribution")


def format_table(results: dict) -> str:
    """The comparison as Markdown tables (one per test condition), readable in a terminal too."""
    lines = []
    auroc_head = "AUROC (mean ± std)" if len(results["seeds"]) > 1 else "AUROC"
    header = ["detector", auroc_head, "AUPR", "FPR95", "train s", "score s", PAPER_COLUMN]
    # columns that older results files lack, and the literature column only where a number exists
    origins = any(row.get("origin") for group in results["groups"] for row in group["rows"])
    literature = any(row.get("literature_reported") for group in results["groups"] for row in group["rows"])
    header += [LITERATURE_COLUMN] * literature + [ORIGIN_COLUMN] * origins
    for group in results["groups"]:
        rows = []
        for row in group["rows"]:
            auroc = format_value(row["auroc_mean"])
            if row["auroc_std"] is not None:
                auroc += f" ± {row['auroc_std']:.4f}"
            reported = row.get("literature_reported")
            rows.append([row["detector"], auroc, row["aupr_mean"], row["fpr95_mean"],
                         format_value(row["train_seconds"], 1), format_value(row["score_seconds"], 1),
                         row["paper_reported"]]
                        + [f"{reported['auroc']:.3f} ({reported['source']})" if reported else None] * literature
                        + [row.get("origin", "")] * origins)
        rows += [[skip["detector"], f"skipped: {skip['reason']}"] + [""] * (len(header) - 2)
                 for skip in results["skipped"].values()]
        lines += [f"### {_group_title(results, group)}", "", markdown_table(header, rows)]
    notes = sorted({row["note"] for group in results["groups"] for row in group["rows"] if row["note"]})
    if notes:
        lines += [f"Note: {note}." for note in notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown(results: dict) -> str:
    paper = results["paper_reported"]
    parts = [f"# Comparison: {results['setting']} ({results['in_distribution']} in, "
             f"{results['out_of_distribution']} out)", "",
             "Reproduce with:", "", "```bash", results["command"], "```", "",
             f"Preset `{results['preset']}`, seeds {', '.join(map(str, results['seeds']))}; "
             f"{results['train_images']} in-distribution training images per seed (before each detector's own "
             f"budget cap); {results['groups'][0]['in_images']} in and {results['groups'][0]['out_images']} out "
             f"test images (a fixed draw, the same for every seed). Higher score = more out-of-distribution; "
             f"out-of-distribution is the positive class. AUPR, FPR95 (false-positive rate at 95% true-positive "
             f"rate), train and scoring seconds are means over seeds; scoring covers every test set of the table "
             f"(in, out and noisy copies). Total wall time {results['wall_seconds'] / 60:.1f} min "
             f"(torch {results['environment']['torch']}, torch threads: {results['environment']['torch_threads']}, "
             f"CUDA {'yes' if results['environment']['cuda'] else 'no'}).", ""]
    if paper:
        parts += [f"The column *{PAPER_COLUMN}* holds the AUROC printed in the paper (Tables 1-3) for the "
                  f"same setting, copied as reported; it was not produced by this code and the paper's training "
                  f"budget differs from this preset. The paper's own number belongs to the row "
                  f"*{VARIANTS['paper'].label}*; the paper has no number for *{VARIANTS['ours'].label}*.", ""]
    else:
        parts += [f"The paper reports no numbers for this setting, so *{PAPER_COLUMN}* is empty.", ""]
    if results.get("far_ood_sets"):
        parts += [f"The far-OOD groups score the clean in-distribution test images against synthetic sanity sets "
                  f"({', '.join(results['far_ood_sets'])}; {results['groups'][0]['in_images']} images each, "
                  f"seeded, ood_helpers.evaluation.far_ood) instead of {results['out_of_distribution']}: images with no "
                  f"in-distribution content that every detector should flag.", ""]
    if results["noise_levels"]:
        parts += [f"The noisy groups add Gaussian noise (std {', '.join(map(str, results['noise_levels']))}, seeded) "
                  f"to the in-distribution test images only; they still count as in-distribution.", ""]
    if any(key in VARIANTS for key in results["detectors"]):
        parts += [f"{NEGATIVES_NOTE} The paper's Table 3 ablations and what our additions add: "
                  f"`python -m ood_helpers ablation`.", ""]
    parts += [format_table(results), "", f"![ROC curves, seed {results['roc_seed']}](roc.png)", ""]
    return "\n".join(parts)


def write_results(results: dict, roc: dict, out_dir) -> dict:
    """Write ``results.json``, ``results.md`` and ``roc.png`` into ``out_dir`` together (a temporary
    folder renamed into place, so the folder never mixes two runs); return their final paths.

    Raises
    ------
    ood_helpers.files.OutputPathError
        When ``out_dir`` cannot be written.
    """
    out = Path(out_dir)
    files = {"results_json": str(out / "results.json"), "results_md": str(out / "results.md"),
             "roc_png": str(out / "roc.png")}
    results = {**results, "files": files}
    with atomic_output_dir(out) as work:
        _write_comparison_files(results, roc, work)
    return files


def _write_comparison_files(results: dict, roc: dict, work: Path):
    from matplotlib.figure import Figure  # no pyplot: works headless and leaves notebook backends alone

    from ..teaching.plots import plot_roc_curves

    files = {"results_json": str(work / "results.json"), "results_md": str(work / "results.md"),
             "roc_png": str(work / "roc.png")}

    groups = list(roc)
    ncols = min(2, max(1, len(groups)))
    nrows = max(1, -(-len(groups) // ncols))
    fig = Figure(figsize=(6 * ncols, 6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax in axes[len(groups):]:
        ax.set_axis_off()
    for ax, group in zip(axes, groups):
        plot_roc_curves(roc[group], ax=ax, title=f"{results['setting']}: {group} (seed {results['roc_seed']})")
    fig.tight_layout()
    fig.savefig(files["roc_png"], dpi=110)

    Path(files["results_json"]).write_text(json.dumps(results, indent=2) + "\n")
    Path(files["results_md"]).write_text(_markdown(results))


# -- one detector, one setting ---------------------------------------------------------------------
def reproduce(setting: str, preset=None, seed: int = 0, out_dir=None, progress: bool = True,
              variant: str = "paper") -> dict:
    """Train one variant of the detector (default: the paper's method) on the setting's
    in-distribution train split, score the fixed test draw (2000 in + 2000 out), write
    results.json, results.md, roc.png and detector.pt into ``out_dir``.

    ``variant`` is a key of :data:`ood_helpers.variants.VARIANTS`; the paper's reported AUROC
    (a labelled reference) is shown only for the paper's own variants, for which it reports one.

    With ``out_dir`` the training state is kept there each epoch (classroom and paper presets),
    so an interrupted run restarted with the same folder resumes; state files are named by the
    run's identity, so a run with another seed or configuration in that folder starts afresh. The
    output files are written together when the run is complete: the folder never mixes two runs.

    Under torchrun (``torchrun --standalone --nproc-per-node=N -m ood_helpers reproduce ...``) the
    networks train with DistributedDataParallel over N processes (:mod:`ood_helpers.distributed`);
    every rank scores the test draw, rank 0 alone writes the files and the others wait for it.

    Returns
    -------
    dict
        ``variant``, ``variant_label``, ``origin``, ``auroc``, ``aupr``, ``fpr95``, ``auroc_ci95``,
        ``threshold`` and the rates at it, timings, image counts, per-family validation AUROCs,
        the mean-intensity reference, the paper's reported AUROC for this variant (a labelled
        reference, None when the paper reports none) and ``run_identity``.

    Raises
    ------
    InputError
        Unknown setting or variant, bad seed, or an output folder that cannot be written (checked
        before training).
    DatasetNotFoundError
        The data is missing or damaged.
    TrainingDivergedError
        Training diverged.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    variant = get_variant(variant)
    preset = get_preset(preset)
    seed = check_seed(seed)
    out = check_output_dir(out_dir) if out_dir is not None else None  # before training, not after
    data = load_setting(setting, train_limit=preset.train_limit, seed=seed)
    detector = build_detector(variant, data.channels, preset, seed, progress)
    # state files are named by the run's identity: another seed or preset in this folder starts afresh
    detector.fit(data.in_train, work_dir=out / "train_state" if out else None)
    start = time.perf_counter()
    in_scores, out_scores = detector.decision_function(data.in_test), detector.decision_function(data.out_test)
    score_seconds = time.perf_counter() - start
    reference = MeanIntensityDetector(in_channels=data.channels, seed=seed).fit(data.in_train)
    ref_in, ref_out = reference.decision_function(data.in_test), reference.decision_function(data.out_test)
    results = {"setting": setting, "in": data.in_name, "out": data.out_name, "preset": preset.name, "seed": seed,
               "variant": variant.key, "variant_label": variant.label, "origin": variant.origin_label,
               "preset_fields": preset.as_dict(), "run_identity": detector.run_identity_,
               **metrics.summarize(in_scores, out_scores),
               "auroc_ci95": metrics.bootstrap_auroc_ci(in_scores, out_scores, n_boot=500, seed=seed),
               "train_seconds": detector.history_["train_seconds"], "score_seconds": score_seconds,
               "training": detector.history_["training"],
               "n_train": detector.history_["n_images"], "n_test": {"in": len(in_scores), "out": len(out_scores)},
               "validation_auroc_by_family": detector.validation_,
               "mean_intensity_baseline": metrics.summarize(ref_in, ref_out),
               "paper_reported_auroc": PAPER_REPORTED.get(setting, {}).get(variant.key),
               "threshold": detector.threshold_,
               "fpr_at_threshold": float(np.mean(in_scores > detector.threshold_)),
               "tpr_at_threshold": float(np.mean(out_scores > detector.threshold_))}
    if out is not None and distributed.is_main():   # under torchrun, rank 0 alone writes
        # every file of this run is written together; the folder never mixes two runs
        with atomic_output_dir(out) as work:
            (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
            (work / "results.md").write_text(results_table(results))
            _save_roc(work / "roc.png", {variant.label: (in_scores, out_scores), "mean intensity": (ref_in, ref_out)},
                      f"{data.in_name} in / {data.out_name} out ({preset.name}, seed {seed})")
            detector.save(work / "detector.pt")
    distributed.barrier()   # the other ranks return once rank 0 has written
    return results


def results_table(results: dict) -> str:
    """Markdown table of a :func:`reproduce` result."""
    low, high = results["auroc_ci95"]
    base = results["mean_intensity_baseline"]
    paper = results["paper_reported_auroc"]
    label = results.get("variant_label", VARIANTS["paper"].label)
    rows = [[f"{label}, measured", results["auroc"], f"{low:.4f}-{high:.4f}", results["aupr"], results["fpr95"],
             format_value(results["train_seconds"], 0)],
            ["mean intensity (measured)", base["auroc"], "", base["aupr"], base["fpr95"], "0"]]
    if paper is not None:
        rows.append([f"{label}, reported in the paper (not run here)", paper, "", "", "", ""])
    title = f"{results['in']} in / {results['out']} out, preset {results['preset']}, seed {results['seed']}"
    return (title + "\n\n" + markdown_table(["detector", "AUROC", "95% CI", "AUPR", "FPR95", "train s"], rows)
            + f"\n{NEGATIVES_NOTE}\n")


def _save_roc(path: Path, curves: dict, title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..teaching.plots import plot_roc_curves

    fig, ax = plt.subplots(figsize=(5, 5))
    plot_roc_curves(curves, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the paper's Table 3, like for like, and what each of our additions adds --------------------------
ABLATION_VARIANTS = tuple(dict.fromkeys(TABLE3_VARIANTS + ADDITION_VARIANTS))   # every variant, once
# for each of ours: the variant with the same switches but none of our terms (what our terms alone add)
WITHOUT_DISTANCE = {"ours": "paper", "ours-distance-only": "paper-no-aux"}


def ablation_command(settings, preset: str, seeds, out_dir=None) -> str:
    """The shell command that reproduces an :func:`ablation`, with the data folder relative to the
    working directory (results files are committed: no machine's absolute paths)."""
    parts = ["ablation", "--preset", preset, "--seeds", *map(str, seeds)]
    if tuple(settings) != PAPER_SETTINGS:
        parts += ["--settings", *settings]
    if out_dir is not None:
        parts += ["--out", str(out_dir)]
    return _shell_command(parts)


def _machine() -> dict:
    return {"platform": platform.platform(terse=True), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _paired(values: list, reference: list) -> dict:
    differences = [a - b for a, b in zip(values, reference)]
    return {"per_seed": differences, "mean": _mean(differences), "std": _std(differences)}


def ablation(settings=PAPER_SETTINGS, preset="classroom", seeds=(0, 1, 2), out_dir=None, progress: bool = True) -> dict:
    """The paper's Table 3 like for like, and what each of our additions adds, over seeds.

    For every setting and seed, each variant of :data:`ABLATION_VARIANTS` (``paper``,
    ``paper-no-aux``, ``paper-no-noise``, ``ours``, ``ours-distance-only``; see
    :mod:`ood_helpers.variants`) comes from :func:`ood_helpers.artifacts.get_detector`: read from
    ``$OOD_PRETRAINED_DIR`` or the artifacts folder when a matching file is there (never
    retrained), else trained and saved in the artifacts folder. Every detector of a seed is
    trained on the same in-distribution training draw and scored on the setting's fixed test draw.

    Every variant, the paper's included, trains its classifier with our synthetic negatives made
    from in-distribution training images: the paper never states its negatives.

    Parameters
    ----------
    settings : sequence of str
        Keys of :data:`ood_helpers.data.SETTINGS` (default: the paper's two; its Table 3 covers
        CIFAR-10 in / MNIST out only).
    preset : "quick", "classroom", "paper", a Preset, or None (= ``$OOD_PRESET``, else classroom)
    seeds : sequence of distinct int >= 0
        The standard deviations are over these.
    out_dir : str, Path or None
        Folder for ``results.json`` and ``results.md``, written together
        (:func:`ood_helpers.files.atomic_output_dir`); None = write nothing.
    progress : bool
        Progress bars, and one line per detector saying whether it was loaded or trained.

    Returns
    -------
    dict
        ``preset``, ``seeds``, ``settings``, ``variants`` (each variant's label, origin, switches
        and source), ``results`` (per setting: ``variants``, per variant: ``auroc_per_seed``,
        ``auroc_mean``, ``auroc_std`` (None for one seed), the same for ``aupr`` and ``fpr95``,
        ``run_identities``, ``paper_reported`` and ``paper_reported_in``, ``delta_vs_paper`` and,
        for ours, ``delta_vs_without_distance``), ``command``, ``machine``, ``wall_seconds`` and,
        with ``out_dir``, ``files``. AUROC, AUPR and FPR95 are in [0, 1].

    Raises
    ------
    InputError
        Unknown setting or preset, bad or repeated seeds, an empty selection, or an output folder
        that cannot be written (:class:`~ood_helpers.files.OutputPathError`), all before any data
        is loaded or detector trained.
    DatasetNotFoundError
        The data is missing or damaged.
    ood_helpers.loop.TrainingDivergedError
        A detector's training diverged.
    """
    if isinstance(settings, str):
        settings = [settings]
    settings = list(settings)
    if not settings or len(set(settings)) != len(settings):
        raise InputError(f"settings: expected distinct keys of {', '.join(SETTINGS)}, got {settings!r}. Fix: e.g. "
                         f"settings={list(PAPER_SETTINGS)}.")
    for setting in settings:
        check_choice(setting, tuple(SETTINGS), "settings")
    preset = get_preset(preset)
    seeds = _check_seeds(seeds)
    if out_dir is not None:
        check_output_dir(out_dir)  # before any training, not after
    start = time.perf_counter()
    results = {}
    jobs = tqdm(total=len(settings) * len(seeds) * len(ABLATION_VARIANTS), desc="ablation",
                disable=not progress or not interactive())
    for setting in settings:
        runs = {key: {"metrics": [], "identities": [], "train_seconds": []} for key in ABLATION_VARIANTS}
        data = None
        for seed in seeds:
            data = load_setting(setting, train_limit=preset.train_limit, seed=seed)
            for key in ABLATION_VARIANTS:
                jobs.set_description(f"{setting}, seed {seed}: {key}")
                detector = get_detector(setting, preset, seed, variant=key, data=data, progress=progress,
                                        verbose=progress)
                runs[key]["metrics"].append(metrics.summarize(detector.decision_function(data.in_test),
                                                              detector.decision_function(data.out_test)))
                runs[key]["identities"].append(detector.run_identity_)
                runs[key]["train_seconds"].append(detector.history_["train_seconds"])
                jobs.update(1)
        rows = {}
        for key in ABLATION_VARIANTS:
            variant = VARIANTS[key]
            row = {"label": variant.label, "origin": variant.origin, "origin_label": variant.origin_label,
                   "flags": variant.flags, "source": variant.source}
            for name in ("auroc", "aupr", "fpr95"):
                values = [m[name] for m in runs[key]["metrics"]]
                row.update({f"{name}_per_seed": values, f"{name}_mean": _mean(values), f"{name}_std": _std(values)})
            row["train_seconds_per_seed"] = runs[key]["train_seconds"]
            row["run_identities"] = runs[key]["identities"]
            row["paper_reported"] = PAPER_REPORTED.get(setting, {}).get(key)
            row["paper_reported_in"] = REPORTED_IN.get(setting, {}).get(key)
            rows[key] = row
        for key, row in rows.items():
            row["delta_vs_paper"] = _paired(row["auroc_per_seed"], rows["paper"]["auroc_per_seed"])
            if key in WITHOUT_DISTANCE:
                twin = WITHOUT_DISTANCE[key]
                row["delta_vs_without_distance"] = {"variant": twin,
                                                    **_paired(row["auroc_per_seed"], rows[twin]["auroc_per_seed"])}
        results[setting] = {"in_distribution": data.in_name, "out_of_distribution": data.out_name,
                            "train_images": len(data.in_train), "in_images": len(data.in_test),
                            "out_images": len(data.out_test), "variants": rows}
    jobs.close()
    out = {"kind": "ablation", "preset": preset.name, "preset_fields": preset.as_dict(), "seeds": seeds,
           "settings": settings, "variants": {key: VARIANTS[key].as_dict() for key in ABLATION_VARIANTS},
           "negatives": NEGATIVES_NOTE, "results": results,
           "command": ablation_command(settings, preset.name, seeds, out_dir),
           "machine": _machine(), "wall_seconds": time.perf_counter() - start}
    if out_dir is not None:
        target = Path(out_dir)
        out["files"] = {"results_json": str(target / "results.json"), "results_md": str(target / "results.md")}
        with atomic_output_dir(target) as work:
            (work / "results.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
            (work / "results.md").write_text(ablation_markdown(out))
    return out


def _mean_std(row: dict, name: str = "auroc") -> str:
    text = format_value(row[f"{name}_mean"])
    return text if row[f"{name}_std"] is None else f"{text} ± {row[f'{name}_std']:.4f}"


def _per_seed(values) -> str:
    return ", ".join(f"{value:.4f}" for value in values)


def _delta(paired: dict | None) -> str:
    if paired is None or paired["mean"] is None:
        return "—"
    text = f"{paired['mean']:+.4f}"
    return text if paired["std"] is None else f"{text} ± {paired['std']:.4f}"


def ablation_tables(results: dict) -> str:
    """The two tables of an :func:`ablation` per setting as Markdown: (a) the paper's Table 3 like
    for like (paper, paper-no-aux, paper-no-noise, beside the paper's reported AUROC), and (b)
    what our additions add (paper -> ours -> ours-distance-only, with the differences)."""
    seeds = results["seeds"]
    spread = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    lines = []
    for setting, block in results["results"].items():
        rows = block["variants"]
        head = (f"{setting}: in = {block['in_distribution']}, out = {block['out_of_distribution']}; preset "
                f"{results['preset']}, seeds {' '.join(map(str, seeds))}")
        table3 = [[rows[key]["label"], rows[key]["origin_label"], _mean_std(rows[key]),
                   _per_seed(rows[key]["auroc_per_seed"]), _mean_std(rows[key], "aupr"), _mean_std(rows[key], "fpr95"),
                   rows[key]["paper_reported"]] for key in TABLE3_VARIANTS]
        lines += [f"### {head} — (a) Table 3, like for like", "",
                  markdown_table(["row", "origin", f"our AUROC ({spread})", "AUROC per seed", "AUPR", "FPR95",
                                  PAPER_COLUMN], table3)]
        reported = [f"{key}: {REPORTED_IN[setting][key]}" for key in TABLE3_VARIANTS
                    if rows[key]["paper_reported"] is not None]
        lines += [f"*{PAPER_COLUMN}*: copied from the paper ({'; '.join(reported) if reported else 'none'}), not "
                  f"produced by this code; the paper trains 100 + 100 epochs on all training images. The paper's "
                  f"Table 3 covers CIFAR-10 in / MNIST out only." + (" It reports no number for the other rows of this "
                                                                      "setting." if len(reported) < 3 else ""), ""]
        additions = []
        for key in ADDITION_VARIANTS:
            row = rows[key]
            twin = row.get("delta_vs_without_distance")
            additions.append([row["label"], row["origin_label"], _mean_std(row), _per_seed(row["auroc_per_seed"]),
                              "reference" if key == "paper" else _delta(row["delta_vs_paper"]),
                              "—" if twin is None else f"{_delta(twin)} (vs {twin['variant']})",
                              _mean_std(row, "aupr"), _mean_std(row, "fpr95")])
        lines += [f"### {head} — (b) what our additions add", "",
                  markdown_table(["row", "origin", f"our AUROC ({spread})", "AUROC per seed",
                                  "Δ AUROC vs paper's method", "Δ AUROC from our terms alone", "AUPR",
                                  "FPR95"], additions),
                  "Δ: paired per seed (same training draw), mean ± std over seeds. *ours* adds the two latent distances "
                  "to the paper's method; *ours-distance-only* replaces the z injection by "
                  "them, so our terms alone are measured against *paper-no-aux* (same switches without them).", ""]
    return "\n".join(lines).rstrip() + "\n"


def ablation_markdown(results: dict) -> str:
    """``results.md`` of an :func:`ablation`: how to reproduce it, what was measured, the tables."""
    machine = results["machine"]
    parts = ["# The paper's Table 3, like for like, and what our additions add", "",
             "Reproduce with:", "", "```bash", results["command"], "```", "",
             f"Preset `{results['preset']}`, seeds {', '.join(map(str, results['seeds']))}. For every setting and "
             f"seed, every row is one detector (ood_helpers.variants), loaded from the pretrained or artifacts folder "
             f"when a matching one is there, else trained; all rows of a seed share one in-distribution training "
             f"draw and every row is scored on the setting's fixed test draw. Higher score = more "
             f"out-of-distribution; out-of-distribution is the positive class. Rows labelled *paper's method* are "
             f"our reimplementation of the paper (Fig. 2) and its own ablations; rows labelled *ours* add our "
             f"two latent distances (nearest training latent, two-sided Mahalanobis), which the paper does not have.", "",
             results["negatives"], "",
             *([f"At the `{results['preset']}` preset every row's autoencoder, the paper's rows included, also has "
                f"our linear path beside the ResNet (`Preset.ae_linear_path`, ood_helpers.networks.Encoder), so that a "
                f"CPU budget reconstructs CIFAR-10 at >= 20 dB; the `paper` preset has none.", ""]
               if get_preset(results["preset"]).ae_linear_path else []),
             f"Machine: {machine['platform']} ({machine['machine']}, {machine['cpus']} CPUs, torch {machine['torch']}, "
             f"{machine['torch_threads']} torch threads, CUDA {machine['cuda_device'] or 'no'}); "
             f"wall time {results['wall_seconds'] / 60:.1f} min.", "",
             ablation_tables(results)]
    return "\n".join(parts)


def noise_robustness(detector, data: OODData, families=NOISE_FAMILIES, levels=(0.0,) + NOISE_LEVELS,
                     seed: int = 0) -> list[dict]:
    """How noise on in-distribution test images changes detection, one row per (family, level).

    ``auroc_vs_ood``: noisy in-distribution test images against the clean OOD test set (should
    stay high: noise must not make normal images look abnormal). ``fpr_noisy_in``: share of noisy
    in-distribution images flagged at the threshold that keeps 95% of clean ones (0.05 = no change).
    ``auroc_noisy_ood``: clean in-distribution against noisy OOD images (noisy outliers still caught).
    """
    clean_in, clean_out = detector.decision_function(data.in_test), detector.decision_function(data.out_test)
    rows = []
    for family in families:
        for level in levels:
            generator = torch.Generator().manual_seed(seed)
            noisy_in = detector.decision_function(add_noise(data.in_test, family, level, generator))
            noisy_out = detector.decision_function(add_noise(data.out_test, family, level, generator))
            rows.append({"family": family, "level": float(level),
                         "auroc_vs_ood": metrics.auroc(noisy_in, clean_out),
                         "auroc_noisy_ood": metrics.auroc(clean_in, noisy_out),
                         "fpr_noisy_in": metrics.fpr_at_threshold(clean_in, noisy_in, 0.95)})
    return rows


def robustness_table(rows: list[dict]) -> str:
    """Markdown table of :func:`noise_robustness` rows."""
    return markdown_table(["noise", "level", "AUROC noisy-in vs OOD", "AUROC in vs noisy-OOD",
                           "FPR on noisy in (95% clean kept)"],
                          [[r["family"], format_value(r["level"], 2), r["auroc_vs_ood"], r["auroc_noisy_ood"],
                            format_value(r["fpr_noisy_in"], 3)] for r in rows])


def robustness(setting: str, preset=None, seed: int = 0, out_dir=None, families=NOISE_FAMILIES,
               levels=(0.0,) + NOISE_LEVELS, progress: bool = True) -> dict:
    """Noise robustness with and without noise augmentation (the paper's claim), as rows + table.

    The two detectors are the paper's method and its ablation without noise augmentation
    (variants ``paper`` and ``paper-no-noise``), from :func:`artifacts.get_detector`: reused when
    the notebooks or a comparison already trained them, trained and saved there otherwise.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    preset = get_preset(preset)
    seed = check_seed(seed)
    if out_dir is not None:
        check_output_dir(out_dir)
    data = get_data(setting, preset, seed)
    result = {"setting": setting, "preset": preset.name, "seed": seed, "rows": {}}
    for augment in (True, False):
        detector = get_detector(setting, preset, seed, variant="paper" if augment else "paper-no-noise", data=data,
                                progress=progress)
        result["rows"]["with augmentation" if augment else "without augmentation"] = noise_robustness(
            detector, data, families, levels, seed)
    if out_dir is not None:
        with atomic_output_dir(out_dir) as work:
            (work / "robustness.json").write_text(json.dumps(result, indent=2))
            (work / "robustness.md").write_text("".join(f"### {name}\n\n{robustness_table(rows)}\n"
                                                        for name, rows in result["rows"].items()))
    return result
