"""Input checks for the public API.

Every public entry point funnels images through :func:`as_image_batch`, so a user who passes
a uint8 array, a single image or a batch with the wrong channels gets either a documented
conversion or an error that names the argument, what was expected and what was given, instead
of a shape error from deep inside a convolution.
"""
from __future__ import annotations

import numpy as np
import torch

IMAGE_SIZE = 32


class InputError(ValueError):
    """Raised when an argument of the public API does not have the expected form."""


def as_image_batch(images, channels: int | None = None, name: str = "images",
                   allow_empty: bool = False) -> torch.Tensor:
    """Return ``images`` as a float32 tensor of shape (N, C, 32, 32) with values in [0, 1].

    Accepted conversions (documented, never silent about anything else):
    - numpy arrays become tensors;
    - uint8 input (0-255) is divided by 255;
    - a single image of shape (C, 32, 32) becomes a batch of one.

    Raises :class:`InputError` for anything else: a 2-D array, wrong height/width, a channel
    count other than ``channels``, float values outside [0, 1], NaN or inf, an empty batch.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor or numpy array of shape (N, C, 32, 32), "
                         f"got {type(images).__name__}.")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise InputError(f"{name}: expected 4 dimensions (N, C, 32, 32) or one image (C, 32, 32), "
                         f"got shape {tuple(images.shape)}.")
    if images.shape[0] == 0 and not allow_empty:
        raise InputError(f"{name}: the batch is empty (shape {tuple(images.shape)}); pass at least one image.")
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"{name}: expected height and width {IMAGE_SIZE}x{IMAGE_SIZE}, got "
                         f"{images.shape[-2]}x{images.shape[-1]} (shape {tuple(images.shape)}). "
                         f"Use ood_helpers.data.to_geometry to pad or resize.")
    if channels is not None and images.shape[1] != channels:
        raise InputError(f"{name}: expected {channels} channel(s) (N, {channels}, 32, 32), got "
                         f"{images.shape[1]} (shape {tuple(images.shape)}). "
                         f"Use ood_helpers.data.to_geometry(images, channels={channels}) to convert.")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.dtype == torch.bool or not torch.is_floating_point(images):
        raise InputError(f"{name}: expected float values in [0, 1] or uint8 values in 0-255, got dtype {images.dtype}.")
    images = images.float()
    if images.numel() and not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).sum())
        raise InputError(f"{name}: contains {bad} NaN or infinite value(s); clean or drop those images first.")
    if images.numel():
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            hint = " It looks like 0-255 values stored as float: divide by 255." if high > 1.5 else ""
            raise InputError(f"{name}: expected float values in [0, 1], got range [{low:.3g}, {high:.3g}].{hint}")
    return images


def check_choice(value, choices, name: str):
    """Raise InputError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{name}: unknown value {value!r}; choose one of {', '.join(map(repr, choices))}.")
    return value
