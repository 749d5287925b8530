"""Trivial and classical references on raw pixels."""
from __future__ import annotations

from .base import BaseDetector


class MeanIntensityDetector(BaseDetector):
    """|mean pixel of the image - mean pixel of the training set|: the one-line baseline.

    If this wins, the benchmark measures brightness, not out-of-distribution detection.
    """

    name = "mean intensity"

    def _fit(self, images):
        self.train_mean_ = float(images.mean())

    def _score(self, images):
        return (images.mean(dim=(1, 2, 3)) - self.train_mean_).abs().numpy()
