"""Pictures for the notebooks: image grids, reconstruction panels, score histograms, ROC curves.

Every function draws into a matplotlib Axes or Figure and returns it, so notebooks stay one line
per picture and the same figure can be saved by the CLI.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import metrics


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    image = image.detach().cpu().float().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, ncols: int = 8, title: str | None = None, ax=None, labels=None):
    """Grid of images (N, C, 32, 32) in [0, 1], one Axes; optional per-image labels underneath."""
    images = images[: ncols * max(1, int(np.ceil(len(images) / ncols)))]
    nrows = int(np.ceil(len(images) / ncols))
    if ax is None:
        _, ax = plt.subplots(figsize=(ncols * 0.9, nrows * 0.9 + (0.4 if title else 0)))
    channels, pad = images.shape[1], 2
    canvas = torch.ones(channels, nrows * (32 + pad) - pad, ncols * (32 + pad) - pad)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[:, r * (32 + pad): r * (32 + pad) + 32, c * (32 + pad): c * (32 + pad) + 32] = image.cpu()
    ax.imshow(_to_hwc(canvas), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if labels is not None:
        for i, label in enumerate(labels[: len(images)]):
            r, c = divmod(i, ncols)
            ax.text(c * (32 + pad) + 16, r * (32 + pad) + 33, str(label), ha="center", va="top", fontsize=7)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_reconstructions(images: torch.Tensor, reconstruction: torch.Tensor, difference: torch.Tensor,
                         scores=None, n: int = 8, title: str | None = None):
    """Three rows: input, reconstruction, difference image (brightened to its own maximum)."""
    n = min(n, len(images))
    fig, axes = plt.subplots(3, n, figsize=(n * 1.1, 3.6), squeeze=False)
    diff = difference[:n]
    diff = diff / diff.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    for row, (name, batch) in enumerate((("input", images), ("reconstruction", reconstruction), ("|difference|", diff))):
        for col in range(n):
            ax = axes[row, col]
            ax.imshow(_to_hwc(batch[col]), cmap="magma" if row == 2 else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 0 and scores is not None:
                ax.set_title(f"{float(scores[col]):.2f}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_score_histograms(in_scores, out_scores, in_label: str = "in-distribution",
                          out_label: str = "out-of-distribution", ax=None, title: str | None = None,
                          marker: float | None = None, bins: int = 50):
    """Overlaid histograms of in and out scores, AUROC in the title; ``marker`` draws a line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    in_scores, out_scores = np.asarray(in_scores, float), np.asarray(out_scores, float)
    both = np.concatenate([in_scores, out_scores])
    low, high = np.quantile(both, [0.001, 0.999])
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    ax.hist(np.clip(in_scores, low, high), bins=edges, alpha=0.6, label=in_label, color="tab:blue")
    ax.hist(np.clip(out_scores, low, high), bins=edges, alpha=0.6, label=out_label, color="tab:red")
    if marker is not None:
        ax.axvline(float(np.clip(marker, low, high)), color="black", lw=2, label="this image")
    ax.set_xlabel("score (higher = more out-of-distribution)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    auc = metrics.auroc(in_scores, out_scores)
    ax.set_title(f"{title + ': ' if title else ''}AUROC {auc:.3f}")
    return ax


def plot_roc_curves(curves: dict, ax=None, title: str | None = None):
    """ROC curves of several detectors on one Axes; ``curves`` maps name -> (in_scores, out_scores)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    for name, (in_scores, out_scores) in curves.items():
        fpr, tpr = metrics.roc_points(in_scores, out_scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {metrics.auroc(in_scores, out_scores):.3f})")
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="chance (0.500)")
    ax.set_xlabel("false-positive rate (in flagged as out)")
    ax.set_ylabel("true-positive rate (out caught)")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def plot_loss_curve(losses, ax=None, title: str = "training loss", ylabel: str = "loss"):
    """Mean loss per epoch."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch"), ax.set_ylabel(ylabel), ax.set_title(title)
    return ax
