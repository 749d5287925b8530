"""Helpers used only by the teaching notebooks (``notebooks/0*.ipynb``).

They keep notebook cells to a few lines: a seeded random sample (the CIFAR-10 copy is stored class
by class), one forward pass that returns every score, an image-complexity measure and a rank
correlation (notebook 03), labelled image galleries, the deliberately *cheating* classifier of
notebook 04, a 2-D view of the latent space (05), score-against-noise curves (06), small Markdown
tables and the committed comparison tables (07). Nothing in the detector depends on this module.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .detector import OODDetector
from .models import DifferenceClassifier
from .plots import show_images
from .training import EpochTrainer, difference_image, seed_everything
from .validation import InputError, as_image_batch


# -- data ---------------------------------------------------------------------------------------
def sample(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images drawn at random without replacement (seeded).

    Use this instead of ``images[:n]``: the CIFAR-10 copy is stored class by class, so the first
    images of a split are all airplanes.
    """
    if not 0 < n <= len(images):
        raise InputError(f"n: expected a number of images in [1, {len(images)}], got {n!r}.")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def _spread(n: int, max_points: int) -> torch.Tensor:
    """Indices of at most ``max_points`` of ``n`` items, drawn at random (seeded) so that
    class-ordered data is not cut to its first classes."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_points]


# -- scores ---------------------------------------------------------------------------------------
def detector_scores(detector: OODDetector, images, batch_size: int = 256) -> dict:
    """Every score of a fitted detector from one forward pass over ``images``.

    Returns numpy arrays (N,): ``ours`` (the detector's final score, equal to ``detector.score``),
    ``classifier`` (the classifier logit), ``latent`` (Mahalanobis distance of z),
    ``difference_l1`` / ``difference_l2`` (mean absolute / squared difference image, as in
    ``score_components``), and the tensor ``z`` (N, latent_dim). Higher = more out-of-distribution.
    """
    components = detector.score_components(images, batch_size)
    components["ours"] = components.pop("score")
    return components


def image_complexity(images) -> np.ndarray:
    """How detailed each image is: the mean absolute difference between horizontally and
    vertically neighbouring pixels (a total-variation measure), numpy (N,). Flat images score 0."""
    images = as_image_batch(images)
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return ((horizontal + vertical) / 2).double().numpy()


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two equally long 1-D arrays (ties broken by order)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size or a.size < 2:
        raise InputError(f"a, b: expected two arrays of the same length >= 2, got {a.size} and {b.size}.")
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


# -- pictures -------------------------------------------------------------------------------------
def show_gallery(rows: dict, ncols: int = 8, title: str | None = None, row_height: float = 0.95):
    """One row of images per entry of ``rows`` (name -> images N x C x 32 x 32), name on the left.

    Returns the Figure.
    """
    if not rows:
        raise InputError("rows: expected at least one named batch of images.")
    fig, axes = plt.subplots(len(rows), 1, figsize=(ncols * 0.8 + 1.6, len(rows) * row_height + 0.4),
                             squeeze=False)
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        show_images(images[:ncols], ncols=ncols, ax=ax)
        ax.set_axis_on()
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_latent_projection(z_in, z_out, in_label: str = "in-distribution", out_label: str = "out-of-distribution",
                           ax=None, title: str | None = None, max_points: int = 600):
    """Scatter of the first two principal components of z, in against out.

    The PCA is fitted on the in-distribution latents only (what the detector knows), then both
    sets are projected with it. Returns (Axes, explained variance ratio of the two components).
    """
    from sklearn.decomposition import PCA

    z_in, z_out = np.asarray(z_in, dtype=np.float64), np.asarray(z_out, dtype=np.float64)
    pca = PCA(n_components=2, random_state=0).fit(z_in)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.2))
    for z, label, colour in ((z_in, in_label, "tab:blue"), (z_out, out_label, "tab:red")):
        points = pca.transform(z[_spread(len(z), max_points).numpy()])
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.5, color=colour, label=label)
    ax.set_xlabel("PC 1 of in-distribution z"), ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=2)
    if title:
        ax.set_title(title)
    return ax, pca.explained_variance_ratio_


def plot_error_vs_complexity(groups: dict, ax=None, title: str | None = None, max_points: int = 1000):
    """Scatter of reconstruction error against :func:`image_complexity`, one colour per group.

    ``groups`` maps a label to (images N x C x 32 x 32, errors numpy (N,)). Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.8))
    for (label, (images, errors)), colour in zip(groups.items(), ("tab:blue", "tab:red", "tab:green", "tab:orange")):
        keep = _spread(len(images), max_points)
        ax.scatter(image_complexity(images[keep]), np.asarray(errors)[keep.numpy()], s=4, alpha=0.4,
                   color=colour, label=label)
    ax.set_xlabel("image complexity (mean |neighbouring pixel difference|)")
    ax.set_ylabel("mean |difference|")
    ax.legend(fontsize=8, markerscale=3)
    if title:
        ax.set_title(title)
    return ax


def plot_noise_curves(rows_by_variant: dict, key: str = "auroc_vs_ood", title: str | None = None,
                      ylabel: str | None = None):
    """One panel per noise family: ``key`` against noise level, one line per variant.

    ``rows_by_variant`` maps a variant name (e.g. "with augmentation") to the row list of
    :func:`ood_helpers.experiments.noise_robustness`. Returns the Figure.
    """
    families = list(dict.fromkeys(r["family"] for rows in rows_by_variant.values() for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(2.5 * len(families) + 0.5, 2.8), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for (variant, rows), style in zip(rows_by_variant.items(), ("-o", "--s", ":^", "-.v")):
            picked = sorted((r["level"], r[key]) for r in rows if r["family"] == family)
            ax.plot([p[0] for p in picked], [p[1] for p in picked], style, label=variant, markersize=4)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("noise level")
    axes[0, 0].set_ylabel(ylabel or key)
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def markdown_table(header, rows, digits: int = 4):
    """An IPython ``Markdown`` table; floats are printed with ``digits`` decimals, None as a dash."""
    from IPython.display import Markdown

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def find_results(setting: str, name: str = "results.md", roots=("../results", "results")) -> Path | None:
    """The committed ``results/<setting>/<name>`` seen from a notebook (cwd ``notebooks/``) or the
    repository root; None when it does not exist."""
    for root in roots:
        path = Path(root) / setting / name
        if path.is_file():
            return path
    return None


def committed_results(setting: str, roots=("../results", "results")):
    """The committed comparison ``results/<setting>/results.md`` as an IPython ``Markdown``, or None
    when the file is missing. Image links (the ROC figure beside the file) are dropped, since their
    relative paths do not resolve from a notebook; headings are demoted one level."""
    path = find_results(setting, roots=roots)
    if path is None:
        return None
    from IPython.display import Markdown

    lines, fenced = [], False
    for line in path.read_text().splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and line.lstrip().startswith("!["):
            continue
        lines.append("#" + line if not fenced and line.startswith("#") else line)
    return Markdown("\n".join(lines))


def committed_aurocs(setting: str, roots=("../results", "results")) -> dict | None:
    """Mean AUROC per row group and detector key from the committed ``results/<setting>/results.json``:
    ``{"clean": {"ours": 0.99, ...}, "gaussian noise 0.1": {...}}``; None when the file is missing."""
    import json

    path = find_results(setting, "results.json", roots)
    if path is None:
        return None
    groups = json.loads(path.read_text())["groups"]
    return {group["name"]: {row["key"]: row["auroc_mean"] for row in group["rows"]} for group in groups}


# -- the cheating classifier (notebook 04) --------------------------------------------------------
class CheatingClassifier:
    """A difference-image classifier trained with *real* OOD images as its "out" class.

    Built by :func:`train_cheating_classifier`. ``score(images)`` returns its logit per image
    (numpy (N,), higher = more out-of-distribution), computed on the detector's frozen
    autoencoder outputs exactly like the real classifier.
    """

    def __init__(self, detector: OODDetector, classifier: DifferenceClassifier, history: list):
        self.detector, self.classifier, self.history_ = detector, classifier, history

    @torch.no_grad()
    def score(self, images, batch_size: int = 256) -> np.ndarray:
        images = as_image_batch(images, self.detector.in_channels)
        self.classifier.eval()
        autoencoder, device = self.detector.autoencoder.eval(), self.detector.device
        logits = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            reconstruction, z = autoencoder(batch)
            logits.append(self.classifier(difference_image(batch, reconstruction), z).float().cpu())
        return torch.cat(logits).double().numpy()

    def __repr__(self):
        return f"CheatingClassifier(trained {len(self.history_)} epochs on real OOD images; do not do this)"


def train_cheating_classifier(detector: OODDetector, in_images, ood_images, epochs: int | None = None,
                              seed: int = 0, progress: bool = True) -> CheatingClassifier:
    """DO NOT USE FOR RESULTS: the anti-pattern notebook 04 warns about.

    Trains a fresh classifier of the detector's architecture (difference image + z, on the
    detector's frozen autoencoder) with ``in_images`` as class 0 and *real* out-of-distribution
    images ``ood_images`` as class 1, instead of synthetic outliers. Each step pairs
    ``batch_size`` in images with as many OOD images drawn at random. Same optimiser and
    schedule as the real classifier, no noise augmentation; ``epochs`` defaults to the preset's
    classifier epochs.
    """
    in_images = as_image_batch(in_images, detector.in_channels, "in_images")
    ood_images = as_image_batch(ood_images, detector.in_channels, "ood_images")
    preset, device = detector.preset, detector.device
    generator = seed_everything(seed)
    classifier = DifferenceClassifier(detector.in_channels, preset.width, preset.latent_dim, preset.stem,
                                      True, detector.inject_stage).to(device)
    autoencoder = detector.autoencoder.eval()

    def step(index):
        partners = torch.randint(len(ood_images), (len(index),), generator=generator)
        batch = torch.cat([in_images[index], ood_images[partners]]).to(device)
        labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))]).to(device)
        with torch.no_grad():
            reconstruction, z = autoencoder(batch)
        logits = classifier(difference_image(batch, reconstruction), z)
        return F.binary_cross_entropy_with_logits(logits, labels)

    trainer = EpochTrainer(classifier, preset, epochs or preset.clf_epochs, "cheating classifier", generator,
                           progress=progress)
    history = trainer.run(len(in_images), step)
    return CheatingClassifier(detector, classifier, history)


__all__ = ["sample", "detector_scores", "image_complexity", "rank_correlation", "show_gallery",
           "plot_error_vs_complexity", "plot_latent_projection", "plot_noise_curves", "markdown_table",
           "find_results", "committed_results", "CheatingClassifier", "train_cheating_classifier"]
