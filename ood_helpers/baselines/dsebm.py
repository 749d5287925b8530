r"""DSEBM: deep structured energy-based model (Zhai, Cheng, Lu & Zhang, ICML 2016).

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
    """The energy :math:`E(x) = \\tfrac12 \\|x - b'\\|^2 - \\sum_j \\mathrm{softplus}(h_j(x))` of
    (N, C, 32, 32) images.

    Parameters
    ----------
    in_channels : int
    width : int
        Channels of the first stride-2 convolution (doubled in the second).
    features : int
        Number of units :math:`h_j`.
    """

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
    r"""Deep structured energy-based model (Zhai, Cheng, Lu & Zhang, "Deep Structured Energy
    Based Models for Anomaly Detection", ICML 2016), trained by denoising score matching;
    score = energy of the clean image (the paper's energy criterion).

    .. math::

        s(x) = E_\theta(x) = \tfrac{1}{2} \lVert x - b' \rVert^2 - \sum_j \mathrm{softplus}(h_j(x))

    with :math:`b'` a learned image-shaped bias and :math:`h` a small convolutional network; the
    model density is :math:`p(x) \propto e^{-E(x)}`, so higher energy = less likely = more
    out-of-distribution. Values are real numbers (nats up to the unknown log normaliser).
    Training minimises :math:`\lVert x - (\tilde x - \nabla_x E(\tilde x)) \rVert^2` with
    :math:`\tilde x = x + \sigma \epsilon`, :math:`\sigma` = ``noise_std``.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Attributes
    ----------
    model_ : EnergyNet
    budget_, device_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.deep.DeepBaseline`.

    Notes
    -----
    Budget keys: ``epochs``, ``width``, ``features``, ``noise_std``, ``batch_size``, ``lr``,
    ``train_limit``.
    """

    name = "DSEBM"
    BUDGETS = {
        "quick": dict(epochs=3, width=16, features=128, noise_std=0.1, batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, width=16, features=256, noise_std=0.1, batch_size=64, lr=1e-3,
                          train_limit=12000),
        "paper": dict(epochs=100, width=64, features=512, noise_std=0.1, batch_size=64, lr=1e-4, train_limit=None),
    }

    def _build(self):
        return EnergyNet(self.in_channels_, self.budget_["width"], self.budget_["features"])

    def _loss(self, batch, generator):
        noise = torch.randn(batch.shape, generator=generator).to(self.device_)
        noisy = (batch + self.budget_["noise_std"] * noise).requires_grad_(True)
        grad = torch.autograd.grad(self.model_.energy(noisy).sum(), noisy, create_graph=True)[0]
        reconstruction = noisy - grad
        return (batch - reconstruction).pow(2).flatten(1).sum(1).mean()

    def _score(self, batch):
        return self.model_.energy(batch)
