"""Far-OOD sanity sets: synthetic images with no in-distribution content at all.

Benchmarks of out-of-distribution detection add such sets beside the real outlier dataset as
sanity checks (e.g. Hendrycks & Gimpel 2017, "Gaussian" and "uniform" noise; Hendrycks, Mazeika &
Dietterich 2019, Outlier Exposure): a detector that calls pure noise in-distribution has learned a
shortcut, whatever its AUROC on the tuned pair. Three sets, each seeded and the same for every
detector and seed:

- ``uniform noise``: every pixel and channel independent, uniform in [0, 1];
- ``gaussian noise``: every pixel and channel independent, normal with mean 0.5 and standard
  deviation 0.25, clipped to [0, 1];
- ``constant colour``: one colour per image (each channel uniform in [0, 1]; a grey level for one
  channel), the same at every pixel.

None of them is ever used for training: the detector's synthetic negatives
(:mod:`ood_helpers.outliers`) are made from in-distribution training images.
"""
from __future__ import annotations

import torch

from .validation import InputError, check_choice

FAR_OOD_SETS = ("uniform noise", "gaussian noise", "constant colour")
FAR_OOD_SEED = 20261130      # fixed: the sets are the same for every seed and detector
GAUSSIAN_MEAN, GAUSSIAN_STD = 0.5, 0.25

__all__ = ["FAR_OOD_SETS", "far_ood_images", "far_ood_suite"]


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
        Unknown ``name``, ``n`` < 1 or ``channels`` not 1 or 3.
    """
    name = check_choice(name, FAR_OOD_SETS, "name")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n: expected an int >= 1 (the number of images), got {n!r}.")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise InputError(f"channels: expected 1 (MNIST-like) or 3 (CIFAR-like), got {channels!r}.")
    generator = torch.Generator().manual_seed(seed + FAR_OOD_SETS.index(name))
    shape = (n, channels, size, size)
    if name == "uniform noise":
        return torch.rand(shape, generator=generator)
    if name == "gaussian noise":
        return (GAUSSIAN_MEAN + GAUSSIAN_STD * torch.randn(shape, generator=generator)).clamp(0, 1)
    return torch.rand(n, channels, 1, 1, generator=generator).expand(shape).contiguous()


def far_ood_suite(channels: int, n: int = 2000, seed: int = FAR_OOD_SEED) -> dict:
    """Every far-OOD set, by name (in the order of :data:`FAR_OOD_SETS`).

    Returns
    -------
    dict of str -> torch.Tensor (n, channels, 32, 32), float32 in [0, 1]

    Raises
    ------
    InputError
        As :func:`far_ood_images`.
    """
    return {name: far_ood_images(name, n, channels, seed) for name in FAR_OOD_SETS}
