"""How a run executes (ood_helpers.runtime) and the one batched implementation of each noise and
outlier family. No test here compares with numbers stored on one CPU: two runs in this process are
compared, or a property that holds on every machine."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from conftest import TINY, smooth_images
from ood_helpers import InputError, OODDetector, get_preset, runtime
from ood_helpers.evaluation.metrics import auroc
from ood_helpers.noise import NOISE_FAMILIES, NoiseAugment, gaussian_blur
from ood_helpers.outliers import apply_family, make_outliers


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


# -- 1. run options: what "auto" resolves to, and that the preset no longer holds them ---------------
def test_options_resolve_per_device_without_a_gpu(monkeypatch):
    cpu = runtime.run_options("cpu")
    assert (cpu.precision, cpu.compile, cpu.world_size) == ("fp32", False, 1)
    monkeypatch.setattr(runtime, "pick_device", lambda device=None: torch.device("cuda"))   # touches no GPU
    cuda = runtime.run_options()
    assert (cuda.precision, cuda.compile) == ("bf16", True)
    assert runtime.run_options(precision="fp32", compile_step="off").as_dict() == {
        "device": "cuda", "precision": "fp32", "compile": False, "world_size": 1, "sync_batchnorm": False}
    for name in ("precision", "compile_step"):
        with pytest.raises(InputError, match=name):
            runtime.run_options("cpu", **{name: "fastest"})
    for field in ("fast_path", "precision", "compile_step"):   # how it runs is not what it trains
        with pytest.raises(InputError, match="not a preset field"):
            get_preset("quick", **{field: "on"})


def test_run_options_are_recorded_but_do_not_change_the_method(fitted_detector):
    assert fitted_detector.history_["training"] == {"device": "cpu", "precision": "fp32", "compile": False,
                                                    "world_size": 1, "sync_batchnorm": False}
    config = fitted_detector.run_config()
    assert not {"device", "precision", "compile_step", "progress"} & set(config)
    assert fitted_detector.run_identity_["training"]["precision"] == "fp32"


# -- 2. bfloat16 and compile run the same step ---------------------------------------------------------
@pytest.fixture(scope="module")
def precisions():
    """float32 and bfloat16 fits of one seed: 8 + 4 epochs on 384 blob images, one thread."""
    train, test_in = smooth_images(384, 1, seed=0) * 0.5, smooth_images(64, 1, seed=5) * 0.5
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for precision in ("fp32", "bf16"):
            preset = get_preset(TINY, ae_epochs=8, clf_epochs=4)
            detector = OODDetector(in_channels=1, preset=preset, seed=0, progress=False, precision=precision,
                                   outlier_families=["invert", "cutpaste", "smooth", "flat"]).fit(train)
            out[precision] = {"history": detector.history_,
                              "auroc": auroc(detector.decision_function(test_in), detector.decision_function(1 - test_in))}
    finally:
        torch.set_num_threads(threads)
    return out


def test_bfloat16_losses_are_close_to_float32(precisions):
    fp32, bf16 = precisions["fp32"]["history"], precisions["bf16"]["history"]
    assert bf16["training"]["precision"] == "bf16" and fp32["training"]["precision"] == "fp32"
    # measured over seeds 0 and 1: final autoencoder L1 within 0.6%, final classifier cross-entropy
    # within 5.4% of float32 (0.409 / 0.387 and 0.388 / 0.380); the bounds leave room for other kernels
    np.testing.assert_allclose(bf16["autoencoder_l1"][-1], fp32["autoencoder_l1"][-1], rtol=0.1)
    np.testing.assert_allclose(bf16["classifier_ce"][-1], fp32["classifier_ce"][-1], rtol=0.2)
    assert fp32["classifier_ce"][-1] < min(0.6, fp32["classifier_ce"][0])   # it learned (log 2 = 0.69 at chance)


def test_bfloat16_auroc_is_close_on_a_toy_set(precisions):
    aurocs = {label: run["auroc"] for label, run in precisions.items()}
    assert aurocs["fp32"] >= 0.9 and abs(aurocs["bf16"] - aurocs["fp32"]) <= 0.05, aurocs


def test_a_seeded_run_is_reproducible_and_leaves_global_state_alone():
    images = smooth_images(96, 1) * 0.5
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    fits = [OODDetector(in_channels=1, preset=TINY, seed=seed, progress=False).fit(images) for seed in (0, 0, 1)]
    first, second, other = (fit.history_["autoencoder_l1"] + fit.history_["classifier_ce"] for fit in fits)
    assert first == second and other != first
    assert torch.equal(states[0], torch.get_rng_state()) and np.array_equal(states[1], np.random.get_state()[1])
    assert states[2] == random.getstate()


@pytest.mark.parametrize("when", ["wrapping", "first call"])
def test_a_failing_torch_compile_falls_back_to_the_same_eager_run(monkeypatch, when):
    images = smooth_images(96, 1) * 0.5
    eager = OODDetector(in_channels=1, preset=TINY, seed=0, progress=False, compile_step="off").fit(images)

    def broken_compile(module, **kwargs):
        if when == "wrapping":
            raise RuntimeError("no compiler here")

        def compiled(*args):
            raise RuntimeError("backend failed")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile is not used"):
        detector = OODDetector(in_channels=1, preset=TINY, seed=0, progress=False, compile_step="on").fit(images)
    assert detector.history_["training"]["compile"] is True        # requested; it fell back to eager
    assert detector.history_["autoencoder_l1"] == eager.history_["autoencoder_l1"]
    assert detector.history_["classifier_ce"] == eager.history_["classifier_ce"]


# -- 3. the outlier families: one batched implementation -------------------------------------------------
def test_deterministic_families_compute_their_formula():
    images = smooth_images(8, 3, seed=2)
    luma = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    expected = {"invert": 1 - images, "grayscale": luma.expand_as(images),
                "flat": images.mean((2, 3), keepdim=True).expand_as(images),
                "posterize": (images > images.mean((2, 3), keepdim=True)).float()}
    for family, want in expected.items():
        torch.testing.assert_close(apply_family(images, family, _generator()), want, rtol=0, atol=1e-6)


def test_cutpaste_changes_one_rectangle_copied_from_another_image():
    images = smooth_images(12, 3, seed=3)
    out, _ = make_outliers(images, ("cutpaste",), _generator(4))
    for i in range(len(images)):
        changed = (out[i] != images[i]).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        height, width = bottom - top, right - left
        assert 8 <= height <= 16 and 8 <= width <= 16, (height, width)
        assert int(changed.sum()) == height * width, "cutpaste changed pixels outside one rectangle"
        patch = out[i, :, top:bottom, left:right]
        windows = images.unfold(2, height, 1).unfold(3, width, 1)      # (N, C, y, x, h, w)
        match = (windows == patch[None, :, None, None]).flatten(4).all(4).all(1)   # (N, y, x)
        assert match[torch.arange(len(images)) != i].any(), "the pasted rectangle comes from no other image"


def test_patch_shuffle_keeps_the_patches():
    images = smooth_images(8, 1, seed=5)
    out, _ = make_outliers(images, ("patch_shuffle",), _generator())
    tiles = lambda x: x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(len(x), 16, 64)   # noqa: E731
    torch.testing.assert_close(tiles(out).sort(1).values, tiles(images).sort(1).values)
    assert not torch.equal(out, images)


def test_mixup_is_each_image_blended_with_another_at_lambda_035_to_065():
    images = smooth_images(8, 1, seed=5).flatten(1)
    out, _ = make_outliers(images.view(8, 1, 32, 32), ("mixup",), _generator())
    out = out.flatten(1)
    for i in range(len(images)):
        others = images[torch.arange(len(images)) != i]
        lam = ((out[i] - others) * (images[i] - others)).sum(1) / (images[i] - others).pow(2).sum(1)
        residual = (lam[:, None] * images[i] + (1 - lam[:, None]) * others - out[i]).abs().amax(1)
        best = int(residual.argmin())
        assert residual[best] < 1e-5 and 0.35 - 1e-4 <= float(lam[best]) <= 0.65 + 1e-4, (residual, lam)


def test_exposure_uses_its_gamma_ranges():
    images = smooth_images(64, 1, seed=6) * 0.8 + 0.1
    out, _ = make_outliers(images, ("exposure",), _generator())
    gamma = (out.log() / images.log()).flatten(1).median(1).values
    dark, bright = (gamma >= 2.5 - 1e-3) & (gamma <= 5 + 1e-3), (gamma >= 0.15 - 1e-3) & (gamma <= 0.4 + 1e-3)
    assert (dark | bright).all() and dark.any() and bright.any()


# -- 4. the noise families ---------------------------------------------------------------------------------
def test_per_image_blur_equals_blurring_image_by_image_and_keeps_the_mean():
    images = smooth_images(6, 3, seed=0)
    sigma = torch.tensor([0.05, 0.3, 0.45, 0.8, 1.2, 2.0])            # radii 1 to 6
    together = gaussian_blur(images, sigma, radius=6)
    one_by_one = torch.cat([gaussian_blur(images[i:i + 1], float(sigma[i])) for i in range(len(images))])
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-6)
    assert (together.mean((1, 2, 3)) - images.mean((1, 2, 3))).abs().max() < 1e-3


@pytest.mark.parametrize("family", NOISE_FAMILIES)
def test_each_noise_family_changes_more_at_a_higher_severity(family):
    images = smooth_images(256, 1, seed=7) * 0.6 + 0.2
    change = [(NoiseAugment(max_severity=s, p=1.0, families=(family,))(images, _generator(1)) - images).abs().mean()
              for s in (0.15, 0.3)]
    assert 0 < change[0] < change[1], change


def test_noise_touches_about_p_of_the_images_and_leaves_the_rest_alone():
    images = torch.rand(400, 1, 32, 32)
    out = NoiseAugment(max_severity=0.3, p=0.5)(images, _generator())
    changed = (out - images).abs().flatten(1).amax(1) > 0
    assert 0.35 < float(changed.float().mean()) < 0.6
    assert out is not images and torch.equal(out[~changed], images[~changed])
    assert torch.equal(out, NoiseAugment(max_severity=0.3, p=0.5)(images, _generator()))
