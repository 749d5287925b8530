"""Detection metrics.

Convention everywhere: one score per image, higher = more out-of-distribution, and the
out-of-distribution set is the positive class. Every function takes ``in_scores`` (scores of
in-distribution images) and ``out_scores`` (scores of out-of-distribution images) as 1-D arrays
and validates them with :func:`check_scores`.

References
----------
Hendrycks, D. & Gimpel, K. (2017). A Baseline for Detecting Misclassified and Out-of-Distribution
Examples in Neural Networks. ICLR. (AUROC and AUPR for out-of-distribution detection.)
Liang, S., Li, Y. & Srikant, R. (2018). Enhancing the Reliability of Out-of-Distribution Image
Detection in Neural Networks (ODIN). ICLR. (FPR at 95% TPR.)
"""
from __future__ import annotations

import numbers

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..validation import InputError, check_fraction, check_positive_int


def check_scores(scores, name: str) -> np.ndarray:
    """Validate one score per image and return them as a float64 array of shape (N,).

    Parameters
    ----------
    scores : array-like or torch.Tensor, shape (N,) or (N, 1)
        Finite real numbers; N >= 1. A column (N, 1) is flattened (documented conversion);
        tensors are detached and moved to the CPU.
    name : str
        The argument name used in error messages.

    Returns
    -------
    numpy.ndarray
        float64, shape (N,).

    Raises
    ------
    InputError
        For values that are not numbers, a scalar, a 2-D array with more than one column (e.g.
        (N, 2) class probabilities: the message says to pass the out-of-distribution column,
        ``probs[:, 1]``), more than 2 dimensions, no scores, or NaN / infinite scores.
    """
    if hasattr(scores, "detach") and hasattr(scores, "cpu"):   # torch.Tensor, without importing torch
        scores = scores.detach().cpu().numpy()
    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected a 1-D array of numbers (one score per image), got "
                         f"{type(scores).__name__} that numpy cannot read as numbers ({err}).") from None
    if values.ndim == 0:
        raise InputError(f"{name}: expected a 1-D array of scores (one per image), got the single number "
                         f"{float(values)!r}. Fix: pass [{float(values)!r}].")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values.ravel()
    if values.ndim == 2:
        hint = (f"If these are class probabilities (in, out) per image, pass the out-of-distribution column: "
                f"{name}[:, 1]." if values.shape[1] == 2 else
                f"Pass the one column that measures out-of-distribution, e.g. {name}[:, j].")
        raise InputError(f"{name}: expected 1-D scores of shape (N,), one per image, got shape {values.shape}. "
                         f"{hint}")
    if values.ndim > 2:
        raise InputError(f"{name}: expected 1-D scores of shape (N,), one per image, got shape {values.shape}.")
    if values.size == 0:
        raise InputError(f"{name}: expected a non-empty 1-D array of scores (at least one), got an empty one.")
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{name}: contains {bad.size} NaN or infinite score(s) (first at index "
                         f"{bad[:5].tolist()}); expected finite numbers. Fix: find where they come from; to "
                         f"drop them: {name}[np.isfinite({name})].")
    return values


def _labels_scores(in_scores, out_scores):
    in_scores = check_scores(in_scores, "in_scores")
    out_scores = check_scores(out_scores, "out_scores")
    labels = np.concatenate([np.zeros(in_scores.size), np.ones(out_scores.size)])
    return labels, np.concatenate([in_scores, out_scores])


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve.

    The probability that a random out-of-distribution image scores higher than a random
    in-distribution one, ties counting one half: the Mann-Whitney U statistic divided by
    ``len(in_scores) * len(out_scores)`` (computed with ``sklearn.metrics.roc_auc_score``), as
    used for OOD detection by Hendrycks & Gimpel (2017).

    Parameters
    ----------
    in_scores : array-like, shape (N_in,)
        Scores of in-distribution images (finite; higher = more out-of-distribution).
    out_scores : array-like, shape (N_out,)
        Scores of out-of-distribution images.

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance, 1 a perfect separation.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores` (named ``in_scores`` or
        ``out_scores``).
    """
    return float(roc_auc_score(*_labels_scores(in_scores, out_scores)))


def aupr(in_scores, out_scores) -> float:
    """Area under the precision-recall curve, out-of-distribution as the positive class.

    Computed as average precision (``sklearn.metrics.average_precision_score``), the "AUPR Out"
    of Hendrycks & Gimpel (2017).

    Parameters
    ----------
    in_scores : array-like, shape (N_in,)
        Scores of in-distribution images.
    out_scores : array-like, shape (N_out,)
        Scores of out-of-distribution images.

    Returns
    -------
    float
        In [0, 1]; chance level is ``N_out / (N_in + N_out)``.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores`.
    """
    return float(average_precision_score(*_labels_scores(in_scores, out_scores)))


def fpr_at_tpr(in_scores, out_scores, tpr: float = 0.95) -> float:
    """False-positive rate at a given true-positive rate (FPR95 for ``tpr=0.95``).

    The share of in-distribution images flagged as out at the highest threshold that flags at
    least ``tpr`` of the out-of-distribution images (Liang et al., 2018).

    Parameters
    ----------
    in_scores, out_scores : array-like, shapes (N_in,) and (N_out,)
        As for :func:`auroc`.
    tpr : float
        Required true-positive rate, in (0, 1] (a fraction, not a percentage).

    Returns
    -------
    float
        In [0, 1]; lower is better.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores`, or ``tpr`` is not in (0, 1].
    """
    tpr = check_fraction(tpr, "tpr", include_high=True)
    fpr, tpr_curve, _ = roc_curve(*_labels_scores(in_scores, out_scores), drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


def roc_points(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve's points (``sklearn.metrics.roc_curve``).

    Parameters
    ----------
    in_scores, out_scores : array-like, shapes (N_in,) and (N_out,)
        As for :func:`auroc`.

    Returns
    -------
    fpr, tpr : numpy.ndarray
        Float arrays of equal length, non-decreasing, each from 0 to 1: false- and true-positive
        rates at decreasing thresholds.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores`.
    """
    fpr, tpr, _ = roc_curve(*_labels_scores(in_scores, out_scores))
    return fpr, tpr


def bootstrap_auroc_ci(in_scores, out_scores, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for AUROC.

    In- and out-of-distribution scores are resampled separately (with replacement, each to its
    own size) ``n_boot`` times; the interval is the (1 - level) / 2 and (1 + level) / 2
    quantiles of the resampled AUROCs (Efron & Tibshirani, 1993).

    Parameters
    ----------
    in_scores, out_scores : array-like, shapes (N_in,) and (N_out,)
        As for :func:`auroc`.
    n_boot : int
        Number of bootstrap resamples, >= 1 (a few hundred or more for a stable interval).
    level : float
        Confidence level, in (0, 1).
    seed : int
        Seed of the resampling, >= 0.

    Returns
    -------
    (low, high) : tuple of float
        In [0, 1], low <= high.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores`, ``n_boot`` is not a positive
        integer, ``level`` is not in (0, 1), or ``seed`` is not a non-negative integer.
    """
    in_scores = check_scores(in_scores, "in_scores")
    out_scores = check_scores(out_scores, "out_scores")
    n_boot = check_positive_int(n_boot, "n_boot", example=1000)
    level = check_fraction(level, "level")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral,)) or seed < 0:
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}. Fix: seed=0.")
    rng = np.random.default_rng(int(seed))
    n_in, n_out = in_scores.size, out_scores.size
    # a resample draws each original score some number of times, so its AUROC (the share of
    # (out, in) pairs ranked right, ties half) follows from counts: no sort per resample
    order = np.argsort(in_scores, kind="stable")
    below = np.searchsorted(in_scores[order], out_scores, side="left")
    not_above = np.searchsorted(in_scores[order], out_scores, side="right")
    values = []
    for _ in range(n_boot):
        in_counts = np.bincount(rng.integers(0, n_in, n_in), minlength=n_in)[order]
        out_counts = np.bincount(rng.integers(0, n_out, n_out), minlength=n_out)
        cumulative = np.concatenate([[0], np.cumsum(in_counts)])
        ranked = cumulative[below] + 0.5 * (cumulative[not_above] - cumulative[below])
        values.append(float(out_counts @ ranked) / (n_in * n_out))
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def fpr_at_threshold(in_scores_reference, in_scores_test, keep: float = 0.95) -> float:
    """Share of ``in_scores_test`` flagged as out at a threshold set on reference scores.

    The threshold is the ``keep`` quantile of the reference scores (``numpy.quantile``, linear
    interpolation), so about ``keep`` of the reference images pass; an image is flagged when
    its score is strictly above it. Used for noisy in-distribution images with the threshold
    set on clean ones.

    Parameters
    ----------
    in_scores_reference : array-like, shape (N_ref,)
        Scores of clean in-distribution images (finite, N_ref >= 1).
    in_scores_test : array-like, shape (N_test,)
        Scores of the images to test (finite, N_test >= 1).
    keep : float
        Share of reference images below the threshold, in (0, 1].

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores` (named ``in_scores_reference`` /
        ``in_scores_test``), or ``keep`` is not in (0, 1].
    """
    reference = check_scores(in_scores_reference, "in_scores_reference")
    test = check_scores(in_scores_test, "in_scores_test")
    keep = check_fraction(keep, "keep", include_high=True)
    return float(np.mean(test > np.quantile(reference, keep)))


def summarize(in_scores, out_scores) -> dict:
    """AUROC, AUPR and FPR at 95% TPR in one dict.

    Parameters
    ----------
    in_scores, out_scores : array-like, shapes (N_in,) and (N_out,)
        As for :func:`auroc`.

    Returns
    -------
    dict
        ``{"auroc": float, "aupr": float, "fpr95": float}``, each in [0, 1]; see :func:`auroc`,
        :func:`aupr`, :func:`fpr_at_tpr`.

    Raises
    ------
    InputError
        When either array is not valid for :func:`check_scores`.
    """
    return {"auroc": auroc(in_scores, out_scores), "aupr": aupr(in_scores, out_scores),
            "fpr95": fpr_at_tpr(in_scores, out_scores)}


def image_complexity(images) -> np.ndarray:
    """How detailed each image is: a total-variation measure.

    The mean absolute difference between horizontally and vertically neighbouring pixels,
    averaged over both directions and all channels. Used in notebook 03 to show that the
    autoencoder's reconstruction error follows image detail.

    Parameters
    ----------
    images : torch.Tensor, numpy array or map-style Dataset
        (N, C, 32, 32) float in [0, 1] or uint8 0-255 (see
        :func:`ood_helpers.validation.as_image_batch`).

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
        Values in [0, 1]: 0 for a flat image, 0.5 for one-pixel black-and-white stripes.

    Raises
    ------
    InputError
        When ``images`` is not a batch of 32x32 images.
    """
    from ..validation import as_image_batch

    images = as_image_batch(images)
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return ((horizontal + vertical) / 2).double().numpy()


def psnr(images, reconstructions) -> np.ndarray:
    r"""Peak signal-to-noise ratio of each reconstruction, in decibels.

    For one image :math:`I` and its reconstruction :math:`\hat I`, both with values in [0, 1]
    (so the peak value is 1),

    .. math:: \mathrm{PSNR}(I, \hat I) = 10 \log_{10} \frac{1}{\mathrm{MSE}(I, \hat I)},
              \qquad \mathrm{MSE} = \frac{1}{CHW} \sum (I - \hat I)^2 .

    Higher is better: 20 dB is a mean squared error of 0.01 (a typical pixel off by about 0.1),
    30 dB one of 0.001. Used in notebook 02 to say how well the autoencoder rebuilds images.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray, shape (N, C, H, W)
        Originals, values in [0, 1] (values within 1e-6 of the range are accepted as rounding).
    reconstructions : torch.Tensor or numpy.ndarray, shape (N, C, H, W)
        Same shape as ``images``, values in [0, 1], e.g. ``autoencoder(images)[0]``.

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
        One value per image, in dB; ``inf`` for a reconstruction identical to its image.

    Raises
    ------
    InputError
        When either argument is not a 4-D array of numbers, the shapes differ, there is no image,
        or a value is NaN, infinite or outside [0, 1] (e.g. mean/std-normalised images: undo the
        normalisation first).
    """
    arrays = []
    for value, name in ((images, "images"), (reconstructions, "reconstructions")):
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu().double().numpy()
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"{name}: expected an array (N, C, H, W) of numbers, got {type(value).__name__} "
                             f"({err}).") from None
        if value.ndim != 4 or value.shape[0] == 0:
            raise InputError(f"{name}: expected a non-empty batch (N, C, H, W), got shape {value.shape}. "
                             f"Fix: one image (C, H, W) becomes a batch with {name}[None].")
        if not np.isfinite(value).all():
            raise InputError(f"{name}: contains NaN or infinite values; expected values in [0, 1].")
        low, high = float(value.min()), float(value.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise InputError(f"{name}: expected values in [0, 1], got [{low:.4g}, {high:.4g}]. Fix: images "
                             f"normalised with a mean and std must be un-normalised; uint8 images divided by 255.")
        arrays.append(np.clip(value, 0.0, 1.0))
    images, reconstructions = arrays
    if images.shape != reconstructions.shape:
        raise InputError(f"images, reconstructions: expected the same shape, got {images.shape} and "
                         f"{reconstructions.shape}.")
    mse = ((images - reconstructions) ** 2).reshape(len(images), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)
