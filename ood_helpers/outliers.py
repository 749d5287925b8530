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
- ``pixel_shuffle``: every pixel moved to a random place (the image's colours, none of its
  structure: an image that *is* noise rather than an image *with* noise).
- ``flat``: the image's mean colour at every pixel (no content at all: the limit of ``smooth``).

``exposure``, ``posterize``, ``edges`` and ``smooth`` cover images *simpler and smoother* than the
training data: an autoencoder reconstructs such images well, so reconstruction error alone calls
them normal (the failure the paper's CIFAR-10 -> MNIST number hides). Noise and blur on a normal
image are deliberately *not* outlier families:
they are nuisances (see ``noise.py``) and a noisy in-distribution image should still count as in.
``pixel_shuffle`` and ``flat`` draw the other side of that line: noise *on* a normal image keeps
the image's content and is in; an image with no content left, only the statistics of its pixels
(shuffled: noise; averaged: one colour), is out. Without them, a classifier taught by noise
augmentation that noise is harmless calls pure noise "in" (measured: see the far-OOD groups of
``python -m ood_helpers compare``). They are close kin of the far-OOD sanity sets of
:mod:`ood_helpers.far_ood` (noise images, one-colour images), which is the point: they teach the
kind "no in-distribution content", made from training images, never from those test sets.

Two implementations: :func:`make_outliers` (the reference, on the CPU, family by family and, for
cutpaste, patch_shuffle and pixel_shuffle, image by image) and :func:`make_outliers_batched` (the fast path of
:mod:`ood_helpers.training`: the same families with the same parameters, on the images' device,
without host synchronisation, as a fixed number of batched kernels). They draw their random
numbers in different orders, so one seed gives different (equally distributed) outliers.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .validation import InputError, as_image_batch

OUTLIER_FAMILIES = ("cutpaste", "mixup", "invert", "patch_shuffle", "grayscale", "exposure",
                    "posterize", "edges", "smooth", "pixel_shuffle", "flat")
# the families before pixel_shuffle and flat (ood_helpers 0.2): the stored CPU reference losses were made with them
LEGACY_FAMILIES = OUTLIER_FAMILIES[:9]
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


def pixel_shuffle(x, generator=None):
    """Every pixel moved to a random place (one permutation per image, shared by its channels): the
    image's colour histogram without any of its spatial structure, an image that is only noise.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    n, c, h, w = x.shape
    order = torch.stack([torch.randperm(h * w, generator=generator) for _ in range(n)])
    pixels = x.reshape(n, c, h * w)
    return pixels.gather(2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def flat(x, generator=None):
    """The image's mean colour (per channel) at every pixel: an image with no content at all.

    ``x``: float (N, C, 32, 32) in [0, 1]; returns the same shape (clipped to [0, 1] by
    :func:`make_outliers`). ``generator`` draws the random parts (seeded runs reproduce)."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


_MAKERS = {f.__name__: f for f in (cutpaste, mixup, invert, patch_shuffle, grayscale, exposure, posterize, edges,
                                   smooth, pixel_shuffle, flat)}


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


# -- the batched versions: any device, no host synchronisation, no per-image Python loop -------------
@functools.lru_cache(maxsize=16)
def _constants(device: torch.device, dtype: torch.dtype) -> dict:
    """Luma weights and Sobel kernels, made once per device (a host-to-device copy waits for the GPU)."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    return {"luma": _LUMA.to(device, dtype), "sobel": torch.stack([sobel, sobel.t()]).unsqueeze(1).to(device, dtype)}


def _partner_batched(n: int, generator, device) -> torch.Tensor:
    """:func:`_partner` without host synchronisation: a permutation with no fixed point."""
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    perm = torch.randperm(n, generator=generator, device=device)
    shift = torch.randint(1, n, (1,), generator=generator, device=device)
    position = torch.empty_like(perm)
    position[perm] = torch.arange(n, device=device)
    return perm[(position - shift) % n]   # partner[perm[j]] = perm[j - shift], as perm.roll(shift)


def _uniform_batched(n, low, high, generator, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _luma_batched(x):
    return (x * _constants(x.device, x.dtype)["luma"]).sum(1, keepdim=True) if x.shape[1] == 3 else x


def _cutpaste_batched(x, generator):
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    device = x.device
    sides = torch.randint(size // 4, size // 2 + 1, (n, 2), generator=generator, device=device)   # h, w
    fractions = torch.rand(n, 4, generator=generator, device=device)                              # sy, sx, ty, tx
    starts = (fractions * (size - sides + 1).repeat(1, 2)).long()   # floor(u * positions) < positions
    source_start, target_start = starts[:, :2], starts[:, 2:]
    grid = torch.arange(size, device=device)
    inside = (grid >= target_start[:, :, None]) & (grid < (target_start + sides)[:, :, None])   # (n, 2, size)
    mask = inside[:, 0, :, None] & inside[:, 1, None, :]                                        # (n, size, size)
    rows = (grid - target_start[:, :1] + source_start[:, :1]).clamp(0, size - 1)                # (n, size)
    cols = (grid - target_start[:, 1:] + source_start[:, 1:]).clamp(0, size - 1)
    source = x[_partner_batched(n, generator, device)]
    source = source.gather(2, rows[:, None, :, None].expand(n, c, size, size))
    source = source.gather(3, cols[:, None, None, :].expand(n, c, size, size))
    return torch.where(mask[:, None], source, x)


def _mixup_batched(x, generator):
    lam = _uniform_batched(len(x), 0.35, 0.65, generator, x.device).view(-1, 1, 1, 1)
    return lam * x + (1 - lam) * x[_partner_batched(len(x), generator, x.device)]


def _patch_shuffle_batched(x, generator, patch: int = 8):
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    grid = size // patch
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch).reshape(n, c, grid * grid, patch, patch)
    order = torch.rand(n, grid * grid, generator=generator, device=x.device).argsort(1)   # a permutation per image
    patches = patches[torch.arange(n, device=x.device)[:, None], :, order].permute(0, 2, 1, 3, 4)
    return patches.reshape(n, c, grid, grid, patch, patch).permute(0, 1, 2, 4, 3, 5).reshape(n, c, size, size)


def _pixel_shuffle_batched(x, generator):
    n, c, h, w = x.shape
    order = torch.rand(n, h * w, generator=generator, device=x.device).argsort(1)   # a permutation per image
    return x.reshape(n, c, h * w).gather(2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def _grayscale_batched(x, generator):
    return _luma_batched(x).expand_as(x)


def _exposure_batched(x, generator):
    n, device = len(x), x.device
    dark = torch.rand(n, generator=generator, device=device) < 0.5
    gamma = torch.where(dark, _uniform_batched(n, 2.5, 5.0, generator, device),
                        _uniform_batched(n, 0.15, 0.4, generator, device))
    return x.clamp_min(1e-6) ** gamma.view(-1, 1, 1, 1)


def _edges_batched(x, generator):
    grad = F.conv2d(F.pad(_luma_batched(x), (1, 1, 1, 1), mode="replicate"), _constants(x.device, x.dtype)["sobel"])
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
    magnitude = magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return magnitude.expand_as(x)


_BATCHED = {"cutpaste": _cutpaste_batched, "mixup": _mixup_batched, "invert": invert,
            "patch_shuffle": _patch_shuffle_batched, "grayscale": _grayscale_batched,
            "exposure": _exposure_batched, "posterize": posterize, "edges": _edges_batched, "smooth": smooth,
            "pixel_shuffle": _pixel_shuffle_batched, "flat": flat}


def check_families(families, channels: int) -> tuple[str, ...]:
    """``families`` as a tuple of known names (None = every family for ``channels`` channels).

    Raises
    ------
    InputError
        No family, or an unknown one.
    """
    families = tuple(families) if families is not None else families_for(channels)
    if not families:
        raise InputError("families: expected at least one outlier family.")
    for family in families:
        if family not in _MAKERS:
            raise InputError(f"families: unknown outlier family {family!r}; choose from {OUTLIER_FAMILIES}.")
    return families


def make_outliers_batched(images: torch.Tensor, families=None, generator: torch.Generator | None = None):
    """:func:`make_outliers` for the training fast path: on the images' device, no host synchronisation.

    The same families with the same parameters; each family is computed for the whole batch and
    every image keeps its own family's result (``torch.where``), so the work does not depend on
    the draw. Partners (cutpaste, mixup) are other images of the batch.

    Parameters
    ----------
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on any device
        Not validated (the training loop passes validated images).
    families : sequence of str or None
        Names from ``OUTLIER_FAMILIES`` (None = every family that applies to C channels).
    generator : torch.Generator or None
        On the images' device (None = the device's default generator).

    Returns
    -------
    (torch.Tensor (N, C, 32, 32) in [0, 1], torch.Tensor (N,) int64)
        The outliers and each image's family index into ``families``, both on the images' device.

    Raises
    ------
    InputError
        No family, or an unknown one.
    """
    families = check_families(families, images.shape[1])
    choice = torch.randint(len(families), (len(images),), generator=generator, device=images.device)
    out = images
    for index, family in enumerate(families):
        made = _BATCHED[family](images, generator).clamp(0, 1)
        out = torch.where((choice == index).view(-1, 1, 1, 1), made, out)
    return (out if out is not images else images.clone()), choice


def apply_family(images, family: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply one named family to every image (for galleries and per-family validation).

    ``images``: float (N, C, 32, 32) in [0, 1]; returns outliers of the same shape and range.
    Raises :class:`~ood_helpers.validation.InputError` for bad images or an unknown family.
    """
    out, _ = make_outliers(images, (family,), generator)
    return out
