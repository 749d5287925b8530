"""Synthetic outliers: the classifier's "out" class, made only from in-distribution training images.

The paper does not say where its "out" examples come from; ours are transformations of
in-distribution training images, so no real outlier is ever seen. Each family breaks one property
real images have: ``cutpaste`` (a rectangle of another image, Li et al. 2021), ``mixup`` (two
images superimposed), ``invert`` (1 - x), ``patch_shuffle`` (8x8 tiles permuted), ``grayscale``
(colour removed), ``exposure`` (strong gamma), ``posterize`` (two levels), ``edges`` (Sobel map),
``smooth`` (4x4 content only), ``pixel_shuffle`` (pixels in random places: an image that *is*
noise) and ``flat`` (one colour). Noise *on* an image is not a family: it is the paper's
augmentation (:mod:`ood_helpers.noise`), and a noisy in-distribution image should count as in.

One implementation of each family, batched, on the images' device (``generator`` lives there
too); :func:`~ood_helpers.noise.per_choice` gives each image its own family.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .noise import per_choice
from .validation import InputError, as_image_batch

OUTLIER_FAMILIES = ("cutpaste", "mixup", "invert", "patch_shuffle", "grayscale", "exposure",
                    "posterize", "edges", "smooth", "pixel_shuffle", "flat")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)   # ITU-R 601
SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def families_for(channels: int) -> tuple[str, ...]:
    """The families that change an image with ``channels`` channels (grayscale needs colour)."""
    return tuple(f for f in OUTLIER_FAMILIES if channels == 3 or f != "grayscale")


def check_families(families, channels: int, name: str = "families") -> tuple[str, ...]:
    """``families`` (a name, names, or None = every family for ``channels``) as a tuple; InputError otherwise."""
    available = families_for(channels)
    if families is None:
        return available
    chosen = (families,) if isinstance(families, str) else tuple(families)
    unknown = [family for family in chosen if family not in available]
    if unknown or not chosen:
        raise InputError(f"{name}: expected a non-empty selection of {available} for {channels} channel(s), got "
                         f"{families!r}. Fix: {name}=None (every family) or names from that list.")
    return chosen


def _uniform(n, low, high, generator, device):
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _luma(x):
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True) if x.shape[1] == 3 else x


def _partner(n: int, generator, device) -> torch.Tensor:
    """For each image another one of the batch: a permutation with no fixed point."""
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    perm = torch.randperm(n, generator=generator, device=device)
    shift = torch.randint(1, n, (1,), generator=generator, device=device)
    position = torch.empty_like(perm)
    position[perm] = torch.arange(n, device=device)
    return perm[(position - shift) % n]


def cutpaste(x, generator=None):
    """A rectangle (8-16 px a side) of another image pasted at a random place (Li et al., CutPaste, 2021)."""
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    device = x.device
    sides = torch.randint(size // 4, size // 2 + 1, (n, 2), generator=generator, device=device)   # h, w
    starts = (torch.rand(n, 4, generator=generator, device=device) * (size - sides + 1).repeat(1, 2)).long()
    source_start, target_start = starts[:, :2], starts[:, 2:]
    grid = torch.arange(size, device=device)
    inside = (grid >= target_start[:, :, None]) & (grid < (target_start + sides)[:, :, None])   # (n, 2, size)
    mask = inside[:, 0, :, None] & inside[:, 1, None, :]
    rows = (grid - target_start[:, :1] + source_start[:, :1]).clamp(0, size - 1)
    cols = (grid - target_start[:, 1:] + source_start[:, 1:]).clamp(0, size - 1)
    source = x[_partner(n, generator, device)]
    source = source.gather(2, rows[:, None, :, None].expand(n, c, size, size))
    source = source.gather(3, cols[:, None, None, :].expand(n, c, size, size))
    return torch.where(mask[:, None], source, x)


def mixup(x, generator=None):
    """lam * x + (1 - lam) * another image, lam in [0.35, 0.65] (after Zhang et al., mixup, 2018)."""
    lam = _uniform(len(x), 0.35, 0.65, generator, x.device).view(-1, 1, 1, 1)
    return lam * x + (1 - lam) * x[_partner(len(x), generator, x.device)]


def invert(x, generator=None):
    """1 - x: contrast polarity reversed."""
    return 1.0 - x


def patch_shuffle(x, generator=None, patch: int = 8):
    """The image cut into ``patch`` x ``patch`` tiles, randomly permuted: layout broken, local statistics kept."""
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    grid = size // patch
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch).reshape(n, c, grid * grid, patch, patch)
    order = torch.rand(n, grid * grid, generator=generator, device=x.device).argsort(1)   # a permutation per image
    patches = patches[torch.arange(n, device=x.device)[:, None], :, order].permute(0, 2, 1, 3, 4)
    return patches.reshape(n, c, grid, grid, patch, patch).permute(0, 1, 2, 4, 3, 5).reshape(n, c, size, size)


def grayscale(x, generator=None):
    """ITU-R 601 luma repeated to every channel (RGB only): colour removed."""
    return _luma(x).expand_as(x)


def exposure(x, generator=None):
    """x ** gamma, gamma in [2.5, 5] (much darker) or [0.15, 0.4] (much brighter), half each."""
    n, device = len(x), x.device
    dark = torch.rand(n, generator=generator, device=device) < 0.5
    gamma = torch.where(dark, _uniform(n, 2.5, 5.0, generator, device), _uniform(n, 0.15, 0.4, generator, device))
    return x.clamp_min(1e-6) ** gamma.view(-1, 1, 1, 1)


def posterize(x, generator=None):
    """Two levels per channel: 1 where the pixel exceeds the channel's mean, else 0."""
    return (x > x.mean(dim=(2, 3), keepdim=True)).to(x.dtype)


def edges(x, generator=None):
    """The Sobel gradient magnitude of the luma, scaled to a maximum of 1: lines without texture."""
    sobel = torch.tensor(SOBEL, dtype=x.dtype, device=x.device)
    grad = F.conv2d(F.pad(_luma(x), (1, 1, 1, 1), mode="replicate"), torch.stack([sobel, sobel.t()]).unsqueeze(1))
    magnitude = grad.pow(2).sum(1, keepdim=True).sqrt()
    return (magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)).expand_as(x)


def smooth(x, generator=None):
    """Only the 4x4 average-pooled content, upsampled bilinearly: an image smoother than the data."""
    return F.interpolate(F.adaptive_avg_pool2d(x, 4), size=x.shape[-2:], mode="bilinear", align_corners=False)


def pixel_shuffle(x, generator=None):
    """Every pixel moved to a random place (one permutation per image): its colours, none of its structure."""
    n, c, h, w = x.shape
    order = torch.rand(n, h * w, generator=generator, device=x.device).argsort(1)
    return x.reshape(n, c, h * w).gather(2, order[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def flat(x, generator=None):
    """The image's mean colour at every pixel: an image with no content at all."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x)


FAMILY_MAKERS = {f.__name__: f for f in (cutpaste, mixup, invert, patch_shuffle, grayscale, exposure, posterize,
                                         edges, smooth, pixel_shuffle, flat)}


def make_outliers(images: torch.Tensor, families=None, generator: torch.Generator | None = None):
    """Synthetic outliers, one random family per image, made from in-distribution ``images``.

    images (N, C, H, W) in [0, 1] on any device (``generator`` on the same device) ->
    (outliers (N, C, H, W) in [0, 1], family index (N,) into the families used). Partners
    (cutpaste, mixup) are other images of the batch. Raises InputError for unknown families.
    """
    families = check_families(families, images.shape[1])
    choice = torch.randint(len(families), (len(images),), generator=generator, device=images.device)
    makers = [lambda x, f=FAMILY_MAKERS[family]: f(x, generator).clamp(0, 1) for family in families]
    return per_choice(images, choice, makers), choice


def apply_family(images, family: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """One named family applied to every image (galleries, per-family validation).

    images: (N, C, 32, 32) in any form :func:`~ood_helpers.validation.as_image_batch` takes.
    Raises InputError for bad images or an unknown family.
    """
    images = as_image_batch(images)
    return make_outliers(images, check_families((family,), images.shape[1], "family"), generator)[0]
