r"""A small convolutional variational autoencoder (Kingma & Welling, ICLR 2014) as a likelihood baseline.

Encoder: three stride-2 convolutions (32 -> 16 -> 8 -> 4) and two linear heads (mean, log
variance of q(z|x)); decoder: the mirror image with transposed convolutions, giving per-pixel
Bernoulli logits. Trained by maximising the evidence lower bound (ELBO); the score is the
negative ELBO in nats per image. Higher = less likely under the model = more out-of-distribution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .deep import DeepBaseline


class ConvVAE(nn.Module):
    """Convolutional VAE for (N, C, 32, 32) images in [0, 1] with a ``latent_dim`` Gaussian latent.

    Parameters
    ----------
    in_channels : int
    width : int
        Channels of the first convolution (doubled at each of the three stride-2 steps).
    latent_dim : int
    """

    def __init__(self, in_channels: int, width: int, latent_dim: int):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.mean = nn.Linear(4 * w * 16, latent_dim)
        self.log_var = nn.Linear(4 * w * 16, latent_dim)
        self.expand = nn.Linear(latent_dim, 4 * w * 16)
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Unflatten(1, (4 * w, 4, 4)),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(w, in_channels, 4, 2, 1))

    def encode(self, x):
        """Mean and log variance (clamped to [-12, 8]) of q(z|x), each (N, latent_dim)."""
        h = self.encoder(x)
        return self.mean(h), self.log_var(h).clamp(-12, 8)

    def decode(self, z):
        """Per-pixel Bernoulli logits (N, C, 32, 32) of p(x|z)."""
        return self.decoder(self.expand(z))

    def negative_elbo(self, x, noise: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO (nats), shape (N,), with the draw z = mean + std * noise.

        ``noise`` is (N, latent_dim) standard normal; the reconstruction term is the Bernoulli
        cross-entropy summed over pixels, the KL term is in closed form.
        """
        mean, log_var = self.encode(x)
        z = mean + (0.5 * log_var).exp() * noise
        logits = self.decode(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return reconstruction + kl


class VAEDetector(DeepBaseline):
    r"""Convolutional VAE (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014);
    score = negative ELBO per image in nats.

    .. math::

        s(x) = \frac{1}{S} \sum_{s=1}^{S} -\log p_\theta(x \mid z_s)
               + \mathrm{KL}\left(q_\phi(z \mid x) \,\|\, \mathcal{N}(0, I)\right),
        \qquad z_s = \mu_\phi(x) + \sigma_\phi(x) \odot \epsilon_s

    an upper bound on :math:`-\log p(x)`. :math:`p_\theta(x \mid z)` is a per-pixel Bernoulli
    (cross-entropy against the pixel values in [0, 1]); :math:`\epsilon_1 \dots \epsilon_S`
    (``S = score_samples``) are standard normal draws made once at the end of ``fit`` and shared
    by every image (common random numbers), so a score does not depend on the batch it is in.
    Values are positive nats; higher = less likely = more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Attributes
    ----------
    model_ : ConvVAE
    score_noise_ : torch.Tensor (score_samples, latent_dim)
        The :math:`\epsilon_s` used by ``decision_function``.
    budget_, device_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.deep.DeepBaseline`.

    Notes
    -----
    Budget keys: ``epochs``, ``width``, ``latent_dim``, ``batch_size``, ``lr``, ``train_limit``,
    ``score_samples``. Trained by minimising the same negative ELBO with one draw per image.
    """

    name = "VAE"
    origin = "raw likelihood, its ELBO bound (Nalisnick et al. 2019: fails on Fashion-MNIST in / MNIST out)"
    BUDGETS = {
        "quick": dict(epochs=4, width=16, latent_dim=16, batch_size=64, lr=2e-3, train_limit=4000, score_samples=1),
        "classroom": dict(epochs=10, width=16, latent_dim=32, batch_size=64, lr=1e-3, train_limit=12000,
                          score_samples=4),
        "paper": dict(epochs=100, width=64, latent_dim=128, batch_size=64, lr=1e-3, train_limit=None,
                      score_samples=16),
    }

    def _build(self):
        return ConvVAE(self.in_channels_, self.budget_["width"], self.budget_["latent_dim"])

    def _loss(self, batch, generator):
        noise = torch.randn(len(batch), self.budget_["latent_dim"], generator=generator).to(self.device_)
        return self.model_.negative_elbo(batch, noise).mean()

    def _after_training(self, generator):
        self.score_noise_ = torch.randn(self.budget_["score_samples"], self.budget_["latent_dim"],
                                        generator=generator)

    def _score(self, batch):
        noise = self.score_noise_.to(self.device_)
        total = torch.zeros(len(batch), device=batch.device)
        for draw in noise:
            total += self.model_.negative_elbo(batch, draw.expand(len(batch), -1))
        return total / len(noise)
