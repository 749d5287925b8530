"""The far-OOD sanity sets: shapes, ranges, what each set is, seeding, and named errors."""
from __future__ import annotations

import pytest
import torch

from ood_helpers import InputError
from ood_helpers.evaluation.far_ood import FAR_OOD_SETS, GAUSSIAN_MEAN, GAUSSIAN_STD, far_ood_images, far_ood_suite


@pytest.mark.parametrize("channels", [1, 3])
def test_each_set_is_what_its_name_says(channels):
    suite = far_ood_suite(channels, n=400)
    assert list(suite) == list(FAR_OOD_SETS)
    for images in suite.values():
        assert images.shape == (400, channels, 32, 32) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
    uniform, gaussian, constant, rademacher = suite.values()
    assert set(rademacher.unique().tolist()) == {0.0, 1.0} and abs(rademacher.mean() - 0.5) < 0.01
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.std() - 12 ** -0.5) < 0.01
    assert abs(gaussian.mean() - GAUSSIAN_MEAN) < 0.01 and abs(gaussian.std() - GAUSSIAN_STD) < 0.02   # clipping trims a little
    assert (constant == constant[:, :, :1, :1]).all()                      # one colour per image
    assert constant[:, :, 0, 0].std(0).min() > 0.2                         # and the colours differ between images


def test_the_sets_are_seeded_and_independent_of_global_state():
    torch.manual_seed(1)
    first = far_ood_images("uniform noise", 8, 3)
    torch.manual_seed(2)
    assert torch.equal(first, far_ood_images("uniform noise", 8, 3))
    assert not torch.equal(first, far_ood_images("uniform noise", 8, 3, seed=5))


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="pink noise", n=4, channels=3), "name: unknown value 'pink noise'"),
    (dict(name="uniform noise", n=0, channels=3), "n: expected an integer >= 1"),
    (dict(name="uniform noise", n=4, channels=2), "channels: expected 1 .* or 3 .*, got 2"),
    (dict(name="uniform noise", n=4, channels=3.0), "channels: expected 1 .* or 3 .*, got 3.0"),
    (dict(name="uniform noise", n=4, channels=3, seed=-1), "seed: expected an integer in \\[0, 2\\*\\*32 - 1\\]"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(InputError, match=match):
        far_ood_images(**kwargs)
