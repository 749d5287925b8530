"""Ours, not the paper's: the terms that :class:`~ood_helpers.OODDetector` adds to the paper's
classifier logit (switches ``latent_distance``, ``latent_mahalanobis``, ``difference_term`` and
``rotation_score``).

- The latent distance: how far the unit-length z = E(x) is from the nearest unit-length latent
  of a training image (deep nearest neighbours, Sun et al. 2022, with k = 1).
- The Mahalanobis term: the squared Mahalanobis distance of z from one Gaussian fitted to the
  training latents (Lee et al. 2018), two-sided: ``|distance - its held-out mean|``, so that an
  image whose z sits atypically close to the centre counts too.
- The difference term: the mean of the difference image, the autoencoder's own score; it lives
  in :mod:`ood_helpers.steps` and the detector only standardises it (off in every variant).
- The variant ``ours`` adds the first two: of 27 sums of standardised parts, that one had the
  best mean AUROC of validation images against outlier families the classifier never saw, over
  Fashion-MNIST, MNIST and CIFAR-10 in at two presets (``benchmarks/fashion_parts.py``,
  docs/findings.md); no test pair took part.
- The rotation score: a network that predicts by how many quarter turns an image was rotated
  (Gidaris et al. 2018); the Mahalanobis distance of its features scores semantic novelty (SSD,
  Sehwag et al. 2021; Hendrycks et al. 2019 use its loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .networks import ResNetTrunk, _float32
from .validation import check_int

ROTATIONS = (0, 90, 180, 270)   # degrees, counter-clockwise; label k means k quarter turns
ROTATION_MAX_SHIFT = 2          # pixels: the random translation of rotation training
LATENT_BANK_SIZE = 10_000       # training latents the latent distance keeps (a seeded draw beyond that)


@torch.no_grad()
def latent_bank(encoder, images: torch.Tensor, batch_size: int = 256, size: int = LATENT_BANK_SIZE,
                generator=None) -> torch.Tensor:
    """Unit-length latents (M, D) on the CPU of ``images`` (N, C, 32, 32), M = min(N, ``size``):
    the training latents that :func:`nearest_latent_distance` compares with."""
    if len(images) > size:
        images = images[torch.randperm(len(images), generator=generator, device=images.device)[:size]]
    return torch.cat([F.normalize(encoder(batch).float(), dim=1).cpu() for batch in images.split(batch_size)])


def nearest_latent_distance(z: torch.Tensor, bank: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Euclidean distance (N,) from each unit-length z (N, D) to its nearest row of ``bank`` (M, D)
    (Sun et al. 2022, k = 1); between 0 and 2. Memory grows with ``batch_size`` x M."""
    z, bank = F.normalize(z.double().cpu(), dim=1), bank.double()
    # the nearest row by the largest dot product (one matrix product), then its distance summed
    # directly: a near-0 distance taken from the product would change with the batch's size
    # (sqrt magnifies its rounding)
    return torch.cat([(part - bank[(part @ bank.T).argmax(dim=1)]).norm(dim=1)
                      for part in z.split(batch_size)]).float()


@torch.no_grad()
def fit_density(features, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Ledoit-Wolf mean (D,) and precision (D, D) of ``features(batch)`` over ``images`` (N, C, 32, 32)."""
    from sklearn.covariance import LedoitWolf

    values = torch.cat([features(batch).double().cpu() for batch in images.split(batch_size)])
    estimate = LedoitWolf().fit(values.numpy())
    return torch.from_numpy(estimate.location_).float(), torch.from_numpy(estimate.precision_).float()


def mahalanobis(values: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance (N,) of ``values`` (N, D) from a :func:`fit_density` estimate."""
    centred = values.float().cpu() - mean
    return ((centred @ precision) * centred).sum(1)


def rotate_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image in each of the four rotations: (N, C, H, H) -> ((4N, C, H, H), labels (4N,)),
    block k being every image turned k quarter turns counter-clockwise, with label k."""
    rotated = torch.cat([torch.rot90(images, k, (2, 3)) for k in range(len(ROTATIONS))])
    labels = torch.arange(len(ROTATIONS), device=images.device).repeat_interleave(len(images))
    return rotated, labels


class RotationNet(nn.Module):
    """A ResNet-18-topology network: images (N, C, 32, 32) -> logits (N, 4) over :data:`ROTATIONS`.

    To tell that a cat is upside down it must know what an upright cat looks like, so its
    features carry semantic familiarity that reconstruction does not.
    """

    def __init__(self, in_channels: int, width: int = 64, stem: str = "cifar"):
        super().__init__()
        self.trunk = ResNetTrunk(in_channels, width, stem)
        self.fc = nn.Linear(self.trunk.out_features, len(ROTATIONS))

    def forward(self, images):
        """Images (N, C, 32, 32) -> rotation logits (N, 4)."""
        return _float32(self.fc, self.trunk(images))


def rotation_augment(images: torch.Tensor, generator=None, max_shift: int = ROTATION_MAX_SHIFT) -> torch.Tensor:
    """A random shift of up to ``max_shift`` pixels (reflected) and, for colour, a random horizontal
    flip: without it a small network learns where pixels sit instead of which way is up (measured
    on MNIST classes 0-4: feature distance AUROC 0.70 without, 0.89 with). (N, C, H, W) -> same.

    Raises InputError when ``max_shift`` is not an int >= 0.
    """
    check_int(max_shift, "max_shift", 0, example=ROTATION_MAX_SHIFT)
    n, c, h, w = images.shape
    device = images.device
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator, device=device)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 2 * shift[:, 0] / w
    theta[:, 1, 2] = 2 * shift[:, 1] / h
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    moved = F.grid_sample(images, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    if c == 3:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        moved = torch.where(flip.view(-1, 1, 1, 1), moved.flip(3), moved)
    return moved


def rotation_loss(net, images: torch.Tensor, noise=None, generator=None) -> torch.Tensor:
    """One rotation-prediction step on ``images`` (B, C, 32, 32): cross-entropy of naming each of the
    four turns of every (shifted, noisy) image, in nats (log 4 = 1.386 for guessing)."""
    images = rotation_augment(images, generator)
    if noise is not None:
        images = noise(images, generator)
    rotated, labels = rotate_batch(images)
    return F.cross_entropy(net(rotated), labels)


@torch.no_grad()
def rotation_score(net, images, device=None, batch_size: int = 250) -> torch.Tensor:
    r"""Hendrycks et al.'s (2019) one-class score :math:`-\sum_k \log p(k \mid R_k(x))`, (N,) float32
    on the CPU, in nats (4 log 4 = 5.55 when the turns cannot be told apart); higher = more OOD.

    images: (N, C, 32, 32) in [0, 1] or uint8. Raises InputError for bad images or batch size.
    """
    from .validation import check_batch_size, iter_image_batches

    device = torch.device(device) if device is not None else next(net.parameters()).device
    net.eval()
    scores = []
    for batch in iter_image_batches(images, net.trunk.stem[0].in_channels, "images", check_batch_size(batch_size)):
        rotated, labels = rotate_batch(batch.to(device))
        losses = F.cross_entropy(net(rotated).float(), labels, reduction="none")
        scores.append(losses.view(4, len(batch)).sum(0).cpu())
    return torch.cat(scores)
