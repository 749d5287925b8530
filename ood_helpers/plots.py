"""Pictures for the notebooks: image grids and galleries, reconstruction panels, score histograms,
ROC curves, loss curves, a 2-D view of the latent space, error against image complexity and
score-against-noise curves.

Every function draws into a matplotlib Axes or Figure and returns it, so notebooks stay one line
per picture and the same figure can be saved by the CLI.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import metrics
from .validation import InputError


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    image = image.detach().cpu().float().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, ncols: int = 8, title: str | None = None, ax=None, labels=None):
    """A grid of images on one Axes, with optional labels underneath.

    Parameters
    ----------
    images : torch.Tensor (N, C, 32, 32)
        Values in [0, 1] (clipped), C = 1 (gray) or 3 (RGB).
    ncols : int
        Images per row; rows follow from N.
    title : str or None
    ax : matplotlib Axes or None
        Where to draw; None creates a figure.
    labels : sequence or None
        One label per image, printed under it.

    Returns
    -------
    matplotlib.axes.Axes
    """
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
    """Three rows of panels: input, reconstruction, difference image.

    Parameters
    ----------
    images, reconstruction, difference : torch.Tensor (N, C, 32, 32)
        Values in [0, 1], e.g. from ``detector.explain(images)``; each difference image is
        brightened to its own maximum.
    scores : array-like (N,) or None
        Printed above each input.
    n : int
        Columns shown (at most N).
    title : str or None

    Returns
    -------
    matplotlib.figure.Figure
    """
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
    """Overlaid histograms of in- and out-of-distribution scores, with the AUROC in the title.

    Parameters
    ----------
    in_scores, out_scores : array-like (N,) and (M,)
        Finite scores, higher = more out-of-distribution; the 0.1% tails are clipped for display.
    in_label, out_label : str
    ax : matplotlib Axes or None
    title : str or None
        Prefix of the title.
    marker : float or None
        Draws a vertical line labelled "this image" at this score.
    bins : int

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        When a score array is empty or holds NaN or infinite values.
    """
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
    """ROC curves of several detectors on one Axes, each labelled with its AUROC.

    Parameters
    ----------
    curves : dict of str -> (in_scores, out_scores)
        Detector name -> two array-likes of finite scores, higher = more out-of-distribution.
    ax : matplotlib Axes or None
    title : str or None

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        When a score array is empty or holds NaN or infinite values.
    """
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
    """Mean training loss per epoch, e.g. ``detector.history_["autoencoder_l1"]``.

    Parameters
    ----------
    losses : sequence of float
        One value per epoch (epochs count from 1).
    ax : matplotlib Axes or None
    title, ylabel : str

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch"), ax.set_ylabel(ylabel), ax.set_title(title)
    return ax


def _spread(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` items, drawn at random (seeded) so that
    class-ordered data is not cut to its first classes."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_points].numpy()


def show_gallery(rows: dict, ncols: int = 8, title: str | None = None, row_height: float = 0.95):
    """One row of images per entry of ``rows``, its name on the left.

    Parameters
    ----------
    rows : dict of str -> torch.Tensor (N, C, 32, 32)
        Name -> images in [0, 1]; the first ``ncols`` of each are shown.
    ncols : int
        Images per row.
    title : str or None
        Figure title.
    row_height : float
        Height of one row in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        When ``rows`` is empty.
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
    """Scatter of the first two principal components of the latent z, in against out.

    The PCA is fitted on the in-distribution latents only (what the detector knows), then both
    sets are projected with it.

    Parameters
    ----------
    z_in, z_out : array-like (N, latent_dim) and (M, latent_dim)
        Latents, e.g. ``detector.score_components(images)["z"]``; N >= 2.
    in_label, out_label : str
        Legend entries.
    ax : matplotlib Axes or None
        Where to draw; None creates a figure.
    title : str or None
    max_points : int
        At most this many points per set, drawn at random (seeded).

    Returns
    -------
    (matplotlib.axes.Axes, numpy.ndarray (2,))
        The Axes and the explained variance ratio of the two components (each in [0, 1]).

    Raises
    ------
    InputError
        When the latents are not 2-D with the same width, or fewer than 2 in-distribution ones.
    """
    from sklearn.decomposition import PCA

    z_in, z_out = np.asarray(z_in, dtype=np.float64), np.asarray(z_out, dtype=np.float64)
    if z_in.ndim != 2 or z_out.ndim != 2 or z_in.shape[1] != z_out.shape[1] or len(z_in) < 2:
        raise InputError(f"z_in, z_out: expected two arrays (N, latent_dim) of the same width, N >= 2; got "
                         f"shapes {z_in.shape} and {z_out.shape}.")
    pca = PCA(n_components=2, random_state=0).fit(z_in)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.2))
    for z, label, colour in ((z_in, in_label, "tab:blue"), (z_out, out_label, "tab:red")):
        points = pca.transform(z[_spread(len(z), max_points)])
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.5, color=colour, label=label)
    ax.set_xlabel("PC 1 of in-distribution z"), ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=2)
    if title:
        ax.set_title(title)
    return ax, pca.explained_variance_ratio_


def plot_error_vs_complexity(groups: dict, ax=None, title: str | None = None, max_points: int = 1000):
    """Scatter of reconstruction error against :func:`ood_helpers.metrics.image_complexity`.

    Parameters
    ----------
    groups : dict of str -> (images, errors)
        Label -> (images (N, C, 32, 32) in [0, 1], errors array-like (N,)), one colour per group
        (at most four groups).
    ax : matplotlib Axes or None
    title : str or None
    max_points : int
        At most this many points per group, drawn at random (seeded).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        When a group's images and errors differ in length, or there are more than four groups.
    """
    colours = ("tab:blue", "tab:red", "tab:green", "tab:orange")
    if len(groups) > len(colours):
        raise InputError(f"groups: expected at most {len(colours)} groups, got {len(groups)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.8))
    for (label, (images, errors)), colour in zip(groups.items(), colours):
        errors = np.asarray(errors, dtype=np.float64).ravel()
        if len(images) != len(errors):
            raise InputError(f"groups[{label!r}]: {len(images)} images but {len(errors)} errors.")
        keep = _spread(len(images), max_points)
        ax.scatter(metrics.image_complexity(images[torch.from_numpy(keep)]), errors[keep], s=4, alpha=0.4,
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

    Parameters
    ----------
    rows_by_variant : dict of str -> list of dict
        Variant name (e.g. "with augmentation") -> the rows of
        :func:`ood_helpers.evaluation.noise_robustness` (each with ``family``, ``level`` and ``key``).
    key : str
        The row value plotted, e.g. ``"auroc_vs_ood"`` or ``"fpr_noisy_in"``.
    title, ylabel : str or None
        Figure title; y-axis label (default ``key``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        When there are no rows, or a row lacks ``family``, ``level`` or ``key``.
    """
    rows = [row for variant_rows in rows_by_variant.values() for row in variant_rows]
    if not rows:
        raise InputError("rows_by_variant: expected at least one row of noise_robustness results.")
    missing = {name for row in rows for name in ("family", "level", key) if name not in row}
    if missing:
        raise InputError(f"rows_by_variant: rows lack {sorted(missing)}; expected rows of "
                         f"ood_helpers.evaluation.noise_robustness.")
    families = list(dict.fromkeys(row["family"] for row in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(2.5 * len(families) + 0.5, 2.8), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for (variant, variant_rows), style in zip(rows_by_variant.items(), ("-o", "--s", ":^", "-.v")):
            picked = sorted((r["level"], r[key]) for r in variant_rows if r["family"] == family)
            ax.plot([p[0] for p in picked], [p[1] for p in picked], style, label=variant, markersize=4)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("noise level")
    axes[0, 0].set_ylabel(ylabel or key)
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
