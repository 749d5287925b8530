"""Runs you can trust (issue 12): a result always belongs to the run that claims it.

- a resumed run is the same run: another seed, preset field, switch, outlier family or training
  set in the same folder starts afresh and matches a clean run of its own;
- an interrupted or failed fit leaves the previous fitted state; divergence says so;
- every bad detector file is a CheckpointError; a flipped bit never loads;
- the notebooks' cache checks channels, setting and training images, and two processes never
  train the same entry twice.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_helpers import CheckpointError, OODData, OODDetector, TrainingDivergedError
from ood_helpers.detector import CLASSIFIER_ONLY
from ood_helpers import artifacts
from ood_helpers.evaluation import compare as evaluation
from conftest import TINY, smooth_images

TWO_EPOCHS = dataclasses.replace(TINY, ae_epochs=2, clf_epochs=2, checkpoint_every_epoch=True)


class Interrupt(Exception):
    pass


def _stop_after_first_epoch(epoch, loss):
    if epoch == 1:
        raise Interrupt


def _interrupted_fit(images, work_dir, **params):
    with pytest.raises(Interrupt):
        OODDetector(**{"in_channels": 1, "preset": TWO_EPOCHS, "seed": 0, "progress": False, **params}).fit(
            images, work_dir=work_dir, on_epoch_end=_stop_after_first_epoch)


# -- 1. a resumed run is never another run ------------------------------------------------------------
@pytest.mark.parametrize("change", [
    dict(seed=1), dict(noise_augment=False), dict(preset=dataclasses.replace(TWO_EPOCHS, lr=1e-3)),
    dict(outlier_families=("invert", "smooth")), dict(images="other"),
    dict(preset=dataclasses.replace(TWO_EPOCHS, width=8)),
])
def test_state_of_another_run_in_the_same_folder_is_never_resumed(change, gray_images, tmp_path):
    images = smooth_images(96, 1, seed=7) * 0.5 if change.get("images") == "other" else gray_images
    params = {key: value for key, value in change.items() if key != "images"}
    _interrupted_fit(gray_images, tmp_path / "shared")            # seed 0's state is left behind
    assert list((tmp_path / "shared").glob("autoencoder_state_*.pt"))
    rerun = OODDetector(**{"in_channels": 1, "preset": TWO_EPOCHS, "seed": 0, "progress": False, **params})
    rerun.fit(images, work_dir=tmp_path / "shared")
    clean = OODDetector(**{"in_channels": 1, "preset": TWO_EPOCHS, "seed": 0, "progress": False, **params})
    clean.fit(images, work_dir=tmp_path / "fresh")
    np.testing.assert_array_equal(rerun.decision_function(gray_images[:16]), clean.decision_function(gray_images[:16]))
    if params and set(params) <= set(CLASSIFIER_ONLY):
        # the autoencoder does not depend on it: the interrupted run's autoencoder state is this
        # run's too (resumed after its epoch 1, scores equal to a fresh run); the classifier is new
        assert len(rerun.history_["epoch_seconds"]["autoencoder"]) == 1
        assert len(rerun.history_["epoch_seconds"]["classifier"]) == TWO_EPOCHS.clf_epochs
    else:
        assert len(rerun.history_["epoch_seconds"]["autoencoder"]) == 2   # both epochs ran: nothing reused


def test_the_same_run_resumes_where_it_stopped(gray_images, tmp_path):
    _interrupted_fit(gray_images, tmp_path / "w")
    resumed = OODDetector(1, TWO_EPOCHS, seed=0, progress=False).fit(gray_images, work_dir=tmp_path / "w")
    clean = OODDetector(1, TWO_EPOCHS, seed=0, progress=False).fit(gray_images)
    assert len(resumed.history_["epoch_seconds"]["autoencoder"]) == 1          # epoch 1 came from the state
    np.testing.assert_array_equal(resumed.decision_function(gray_images[:16]), clean.decision_function(gray_images[:16]))


def _toy_setting(setting, train_limit=None, seed=0, **_):
    return OODData(setting, "dark blobs", "bright blobs", 1, smooth_images(96, 1, seed=seed) * 0.5,
                   smooth_images(40, 1, seed=100) * 0.5, 0.5 + smooth_images(40, 1, seed=101) * 0.5)


def test_reproduce_with_another_seed_into_a_killed_runs_folder(tmp_path, monkeypatch):
    """Kill-and-rerun with a changed seed: the seed-1 results equal a clean seed-1 run."""
    monkeypatch.setattr(evaluation, "load_setting", _toy_setting)
    out = tmp_path / "run"
    images = _toy_setting("mnist-cifar10", seed=0).in_train
    with pytest.raises(Interrupt):   # seed 0 killed in its first epoch, state left in the folder
        OODDetector(1, TWO_EPOCHS, seed=0, progress=False).fit(images, work_dir=out / "train_state",
                                                              on_epoch_end=_stop_after_first_epoch)
    rerun = evaluation.reproduce("mnist-cifar10", TWO_EPOCHS, seed=1, out_dir=out, progress=False)
    clean = evaluation.reproduce("mnist-cifar10", TWO_EPOCHS, seed=1, out_dir=tmp_path / "clean", progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed"] == 1 and saved["auroc"] == clean["auroc"] == rerun["auroc"]
    assert saved["run_identity"]["config"]["seed"] == 1
    assert not (out / "train_state").exists()            # the finished run replaced the folder whole
    assert OODDetector.load(out / "detector.pt").seed == 1


# -- 2. an interrupted or failed fit is not a fit ------------------------------------------------------
def test_interrupted_refit_keeps_the_previous_detector(gray_images):
    detector = OODDetector(1, TWO_EPOCHS, seed=0, progress=False).fit(gray_images)
    before = detector.decision_function(gray_images[:16])

    def ctrl_c(epoch, loss):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        detector.set_params(seed=3).fit(gray_images, on_epoch_end=ctrl_c)
    np.testing.assert_array_equal(detector.decision_function(gray_images[:16]), before)


def test_interrupted_first_fit_leaves_an_unfitted_detector(gray_images):
    from ood_helpers import NotFittedError

    detector = OODDetector(1, TWO_EPOCHS, seed=0, progress=False)
    with pytest.raises(Interrupt):
        detector.fit(gray_images, on_epoch_end=_stop_after_first_epoch)
    with pytest.raises(NotFittedError):
        detector.decision_function(gray_images[:2])
    assert not [key for key in vars(detector) if key.endswith("_")]


def test_divergence_stops_training_and_says_so(gray_images):
    exploding = dataclasses.replace(TINY, lr=1e12)
    detector = OODDetector(1, exploding, seed=0, progress=False)
    with pytest.raises(TrainingDivergedError, match="diverged.*lower the learning rate"):
        detector.fit(gray_images)
    assert not hasattr(detector, "threshold_")


# -- 3, 4. bad detector files ------------------------------------------------------------------------
def _payload(path):
    return torch.load(path, weights_only=True)


def test_every_bad_detector_file_is_a_checkpoint_error(fitted_detector, tmp_path):
    good = fitted_detector.save(tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello, not a detector\n")
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    for name in ("empty.pt", "text.pt", "half.pt"):
        with pytest.raises(CheckpointError, match=name):
            OODDetector.load(tmp_path / name)


def test_one_flipped_bit_in_the_weights_never_loads(fitted_detector, tmp_path):
    path = fitted_detector.save(tmp_path / "d.pt")
    data = bytearray(path.read_bytes())
    weight = fitted_detector.classifier_.fc.weight.detach().numpy().tobytes()
    offset = bytes(data).find(weight[:16])
    assert offset > 0
    data[offset + 5] ^= 0x10
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.pt"):
        OODDetector.load(tmp_path / "flipped.pt")


def test_a_file_with_a_newer_preset_field_is_a_checkpoint_error(fitted_detector, tmp_path, monkeypatch):
    from ood_helpers import checkpoints

    path = fitted_detector.save(tmp_path / "d.pt")
    payload = checkpoints.load_checkpoint(path, "ood_helpers.detector")
    payload["config"]["preset"]["mixed_precision"] = True       # a field this version does not know
    payload["run_identity"]["config"]["preset"]["mixed_precision"] = True
    checkpoints.save_checkpoint(payload, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer.pt.*mixed_precision"):
        OODDetector.load(tmp_path / "newer.pt")
    del payload["latent_bank"]
    checkpoints.save_checkpoint(payload, tmp_path / "incomplete.pt")
    with pytest.raises(CheckpointError, match="incomplete.pt.*latent_bank"):
        OODDetector.load(tmp_path / "incomplete.pt")


# -- 5. the notebooks' cache -------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def _toy_data(setting="mnist-cifar10", seed=0, channels=1):
    images = smooth_images(96, channels, seed=seed) * 0.5
    return OODData(setting, "dark", "bright", channels, images, images[:20], 1 - images[:20])


def test_cache_loads_only_a_matching_detector(cache, capsys):
    data = _toy_data()
    first = artifacts.get_detector("mnist-cifar10", TINY, 0, data=data, progress=False)
    assert "trained" in capsys.readouterr().out
    again = artifacts.get_detector("mnist-cifar10", TINY, 0, data=data, progress=False)
    assert "loaded artifacts/quick/mnist-cifar10/" in capsys.readouterr().out
    np.testing.assert_array_equal(again.decision_function(data.in_test), first.decision_function(data.in_test))
    # the same file path asked for with other training images (another setting, size or seed)
    artifacts.get_detector("mnist-cifar10", TINY, 0, data=_toy_data(seed=5), progress=False)
    assert "trained on other images" in capsys.readouterr().out


def test_cache_never_returns_a_detector_of_other_channels(cache, capsys):
    data = _toy_data()
    detector = OODDetector(3, TINY, seed=0, progress=False).fit(smooth_images(96, 3))
    path = artifacts.artifact_dir() / artifacts.detector_relpath("mnist-cifar10", TINY, 0)
    detector.save(path)
    got = artifacts.get_detector("mnist-cifar10", TINY, 0, data=data, progress=False)
    assert got.in_channels_ == 1 and "3-channel" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["empty", "text", "flip"])
def test_cache_retrains_and_says_why_for_a_damaged_file(damage, cache, capsys):
    data = _toy_data()
    artifacts.get_detector("mnist-cifar10", TINY, 0, data=data, progress=False)
    path = artifacts.artifact_dir() / artifacts.detector_relpath("mnist-cifar10", TINY, 0)
    raw = bytearray(path.read_bytes())
    if damage == "empty":
        raw = bytearray()
    elif damage == "text":
        raw = bytearray(b"not a checkpoint")
    else:
        raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    detector = artifacts.get_detector("mnist-cifar10", TINY, 0, data=data, progress=False)
    out = capsys.readouterr().out
    assert out.startswith("retraining: artifacts/quick/mnist-cifar10/") and "trained in" in out
    assert str(cache) not in out                       # no machine path in notebook outputs
    assert detector.decision_function(data.in_test).shape == (20,)


def _fill_cache(artifacts_dir: str, log: str):
    os.environ["OOD_ARTIFACTS"] = artifacts_dir
    import ood_helpers.detector as detector_module
    from ood_helpers import artifacts as artifacts_module

    original = detector_module.OODDetector._fit

    def counting_fit(self, *args, **kwargs):
        with open(log, "a") as handle:
            handle.write("trained\n")
        return original(self, *args, **kwargs)
    detector_module.OODDetector._fit = counting_fit
    artifacts_module.get_detector("mnist-cifar10", TINY, 0, data=_toy_data(), progress=False, verbose=False)


def test_two_processes_filling_the_cache_train_once(tmp_path):
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill_cache, args=(str(tmp_path / "artifacts"), str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert log.read_text().count("trained") == 1
