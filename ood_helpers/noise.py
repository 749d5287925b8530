"""Noise families with one severity knob: the paper's noise-addition augmentation (section 3.3).

``severity`` in [0, 1] reads roughly as a standard deviation in pixel units: 0.1 is Gaussian
noise of std 0.1, speckle of relative std 0.1, salt-and-pepper on 10% of pixels, Poisson noise
of std about 0.1 * sqrt(intensity), a Gaussian blur of sigma 0.3 pixels. One implementation of
each family, batched on the images' device; ``generator`` must live on that device too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import InputError, as_image_batch, check_choice

NOISE_FAMILIES = ("gaussian", "salt_pepper", "speckle", "poisson", "blur")
BLUR_SIGMA_PER_SEVERITY = 3.0


def gaussian_blur(images: torch.Tensor, sigma, radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur, reflect padding; one ``sigma`` (pixels, > 0) per image or for all.

    images (N, C, H, W) -> (N, C, H, W). Image i uses the taps within ``round(3 sigma_i)``;
    ``radius`` (default from the largest sigma) bounds the kernel and must be below H and W.
    """
    n, c, h, w = images.shape
    sigma = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).expand(n)
    own = torch.round(3 * sigma).clamp_min(1)
    radius = int(own.max()) if radius is None else radius   # callers that know it spare a device sync
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2) * (offsets.abs() <= own[:, None])
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)   # (N * C, 2 radius + 1)
    x = F.pad(images.reshape(1, n * c, h, w), (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c).view(n, c, h, w)


def noisy(images: torch.Tensor, family: str, severity: torch.Tensor, generator=None, radius: int = 1) -> torch.Tensor:
    """``images`` (N, C, H, W) in [0, 1] with ``family``'s noise at ``severity`` (N,) > 0, clipped to [0, 1]."""
    s = severity.view(-1, 1, 1, 1)
    if family == "gaussian":
        out = images + s * torch.randn(images.shape, generator=generator, device=images.device)
    elif family == "speckle":
        out = images * (1 + s * torch.randn(images.shape, generator=generator, device=images.device))
    elif family == "salt_pepper":
        draw = torch.rand((2, len(images), 1, *images.shape[2:]), generator=generator, device=images.device)
        out = torch.where(draw[0] < s, (draw[1] < 0.5).to(images.dtype), images)
    elif family == "poisson":
        photons = 1.0 / s ** 2
        out = torch.poisson(images * photons, generator=generator) / photons
    else:
        out = gaussian_blur(images, BLUR_SIGMA_PER_SEVERITY * severity, radius)
    return out.clamp(0.0, 1.0)


def per_choice(images: torch.Tensor, choice: torch.Tensor, makers, *per_image: torch.Tensor) -> torch.Tensor:
    """``makers[choice[i]](image i, per_image[.][i])`` for every image (choice -1: unchanged).

    (N, C, H, W) -> a new (N, C, H, W). On a CPU each maker runs on its own rows only; elsewhere
    on the whole batch, each image keeping its own result, so the device never waits for the host.
    """
    out = images.clone()
    for index, make in enumerate(makers):
        if images.device.type == "cpu":
            rows = (choice == index).nonzero().flatten()
            if len(rows):
                out[rows] = make(images[rows], *(values[rows] for values in per_image))
        else:
            out = torch.where((choice == index).view(-1, 1, 1, 1), make(images, *per_image), out)
    return out


def _radius(max_severity: float) -> int:
    return max(1, int(round(3 * BLUR_SIGMA_PER_SEVERITY * max_severity)))


def add_noise(images, family: str, severity: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A noisy copy of ``images`` (N, C, 32, 32) in [0, 1]: ``family`` at ``severity`` in [0, 1].

    Raises InputError for an unknown family, a severity outside [0, 1] or bad images.
    """
    check_choice(family, NOISE_FAMILIES, "family")
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0.0 <= float(severity) <= 1.0:
        raise InputError(f"severity: expected a number in [0, 1], got {severity!r}. Fix: severity=0.1.")
    images = as_image_batch(images)
    if severity == 0:
        return images.clone()
    return noisy(images, family, torch.full((len(images),), float(severity)), generator, _radius(severity))


class NoiseAugment:
    """The paper's noise-addition augmentation: with probability ``p`` per image, a random family
    at a severity drawn uniformly from [0, ``max_severity``]. Used on the autoencoder's inputs
    and on both classifier classes, so noise carries no label.

    ``augment(images, generator)``: (N, C, H, W) in [0, 1] on any device -> a new tensor
    (:func:`per_choice` applies each image's family).
    """

    def __init__(self, max_severity: float = 0.15, p: float = 0.5, families=NOISE_FAMILIES):
        for family in families:
            check_choice(family, NOISE_FAMILIES, "families")
        self.max_severity, self.p, self.families = float(max_severity), float(p), tuple(families)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, device = len(images), images.device
        chosen = torch.rand(n, generator=generator, device=device) < self.p
        family_index = torch.randint(len(self.families), (n,), generator=generator, device=device)
        severity = torch.rand(n, generator=generator, device=device) * self.max_severity
        choice = torch.where(chosen & (severity > 0), family_index, -1)   # -1: this image stays clean
        safe = torch.where(severity > 0, severity, torch.ones_like(severity))   # no division by zero
        radius = _radius(self.max_severity)
        makers = [lambda x, s, f=family: noisy(x, f, s, generator, radius) for family in self.families]
        return per_choice(images, choice, makers, safe)

    def __repr__(self):
        return f"NoiseAugment(max_severity={self.max_severity}, p={self.p}, families={self.families})"
