"""Detection metrics. Convention everywhere: higher score = more out-of-distribution, and the
out-of-distribution set is the positive class."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .validation import InputError


def _labels_scores(in_scores, out_scores):
    in_scores = np.asarray(in_scores, dtype=np.float64).ravel()
    out_scores = np.asarray(out_scores, dtype=np.float64).ravel()
    for name, values in (("in_scores", in_scores), ("out_scores", out_scores)):
        if values.size == 0:
            raise InputError(f"{name}: expected at least one score, got none.")
        if not np.isfinite(values).all():
            raise InputError(f"{name}: contains NaN or infinite scores.")
    labels = np.concatenate([np.zeros(in_scores.size), np.ones(out_scores.size)])
    return labels, np.concatenate([in_scores, out_scores])


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve: probability that a random out image outscores a random in image."""
    return float(roc_auc_score(*_labels_scores(in_scores, out_scores)))


def aupr(in_scores, out_scores) -> float:
    """Average precision with out-of-distribution as the positive class."""
    return float(average_precision_score(*_labels_scores(in_scores, out_scores)))


def fpr_at_tpr(in_scores, out_scores, tpr: float = 0.95) -> float:
    """False-positive rate (in images flagged as out) at the first threshold catching ``tpr`` of out."""
    fpr, tpr_curve, _ = roc_curve(*_labels_scores(in_scores, out_scores), drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


def roc_points(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of the ROC curve."""
    fpr, tpr, _ = roc_curve(*_labels_scores(in_scores, out_scores))
    return fpr, tpr


def bootstrap_auroc_ci(in_scores, out_scores, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for AUROC (in and out resampled separately)."""
    in_scores = np.asarray(in_scores, dtype=np.float64).ravel()
    out_scores = np.asarray(out_scores, dtype=np.float64).ravel()
    _labels_scores(in_scores, out_scores)
    rng = np.random.default_rng(seed)
    values = [auroc(rng.choice(in_scores, in_scores.size), rng.choice(out_scores, out_scores.size))
              for _ in range(n_boot)]
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def fpr_at_threshold(in_scores_reference, in_scores_test, keep: float = 0.95) -> float:
    """Share of ``in_scores_test`` flagged as out at the threshold that keeps ``keep`` of the reference.

    Used for noisy in-distribution images: the threshold is set on clean ones.
    """
    threshold = np.quantile(np.asarray(in_scores_reference, dtype=np.float64), keep)
    return float(np.mean(np.asarray(in_scores_test, dtype=np.float64) > threshold))


def summarize(in_scores, out_scores) -> dict:
    """AUROC, AUPR and FPR at 95% TPR in one dict."""
    return {"auroc": auroc(in_scores, out_scores), "aupr": aupr(in_scores, out_scores),
            "fpr95": fpr_at_tpr(in_scores, out_scores)}
