"""Trivial and classical references on raw pixels."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from .base import BaseDetector, BudgetedDetector, subsample


class MeanIntensityDetector(BaseDetector):
    """|mean pixel of the image - mean pixel of the training set|: the one-line baseline.

    If this wins, the benchmark measures brightness, not out-of-distribution detection.
    """

    name = "mean intensity"

    def _fit(self, images):
        self.train_mean_ = float(images.mean())

    def _score(self, images):
        return (images.mean(dim=(1, 2, 3)) - self.train_mean_).abs().numpy()


def _flat(images) -> np.ndarray:
    return images.flatten(1).numpy().astype(np.float32)


class IsolationForestDetector(BudgetedDetector):
    """scikit-learn's IsolationForest on raw pixels (seeded); score = minus its ``score_samples``,
    so images isolated in few random splits score high."""

    name = "IsolationForest"
    BUDGETS = {
        "quick": dict(n_estimators=100, max_samples=256, train_limit=4000),
        "classroom": dict(n_estimators=200, max_samples=256, train_limit=None),
        "paper": dict(n_estimators=500, max_samples=512, train_limit=None),
    }

    def _fit(self, images):
        images = subsample(images, self.budget["train_limit"], self.seed)
        self.model_ = IsolationForest(n_estimators=self.budget["n_estimators"],
                                      max_samples=min(self.budget["max_samples"], len(images)),
                                      random_state=self.seed, n_jobs=1).fit(_flat(images))

    def _score(self, images):
        return -self.model_.score_samples(_flat(images))


class PCAReconstructionDetector(BudgetedDetector):
    """scikit-learn PCA on raw pixels; score = mean squared reconstruction error from the top
    ``n_components`` principal components (what a linear autoencoder would give)."""

    name = "PCA reconstruction"
    BUDGETS = {
        "quick": dict(n_components=32, train_limit=4000),
        "classroom": dict(n_components=64, train_limit=None),
        "paper": dict(n_components=128, train_limit=None),
    }

    def _fit(self, images):
        images = subsample(images, self.budget["train_limit"], self.seed)
        flat = _flat(images)
        n_components = min(self.budget["n_components"], flat.shape[0] - 1, flat.shape[1])
        self.model_ = PCA(n_components=n_components, svd_solver="randomized", random_state=self.seed).fit(flat)

    def _score(self, images):
        flat = _flat(images)
        reconstruction = self.model_.inverse_transform(self.model_.transform(flat))
        return ((flat - reconstruction) ** 2).mean(1)
