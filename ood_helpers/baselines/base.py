"""The one interface every detector follows."""
from __future__ import annotations

import numpy as np
import torch

from ..detector import NotFittedError
from ..presets import PRESETS, Preset, default_preset_name
from ..validation import InputError, as_image_batch, check_choice


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


def preset_name(preset) -> str:
    """The preset's name: a :class:`Preset`, one of ``PRESETS``' names, or None for the default."""
    if isinstance(preset, Preset):
        return check_choice(preset.name, tuple(PRESETS), "preset.name")
    return check_choice(preset or default_preset_name(), tuple(PRESETS), "preset")


def check_in_channels(in_channels) -> int:
    if in_channels not in (1, 3):
        raise InputError(f"in_channels: expected 1 (grayscale) or 3 (RGB), got {in_channels!r}.")
    return int(in_channels)


def resolve_budget(cls, preset, overrides: dict) -> tuple[str, dict]:
    """(preset name, ``cls.BUDGETS[name]`` with ``overrides`` replacing single entries)."""
    name = preset_name(preset)
    unknown = set(overrides) - set(cls.BUDGETS[name])
    if unknown:
        raise InputError(f"{cls.__name__}: unknown budget option(s) {sorted(unknown)}; "
                         f"choose from {sorted(cls.BUDGETS[name])}.")
    return name, {**cls.BUDGETS[name], **overrides}


def subsample(images: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    """At most ``limit`` images, drawn with ``seed`` (order preserved)."""
    if limit is None or len(images) <= limit:
        return images
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return images[keep]


class BudgetedDetector(BaseDetector):
    """A baseline whose size comes from a per-preset budget: ``BUDGETS`` maps each preset name to
    a dict (at least ``train_limit``); keyword overrides replace single entries, e.g.
    ``VAEDetector(1, preset="quick", seed=0, epochs=1)``."""

    BUDGETS: dict = {}

    def __init__(self, in_channels: int, preset="quick", seed: int = 0, progress: bool = True, **overrides):
        super().__init__(check_in_channels(in_channels), int(seed))
        self.preset, self.budget = resolve_budget(type(self), preset, overrides)
        self.progress = bool(progress)

    def __repr__(self):
        return (f"{type(self).__name__}(in_channels={self.in_channels}, preset={self.preset!r}, seed={self.seed}, "
                f"fitted={self.fitted_})")
