"""The one interface every detector follows."""
from __future__ import annotations

import numpy as np

from ..detector import NotFittedError
from ..validation import as_image_batch


class BaseDetector:
    """fit on in-distribution images (float N x C x 32 x 32 in [0, 1]); score: numpy (N,), higher = more OOD."""

    name = "base"

    def __init__(self, in_channels: int, seed: int = 0):
        self.in_channels, self.seed, self.fitted_ = in_channels, seed, False

    def fit(self, images) -> "BaseDetector":
        self._fit(as_image_batch(images, self.in_channels, "train_images"))
        self.fitted_ = True
        return self

    def score(self, images) -> np.ndarray:
        if not self.fitted_:
            raise NotFittedError(f"score: {type(self).__name__} is not fitted yet; call fit(train_images) first.")
        return np.asarray(self._score(as_image_batch(images, self.in_channels)), dtype=np.float64)

    def _fit(self, images):
        raise NotImplementedError

    def _score(self, images):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(in_channels={self.in_channels}, seed={self.seed})"
