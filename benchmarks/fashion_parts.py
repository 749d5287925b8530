"""Which part of ours separates what, on the Fashion-MNIST / MNIST pair (issue 23, item 3).

For one setting, preset and seed: the fitted ``ours`` detector (from the artifacts cache, trained
if missing) scores, part by part (classifier logit = the paper's method's score, latent distance,
mean difference image, and the combined score), beside PCA reconstruction:

- a *validation* set: in-distribution training images the detector never saw (the complement of
  the preset's training draw), against the synthetic outlier families made from them and the
  far-OOD sets: everything any choice may be based on;
- the test pair (in-distribution test images against the outliers), for diagnosis only: nothing
  here is chosen on it.

It also saves the validation images each part flags most (its false alarms) and the test outliers
it misses most, as PNG grids, and ranks candidate scores (sums of parts, each standardised on the
validation images) by their mean AUROC over the synthetic families: the only ranking a choice could
use. Two candidate parts are not in the detector: the distance of the normalised z to its k-th
nearest training latent (k = 1, 10; Sun et al. 2022, ICML) and the mean squared difference.

    OOD_DATA_DIR=../shared/data python benchmarks/fashion_parts.py --setting fmnist-mnist --preset quick \\
        --seed 0 --out results/fashion-parts/fmnist-mnist-quick
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood_helpers.evaluation import metrics  # noqa: E402
from ood_helpers.artifacts import get_data, get_detector  # noqa: E402
from ood_helpers.baselines import make_detector  # noqa: E402
from ood_helpers.data import SETTINGS, load_images, to_geometry  # noqa: E402
from ood_helpers.evaluation.far_ood import far_ood_suite  # noqa: E402
from ood_helpers.detector import OODDetector  # noqa: E402
from ood_helpers.ours import fit_density, mahalanobis  # noqa: E402
from ood_helpers.outliers import check_families, families_for, make_outliers  # noqa: E402
from ood_helpers.presets import get_preset  # noqa: E402
from ood_helpers.evaluation.reports import markdown_table  # noqa: E402
from ood_helpers.files import write_report  # noqa: E402

VALIDATION_SEED = 20261205
PARTS = ("classifier", "latent", "latent_two_sided", "difference_l1", "score")
CANDIDATES = ("classifier", "latent", "latent_two_sided", "difference_l1", "difference_l2", "knn1", "knn10")
PART_LABELS = {"classifier": "classifier logit (the paper's method's score)",
               "latent": "Mahalanobis distance of z (our earlier latent term)",
               "latent_two_sided": "two-sided Mahalanobis term, |d - mean| / std (our earlier term)",
               "difference_l1": "mean difference image", "score": "ours: today's score", "pca": "PCA reconstruction",
               "difference_l2": "mean squared difference", "knn1": "z: 1st-neighbour distance",
               "knn10": "z: 10th-neighbour distance"}


SHORT = {"classifier": "classifier", "latent": "latent Mahalanobis", "latent_two_sided": "latent two-sided",
         "difference_l1": "mean |difference|", "difference_l2": "mean difference²", "knn1": "z 1-NN", "knn10": "z 10-NN"}


def knn_distance(z: torch.Tensor, bank: torch.Tensor, k: int) -> np.ndarray:
    """Distance of each normalised z (N, D) to its k-th nearest normalised training latent (Sun et al. 2022)."""
    z, bank = torch.nn.functional.normalize(z.float(), dim=1), torch.nn.functional.normalize(bank.float(), dim=1)
    return torch.cat([torch.cdist(part, bank).topk(k, largest=False).values[:, -1] for part in z.split(500)]).numpy()


def candidate_table(scores: dict, families: list, far: list) -> list:
    """Every sum of the classifier and up to three other candidate parts (and each part alone), each part
    standardised on the validation images: [name, mean / min family AUROC, min far-OOD AUROC, test AUROC],
    best mean family AUROC first."""
    reference = scores["validation (in)"]
    stats = {part: (reference[part].mean(), reference[part].std()) for part in CANDIDATES}

    def total(parts, name):
        return sum((scores[name][part] - stats[part][0]) / stats[part][1] for part in parts)

    combos = [(part,) for part in CANDIDATES] + [("classifier",) + rest for r in (1, 2, 3)
                                                  for rest in itertools.combinations(CANDIDATES[1:], r)
                                                  if not {"latent", "latent_two_sided"} <= set(rest)]
    rows = []
    for parts in combos:
        valid = total(parts, "validation (in)")
        family = [metrics.auroc(valid, total(parts, name)) for name in families]
        far_ood = [metrics.auroc(valid, total(parts, name)) for name in far]
        rows.append([" + ".join(SHORT[p] for p in parts), float(np.mean(family)), min(family), min(far_ood),
                     metrics.auroc(total(parts, "test in"), total(parts, "test out"))])
    return sorted(rows, key=lambda row: -row[1])


def validation_images(setting: str, preset, seed: int, n: int) -> torch.Tensor:
    """``n`` in-distribution training images outside the preset's training draw of ``seed``."""
    spec = SETTINGS[setting]
    images, _ = load_images(spec["in_data"], "train", classes=spec["in_classes"])
    limit = get_preset(preset).train_limit
    used = torch.zeros(len(images), dtype=torch.bool)
    if limit is not None and limit < len(images):
        used[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]] = True
    else:
        raise SystemExit("the preset trains on every image: no validation images are left")
    unused = torch.nonzero(~used).flatten()
    pick = unused[torch.randperm(len(unused), generator=torch.Generator().manual_seed(VALIDATION_SEED))[:n]]
    return to_geometry(images[pick.sort().values], 1 if spec["in_data"] != "cifar10" else 3)


def grid(images: torch.Tensor, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(1.2 * len(images), 1.6))
    for axis, image in zip(np.atleast_1d(axes), images):
        axis.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        axis.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def rule(runs: dict) -> list:
    """The choice rule over several runs (name -> that run's ``candidates`` rows): each candidate scored
    by its mean family AUROC averaged over the runs; [name, that average, worst run, best run], best
    first. Only candidates ranked in every run take part."""
    tables = [{row[0]: row[1] for row in rows} for rows in runs.values()]
    names = [name for name in tables[0] if all(name in table for table in tables)]
    rows = [[name, float(np.mean([t[name] for t in tables])), min(t[name] for t in tables),
             max(t[name] for t in tables)] for name in names]
    return sorted(rows, key=lambda row: -row[1])


def rank_runs(folders: list, out: str) -> int:
    """Write the rule's table over the runs in ``folders`` (each holding a results.json) into ``out``."""
    runs = {Path(folder).name: json.loads((Path(folder) / "results.json").read_text())["candidates"]
            for folder in folders}
    rows = rule(runs)
    command = ("python benchmarks/fashion_parts.py --rank-runs " + " ".join(map(str, folders)) + f" --out {out}")
    markdown = ["# The choice rule over the held-out-family runs", "", "Made with:", "", "```bash", command, "```", "",
                "Each candidate score's mean AUROC over the families its classifier never saw, averaged over the "
                f"runs ({', '.join(runs)}); validation images only, no test pair. Each run's own command is in its "
                "results.json.", "",
                markdown_table(["score", "mean over runs", "worst run", "best run"], rows), ""]
    write_report(out, "results", {"command": command, "runs": list(runs), "rule": rows}, "\n".join(markdown))
    print("\n".join(markdown[:12] + [markdown_table(["score", "mean over runs", "worst run", "best run"], rows[:10])]))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank-runs", nargs="+", default=None, metavar="FOLDER",
                        help="only apply the choice rule to these finished runs' results.json and write it to --out")
    parser.add_argument("--setting", default="fmnist-mnist", choices=sorted(SETTINGS))
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000, help="validation images (and images per family)")
    parser.add_argument("--held-out-families", nargs="+", default=None, metavar="FAMILY",
                        help="train ours here without these outlier families and rank the candidates on them only")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.rank_runs:
        return rank_runs(args.rank_runs, args.out)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = get_data(args.setting, args.preset, args.seed)
    held_out = check_families(args.held_out_families, data.channels) if args.held_out_families else ()
    if held_out:   # the classifier never sees these kinds of outlier: the ranking on them is out of sample
        training = [family for family in families_for(data.channels) if family not in held_out]
        ours = OODDetector(data.channels, args.preset, args.seed, outlier_families=training, progress=False)
        ours.fit(data.in_train)
    else:
        ours = get_detector(args.setting, args.preset, args.seed, variant="ours", data=data, progress=False,
                            verbose=False)
    pca = make_detector("pca", data.channels, preset=args.preset, seed=args.seed, progress=False).fit(data.in_train)
    valid = validation_images(args.setting, args.preset, args.seed, args.n)
    generator = torch.Generator().manual_seed(VALIDATION_SEED + 1)
    sets = {"validation (in)": valid}
    for family in families_for(data.channels):
        sets[f"family: {family}"] = make_outliers(valid, families=[family], generator=generator)[0]
    for name, images in far_ood_suite(data.channels, args.n).items():
        sets[f"far-OOD: {name}"] = images
    sets["test in"], sets["test out"] = data.in_test, data.out_test

    bank = ours.score_components(data.in_train)["z"]   # the latents of every training image
    mean, precision = fit_density(lambda z: z, bank)   # one Gaussian: the Mahalanobis candidates
    scores = {}
    for name, images in sets.items():
        parts = ours.score_components(images)
        scores[name] = {part: parts[part] for part in ("classifier", "difference_l1", "difference_l2", "score")}
        scores[name]["latent"] = mahalanobis(parts["z"], mean, precision).numpy()
        for k in (1, 10):
            scores[name][f"knn{k}"] = knn_distance(parts["z"], bank, k)
        scores[name]["pca"] = pca.decision_function(images)
    reference = scores["validation (in)"]["latent"]   # two-sided: |d - mean| / std of validation images
    for values in scores.values():
        values["latent_two_sided"] = np.abs(values["latent"] - reference.mean()) / reference.std()
    families = [name for name in sets if name.startswith("family: ") and (not held_out or name[8:] in held_out)]
    far = [name for name in sets if name.startswith("far-OOD: ")]
    ranking = candidate_table(scores, families, far)
    columns = PARTS + ("pca",)
    rows, table = [], {}
    for name in sets:
        if name in ("validation (in)", "test in"):
            continue
        reference = "test in" if name == "test out" else "validation (in)"
        table[name] = {part: metrics.auroc(scores[reference][part], scores[name][part]) for part in columns}
        rows.append([f"{reference} vs {name}"] + [table[name][part] for part in columns])

    # which images: the validation images each part flags most, the test outliers it misses most
    figures = []
    for part in columns:
        for name, order, title in (("validation (in)", -1, "flags most (false alarms)"),
                                   ("test out", 1, "misses most (outliers ranked most 'in')")):
            index = np.argsort(order * scores[name][part], kind="stable")[:10]
            path = out / f"{part}-{'false-alarms' if order < 0 else 'misses'}.png"
            grid(sets[name][index], path, f"{PART_LABELS[part]}: {name}, {title}")
            figures.append(path.name)

    command = ("OOD_DATA_DIR=../shared/data python benchmarks/fashion_parts.py " +
               " ".join(f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
                        for k, v in vars(args).items() if v is not None))
    header = ["AUROC: in vs out"] + [PART_LABELS[p] for p in columns]
    markdown = [f"# Parts of ours on {args.setting}, preset {args.preset}, seed {args.seed}", "",
                "Made with:", "", "```bash", command, "```", "",
                f"Validation: {len(valid)} in-distribution training images outside the training draw; each "
                f"synthetic family made from them (ood_helpers.outliers), the far-OOD sets "
                f"(ood_helpers.evaluation.far_ood). The last row is the test pair, for diagnosis only: no choice is made "
                f"on it. Wall time {time.perf_counter() - start:.0f} s.", "",
                markdown_table(header, rows), "",
                "## Candidate scores, ranked by the validation families", "",
                "Each part standardised on the validation images, then summed. Ranked by the mean AUROC of "
                "validation images against " + (f"the families the classifier never saw ({', '.join(held_out)}); "
                                                 if held_out else "each synthetic family; ") +
                "the test column is shown for diagnosis and chooses nothing." + (
                    "" if held_out else " The classifier was trained on these same families (other images), so "
                    "its family AUROCs are in-sample for the kind of outlier, and a ranking on them favours it."), "",
                markdown_table(["score", "mean family AUROC", "min family AUROC", "min far-OOD AUROC",
                                "test AUROC (diagnosis only)"], ranking), ""]
    markdown += [f"![{name}]({name})" for name in figures]
    (out / "results.md").write_text("\n".join(markdown) + "\n")
    (out / "results.json").write_text(json.dumps({"command": command, "auroc": table, "candidates": ranking}, indent=1))
    print("\n".join(markdown[:-len(figures)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
