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
    with pytest.raises(InputError, match="families: .*'fog'"):
        make_outliers(torch.rand(2, 1, 32, 32), families=("fog",))


def test_pixel_shuffle_keeps_the_colours_and_destroys_the_structure():
    images = smooth_images(16, 3, seed=2)
    out = apply_family(images, "pixel_shuffle", torch.Generator().manual_seed(0))
    # the same pixels (each a colour triple, moved as one), in another place
    for before, after in zip(images, out):
        pairs = sorted(map(tuple, before.flatten(1).t().tolist()))
        assert pairs == sorted(map(tuple, after.flatten(1).t().tolist()))
    # smooth images have neighbours alike; shuffled ones do not
    def roughness(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()
    assert roughness(out) > 3 * roughness(images)   # measured: 0.224 against 0.055


def test_flat_is_each_images_mean_colour():
    images = smooth_images(8, 3, seed=4)
    out = apply_family(images, "flat")
    assert torch.allclose(out, images.mean(dim=(2, 3), keepdim=True).expand_as(images))


def test_the_families_of_no_content_are_in_the_defaults():
    assert {"pixel_shuffle", "flat"} <= set(families_for(1)) and {"pixel_shuffle", "flat"} <= set(families_for(3))
