"""Noise families with one severity knob, for augmentation, robustness tests and the widget.

``severity`` is in [0, 1] and reads roughly as a standard deviation in pixel units: severity 0.1
is Gaussian noise of std 0.1, speckle of relative std 0.1, salt-and-pepper on 10% of pixels,
Poisson noise of std about 0.1 * sqrt(intensity), and a Gaussian blur of sigma 3 * 0.1 pixels.

Two implementations of the training augmentation: :meth:`NoiseAugment.__call__` (the reference, on
the CPU, one family's images at a time) and :meth:`NoiseAugment.batched` (the fast path of
:mod:`ood_helpers.training`: same families and parameters, every tensor on the images' device, no
host synchronisation, a fixed number of batched kernels). They draw their random numbers in
different orders, so the same seed gives different (equally distributed) noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import InputError, as_image_batch, check_choice

NOISE_FAMILIES = ("gaussian", "salt_pepper", "speckle", "poisson", "blur")


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding.

    ``images``: float (N, C, H, W); ``sigma`` in pixels (<= 0 returns the input). Returns the same
    shape. Raises nothing itself (torch errors for images smaller than the kernel radius).
    """
    if sigma <= 0:
        return images
    kernel = _gaussian_kernel(sigma)
    channels, radius = images.shape[1], (len(kernel) - 1) // 2
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, horizontal, groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, vertical, groups=channels)


def gaussian_blur_per_image(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding and one sigma per image, as two grouped convolutions.

    Image ``i`` gets the kernel :func:`gaussian_blur` would give it (radius ``max(1, round(3 *
    sigma[i]))``, taps beyond it weighted 0), so the result equals blurring image by image, up to
    float rounding. Runs on the images' device without host synchronisation.

    Parameters
    ----------
    images : torch.Tensor (N, C, H, W), float
    sigma : torch.Tensor (N,), float > 0, on the images' device
    radius : int >= 1
        The largest radius any image may need (``max(1, round(3 * max sigma))``); a smaller one
        truncates the wider kernels. Must be smaller than H and W (reflect padding).

    Returns
    -------
    torch.Tensor (N, C, H, W)

    Raises
    ------
    ValueError
        When ``radius`` is below 1.
    """
    if radius < 1:
        raise ValueError(f"radius: expected an int >= 1, got {radius!r}.")
    n, c, h, w = images.shape
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    own_radius = torch.round(3 * sigma).clamp_min(1)
    kernel = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2) * (offsets.abs() <= own_radius[:, None])
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)   # (N * C, 2 radius + 1)
    x = F.pad(images.reshape(1, n * c, h, w), (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c).view(n, c, h, w)


def _apply(images: torch.Tensor, family: str, severity: torch.Tensor,
           generator: torch.Generator | None) -> torch.Tensor:
    """Vectorised core: ``severity`` is a (N, 1, 1, 1) tensor, one value per image, all > 0."""
    if family == "gaussian":
        noisy = images + severity * torch.randn(images.shape, generator=generator)
    elif family == "speckle":
        noisy = images * (1 + severity * torch.randn(images.shape, generator=generator))
    elif family == "salt_pepper":
        mask_shape = (images.shape[0], 1, *images.shape[2:])
        draw = torch.rand(mask_shape, generator=generator)
        salt = (torch.rand(mask_shape, generator=generator) < 0.5).float()
        noisy = torch.where(draw < severity, salt, images)
    elif family == "poisson":
        photons = 1.0 / severity ** 2
        noisy = torch.poisson(images * photons, generator=generator) / photons
    else:
        noisy = torch.cat([gaussian_blur(images[i:i + 1], 3.0 * float(severity[i])) for i in range(len(images))])
    return noisy.clamp_(0.0, 1.0)


def add_noise(images: torch.Tensor, family: str, severity: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a noisy copy of ``images``, clipped to [0, 1].

    Parameters
    ----------
    images : float (N, C, 32, 32) in [0, 1] (or any form :func:`~ood_helpers.validation.as_image_batch` accepts)
    family : one of ``NOISE_FAMILIES``
    severity : float in [0, 1]; 0 returns an unchanged copy (see the module doc for its meaning per family)
    generator : torch.Generator or None (seed it to reproduce the noise)

    Returns
    -------
    torch.Tensor, float (N, C, 32, 32) in [0, 1]

    Raises
    ------
    InputError
        Unknown family, severity outside [0, 1], or bad images.
    """
    check_choice(family, NOISE_FAMILIES, "family")
    if not 0.0 <= float(severity) <= 1.0:
        raise InputError(f"severity: expected a number in [0, 1], got {severity!r}.")
    images = as_image_batch(images)
    if severity == 0:
        return images.clone()
    return _apply(images, family, torch.full((len(images), 1, 1, 1), float(severity)), generator)


class NoiseAugment:
    """Training transform: with probability ``p`` per image, a random family at a random severity.

    Severity is drawn uniformly from [0, ``max_severity``]. Used on both classes of the classifier
    (and on the autoencoder's inputs), so noise carries no label information.
    """

    def __init__(self, max_severity: float = 0.15, p: float = 0.5, families=NOISE_FAMILIES):
        for family in families:
            check_choice(family, NOISE_FAMILIES, "families")
        self.max_severity, self.p, self.families = float(max_severity), float(p), tuple(families)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = images.clone()
        chosen = torch.rand(len(images), generator=generator) < self.p
        family_index = torch.randint(len(self.families), (len(images),), generator=generator)
        severities = torch.rand(len(images), generator=generator) * self.max_severity
        for index, family in enumerate(self.families):
            rows = torch.nonzero(chosen & (family_index == index) & (severities > 0)).flatten()
            if len(rows):
                out[rows] = _apply(images[rows], family, severities[rows].view(-1, 1, 1, 1), generator)
        return out

    def batched(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The same augmentation on the images' device: no host synchronisation, no per-image loop.

        Every family is computed for the whole batch and each image keeps its own family's result
        (selected with ``torch.where``), so the number of kernels does not depend on the draw.
        Gaussian and speckle noise share one normal draw and salt-and-pepper one uniform draw:
        each image uses only one family, so the images stay independent. The blur runs as two
        grouped convolutions (:func:`gaussian_blur_per_image`).

        Parameters
        ----------
        images : torch.Tensor (N, C, H, W), float in [0, 1], on any device
            Not validated (the training loop passes validated images).
        generator : torch.Generator or None
            On the images' device (None = the device's default generator).

        Returns
        -------
        torch.Tensor (N, C, H, W) in [0, 1], a new tensor; images that draw no noise are unchanged.
        """
        n, device = len(images), images.device
        chosen = torch.rand(n, generator=generator, device=device) < self.p
        family_index = torch.randint(len(self.families), (n,), generator=generator, device=device)
        severity = torch.rand(n, generator=generator, device=device) * self.max_severity
        active = chosen & (severity > 0)
        # images that draw severity 0 compute with 1 (no division by zero) and are then discarded
        safe = torch.where(severity > 0, severity, torch.ones_like(severity)).view(-1, 1, 1, 1)
        out, normal, uniform = images, None, None
        for index, family in enumerate(self.families):
            if family in ("gaussian", "speckle"):
                if normal is None:
                    normal = torch.randn(images.shape, generator=generator, device=device, dtype=images.dtype)
                noisy = images + safe * normal if family == "gaussian" else images * (1 + safe * normal)
            elif family == "salt_pepper":
                if uniform is None:
                    uniform = torch.rand((2, n, 1, *images.shape[2:]), generator=generator, device=device,
                                         dtype=images.dtype)
                noisy = torch.where(uniform[0] < safe, (uniform[1] < 0.5).to(images.dtype), images)
            elif family == "poisson":
                photons = 1.0 / safe ** 2
                noisy = torch.poisson(images * photons, generator=generator) / photons
            else:
                radius = max(1, int(round(3 * 3.0 * self.max_severity)))
                noisy = gaussian_blur_per_image(images, 3.0 * safe.view(-1), radius)
            keep = (active & (family_index == index)).view(-1, 1, 1, 1)
            out = torch.where(keep, noisy.clamp(0.0, 1.0), out)
        return out if out is not images else images.clone()

    def __repr__(self):
        return f"NoiseAugment(max_severity={self.max_severity}, p={self.p}, families={self.families})"
