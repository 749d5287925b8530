"""OODDetector: fit / decision_function / predict / explain / save / load, reproducibility, resume,
runs that never borrow another run's state, and bad input."""
import numpy as np
import pytest
import torch

from ood_helpers import CheckpointError, InputError, NotFittedError, OODDetector
from conftest import TINY, smooth_images


def test_score_shape_and_direction(fitted_detector, gray_images):
    scores = fitted_detector.decision_function(gray_images[:10])
    assert isinstance(scores, np.ndarray) and scores.shape == (10,) and np.isfinite(scores).all()
    # inverted images (bright background) are far from the training data
    assert fitted_detector.decision_function(1 - gray_images[:32]).mean() > fitted_detector.decision_function(gray_images[:32]).mean()


def test_explain_returns_every_piece(fitted_detector, gray_images):
    out = fitted_detector.explain(gray_images[:3])
    assert out["reconstruction"].shape == (3, 1, 32, 32)
    assert torch.allclose(out["difference"], (gray_images[:3] - out["reconstruction"]).abs(), atol=1e-6)
    assert out["z"].shape == (3, TINY.latent_dim)
    np.testing.assert_allclose(out["score"], fitted_detector.decision_function(gray_images[:3]), rtol=1e-6)


def test_same_seed_same_scores_other_seed_other_scores(gray_images):
    # the quick preset itself (width 8, 4 + 3 epochs), on a small synthetic set to stay fast
    first = OODDetector(1, "quick", seed=1, progress=False).fit(gray_images).decision_function(gray_images[:8])
    second = OODDetector(1, "quick", seed=1, progress=False).fit(gray_images).decision_function(gray_images[:8])
    third = OODDetector(1, "quick", seed=2, progress=False).fit(gray_images).decision_function(gray_images[:8])
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, third)


def test_save_load_round_trip_gives_identical_scores(fitted_detector, gray_images, tmp_path):
    path = fitted_detector.save(tmp_path / "run" / "detector.pt")
    loaded = OODDetector.load(path)
    np.testing.assert_array_equal(loaded.decision_function(gray_images[:8]), fitted_detector.decision_function(gray_images[:8]))
    assert loaded.validation_ == fitted_detector.validation_
    assert not list(path.parent.glob("*.tmp")), "atomic save left a temporary file behind"


def test_fit_accepts_a_dataset(gray_images):
    dataset = torch.utils.data.TensorDataset(gray_images, torch.zeros(len(gray_images)))
    det = OODDetector(1, TINY, seed=0, progress=False).fit(dataset)
    assert det.decision_function(gray_images[:2]).shape == (2,)


def test_resume_after_interruption_matches_an_uninterrupted_run(gray_images, tmp_path):
    preset = TINY.__class__(**{**TINY.as_dict(), "ae_epochs": 2, "clf_epochs": 2, "checkpoint_every_epoch": True})
    reference = OODDetector(1, preset, seed=0, progress=False).fit(gray_images, work_dir=tmp_path / "a")

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(epoch, loss):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        OODDetector(1, preset, seed=0, progress=False).fit(gray_images, work_dir=tmp_path / "b",
                                                           on_epoch_end=stop_after_first_epoch)
    assert list((tmp_path / "b").glob("autoencoder_state_*.pt"))
    resumed = OODDetector(1, preset, seed=0, progress=False).fit(gray_images, work_dir=tmp_path / "b")
    assert len(resumed.history_["autoencoder_l1"]) == 2
    # every epoch is timed; a resumed run times only the epochs it ran itself
    assert [len(s) for s in reference.history_["epoch_seconds"].values()] == [2, 2]
    assert all(s > 0 for s in reference.history_["epoch_seconds"]["classifier"])
    assert [len(s) for s in resumed.history_["epoch_seconds"].values()] == [1, 2]
    np.testing.assert_allclose(resumed.decision_function(gray_images[:8]), reference.decision_function(gray_images[:8]), rtol=1e-5, atol=1e-5)


# --- bad input: a conversion that is documented, or an error that names the argument ---------

def test_uint8_and_numpy_and_single_image_are_converted(fitted_detector, gray_images):
    as_uint8 = (gray_images[:4] * 255).round().to(torch.uint8)
    np.testing.assert_allclose(fitted_detector.decision_function(as_uint8), fitted_detector.decision_function(as_uint8.float() / 255), rtol=1e-6)
    np.testing.assert_allclose(fitted_detector.decision_function(gray_images[:4].numpy()), fitted_detector.decision_function(gray_images[:4]))
    one = fitted_detector.decision_function(gray_images[0])  # (C, H, W) -> a batch of one
    assert one.shape == (1,)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 32, 32), "expected 1 channel"),
    (torch.rand(2, 1, 28, 28), "32x32"),
    (torch.rand(32, 32), "4 dimensions"),
    (torch.rand(0, 1, 32, 32), "empty"),
    (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
    (torch.full((1, 1, 32, 32), float("inf")), "NaN or infinite"),
    (torch.rand(2, 1, 32, 32) * 255, "divide by 255"),
    (torch.rand(2, 1, 32, 32) - 0.5, r"\[0, 1\]"),
    (torch.ones(2, 1, 32, 32, dtype=torch.int64), "dtype"),
    ([[0.0]], "torch.Tensor or numpy array"),
])
def test_bad_images_raise_a_clear_input_error(fitted_detector, bad, message):
    with pytest.raises(InputError, match=message):
        fitted_detector.decision_function(bad)


def test_score_before_fit_says_what_to_do():
    with pytest.raises(NotFittedError, match="call fit"):
        OODDetector(1, TINY, progress=False).decision_function(torch.rand(1, 1, 32, 32))
    with pytest.raises(NotFittedError, match="call fit"):
        OODDetector(1, TINY, progress=False).predict(torch.rand(1, 1, 32, 32))


def test_too_few_training_images():
    with pytest.raises(InputError, match="at least"):
        OODDetector(1, TINY, progress=False).fit(torch.rand(5, 1, 32, 32))


def test_predict_flags_above_the_threshold_kept_by_held_out_images(fitted_detector, gray_images):
    held = fitted_detector.held_out_scores_["score"]
    assert np.mean(held <= fitted_detector.threshold_) >= 0.95
    scores = fitted_detector.decision_function(gray_images)
    np.testing.assert_array_equal(fitted_detector.predict(gray_images), (scores > fitted_detector.threshold_).astype(int))
    assert fitted_detector.predict(1 - gray_images[:32]).mean() > fitted_detector.predict(gray_images[:32]).mean()


@pytest.mark.parametrize("params, name", [
    (dict(in_channels=2), "in_channels"), (dict(preset="huge"), "preset"), (dict(seed=-1), "seed"),
    (dict(inject_stage=5), "inject_stage"), (dict(latent_input="yes"), "latent_input"),
    (dict(latent_distance=1), "latent_distance"), (dict(noise_augment=None), "noise_augment"),
    (dict(outlier_families=["noise"]), "outlier_families"), (dict(threshold_quantile=1.5), "threshold_quantile"),
    (dict(held_out_fraction=0.0), "held_out_fraction"), (dict(device="gpu0"), "device"),
])
def test_bad_constructor_arguments_are_named_by_fit(params, name, gray_images):
    detector = OODDetector(**{"preset": TINY, "progress": False, **params})   # __init__ only stores
    assert detector.get_params()[name] == params[name]
    with pytest.raises(InputError, match=name):
        detector.fit(gray_images)


def test_checkpoint_for_other_channels_or_preset_is_refused(fitted_detector, tmp_path):
    path = fitted_detector.save(tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="1 channel"):
        OODDetector.load(path, in_channels=3)
    with pytest.raises(CheckpointError, match="preset"):
        OODDetector.load(path, preset="paper")


def test_checkpoint_with_weights_of_another_width_is_refused(fitted_detector, tmp_path):
    from ood_helpers.checkpoints import load_checkpoint, save_checkpoint

    payload = load_checkpoint(fitted_detector.save(tmp_path / "d.pt"), "ood_helpers.detector")
    payload["config"]["preset"]["width"] = 8
    save_checkpoint(payload, tmp_path / "edited.pt")   # a consistent hash over inconsistent contents
    with pytest.raises(CheckpointError, match="edited.pt.*do not form a detector"):
        OODDetector.load(tmp_path / "edited.pt")


def test_truncated_and_foreign_files_are_refused(fitted_detector, tmp_path):
    good = fitted_detector.save(tmp_path / "d.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        OODDetector.load(tmp_path / "truncated.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        OODDetector.load(tmp_path / "notes.txt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt.*not an ood_helpers checkpoint"):
        OODDetector.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OODDetector.load(tmp_path / "missing.pt")


def test_rgb_detector_on_rgb_images():
    images = smooth_images(64, 3)
    det = OODDetector(3, TINY, seed=0, progress=False).fit(images)
    assert set(det.validation_) == {"cutpaste", "mixup", "invert", "patch_shuffle", "grayscale", "exposure",
                                    "posterize", "edges", "smooth", "pixel_shuffle", "flat"}
    assert det.decision_function(images[:2]).shape == (2,)
