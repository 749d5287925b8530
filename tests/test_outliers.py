import pytest
import torch

from ood_helpers import InputError
from ood_helpers.outliers import OUTLIER_FAMILIES, apply_family, families_for, make_outliers
from conftest import smooth_images


@pytest.mark.parametrize("family", OUTLIER_FAMILIES)
def test_every_family_differs_from_its_input(family):
    images = smooth_images(16, 3, seed=1)
    out = apply_family(images, family, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    per_image_change = (out - images).abs().flatten(1).mean(1)
    assert (per_image_change > 0.01).all(), f"{family} left some images (almost) unchanged"


def test_grayscale_needs_colour():
    assert "grayscale" not in families_for(1)
    assert "grayscale" in families_for(3)


def test_make_outliers_mixes_families_reproducibly():
    images = smooth_images(64, 1)
    first, chosen = make_outliers(images, generator=torch.Generator().manual_seed(3))
    second, _ = make_outliers(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert len(set(chosen.tolist())) > 4


def test_unknown_family_is_named():
    with pytest.raises(InputError, match="outlier family"):
        make_outliers(torch.rand(2, 1, 32, 32), families=("fog",))
