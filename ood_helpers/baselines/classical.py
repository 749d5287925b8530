r"""Trivial and classical references on raw pixels: mean intensity, Isolation Forest, PCA, k nearest
neighbours."""
from __future__ import annotations

import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from ..api import BaseDetector
from ..validation import check_seed
from .base import BudgetedDetector, flat_pixels

__all__ = ["MeanIntensityDetector", "IsolationForestDetector", "PCAReconstructionDetector", "KNNDetector"]


class MeanIntensityDetector(BaseDetector):
    r"""Distance of an image's mean pixel from the training set's: the one-line baseline.

    .. math:: s(x) = \left| \frac{1}{CHW} \sum_{c,h,w} x_{chw} - \mu_{\text{train}} \right|

    with :math:`\mu_{\text{train}}` the mean pixel over all training images. If this wins, the
    benchmark measures brightness, not out-of-distribution detection.

    Parameters
    ----------
    in_channels : {1, 3} or None
        Channels of the images; None takes them from the training images.
    seed : int >= 0
        Seeds the held-out split (the score itself has no randomness).
    threshold_quantile : float in (0, 1]
        ``threshold_`` keeps this share of held-out in-distribution images "in".
    held_out_fraction : float in (0, 0.5)
        Share of the training images held out to set ``threshold_``.

    Attributes
    ----------
    train_mean_ : float
        :math:`\mu_{\text{train}}`, in [0, 1].
    history_ : dict
        ``train_seconds`` and ``n_images``.
    threshold_, in_channels_, n_train_
        See :class:`ood_helpers.api.BaseDetector`.

    Notes
    -----
    ``decision_function`` returns values in [0, 1]; higher = further from the training
    brightness = more out-of-distribution.
    """

    name = "mean intensity"

    def __init__(self, in_channels=None, seed=0, threshold_quantile=0.95, held_out_fraction=0.1):
        self.in_channels = in_channels
        self.seed = seed
        self.threshold_quantile = threshold_quantile
        self.held_out_fraction = held_out_fraction

    def _fit(self, train, held_out, generator):
        start = time.perf_counter()
        self.train_mean_ = float(train.detach().double().mean())
        self.history_ = {"train_seconds": time.perf_counter() - start, "n_images": len(train)}

    def _decision_batch(self, batch):
        return (batch.double().mean(dim=(1, 2, 3)) - self.train_mean_).abs()


class IsolationForestDetector(BudgetedDetector):
    r"""scikit-learn's Isolation Forest (Liu, Ting & Zhou, ICDM 2008) on raw pixels.

    Each of ``n_estimators`` random trees splits a random pixel at a random value until an image
    is isolated; images isolated in few splits are anomalous. The score is

    .. math:: s(x) = 2^{-\mathbb{E}[h(x)] / c(\psi)}

    (scikit-learn's ``-score_samples``), with :math:`h(x)` the path length of :math:`x` in a tree,
    :math:`\psi` = ``max_samples`` and :math:`c(\psi)` the average path length of an unsuccessful
    binary-search-tree lookup among :math:`\psi` items. Values lie in (0, 1]; higher = isolated
    sooner = more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`; ``device`` and ``progress``
        are ignored.

    Attributes
    ----------
    model_ : sklearn.ensemble.IsolationForest
        Fitted with ``random_state=seed`` on (N, C * 1024) flattened pixels.
    budget_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Notes
    -----
    Budget keys: ``n_estimators``, ``max_samples`` (capped at the number of images),
    ``train_limit``.
    """

    name = "IsolationForest"
    BUDGETS = {
        "quick": dict(n_estimators=100, max_samples=256, train_limit=4000),
        "classroom": dict(n_estimators=200, max_samples=256, train_limit=None),
        "paper": dict(n_estimators=500, max_samples=512, train_limit=None),
    }

    def _train(self, images, generator):
        self.model_ = IsolationForest(n_estimators=self.budget_["n_estimators"],
                                      max_samples=min(self.budget_["max_samples"], len(images)),
                                      random_state=check_seed(self.seed), n_jobs=1).fit(flat_pixels(images))

    def _decision_batch(self, batch):
        return -self.model_.score_samples(flat_pixels(batch))


class PCAReconstructionDetector(BudgetedDetector):
    r"""Reconstruction error from the top principal components of the training pixels (Pearson 1901;
    scikit-learn's randomized PCA): what a linear autoencoder would give.

    .. math:: s(x) = \frac{1}{CHW} \left\| x - \mu - W W^\top (x - \mu) \right\|^2

    with :math:`x` flattened to :math:`CHW` values, :math:`\mu` the training mean and :math:`W`
    the top ``n_components`` principal directions. Values are >= 0; higher = worse linear
    reconstruction = more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`; ``device`` and ``progress``
        are ignored.

    Attributes
    ----------
    model_ : sklearn.decomposition.PCA
        Fitted with ``random_state=seed``; ``n_components`` is capped at (images - 1).
    budget_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Notes
    -----
    Budget keys: ``n_components``, ``train_limit``.
    """

    name = "PCA reconstruction"
    BUDGETS = {
        "quick": dict(n_components=32, train_limit=4000),
        "classroom": dict(n_components=64, train_limit=None),
        "paper": dict(n_components=128, train_limit=None),
    }

    def _train(self, images, generator):
        flat = flat_pixels(images)
        n_components = min(self.budget_["n_components"], flat.shape[0] - 1, flat.shape[1])
        self.model_ = PCA(n_components=n_components, svd_solver="randomized",
                          random_state=check_seed(self.seed)).fit(flat)

    def _decision_batch(self, batch):
        flat = flat_pixels(batch)
        reconstruction = self.model_.inverse_transform(self.model_.transform(flat))
        return np.mean((flat - reconstruction) ** 2, axis=1, dtype=np.float64)


class KNNDetector(BudgetedDetector):
    r"""Distance to the k-th nearest training image, on raw pixels (scikit-learn's
    ``NearestNeighbors``): the non-parametric score of Sun, Ming, Zhu & Li, "Out-of-Distribution
    Detection with Deep Nearest Neighbors", ICML 2022, here on pixels instead of deep features.

    .. math:: s(x) = \lVert x - x_{(k)} \rVert_2

    with :math:`x_{(k)}` the k-th closest training image to :math:`x` (flattened to :math:`CHW`
    values in [0, 1]). Values are >= 0; higher = further from every training image = more
    out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`; ``device`` and ``progress``
        are ignored.

    Attributes
    ----------
    model_ : sklearn.neighbors.NearestNeighbors
        Brute-force Euclidean search over the (N, C * 1024) training pixels; ``n_neighbors`` is
        ``k`` capped at the number of training images.
    budget_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Notes
    -----
    Budget keys: ``k``, ``train_limit``. Scoring compares every image with every training image:
    time grows with the training set, memory with ``decision_function``'s ``batch_size``.
    """

    name = "k nearest neighbours (pixels)"
    origin = "Sun et al. 2022 (ICML), k-th neighbour distance, on pixels"
    BUDGETS = {
        "quick": dict(k=5, train_limit=4000),
        "classroom": dict(k=5, train_limit=None),
        "paper": dict(k=5, train_limit=None),
    }

    def _train(self, images, generator):
        self.model_ = NearestNeighbors(n_neighbors=min(self.budget_["k"], len(images)), algorithm="brute",
                                       n_jobs=1).fit(flat_pixels(images))

    def _decision_batch(self, batch):
        distances, _ = self.model_.kneighbors(flat_pixels(batch))
        return distances[:, -1].astype(np.float64)
