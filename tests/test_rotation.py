"""Ours, not the paper's: the rotation-prediction network and the detector's rotation_score switch
(notebook 08): the pretext task, its loss, the switch, files and what it leaves alone."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TINY, smooth_images
from ood_helpers import InputError, OODDetector
from ood_helpers.ours import ROTATIONS, RotationNet, rotate_batch
from ood_helpers.ours import rotation_loss, rotation_score
from ood_helpers.detector import build_detector
from ood_helpers.variants import variant_of


def test_rotate_batch_turns_each_block_by_its_label():
    images = torch.arange(2 * 1 * 32 * 32, dtype=torch.float32).view(2, 1, 32, 32)
    rotated, labels = rotate_batch(images)
    assert rotated.shape == (8, 1, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(rotated[:2], images)
    # a quarter turn counter-clockwise: the top-right corner goes to the top-left
    assert rotated[2, 0, 0, 0] == images[0, 0, 0, -1]
    assert torch.equal(rotated[4], images[0].flip(1).flip(2))            # half a turn
    assert torch.equal(torch.rot90(rotated[6], 1, (1, 2)), images[0])    # three quarters + one = whole


def test_an_untrained_network_guesses_and_the_score_sums_four_losses():
    torch.manual_seed(0)
    net = RotationNet(3, width=4, stem="imagenet")
    with torch.no_grad():
        net.fc.weight.zero_(), net.fc.bias.zero_()   # equal logits: every rotation 1/4
    images = smooth_images(6, 3, seed=1)
    assert net(images).shape == (6, len(ROTATIONS))
    assert rotation_loss(net.eval(), images).item() == pytest.approx(math.log(4), rel=1e-6)
    np.testing.assert_allclose(rotation_score(net, images).numpy(), 4 * math.log(4), rtol=1e-6)


def test_the_rotation_loss_falls_when_trained():
    torch.manual_seed(0)
    net = RotationNet(1, width=4, stem="imagenet")
    images = smooth_images(32, 1, seed=3)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = rotation_loss(net.train(), images)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.fixture(scope="module")
def rotation_detector(single_thread):
    images = smooth_images(96, 1, seed=0) * 0.5
    return build_detector("ours-rotation", 1, TINY, seed=0, progress=False).fit(images), images


def test_the_switch_adds_one_standardised_term_and_changes_nothing_else(rotation_detector):
    detector, images = rotation_detector
    assert variant_of(detector) == "ours-rotation" and detector.rotation_net_ is not None
    assert len(detector.history_["rotation_ce"]) == TINY.rotation_epochs
    assert len(detector.history_["epoch_seconds"]["rotation"]) == TINY.rotation_epochs
    assert detector.rotation_mean_.shape == (8 * TINY.width,)
    assert set(detector.held_out_scores_) == {"score", "classifier", "latent", "mahalanobis", "rotation",
                                              "difference_l1"}
    ours = build_detector("ours", 1, TINY, seed=0, progress=False).fit(images)
    probe = smooth_images(8, 1, seed=9)
    with_rotation, without = detector.score_components(probe), ours.score_components(probe)
    # the rotation network is trained last: the autoencoder, classifier and latent density are ours's
    np.testing.assert_allclose(with_rotation["classifier"], without["classifier"], rtol=1e-6)
    np.testing.assert_allclose(with_rotation["latent"], without["latent"], rtol=1e-5)
    np.testing.assert_allclose(with_rotation["mahalanobis"], without["mahalanobis"], rtol=1e-5)
    calibration = detector.calibration_
    term = (with_rotation["rotation"] - calibration.rotation_mean) / calibration.rotation_std
    np.testing.assert_allclose(with_rotation["score"] - term, without["score"], rtol=1e-5, atol=1e-6)
    held = detector.held_out_scores_["rotation"]
    assert calibration.rotation_mean == pytest.approx(held.mean()) and calibration.rotation_std == pytest.approx(held.std())


def test_a_saved_rotation_detector_loads_with_equal_scores(rotation_detector, tmp_path):
    detector, _ = rotation_detector
    probe = smooth_images(8, 1, seed=9)
    loaded = OODDetector.load(detector.save(tmp_path / "rotation.pt"))
    assert loaded.rotation_score and variant_of(loaded) == "ours-rotation"
    np.testing.assert_array_equal(loaded.decision_function(probe), detector.decision_function(probe))
    plain = OODDetector.load(build_detector("ours", 1, TINY, seed=0, progress=False)
                             .fit(smooth_images(96, 1, seed=0) * 0.5).save(tmp_path / "plain.pt"))
    assert plain.rotation_net_ is None and plain.rotation_mean_ is None and plain.calibration_.rotation_mean is None


def test_a_bad_switch_value_is_named():
    with pytest.raises(InputError, match="rotation_score: expected True or False, got 'yes'.*rotation"):
        OODDetector(rotation_score="yes").fit(torch.rand(40, 1, 32, 32))


def test_rotation_score_is_batched_and_validates_its_images():
    torch.manual_seed(0)
    net = RotationNet(1, width=4, stem="imagenet").eval()
    images = smooth_images(10, 1, seed=2)
    whole = rotation_score(net, images, batch_size=10)
    np.testing.assert_allclose(rotation_score(net, images, batch_size=3).numpy(), whole.numpy(), rtol=1e-5)
    np.testing.assert_allclose(rotation_score(net, (images * 255).round().to(torch.uint8)).numpy(),
                               rotation_score(net, (images * 255).round() / 255).numpy(), rtol=1e-5)   # uint8 converted
    with pytest.raises(InputError, match="images"):
        rotation_score(net, torch.rand(2, 3, 32, 32))     # a colour batch for a gray network
    with pytest.raises(InputError, match="batch_size"):
        rotation_score(net, images, batch_size=0)


def test_rotation_augment_moves_within_the_shift_and_names_a_bad_one():
    from ood_helpers.ours import rotation_augment

    images = smooth_images(6, 3, seed=1)
    moved = rotation_augment(images, torch.Generator().manual_seed(0), max_shift=0)
    # no shift: each image is itself or its mirror image
    assert all(torch.equal(m, x) or torch.equal(m, x.flip(2)) for m, x in zip(moved, images))
    assert torch.equal(rotation_augment(smooth_images(4, 1), max_shift=0), smooth_images(4, 1))   # gray: never flipped
    with pytest.raises(InputError, match="max_shift: expected an integer >= 0"):
        rotation_augment(images, max_shift=-1)
