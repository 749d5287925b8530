r"""A small gated PixelCNN (van den Oord et al. 2016) as an autoregressive likelihood baseline.

Architecture: gated layers with a vertical stack (rows above) and a horizontal stack (pixels to
the left in the same row), which removes the blind spot of the original masked PixelCNN. The
first layer is "type A" (a pixel never sees itself), the others "type B"; causality is enforced
with fixed weight masks. The output gives, per pixel, a mixture of discretized logistics over the
256 intensity levels (Salimans et al. 2017, PixelCNN++): with RGB images the mean of green depends
linearly on red and the mean of blue on red and green, so every subpixel is conditioned on all
earlier ones.

Score: negative log-likelihood in bits per dimension (higher = more out-of-distribution).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .deep import DeepBaseline


class GatedLayer(nn.Module):
    """One gated PixelCNN layer; ``first`` = mask type A (the current pixel is hidden).

    Parameters
    ----------
    channels : int
        Feature channels of both stacks.
    kernel : int
        Odd kernel size.
    first : bool
        Mask type A (the first layer) instead of B.
    """

    def __init__(self, channels: int, kernel: int, first: bool):
        super().__init__()
        self.kernel, self.first = kernel, first
        half = kernel // 2
        self.vertical = nn.Conv2d(channels, 2 * channels, (half + 1, kernel))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, half + 1))
        self.horizontal_out = nn.Conv2d(channels, channels, 1)
        vertical_mask = torch.ones_like(self.vertical.weight)
        horizontal_mask = torch.ones_like(self.horizontal.weight)
        if first:  # type A: the vertical stack sees only rows above, the horizontal only pixels left
            vertical_mask[:, :, -1] = 0
            horizontal_mask[:, :, :, -1] = 0
        self.register_buffer("vertical_mask", vertical_mask)
        self.register_buffer("horizontal_mask", horizontal_mask)

    @staticmethod
    def _gate(x):
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v, h):
        """(vertical, horizontal) feature maps (N, channels, H, W) -> the next layer's pair."""
        half = self.kernel // 2
        # vertical: output row i sees input rows i-half .. i (row i masked away in the first layer)
        v_pre = F.conv2d(F.pad(v, (half, half, half, 0)), self.vertical.weight * self.vertical_mask,
                         self.vertical.bias)
        # horizontal: output column j sees input columns j-half .. j of the same row
        h_pre = F.conv2d(F.pad(h, (half, 0, 0, 0)), self.horizontal.weight * self.horizontal_mask,
                         self.horizontal.bias)
        v_out = self._gate(v_pre)
        h_gated = self._gate(h_pre + self.vertical_to_horizontal(v_pre))
        h_out = self.horizontal_out(h_gated)
        return v_out, (h_out if self.first else h_out + h)


def mixture_parameter_count(in_channels: int, n_mix: int) -> int:
    """Output channels of the mixture head: per component a logit, per image channel a mean and a
    log scale, plus the C(C-1)/2 linear coefficients between channels."""
    return n_mix * (1 + 2 * in_channels + in_channels * (in_channels - 1) // 2)


def discretized_mix_logistic_nll(x: torch.Tensor, params: torch.Tensor, n_mix: int) -> torch.Tensor:
    """Per-image negative log-likelihood (nats) under a mixture of discretized logistics over 256 bins
    (Salimans et al. 2017).

    Parameters
    ----------
    x : torch.Tensor (N, C, H, W)
        Pixel values rescaled to [-1, 1].
    params : torch.Tensor (N, mixture_parameter_count(C, n_mix), H, W)
    n_mix : int
        Mixture components.

    Returns
    -------
    torch.Tensor (N,)
        :math:`-\\sum_{c,h,w} \\log P(x_{chw} \\mid x_{<chw})` in nats, >= 0.
    """
    n, c, height, width = x.shape
    logits = params[:, :n_mix]                                             # N, M, H, W
    rest = params[:, n_mix:].reshape(n, -1, c, n_mix, height, width)       # N, 2 or 3, C, M, H, W
    means, log_scales = rest[:, 0], rest[:, 1].clamp(min=-7.0)
    x = x.unsqueeze(2)                                                     # N, C, 1, H, W
    if c == 3:
        coeffs = torch.tanh(params[:, n_mix * 7:].reshape(n, 3, n_mix, height, width))
        means = torch.stack([means[:, 0],
                             means[:, 1] + coeffs[:, 0] * x[:, 0],
                             means[:, 2] + coeffs[:, 1] * x[:, 0] + coeffs[:, 2] * x[:, 1]], dim=1)
    centred = x - means
    inv_scale = torch.exp(-log_scales)
    plus_in = inv_scale * (centred + 1.0 / 255.0)
    min_in = inv_scale * (centred - 1.0 / 255.0)
    log_cdf_plus = plus_in - F.softplus(plus_in)              # log P(bin 0)
    log_one_minus_cdf_min = -F.softplus(min_in)               # log P(bin 255)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_scale * centred
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    log_bin = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_bin))
    log_probs = log_probs.sum(1) + torch.log_softmax(logits, dim=1)     # N, M, H, W
    return -torch.logsumexp(log_probs, dim=1).flatten(1).sum(1)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN: a 1x1 input convolution, ``layers`` gated layers (the first of mask type A,
    ``first_kernel`` wide; the others type B, 3 wide), and a 1x1 head giving the mixture parameters.

    Parameters
    ----------
    in_channels : int
    channels : int
        Feature channels.
    layers : int
    n_mix : int
        Logistic mixture components per pixel.
    first_kernel : int
    """

    def __init__(self, in_channels: int, channels: int, layers: int, n_mix: int, first_kernel: int = 5):
        super().__init__()
        self.n_mix = n_mix
        self.inp = nn.Conv2d(in_channels, channels, 1)   # 1x1: mixes channels of the same pixel only
        self.layers = nn.ModuleList([GatedLayer(channels, first_kernel, True)] +
                                    [GatedLayer(channels, 3, False) for _ in range(layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 4 * channels, 1), nn.ReLU(),
                                  nn.Conv2d(4 * channels, mixture_parameter_count(in_channels, n_mix), 1))
        with torch.no_grad():  # start with logistic scales of about 0.14 (on [-1, 1]) instead of 1: faster start
            self.head[-1].bias[n_mix * (1 + in_channels): n_mix * (1 + 2 * in_channels)] = -2.0

    def forward(self, x):
        """``x`` in [-1, 1]; returns the mixture parameters for every pixel given the pixels before it."""
        v = h = self.inp(x)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def nll(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image negative log-likelihood in nats: images (N, C, 32, 32) in [0, 1] -> (N,)."""
        x = images * 2.0 - 1.0
        return discretized_mix_logistic_nll(x, self(x), self.n_mix)


class PixelCNNDetector(DeepBaseline):
    r"""Small gated PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu,
    "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016) with a discretized
    logistic mixture output (Salimans et al., PixelCNN++, ICLR 2017); score = negative
    log-likelihood in bits per dimension.

    .. math::

        s(x) = -\frac{1}{C H W \ln 2} \sum_{i=1}^{CHW} \ln p_\theta(x_i \mid x_{<i})

    over the 256 intensity levels of each subpixel in raster order. Values are >= 0 (8 = a
    uniform guess); higher = less likely = more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Attributes
    ----------
    model_ : GatedPixelCNN
    budget_, device_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.deep.DeepBaseline`.

    Notes
    -----
    Budget keys: ``epochs``, ``channels``, ``layers``, ``first_kernel``, ``n_mix``,
    ``batch_size``, ``lr``, ``train_limit``. Trained by minimising the same bits per dimension.
    Scoring is the most memory-hungry of the baselines: lower ``decision_function``'s
    ``batch_size`` on a small GPU.
    """

    name = "PixelCNN"
    origin = "raw likelihood (Nalisnick et al. 2019: fails on Fashion-MNIST in / MNIST out)"
    BUDGETS = {
        "quick": dict(epochs=1, channels=12, layers=4, first_kernel=5, n_mix=3, batch_size=32, lr=2e-3,
                      train_limit=1200),
        "classroom": dict(epochs=2, channels=16, layers=5, first_kernel=5, n_mix=5, batch_size=32, lr=1e-3,
                          train_limit=3600),
        "paper": dict(epochs=50, channels=64, layers=12, first_kernel=7, n_mix=10, batch_size=64, lr=3e-4,
                      train_limit=None),
    }

    def _build(self):
        b = self.budget_
        return GatedPixelCNN(self.in_channels_, b["channels"], b["layers"], b["n_mix"], b["first_kernel"])

    def _bits_per_dim(self, batch):
        return self.model_.nll(batch) / (math.log(2.0) * batch[0].numel())

    def _loss(self, batch, generator):
        return self._bits_per_dim(batch).mean()

    def _score(self, batch):
        return self._bits_per_dim(batch)
