import pytest
import torch

from ood_helpers import InputError
from ood_helpers.noise import NOISE_FAMILIES, NoiseAugment, add_noise


@pytest.mark.parametrize("family", NOISE_FAMILIES)
def test_each_family_changes_images_and_stays_in_range(family):
    images = torch.rand(4, 3, 32, 32) * 0.8 + 0.1
    noisy = add_noise(images, family, 0.2, torch.Generator().manual_seed(0))
    assert noisy.shape == images.shape
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - images).abs().mean() > 1e-3


@pytest.mark.parametrize("family", NOISE_FAMILIES)
def test_severity_zero_is_identity_and_seed_reproduces(family):
    images = torch.rand(2, 1, 32, 32)
    assert torch.equal(add_noise(images, family, 0.0), images)
    first = add_noise(images, family, 0.3, torch.Generator().manual_seed(7))
    second = add_noise(images, family, 0.3, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_gaussian_severity_is_the_standard_deviation():
    gray = torch.full((8, 1, 32, 32), 0.5)
    noisy = add_noise(gray, "gaussian", 0.1, torch.Generator().manual_seed(0))
    assert abs(float((noisy - gray).std()) - 0.1) < 0.01


def test_more_severity_means_more_change():
    images = torch.rand(4, 1, 32, 32)
    small = (add_noise(images, "speckle", 0.05, torch.Generator().manual_seed(0)) - images).abs().mean()
    large = (add_noise(images, "speckle", 0.5, torch.Generator().manual_seed(0)) - images).abs().mean()
    assert large > 3 * small


def test_bad_family_and_severity_are_named():
    with pytest.raises(InputError, match="family"):
        add_noise(torch.rand(1, 1, 32, 32), "pink", 0.1)
    with pytest.raises(InputError, match="severity"):
        add_noise(torch.rand(1, 1, 32, 32), "gaussian", 1.5)


def test_noise_augment_touches_about_p_of_the_images():
    images = torch.rand(400, 1, 32, 32)
    out = NoiseAugment(max_severity=0.3, p=0.5)(images, torch.Generator().manual_seed(0))
    changed = ((out - images).abs().flatten(1).amax(1) > 0).float().mean()
    assert 0.35 < float(changed) < 0.6
