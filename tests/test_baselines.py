"""Baselines on small synthetic images: interface, determinism, a clear shift is detected, errors."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from ood_helpers import InputError, NotFittedError, metrics
from ood_helpers.baselines import (BASELINES, PYOD_BASELINES, PYOD_MISSING, BaseDetector, DSEBMDetector,
                                   MeanIntensityDetector, PixelCNNDetector, VAEDetector, make_detector,
                                   pyod_available)
from ood_helpers.baselines.pixelcnn import GatedPixelCNN, discretized_mix_logistic_nll
from ood_helpers.presets import PRESETS

# tiny budgets: the point is the interface and the direction of the score, not the quality
TINY = {
    "vae": dict(epochs=3, width=8, latent_dim=8),
    "dsebm": dict(epochs=5, width=8, features=32),
    "pixelcnn": dict(epochs=1, channels=8, layers=2, n_mix=1),
    "isolation-forest": dict(n_estimators=50),
    "pca": dict(n_components=8),
    "mean-intensity": {},
}
OWN = tuple(name for name in BASELINES if name not in PYOD_BASELINES)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(n: int, channels: int, seed: int) -> torch.Tensor:
    """Dark background with one smooth bright blob (MNIST-like), float (n, channels, 32, 32) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cy, cx = 8 + 16 * torch.rand(n, 1, 1, generator=g), 8 + 16 * torch.rand(n, 1, 1, generator=g)
    sigma = 3 + 3 * torch.rand(n, 1, 1, generator=g)
    amplitude = 0.5 + 0.3 * torch.rand(n, 1, 1, generator=g)
    blob = amplitude * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    tint = 0.8 + 0.2 * torch.rand(n, channels, 1, 1, generator=g)
    return (0.1 + blob.unsqueeze(1) * tint).clamp(0, 1)


_FITTED: dict = {}


def fitted(name: str, channels: int, seed: int = 0) -> BaseDetector:
    key = (name, channels, seed)
    if key not in _FITTED:
        _FITTED[key] = make_detector(name, channels, "quick", seed=seed, progress=False,
                                     **TINY[name]).fit(blobs(200, channels, 0))
    return _FITTED[key]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OWN)
def test_fit_score_shape_finite_and_shift_detected(name, channels):
    detector = fitted(name, channels)
    test = blobs(64, channels, 1)
    in_scores, out_scores = detector.score(test), detector.score(1.0 - test)   # inverted = clearly shifted
    assert isinstance(in_scores, np.ndarray) and in_scores.shape == (64,) and in_scores.dtype == np.float64
    assert np.isfinite(in_scores).all() and np.isfinite(out_scores).all()
    assert out_scores.mean() > in_scores.mean()
    assert metrics.auroc(in_scores, out_scores) > 0.8


@pytest.mark.parametrize("name", OWN)
def test_same_seed_same_scores(name):
    test = blobs(32, 3, 1)
    again = make_detector(name, 3, "quick", seed=0, progress=False, **TINY[name]).fit(blobs(200, 3, 0))
    np.testing.assert_array_equal(fitted(name, 3).score(test), again.score(test))


@pytest.mark.parametrize("name", OWN)
def test_score_before_fit_and_wrong_channels(name):
    detector = make_detector(name, 1, "quick", seed=0, progress=False, **TINY[name])
    with pytest.raises(NotFittedError, match="not fitted"):
        detector.score(blobs(4, 1, 0))
    with pytest.raises(InputError, match="channel"):
        detector.fit(blobs(50, 3, 0))
    with pytest.raises(InputError, match="channel"):
        fitted(name, 1).score(blobs(4, 3, 0))


def test_registry_and_constructor_errors():
    assert set(BASELINES) >= {"vae", "dsebm", "pixelcnn", "mean-intensity", "isolation-forest", "pca",
                              *PYOD_BASELINES}
    assert isinstance(make_detector("mean-intensity", 1, "classroom", seed=3), MeanIntensityDetector)
    with pytest.raises(InputError, match="name"):
        make_detector("no-such-detector", 1)
    with pytest.raises(InputError, match="preset"):
        make_detector("vae", 1, preset="huge")
    with pytest.raises(InputError, match="in_channels"):
        make_detector("pixelcnn", 2)
    with pytest.raises(InputError, match="budget"):
        VAEDetector(1, epochs=1, no_such_option=3)


@pytest.mark.parametrize("cls", [VAEDetector, DSEBMDetector, PixelCNNDetector])
def test_every_preset_has_a_budget(cls):
    assert set(cls.BUDGETS) == set(PRESETS)
    for budget in cls.BUDGETS.values():
        assert {"epochs", "batch_size", "lr", "train_limit"} <= set(budget)
    detector = cls(3, preset="paper", progress=False)
    assert detector.budget == cls.BUDGETS["paper"]


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_is_causal(channels):
    """The parameters for pixel (i, j) depend only on pixels before it in raster order."""
    torch.manual_seed(0)
    model = GatedPixelCNN(channels, 8, 3, 2)
    x = torch.rand(1, channels, 32, 32, requires_grad=True)
    out = model(x)
    for i, j in [(0, 0), (5, 7), (10, 31), (31, 0), (16, 16)]:
        grad = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)[0][0].abs().sum(0).flatten()
        assert grad[i * 32 + j:].sum() == 0
        if (i, j) != (0, 0):
            assert grad[:i * 32 + j].sum() > 0


def test_discretized_logistic_sums_to_one():
    torch.manual_seed(0)
    levels = (torch.arange(256.0) / 255 * 2 - 1).view(256, 1, 1, 1)
    params = torch.randn(1, 6, 1, 1).expand(256, 6, 1, 1)
    total = torch.exp(-discretized_mix_logistic_nll(levels, params, 2)).sum()
    assert math.isclose(float(total), 1.0, rel_tol=1e-4)


def test_pyod_missing_gives_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyod", None)   # makes "import pyod" raise ImportError
    assert not pyod_available()
    for name in PYOD_BASELINES:
        with pytest.raises(ImportError, match=r"PyOD is not installed: pip install \.\[peers\]"):
            make_detector(name, 1, "quick")
    assert PYOD_MISSING == "PyOD is not installed: pip install .[peers]"


@pytest.mark.parametrize("name", PYOD_BASELINES)
def test_pyod_peers(name):
    pytest.importorskip("pyod")
    train, test = blobs(200, 1, 0), blobs(64, 1, 1)
    detector = make_detector(name, 1, "quick", seed=0, progress=False, epochs=3)
    with pytest.raises(NotFittedError):
        detector.score(test)
    detector.fit(train)
    in_scores, out_scores = detector.score(test), detector.score(1.0 - test)
    assert in_scores.shape == (64,) and np.isfinite(in_scores).all()
    assert metrics.auroc(in_scores, out_scores) > 0.8
    again = make_detector(name, 1, "quick", seed=0, progress=False, epochs=3).fit(train)
    np.testing.assert_allclose(again.score(test), in_scores, rtol=1e-5, atol=1e-6)
