"""A small convolutional variational autoencoder (Kingma & Welling 2014) as a likelihood baseline.

Encoder: three stride-2 convolutions (32 -> 16 -> 8 -> 4) and two linear heads (mean, log
variance of q(z|x)); decoder: the mirror image with transposed convolutions, giving per-pixel
Bernoulli logits. Trained by maximising the ELBO; the score is the negative ELBO in nats per
image (reconstruction cross-entropy + KL), estimated with ``score_samples`` seeded draws of z.
Higher = less likely under the model = more out-of-distribution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .deep import DeepBaseline


class ConvVAE(nn.Module):
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
        h = self.encoder(x)
        return self.mean(h), self.log_var(h).clamp(-12, 8)

    def decode(self, z):
        return self.decoder(self.expand(z))

    def negative_elbo(self, x, noise: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO (nats) with the reparameterised draw z = mean + std * noise."""
        mean, log_var = self.encode(x)
        z = mean + (0.5 * log_var).exp() * noise
        logits = self.decode(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return reconstruction + kl


class VAEDetector(DeepBaseline):
    """Convolutional VAE; score = negative ELBO per image (nats), higher = more out-of-distribution."""

    name = "VAE"
    BUDGETS = {
        "quick": dict(epochs=4, width=16, latent_dim=16, batch_size=64, lr=2e-3, train_limit=4000, score_samples=1),
        "classroom": dict(epochs=10, width=16, latent_dim=32, batch_size=64, lr=1e-3, train_limit=12000,
                          score_samples=4),
        "paper": dict(epochs=100, width=64, latent_dim=128, batch_size=64, lr=1e-3, train_limit=None,
                      score_samples=16),
    }

    def _build(self):
        return ConvVAE(self.in_channels, self.budget["width"], self.budget["latent_dim"])

    def _noise(self, n, generator):
        return torch.randn(n, self.budget["latent_dim"], generator=generator).to(self.device)

    def _loss(self, batch, generator):
        return self.model.negative_elbo(batch, self._noise(len(batch), generator)).mean()

    def _score_batch(self, batch, generator):
        draws = [self.model.negative_elbo(batch, self._noise(len(batch), generator))
                 for _ in range(self.budget["score_samples"])]
        return torch.stack(draws).mean(0)
