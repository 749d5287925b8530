"""The paper's method, one short function per equation (Kim & Kim, sections 3.1-3.3).

Tensors live on the networks' device, ``generator`` too; every function is a forward pass
(the loop in :mod:`ood_helpers.loop` runs backward and the optimiser).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .outliers import make_outliers


def difference_image(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The difference image ``|I - D(E(I))|`` (section 3.2): two (N, C, 32, 32) in [0, 1] -> (N, C, 32, 32)."""
    return (images - reconstruction).abs()


def autoencoder_loss(autoencoder, clean: torch.Tensor, noise=None, generator=None) -> torch.Tensor:
    """Equation 1, one mini-batch: the mean ``|D(E(noise(I))) - I|`` (without ``noise``: of I itself).

    clean: (B, C, 32, 32) in [0, 1], B >= 2 in train mode. Returns a scalar >= 0.
    Raises RuntimeError (torch's) when the batch does not fit the network.
    """
    inputs = noise(clean, generator) if noise is not None else clean
    reconstruction, _ = autoencoder(inputs)
    return F.l1_loss(reconstruction, clean)


def classifier_batch(images: torch.Tensor, index: torch.Tensor, families=None, noise=None, generator=None):
    """One classifier mini-batch: ``images[index]`` (label 0) and as many synthetic outliers
    (label 1, ours: the paper does not say what its "out" examples are) made from other
    training images, with noise on both halves alike.

    images (N, C, 32, 32), index (B,) -> (batch (2B, C, 32, 32), labels (2B,) float 0 / 1).
    Raises InputError for an unknown outlier family.
    """
    partners = torch.randint(len(images), (len(index),), generator=generator, device=index.device)
    outliers, _ = make_outliers(images[partners], families, generator)
    batch = torch.cat([images[index], outliers])
    if noise is not None:
        batch = noise(batch, generator)
    labels = torch.arange(len(batch), device=batch.device).ge(len(index)).float()
    return batch, labels


def classifier_loss(classifier, autoencoder, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Equation 2: binary cross-entropy of the classifier's logit on ``|I - D(E(I))|``, with
    z = E(I) as its auxiliary input; the autoencoder is frozen. batch (2B, C, 32, 32), labels (2B,).
    Returns a scalar >= 0. Raises RuntimeError (torch's) when the batch does not fit the networks."""
    with torch.no_grad():
        reconstruction, z = autoencoder(batch)
    logits = classifier(difference_image(batch, reconstruction), z)
    return F.binary_cross_entropy_with_logits(logits, labels)
