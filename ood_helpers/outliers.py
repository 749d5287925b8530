"""Synthetic outliers: the binary classifier's "out" class, made only from in-distribution images.

The paper trains an in/out classifier yet says no outliers are used. We make that honest: every
"out" example below is a transformation of an in-distribution *training* image. The evaluation
OOD dataset is never seen. Each family breaks one property that real in-distribution images have,
so the classifier must learn what "normal" looks like rather than what one particular outlier
dataset looks like:

- ``cutpaste``: a rectangle from another image pasted elsewhere (local structure broken; the
  classic CutPaste self-supervision of Li et al. 2021).
- ``mixup``: two images superimposed (a texture-on-texture image no camera produces).
- ``invert``: 1 - x (contrast polarity reversed: dark background becomes bright and vice versa).
- ``patch_shuffle``: 8x8 patches permuted (global layout broken, local statistics kept).
- ``grayscale``: colour removed (RGB data only: a colour-statistics anomaly).
- ``exposure``: strong gamma, much darker or much brighter (intensity statistics shifted).
- ``posterize``: two intensity levels per channel (an image simpler than the data).
- ``edges``: the Sobel edge map, thin bright lines on black (structure without texture).
- ``smooth``: only the coarsest 4x4 content kept (an image smoother than the data).

The last four cover images *simpler and smoother* than the training data: an autoencoder
reconstructs such images well, so reconstruction error alone calls them normal (the failure the
paper's CIFAR-10 -> MNIST number hides). Noise and blur are deliberately *not* outlier families:
they are nuisances (see ``noise.py``) and a noisy in-distribution image should still count as in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import InputError, as_image_batch

OUTLIER_FAMILIES = ("cutpaste", "mixup", "invert", "patch_shuffle", "grayscale", "exposure",
                    "posterize", "edges", "smooth")
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def families_for(channels: int) -> tuple[str, ...]:
    """The families that change an image with ``channels`` channels (grayscale needs colour)."""
    return tuple(f for f in OUTLIER_FAMILIES if channels == 3 or f != "grayscale")


def _uniform(n, low, high, generator):
    return low + (high - low) * torch.rand(n, generator=generator)


def _luma(x):
    return (x * _LUMA).sum(1, keepdim=True) if x.shape[1] == 3 else x


def _partner(n, generator):
    """A permutation with no fixed point, so every image is mixed with a different one."""
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    shift = int(torch.randint(1, n, (1,), generator=generator))
    perm = torch.randperm(n, generator=generator)
    partner = torch.empty_like(perm)
    partner[perm] = perm.roll(shift)
    return partner


def cutpaste(x, generator=None):
    """A rectangle (8-16 px a side) of another image pasted at a random place (Li et al., CutPaste, CVPR 2021).

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    out, partner = x.clone(), _partner(len(x), generator)
    size = x.shape[-1]
    for i in range(len(x)):
        h, w = (int(v) for v in torch.randint(size // 4, size // 2 + 1, (2,), generator=generator))
        sy, sx = int(torch.randint(0, size - h + 1, (1,), generator=generator)), int(torch.randint(0, size - w + 1, (1,), generator=generator))
        ty, tx = int(torch.randint(0, size - h + 1, (1,), generator=generator)), int(torch.randint(0, size - w + 1, (1,), generator=generator))
        out[i, :, ty:ty + h, tx:tx + w] = x[partner[i], :, sy:sy + h, sx:sx + w]
    return out


def mixup(x, generator=None):
    """lambda * x + (1 - lambda) * partner, lambda in [0.35, 0.65]: two images superimposed (after Zhang et al., mixup, 2018).

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    lam = _uniform(len(x), 0.35, 0.65, generator).view(-1, 1, 1, 1)
    return lam * x + (1 - lam) * x[_partner(len(x), generator)]


def invert(x, generator=None):
    """1 - x: contrast polarity reversed.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    return 1.0 - x


def patch_shuffle(x, generator=None, patch: int = 8):
    """The image cut into ``patch`` x ``patch`` tiles, randomly permuted: layout broken, local statistics kept.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    grid = size // patch
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch).reshape(n, c, grid * grid, patch, patch)
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(n)])
    patches = patches[torch.arange(n)[:, None], :, order].permute(0, 2, 1, 3, 4)
    return patches.reshape(n, c, grid, grid, patch, patch).permute(0, 1, 2, 4, 3, 5).reshape(n, c, size, size)


def grayscale(x, generator=None):
    """ITU-R 601 luma repeated to every channel (RGB only): colour removed.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    return _luma(x).expand_as(x).clone()


def exposure(x, generator=None):
    """x ** gamma with gamma in [2.5, 5] (much darker) or [0.15, 0.4] (much brighter), half each.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    dark = torch.rand(len(x), generator=generator) < 0.5
    gamma = torch.where(dark, _uniform(len(x), 2.5, 5.0, generator), _uniform(len(x), 0.15, 0.4, generator))
    return x.clamp_min(1e-6) ** gamma.view(-1, 1, 1, 1)


def posterize(x, generator=None):
    """Two levels per channel: 1 where the pixel exceeds the channel's mean, else 0.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    threshold = x.mean(dim=(2, 3), keepdim=True)
    return (x > threshold).float()


def edges(x, generator=None):
    """The Sobel gradient magnitude of the luma, scaled to a maximum of 1: lines without texture.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernel = torch.stack([sobel, sobel.t()]).unsqueeze(1)
    grad = F.conv2d(F.pad(_luma(x), (1, 1, 1, 1), mode="replicate"), kernel)
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
    magnitude = magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return magnitude.expand_as(x).clone()


def smooth(x, generator=None):
    """Only the 4x4 average-pooled content, upsampled bilinearly: an image smoother than the data.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    coarse = F.adaptive_avg_pool2d(x, 4)
    return F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)


_MAKERS = {f.__name__: f for f in (cutpaste, mixup, invert, patch_shuffle, grayscale, exposure, posterize, edges, smooth)}


def make_outliers(images, families=None, generator: torch.Generator | None = None):
    """Turn in-distribution images into synthetic outliers, one random family per image.

    Raises :class:`~ood_helpers.validation.InputError` for bad images or unknown families.

    images: float (N, C, 32, 32) in [0, 1]. families: names from ``OUTLIER_FAMILIES`` (default:
    every family that applies to C channels). Returns (outliers with the same shape and range,
    int64 family index per image into the ``families`` tuple used).
    """
    images = as_image_batch(images)
    families = tuple(families) if families is not None else families_for(images.shape[1])
    if not families:
        raise InputError("families: expected at least one outlier family.")
    for family in families:
        if family not in _MAKERS:
            raise InputError(f"families: unknown outlier family {family!r}; choose from {OUTLIER_FAMILIES}.")
    choice = torch.randint(len(families), (len(images),), generator=generator)
    out = images.clone()
    for index, family in enumerate(families):
        rows = torch.nonzero(choice == index).flatten()
        if len(rows):
            out[rows] = _MAKERS[family](images[rows], generator).clamp(0, 1)
    return out, choice


def apply_family(images, family: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one named family to every image (for galleries and per-family validation).

    ``images``: float (N, C, 32, 32) in [0, 1]; returns outliers of the same shape and range.
    Raises :class:`~ood_helpers.validation.InputError` for bad images or an unknown family.
    """
    out, _ = make_outliers(images, (family,), generator)
    return out
