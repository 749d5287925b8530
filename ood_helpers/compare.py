"""The paper's comparison, rebuilt: our detector, its ablations and the baselines side by side.

    from ood_helpers.compare import run_comparison, format_table
    results = run_comparison("mnist-cifar10", preset="quick", seeds=(0,), out_dir="results/compare")
    print(format_table(results))

or from the command line ``python -m ood_helpers compare --setting mnist-cifar10 --preset quick
--seeds 0 --out results/compare``.

Every detector is trained on the same in-distribution training images (``load_setting`` with the
preset's ``train_limit``, drawn per seed) and scored on the same fixed test draw. For each one:
AUROC (mean and standard deviation over seeds), AUPR and FPR at 95% TPR (means), train and
scoring seconds (means). The paper's own numbers sit in a separate "paper (reported)" column;
they were not reproduced by this code.

Settings: those of :data:`ood_helpers.data.SETTINGS` plus two noisy ones, ``mnist-cifar10+noise``
and ``cifar10-mnist+noise``: the in-distribution *test* images are corrupted with Gaussian noise
of standard deviation 0.05, 0.1 and 0.2 (seeded) and still count as in-distribution; the
out-of-distribution set is the paper's. One row group per noise level (after the clean one)
reports how well each detector still separates noisy in-distribution images from real outliers.
"""
from __future__ import annotations

import json
import platform
import shlex
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics
from .artifacts import get_detector
from .baselines import BASELINES, PYOD_BASELINES, PYOD_MISSING, make_detector, pyod_available
from .data import SETTINGS, data_root, load_setting
from .noise import add_noise
from .presets import PRESETS, default_preset_name, get_preset
from .validation import InputError, check_choice

NOISE_LEVELS = (0.05, 0.1, 0.2)
NOISE_SEED = 20240602          # fixed: the noisy test images are the same for every seed and detector
NOISY_SETTINGS = {"mnist-cifar10+noise": "mnist-cifar10", "cifar10-mnist+noise": "cifar10-mnist"}
COMPARE_SETTINGS = tuple(SETTINGS) + tuple(NOISY_SETTINGS)

# our detector and its ablations: key -> (label, OODDetector flags)
OURS = {
    "ours": ("ours (full)", dict(latent_input=True, noise_augment=True)),
    "ours-no-latent": ("ours w/o latent input", dict(latent_input=False, noise_augment=True)),
    "ours-no-noise": ("ours w/o noise aug", dict(latent_input=True, noise_augment=False)),
}
AE_DIFFERENCE = "ae-difference"
LABELS = {**{key: label for key, (label, _) in OURS.items()},
          AE_DIFFERENCE: "autoencoder difference (mean |I - D(E(I))|)",
          **{key: cls.name for key, cls in BASELINES.items()}}
DETECTORS = tuple(LABELS)   # the order of the table

# the paper's Tables 1-3 (AUROC), keyed by detector; shown as reported, never recomputed
PAPER_REPORTED = {
    "mnist-cifar10": {"pixelcnn": 0.6141, "dsebm": 0.9554, "vae": 0.9643, "ours": 0.9718},
    "cifar10-mnist": {"pixelcnn": 0.5450, "dsebm": 0.5725, "vae": 0.5725, "ours": 0.5908,
                      "ours-no-latent": 0.5624, "ours-no-noise": 0.5873},
}
PAPER_COLUMN = "paper (reported)"


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
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seeds: expected non-negative integers, got {seed!r}.")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds: expected distinct seeds, got {seeds}.")
    return [int(seed) for seed in seeds]


def command_line(setting: str, preset: str, seeds, out_dir, detectors=None) -> str:
    """The shell command that reproduces a comparison (data folder included)."""
    parts = ["python", "-m", "ood_helpers", "compare", "--setting", setting, "--preset", preset,
             "--seeds", *map(str, seeds)]
    if out_dir is not None:
        parts += ["--out", str(out_dir)]
    if detectors is not None:
        parts += ["--detectors", *detectors]
    return f"OOD_DATA_DIR={shlex.quote(str(data_root()))} " + " ".join(shlex.quote(part) for part in parts)


# -- one run ----------------------------------------------------------------------------------------
def _test_sets(data, levels) -> dict:
    """Group name -> in-distribution test images (clean first, then one noisy copy per level)."""
    sets = {"clean": data.in_test}
    for index, level in enumerate(levels):
        generator = torch.Generator().manual_seed(NOISE_SEED + index)
        sets[f"gaussian noise {level:g}"] = add_noise(data.in_test, "gaussian", level, generator)
    return sets


def _fit_ours(key, setting, data, preset, seed, progress):
    """Our detector (or an ablation) through the artifacts cache: the notebooks and a later
    comparison reuse what one run trained. Train seconds are those of the original fit."""
    _, flags = OURS[key]
    detector = get_detector(setting, preset, seed, data=data, progress=progress, verbose=False, **flags)
    return detector, detector.history_["train_seconds"]


def _score_all(score, in_sets: dict, out_test) -> tuple[dict, np.ndarray, float]:
    start = time.perf_counter()
    out_scores = score(out_test)
    in_scores = {group: score(images) for group, images in in_sets.items()}
    return in_scores, out_scores, time.perf_counter() - start


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
        (None = ``$OOD_PRESET``, else paper with a GPU, else classroom).
    seeds : seeds to repeat everything with (training draw, weights, noise); AUROC std is over these.
    out_dir : folder for ``results.json``, ``results.md`` and ``roc.png`` (created); None = write nothing.
    detectors : keys or labels of :data:`DETECTORS` to run (None = all). The PyOD peers are noted as
        skipped when PyOD is not installed.
    progress : tqdm progress bars.

    Returns a dict with ``groups`` (one per test condition, each with ``rows``: one per detector
    with ``auroc_mean``, ``auroc_std``, ``auroc_per_seed``, ``aupr_mean``, ``fpr95_mean``,
    ``train_seconds``, ``score_seconds``, ``paper_reported``), ``skipped`` and the run's metadata.
    """
    setting = check_choice(setting, COMPARE_SETTINGS, "setting")
    preset = default_preset_name() if preset is None else check_choice(preset, tuple(PRESETS), "preset")
    seeds = _check_seeds(seeds)
    requested = None if detectors is None else resolve_detectors(detectors)
    keys = requested if requested is not None else list(DETECTORS)
    base_setting = NOISY_SETTINGS.get(setting, setting)
    levels = NOISE_LEVELS if setting in NOISY_SETTINGS else ()
    train_limit = get_preset(preset).train_limit

    skipped = {}
    if not pyod_available():
        skipped.update({key: PYOD_MISSING for key in keys if key in PYOD_BASELINES})
    run_keys = [key for key in keys if key not in skipped]

    start_all = time.perf_counter()
    per_seed = {key: {"metrics": [], "train": [], "score": [], "notes": set()} for key in run_keys}
    roc: dict = {}
    data = None
    jobs = tqdm(total=len(seeds) * len(run_keys), desc="compare", disable=not progress)
    for seed_index, seed in enumerate(seeds):
        data = load_setting(base_setting, train_limit=train_limit, seed=seed)
        in_sets = _test_sets(data, levels)
        fitted_ours = {}
        for key in run_keys:
            if key in skipped:  # a peer that failed on an earlier seed
                continue
            jobs.set_description(f"seed {seed}: {LABELS[key]}")
            note = ""
            try:
                if key in OURS:
                    detector, train_seconds = _fit_ours(key, base_setting, data, preset, seed, progress)
                    fitted_ours[key] = (detector, train_seconds)
                    score = detector.score
                elif key == AE_DIFFERENCE:
                    if "ours" in fitted_ours:
                        detector, train_seconds = fitted_ours["ours"]
                        note = "same autoencoder as ours (full), no extra training; train s = that detector's"
                    else:
                        detector, train_seconds = _fit_ours("ours", base_setting, data, preset, seed, progress)
                        fitted_ours["ours"] = (detector, train_seconds)
                        note = "autoencoder of a full detector trained for this row"

                    def score(images, detector=detector):
                        return detector.score_components(images)["difference_l1"]
                else:
                    detector = make_detector(key, data.channels, preset=preset, seed=seed, progress=progress)
                    begin = time.perf_counter()
                    detector.fit(data.in_train)
                    train_seconds = time.perf_counter() - begin
                    score = detector.score
                in_scores, out_scores, score_seconds = _score_all(score, in_sets, data.out_test)
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
            record["metrics"].append({group: metrics.summarize(in_scores[group], out_scores) for group in in_sets})
            record["train"].append(train_seconds)
            record["score"].append(score_seconds)
            if note:
                record["notes"].add(note)
            if seed_index == 0:
                for group in in_sets:
                    roc.setdefault(group, {})[LABELS[key]] = (in_scores[group], out_scores)
            jobs.update(1)
    jobs.close()

    paper = PAPER_REPORTED.get(base_setting, {})
    groups = []
    for group in _test_sets_names(levels):
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
                "note": "; ".join(sorted(record["notes"])),
            })
        groups.append({"name": group, "noise_level": _level_of(group),
                       "in_images": len(data.in_test), "out_images": len(data.out_test), "rows": rows})

    results = {
        "setting": setting, "base_setting": base_setting,
        "in_distribution": data.in_name, "out_of_distribution": data.out_name,
        "preset": preset, "seeds": seeds, "detectors": keys,
        "noise_levels": list(levels), "noise_family": "gaussian" if levels else None,
        "train_images": len(data.in_train),
        "command": command_line(setting, preset, seeds, out_dir, None if requested is None else keys),
        "groups": groups,
        "skipped": {key: {"detector": LABELS[key], "reason": reason} for key, reason in skipped.items()},
        "paper_reported": {LABELS[key]: value for key, value in paper.items()},
        "roc_seed": seeds[0],
        "wall_seconds": time.perf_counter() - start_all,
        "environment": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                        "cuda": torch.cuda.is_available(), "python": platform.python_version(),
                        "machine": platform.machine()},
    }
    if out_dir is not None:
        results["files"] = write_results(results, roc, out_dir)
    return results


def _test_sets_names(levels) -> list[str]:
    return ["clean"] + [f"gaussian noise {level:g}" for level in levels]


def _level_of(group: str) -> float:
    return 0.0 if group == "clean" else float(group.rsplit(" ", 1)[1])


# -- output -----------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (the autoencoder-difference label holds pipes)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _group_title(results: dict, group: dict) -> str:
    head = (f"{results['setting']}: in = {results['in_distribution']}, out = {results['out_of_distribution']}; "
            f"preset {results['preset']}, seeds {' '.join(map(str, results['seeds']))}")
    if group["name"] == "clean":
        return f"{head} — clean in-distribution test images"
    return (f"{head} — in-distribution test images + Gaussian noise (std {group['noise_level']:g}), "
            f"still counted as in-distribution")


def format_table(results: dict) -> str:
    """The comparison as markdown tables (one per test condition), readable in a terminal too."""
    lines = []
    n_seeds = len(results["seeds"])
    auroc_head = "AUROC (mean ± std)" if n_seeds > 1 else "AUROC"
    for group in results["groups"]:
        lines += [f"### {_group_title(results, group)}", "",
                  f"| detector | {auroc_head} | AUPR | FPR95 | train s | score s | {PAPER_COLUMN} |",
                  "|---|---|---|---|---|---|---|"]
        for row in group["rows"]:
            auroc = _fmt(row["auroc_mean"])
            if row["auroc_std"] is not None:
                auroc += f" ± {row['auroc_std']:.4f}"
            lines.append(f"| {_cell(row['detector'])} | {auroc} | {_fmt(row['aupr_mean'])} | "
                         f"{_fmt(row['fpr95_mean'])} | {_fmt(row['train_seconds'], 1)} | "
                         f"{_fmt(row['score_seconds'], 1)} | "
                         f"{_fmt(row['paper_reported'])} |")
        for skip in results["skipped"].values():
            lines.append(f"| {_cell(skip['detector'])} | skipped: {_cell(skip['reason'])} | | | | | |")
        lines.append("")
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
                  f"budget differs from this preset.", ""]
    else:
        parts += [f"The paper reports no numbers for this setting, so *{PAPER_COLUMN}* is empty.", ""]
    if results["noise_levels"]:
        parts += [f"The noisy groups add Gaussian noise (std {', '.join(map(str, results['noise_levels']))}, seeded) "
                  f"to the in-distribution test images only; they still count as in-distribution.", ""]
    parts += [format_table(results), "", f"![ROC curves, seed {results['roc_seed']}](roc.png)", ""]
    return "\n".join(parts)


def write_results(results: dict, roc: dict, out_dir) -> dict:
    """Write ``results.json``, ``results.md`` and ``roc.png`` into ``out_dir``; return their paths."""
    from matplotlib.figure import Figure  # no pyplot: works headless and leaves notebook backends alone

    from .plots import plot_roc_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results_json": str(out / "results.json"), "results_md": str(out / "results.md"),
             "roc_png": str(out / "roc.png")}
    results = {**results, "files": files}

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
    return files


# -- command line -----------------------------------------------------------------------------------
def add_compare_arguments(parser) -> None:
    """Add the ``compare`` subcommand's arguments to an ``argparse`` parser."""
    parser.add_argument("--setting", required=True, choices=COMPARE_SETTINGS, help="benchmark setting")
    parser.add_argument("--preset", default=None, choices=tuple(PRESETS),
                        help="training budget of every detector (default: $OOD_PRESET, else auto)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to repeat with (default: 0)")
    parser.add_argument("--out", default=None, help="output folder for results.json, results.md and roc.png")
    parser.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                        help=f"run only these ({', '.join(DETECTORS)}); default: all")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def main_compare(args) -> int:
    """Run the comparison for parsed ``args`` (see :func:`add_compare_arguments`) and print its table."""
    results = run_comparison(args.setting, preset=getattr(args, "preset", None), seeds=tuple(args.seeds),
                             out_dir=getattr(args, "out", None), detectors=getattr(args, "detectors", None),
                             progress=not getattr(args, "no_progress", False))
    print(format_table(results))
    if "files" in results:
        print(f"Wrote {', '.join(results['files'].values())} ({results['wall_seconds']:.0f} s).")
    return 0
