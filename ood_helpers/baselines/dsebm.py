"""DSEBM: deep structured energy-based model (Zhai, Cheng, Lu & Zhang, ICML 2016).

The energy of an image x is

    E(x) = 1/2 ||x - b'||^2 - sum_j softplus(h_j(x))

where h is a small convolutional network (two stride-2 convolutions with softplus, then a
linear layer) and b' a learned image-shaped bias. The model is trained by denoising score
matching: for x~ = x + sigma * noise, the "reconstruction" x~ - dE/dx(x~) must recover x, i.e. the
model's score -dE/dx learns to point from noisy images back to clean ones. This needs the
gradient of E with respect to its input inside the loss (``create_graph=True``).

Score: the energy E(x) of the clean image (the paper's energy criterion). Higher = more
out-of-distribution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .deep import DeepBaseline


class EnergyNet(nn.Module):
    def __init__(self, in_channels: int, width: int, features: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1), nn.Softplus(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.Softplus(),
            nn.Flatten(), nn.Linear(2 * width * 64, features))
        self.bias = nn.Parameter(torch.full((1, in_channels, 32, 32), 0.5))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image energy, shape (N,)."""
        quadratic = 0.5 * (x - self.bias).pow(2).flatten(1).sum(1)
        return quadratic - F.softplus(self.body(x)).sum(1)


class DSEBMDetector(DeepBaseline):
    """Deep structured energy-based model trained by denoising score matching; score = energy."""

    name = "DSEBM"
    BUDGETS = {
        "quick": dict(epochs=3, width=16, features=128, noise_std=0.1, batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, width=16, features=256, noise_std=0.1, batch_size=64, lr=1e-3,
                          train_limit=12000),
        "paper": dict(epochs=100, width=64, features=512, noise_std=0.1, batch_size=64, lr=1e-4, train_limit=None),
    }

    def _build(self):
        return EnergyNet(self.in_channels, self.budget["width"], self.budget["features"])

    def _loss(self, batch, generator):
        noisy = batch + self.budget["noise_std"] * torch.randn(batch.shape, generator=generator).to(self.device)
        noisy.requires_grad_(True)
        grad = torch.autograd.grad(self.model.energy(noisy).sum(), noisy, create_graph=True)[0]
        reconstruction = noisy - grad
        return (batch - reconstruction).pow(2).flatten(1).sum(1).mean()

    def _score_batch(self, batch, generator):
        return self.model.energy(batch)
