"""Far-OOD sanity sets: synthetic images with no in-distribution content at all.

Benchmarks of out-of-distribution detection add such sets beside the real outlier dataset as
sanity checks (e.g. Hendrycks & Gimpel 2017, "Gaussian" and "uniform" noise; Hendrycks, Mazeika &
Dietterich 2019, Outlier Exposure): a detector that calls pure noise in-distribution has learned a
shortcut, whatever its AUROC on the tuned pair. Four sets, each seeded and the same for every
detector and seed:

- ``uniform noise``: every pixel and channel independent, uniform in [0, 1];
- ``gaussian noise``: every pixel and channel independent, normal with mean 0.5 and standard
  deviation 0.25, clipped to [0, 1];
- ``constant colour``: one colour per image (each channel uniform in [0, 1]; a grey level for one
  channel), the same at every pixel;
- ``rademacher noise``: every pixel and channel independently 0 or 1, with probability one half
  (Hendrycks, Mazeika & Dietterich 2019 use it as a far-OOD set).

None of them is ever used for training: the detector's synthetic negatives
(:mod:`ood_helpers.outliers`) are made from in-distribution training images. Two families of
negatives share a *kind* with three of these sets (:data:`RELATED_FAMILY`): ``pixel_shuffle``
(a training image's pixels in random places: noise) with the two noise sets, ``flat`` (a training
image's mean colour everywhere) with constant colour. ``rademacher noise`` has no related family:
it is the held-out check that the detector learned "no content" rather than one kind of image.
"""
from __future__ import annotations

import torch

from ..validation import check_choice, check_in_channels, check_int, check_seed

FAR_OOD_SETS = ("uniform noise", "gaussian noise", "constant colour", "rademacher noise")
# the synthetic outlier family of the same kind (made from training images), or None
RELATED_FAMILY = {"uniform noise": "pixel_shuffle", "gaussian noise": "pixel_shuffle", "constant colour": "flat",
                  "rademacher noise": None}
FAR_OOD_SEED = 20261130      # fixed: the sets are the same for every seed and detector
GAUSSIAN_MEAN, GAUSSIAN_STD = 0.5, 0.25

__all__ = ["FAR_OOD_SETS", "RELATED_FAMILY", "far_ood_images", "far_ood_suite"]


def far_ood_images(name: str, n: int, channels: int, seed: int = FAR_OOD_SEED, size: int = 32) -> torch.Tensor:
    """``n`` images of one far-OOD set.

    Parameters
    ----------
    name : one of :data:`FAR_OOD_SETS`
    n : int >= 1
    channels : {1, 3}
    seed : int >= 0
        The same seed gives the same images.
    size : int
        Height and width in pixels.

    Returns
    -------
    torch.Tensor (n, channels, size, size), float32 in [0, 1]

    Raises
    ------
    InputError
        Unknown ``name``, ``n`` < 1, ``channels`` not 1 or 3, ``seed`` < 0 or ``size`` < 1.
    """
    name = check_choice(name, FAR_OOD_SETS, "name")
    n, size = check_int(n, "n", 1, example=2000), check_int(size, "size", 1, example=32)
    channels, seed = check_in_channels(channels, "channels", allow_none=False), check_seed(seed)
    generator = torch.Generator().manual_seed(seed + FAR_OOD_SETS.index(name))
    shape = (n, channels, size, size)
    if name == "uniform noise":
        return torch.rand(shape, generator=generator)
    if name == "gaussian noise":
        return (GAUSSIAN_MEAN + GAUSSIAN_STD * torch.randn(shape, generator=generator)).clamp(0, 1)
    if name == "rademacher noise":
        return (torch.rand(shape, generator=generator) < 0.5).float()
    return torch.rand(n, channels, 1, 1, generator=generator).expand(shape).contiguous()


def far_ood_suite(channels: int, n: int = 2000, seed: int = FAR_OOD_SEED) -> dict:
    """Every far-OOD set, by name (in the order of :data:`FAR_OOD_SETS`).

    Parameters
    ----------
    channels : {1, 3}
    n : int >= 1
        Images per set.
    seed : int >= 0

    Returns
    -------
    dict of str -> torch.Tensor (n, channels, 32, 32), float32 in [0, 1]

    Raises
    ------
    InputError
        As :func:`far_ood_images`.
    """
    return {name: far_ood_images(name, n, channels, seed) for name in FAR_OOD_SETS}
