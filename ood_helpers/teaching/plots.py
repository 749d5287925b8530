"""Pictures for the notebooks: the paper's two flow charts (:func:`pipeline_diagram`, its Figure 1
with the classifier of Figure 2 attached, and :func:`classifier_diagram`, Figure 2's classifier with
the latent z injected), image grids and galleries, reconstruction panels and difference images on one
colour scale, score histograms, ROC curves (with a log-scaled false-positive axis for curves that
crowd into the corner), loss curves, a 2-D view of the latent space, error against image complexity
and score-against-noise curves.

Every function draws into a matplotlib Axes or Figure and returns it, so notebooks stay one line
per picture and the same figure can be saved by the CLI.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..evaluation import metrics
from ..validation import InputError, check_int


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


def difference_magnitude(difference: torch.Tensor) -> torch.Tensor:
    """One value per pixel for a difference image: the mean of ``|I - D(E(I))|`` over the channels.

    Parameters
    ----------
    difference : torch.Tensor (N, C, H, W)
        Difference images, e.g. ``steps.difference_image(images, reconstruction)``.

    Returns
    -------
    torch.Tensor (N, H, W)
        Float, on the CPU; for gray images (C = 1) the difference itself.
    """
    return difference.detach().float().cpu().mean(dim=1)


def _difference_scale(differences, vmax) -> float:
    """The common top of the colour scale: ``vmax`` if given, else the largest value shown."""
    if vmax is not None:
        return float(vmax)
    return max(max(float(difference_magnitude(d).max()) for d in differences), 1e-6)


def show_reconstructions(images: torch.Tensor, reconstruction: torch.Tensor, difference: torch.Tensor,
                         scores=None, n: int = 8, title: str | None = None, vmax: float | None = None,
                         score_label: str | None = None):
    """Three rows of panels: input, reconstruction, difference image on one colour scale.

    Parameters
    ----------
    images, reconstruction, difference : torch.Tensor (N, C, 32, 32)
        Values in [0, 1], e.g. from ``detector.explain(images)``.
    scores : array-like (N,) or None
        Printed above each input.
    n : int
        Columns shown (at most N).
    title : str or None
    vmax : float or None
        Top of the difference images' colour scale (the channel mean of ``|I - Î|``, see
        :func:`difference_magnitude`); None = the largest value shown. Pass the same ``vmax`` to
        two calls to compare their difference rows. A colour bar shows the scale.
    score_label : str or None
        What the numbers above the inputs are (shown at the left of the first row).

    Returns
    -------
    matplotlib.figure.Figure
        Its difference images share one colour scale: their ``get_clim()`` is ``(0, vmax)``.
    """
    n = min(n, len(images))
    fig, axes = plt.subplots(3, n, figsize=(n * 1.1 + 0.9, 3.7), squeeze=False)
    vmax = _difference_scale([difference[:n]], vmax)
    magnitude = difference_magnitude(difference[:n])
    shown = None
    for row, (name, batch) in enumerate((("input", images), ("reconstruction", reconstruction), ("|difference|", None))):
        for col in range(n):
            ax = axes[row, col]
            if batch is None:
                shown = ax.imshow(magnitude[col].numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(_to_hwc(batch[col]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == 0 and scores is not None:
                ax.set_title(f"{float(scores[col]):.2f}", fontsize=8)
    if title:
        fig.suptitle(title + (f" (numbers: {score_label})" if score_label and scores is not None else ""), fontsize=10)
    fig.tight_layout()
    fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="|I - Î| (one scale)")
    return fig


def show_difference_images(rows: dict, differences: dict, ncols: int = 8, vmax: float | None = None,
                           title: str | None = None):
    """Images and their difference images, every difference on ONE colour scale with a colour bar.

    For each name, a row of images and under it the row of their difference images, drawn as
    :func:`difference_magnitude` (the channel mean of ``|I - Î|``) with the ``magma`` colour map from 0
    to ``vmax``: the same colour means the same error in every row.

    Parameters
    ----------
    rows : dict of str -> torch.Tensor (N, C, 32, 32)
        Name -> images in [0, 1]; the first ``ncols`` of each are shown.
    differences : dict of str -> torch.Tensor (N, C, 32, 32)
        The same names -> their difference images ``|I - Î|``.
    ncols : int
    vmax : float or None
        Top of the common colour scale; None = the largest difference shown.
    title : str or None

    Returns
    -------
    matplotlib.figure.Figure
        Every difference image has ``get_clim() == (0, vmax)``.

    Raises
    ------
    InputError
        When ``rows`` is empty or ``differences`` does not have the same names.
    """
    if not rows or list(rows) != list(differences):
        raise InputError(f"rows, differences: expected the same non-empty names in the same order, got "
                         f"{list(rows)} and {list(differences)}.")
    vmax = _difference_scale([d[:ncols] for d in differences.values()], vmax)
    fig, axes = plt.subplots(2 * len(rows), ncols, figsize=(ncols * 0.95 + 2.4, 2 * len(rows) * 0.95 + 0.5),
                             squeeze=False)
    shown = None
    for index, name in enumerate(rows):
        images, magnitude = rows[name][:ncols], difference_magnitude(differences[name][:ncols])
        for col in range(ncols):
            top, bottom = axes[2 * index, col], axes[2 * index + 1, col]
            for ax in (top, bottom):
                ax.set_xticks([]), ax.set_yticks([])
                if col >= len(images):
                    ax.set_axis_off()
            if col < len(images):
                top.imshow(_to_hwc(images[col]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                shown = bottom.imshow(magnitude[col].numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        axes[2 * index, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        axes[2 * index + 1, 0].set_ylabel("|I - Î|", rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.025, pad=0.01,
                 label=f"|I - Î| (mean over channels), one scale: 0 to {vmax:.2f}")
    return fig


def plot_score_histograms(in_scores, out_scores, in_label: str = "in-distribution",
                          out_label: str = "out-of-distribution", ax=None, title: str | None = None,
                          marker: float | None = None, bins: int = 50, show_auroc: bool = True):
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
    show_auroc : bool
        Append the two sets' AUROC to the title. False when the title describes one image (the
        ``marker``): one image's score and a whole-set AUROC do not belong in one title.

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
    if show_auroc:
        auc = metrics.auroc(in_scores, out_scores)
        ax.set_title(f"{title + ': ' if title else ''}AUROC {auc:.3f}")
    elif title:
        ax.set_title(title)
    return ax


def plot_roc_curves(curves: dict, ax=None, title: str | None = None, log_fpr: bool = False, highlight=(),
                    legend: str = "inside", fontsize: float = 8):
    """ROC curves of several detectors on one Axes, each labelled with its AUROC.

    Parameters
    ----------
    curves : dict of str -> (in_scores, out_scores)
        Detector name -> two array-likes of finite scores (N,) and (M,), higher = more
        out-of-distribution.
    ax : matplotlib Axes or None
    title : str or None
    log_fpr : bool
        A logarithmic false-positive-rate axis, for curves that crowd into the top-left corner: it
        spreads out the small false-positive rates where near-perfect detectors differ. A rate of 0
        cannot be drawn on it and is drawn at half the smallest non-zero rate, ``0.5 / N`` (the
        axis label says so).
    highlight : str or sequence of str
        Names of ``curves`` drawn last (on top of the others), thicker and in strong colours, e.g.
        ``("ours", "paper")``; the other curves are thinner and slightly transparent.
    legend : {"inside", "outside", "below", "none"}
        "outside" puts the legend to the right of the Axes, "below" under it (for side-by-side
        panels): either way it hides no curve.
    fontsize : float
        Legend font size.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        When a score array is empty or holds NaN or infinite values, a highlighted name is not a key
        of ``curves``, or ``legend`` is not one of its choices.
    """
    from ..validation import check_choice

    check_choice(legend, ("inside", "outside", "below", "none"), "legend")
    highlight = (highlight,) if isinstance(highlight, str) else tuple(highlight)
    unknown = [name for name in highlight if name not in curves]
    if unknown:
        raise InputError(f"highlight: {unknown} are not curves; the curves are {list(curves)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    floor = 0.5 / max(len(metrics.check_scores(pair[0], "in_scores")) for pair in curves.values()) if curves else 1e-3
    strong = iter(("tab:red", "black", "tab:purple", "tab:brown") * 3)
    muted = iter(("tab:blue", "tab:orange", "tab:green", "tab:cyan", "tab:olive", "tab:pink", "tab:gray") * 3)
    # the others first, the highlighted ones last: drawn on top
    for name in [n for n in curves if n not in highlight] + list(highlight):
        in_scores, out_scores = curves[name]
        fpr, tpr = metrics.roc_points(in_scores, out_scores)
        if log_fpr:
            fpr = np.maximum(fpr, floor)
        style = (dict(lw=2.6, zorder=5, color=next(strong)) if name in highlight else
                 dict(lw=1.3, zorder=3, alpha=0.75, color=next(muted)))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {metrics.auroc(in_scores, out_scores):.4f})", **style)
    if log_fpr:
        grid = np.logspace(np.log10(floor), 0, 50)
        ax.plot(grid, grid, color="gray", ls="--", lw=1, label="chance (0.5000)", zorder=1)
        ax.set_xscale("log")
        ax.set_xlim(floor / 2, 1)   # a perfect curve (its vertical at ``floor``) stays off the axis line
        ax.set_xlabel(f"false-positive rate (log scale; 0 drawn at {floor:.0e})")
    else:
        ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="chance (0.5000)", zorder=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("false-positive rate (in flagged as out)")
    ax.set_ylabel("true-positive rate (out caught)")
    ax.set_ylim(0, 1.01)
    if legend == "inside":
        ax.legend(fontsize=fontsize, loc="lower right")
    elif legend == "outside":
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    elif legend == "below":
        ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.2), borderaxespad=0, frameon=False)
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
    """Scatter of reconstruction error against :func:`ood_helpers.evaluation.metrics.image_complexity`.

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


# -- the paper's flow charts -----------------------------------------------------------------------
_PLAIN = dict(face="#f1f3f5", edge="#adb5bd", text="#495057", lw=1.0, weight="normal")
_LIT = dict(face="#ffe8cc", edge="#e8590c", text="#212529", lw=2.2, weight="bold")
_OURS = dict(face="#e7f5ff", edge="#1c7ed6", text="#1c4f80", lw=1.2, weight="normal")

PIPELINE_PARTS = ("image", "encoder", "z", "decoder", "reconstruction", "difference", "classifier", "z_input",
                  "score", "noise", "latent_distance")
PIPELINE_GROUPS = {"autoencoder": ("encoder", "z", "decoder", "reconstruction"),
                   "detector": ("difference", "classifier", "z_input", "score")}
CLASSIFIER_PARTS = ("difference", "stem", "stage1", "stage2", "stage3", "stage4", "inject", "head", "logit")


def _parts_to_light(highlight, parts, groups) -> set:
    highlight = (highlight,) if isinstance(highlight, str) else tuple(highlight or ())
    lit = set()
    for name in highlight:
        if name in groups:
            lit.update(groups[name])
        elif name in parts:
            lit.add(name)
        else:
            raise InputError(f"highlight: unknown part {name!r}; choose from {list(parts) + list(groups)}.")
    return lit


def _box(ax, x, y, text, style, w=1.5, h=0.8, fontsize=9, note=None):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                facecolor=style["face"], edgecolor=style["edge"], lw=style["lw"], zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=style["text"],
            fontweight=style["weight"], zorder=4)
    if note:
        ax.text(x, y - h / 2 - 0.12, note, ha="center", va="top", fontsize=fontsize - 1.5, color="#343a40", zorder=4)


def _arrow(ax, points, style, text=None, text_at=None, dashed=False):
    """A polyline from points[0] to points[-1] with an arrow head at the end."""
    colour = style["edge"] if style is not _PLAIN else "#868e96"
    lw = 2.0 if style is _LIT else 1.2
    for (x0, y0), (x1, y1) in zip(points[:-2], points[1:-1]):
        ax.plot([x0, x1], [y0, y1], color=colour, lw=lw, ls="--" if dashed else "-", zorder=2,
                solid_capstyle="butt")
    ax.annotate("", xy=points[-1], xytext=points[-2], zorder=2,
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=lw, ls="--" if dashed else "-",
                                shrinkA=0, shrinkB=0, mutation_scale=14))
    if text:
        x, y = text_at if text_at is not None else points[-2]
        ax.text(x, y, text, fontsize=8, color=colour, ha="left", va="bottom", zorder=4,
                fontweight="bold" if style is _LIT else "normal")


def pipeline_diagram(highlight=(), aux_input: bool = True, noise: bool = False, latent_distance: bool = False,
                     ax=None, title: str | None = None):
    """The paper's detector as a flow chart: its Figure 1 (the autoencoder) with Figure 2's classifier.

    Top row, the autoencoder (Figure 1): image I -> encoder E -> latent z -> decoder D ->
    reconstruction Î. Bottom row, the detector (Figure 2): the difference image ``|I - Î|`` goes into
    the classifier C, which also receives z (the auxiliary input), and gives the score.

    Parameters
    ----------
    highlight : str or sequence of str
        Parts drawn in orange and bold, the rest in gray: the piece a notebook builds. Parts:
        ``PIPELINE_PARTS`` ("image", "encoder", "z", "decoder", "reconstruction", "difference",
        "classifier", "z_input" (the arrow carrying z into C), "score", "noise",
        "latent_distance"); groups: "autoencoder" (E, z, D, Î) and "detector" (difference,
        classifier, z input, score).
    aux_input : bool
        Draw z's arrow into the classifier (False: the paper's ablation "w/o auxiliary input").
    noise : bool
        Draw noise-addition augmentation acting on the training images (notebook 06).
    latent_distance : bool
        Draw OUR addition (not in the paper, in blue): the distance of z to the training latents,
        added to the score (notebook 05).
    ax : matplotlib Axes or None
    title : str or None

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        When ``highlight`` names an unknown part, or a part the switches leave out.
    """
    lit = _parts_to_light(highlight, PIPELINE_PARTS, PIPELINE_GROUPS)
    missing = {"z_input": aux_input, "noise": noise, "latent_distance": latent_distance}
    absent = sorted(part for part, drawn in missing.items() if part in lit and not drawn)
    if absent:
        raise InputError(f"highlight: {absent} are not drawn; switch them on (aux_input / noise / latent_distance).")
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.9))

    def style(part):
        if part in lit:
            return _LIT
        return _OURS if part == "latent_distance" else _PLAIN

    top, bottom = 3.1, 1.0
    x = {"image": 0.9, "encoder": 2.8, "z": 4.7, "decoder": 6.6, "reconstruction": 8.75, "difference": 8.75,
         "classifier": 10.9, "score": 12.8, "latent_distance": 12.8, "noise": 0.9}
    _box(ax, x["image"], top, "image I", style("image"))
    _box(ax, x["encoder"], top, "encoder E\n(ResNet-18)", style("encoder"))
    _box(ax, x["z"], top, "latent z", style("z"), w=1.2)
    _box(ax, x["decoder"], top, "decoder D\n(ResNet-18)", style("decoder"))
    _box(ax, x["reconstruction"], top, "reconstruction\nÎ = D(E(I))", style("reconstruction"), w=1.95)
    _box(ax, x["difference"], bottom, "difference\n|I - Î|", style("difference"), w=1.95)
    _box(ax, x["classifier"], bottom, "classifier C\n(ResNet-18)", style("classifier"))
    _box(ax, x["score"], bottom, "score\n(in / out)", style("score"), w=1.2)
    half = 0.75
    _arrow(ax, [(x["image"] + half, top), (x["encoder"] - half, top)], style("encoder"))
    _arrow(ax, [(x["encoder"] + half, top), (x["z"] - 0.6, top)], style("encoder"))
    _arrow(ax, [(x["z"] + 0.6, top), (x["decoder"] - half, top)], style("decoder"))
    _arrow(ax, [(x["decoder"] + half, top), (x["reconstruction"] - 0.975, top)], style("decoder"))
    _arrow(ax, [(x["reconstruction"], top - 0.4), (x["difference"], bottom + 0.4)], style("difference"))
    _arrow(ax, [(x["image"], top - 0.4), (x["image"], bottom), (x["difference"] - 0.975, bottom)], style("difference"),
           text="I", text_at=(x["image"] + 0.1, bottom + 0.05))
    _arrow(ax, [(x["difference"] + 0.975, bottom), (x["classifier"] - half, bottom)], style("classifier"))
    _arrow(ax, [(x["classifier"] + half, bottom), (x["score"] - 0.6, bottom)], style("classifier"))
    if aux_input:
        _arrow(ax, [(x["z"], top - 0.4), (x["z"], 2.05), (x["classifier"], 2.05), (x["classifier"], bottom + 0.4)],
               style("z_input"), text="z: auxiliary input (paper, Figure 2)", text_at=(x["z"] + 0.1, 2.08),
               dashed="z_input" not in lit)
    if noise:
        _box(ax, x["noise"], 4.55, "noise augmentation\n(training only)", style("noise"), w=2.1, h=0.7)
        _arrow(ax, [(x["noise"], 4.2), (x["image"], top + 0.4)], style("noise"))
    if latent_distance:
        _box(ax, x["latent_distance"], top, "latent distance\nof z (ours)", style("latent_distance"), w=1.7)
        _arrow(ax, [(x["z"], top + 0.4), (x["z"], 4.3), (x["latent_distance"], 4.3),
                    (x["latent_distance"], top + 0.4)], style("latent_distance"))
        _arrow(ax, [(x["latent_distance"], top - 0.4), (x["score"], bottom + 0.4)], style("latent_distance"),
               text="  + (ours)", text_at=(x["score"] + 0.02, 1.9))
    ax.text(x["encoder"], 3.62, "Figure 1: autoencoder", fontsize=8, color="#868e96", ha="center")
    ax.text(0.1, 0.15, "Figure 2: out-of-distribution classifier", fontsize=8, color="#868e96", ha="left")
    ax.set_xlim(-0.35, 13.85)
    ax.set_ylim(0, 5.05 if noise else 4.55)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def classifier_diagram(highlight=(), latent_input: bool = True, inject_stage: int = 2, shapes: dict | None = None,
                       ax=None, title: str | None = None):
    """The paper's Figure 2 in detail: the ResNet-18 classifier, with z injected after a stage.

    difference image -> stem -> stage 1 -> ... -> stage 4 -> pooling + linear -> logit. With
    ``latent_input`` a small network (Linear - ReLU - Linear) maps z to one number per channel,
    added to the feature map after stage ``inject_stage`` (:class:`ood_helpers.networks.ResNetTrunk`).

    Parameters
    ----------
    highlight : str or sequence of str
        Parts drawn in orange and bold: ``CLASSIFIER_PARTS`` ("difference", "stem", "stage1" ...
        "stage4", "inject" (z, its small network and the addition), "head", "logit").
    latent_input : bool
        False draws the classifier without z (the paper's ablation, notebook 04).
    inject_stage : {1, 2, 3, 4}
        The stage after which z is added.
    shapes : dict of str -> str or None
        Text under a part, e.g. ``{"stage2": "(32, 4, 4)"}`` from ``networks.layer_table``.
    ax : matplotlib Axes or None
    title : str or None

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        Unknown part names, ``inject_stage`` not in 1-4, or "inject" highlighted without ``latent_input``.
    """
    lit = _parts_to_light(highlight, CLASSIFIER_PARTS, {})
    check_int(inject_stage, "inject_stage", 1, 4, example=2)
    if "inject" in lit and not latent_input:
        raise InputError("highlight: 'inject' is not drawn without latent_input.")
    shapes = dict(shapes or {})
    unknown = [name for name in shapes if name not in CLASSIFIER_PARTS]
    if unknown:
        raise InputError(f"shapes: unknown parts {unknown}; choose from {list(CLASSIFIER_PARTS)}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.0 if latent_input else 1.9))
    chain = [("difference", "difference\n|I - Î|"), ("stem", "stem"), ("stage1", "stage 1"), ("stage2", "stage 2"),
             ("stage3", "stage 3"), ("stage4", "stage 4"), ("head", "pool +\nlinear"), ("logit", "logit\n(out?)")]
    y, x, step, positions = 2.2, 0.9, 1.55, {}
    for index, (name, text) in enumerate(chain):
        if latent_input and name == f"stage{inject_stage + 1}" or (latent_input and inject_stage == 4 and name == "head"):
            positions["plus"] = x
            x += 0.9
        positions[name] = x
        x += step
    for (name, text), (following, _) in zip(chain, chain[1:] + [(None, None)]):
        st = _LIT if name in lit else _PLAIN
        _box(ax, positions[name], y, text, st, w=1.2, h=0.8, fontsize=8.5, note=shapes.get(name))
        if following is not None:
            end = positions["plus"] if latent_input and positions.get("plus", -1) > positions[name] and \
                positions["plus"] < positions[following] else positions[following]
            _arrow(ax, [(positions[name] + 0.6, y), (end - (0.25 if end == positions.get("plus") else 0.6), y)],
                   _LIT if following in lit or name in lit else _PLAIN)
            if end == positions.get("plus"):
                _arrow(ax, [(end + 0.25, y), (positions[following] - 0.6, y)], _LIT if "inject" in lit else _PLAIN)
    if latent_input:
        st = _LIT if "inject" in lit else _PLAIN
        plus = positions["plus"]
        ax.add_patch(plt.Circle((plus, y), 0.25, facecolor=st["face"], edgecolor=st["edge"], lw=st["lw"], zorder=3))
        ax.text(plus, y, "+", ha="center", va="center", fontsize=12, fontweight="bold", color=st["text"], zorder=4)
        note = f"z enters after stage {inject_stage}" + (f"\n{shapes['inject']}" if "inject" in shapes else "")
        _box(ax, plus, 0.95, "Linear - ReLU - Linear\n(one shift per channel)", st, w=2.5, h=0.62, fontsize=8,
             note=note)
        _box(ax, plus - 2.35, 0.95, "latent z = E(I)", st, w=1.5, h=0.55, fontsize=8)
        _arrow(ax, [(plus - 1.6, 0.95), (plus - 1.25, 0.95)], st)
        _arrow(ax, [(plus, 1.26), (plus, y - 0.25)], st)
    ax.set_xlim(0, x - step + 0.9)
    ax.set_ylim(0.0 if latent_input else 1.45, 2.9)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax
