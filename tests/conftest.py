"""Shared fixtures: small synthetic images for fast tests, the real data when it is reachable."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ood_helpers import get_preset

# a preset small enough that fit() takes about a second on two cores
TINY = get_preset("quick", width=4, latent_dim=16, batch_size=16, ae_epochs=1, clf_epochs=1, train_limit=None)


def smooth_images(n: int, channels: int, seed: int = 0) -> torch.Tensor:
    """Blobby images in [0, 1]: low-resolution noise upsampled, a stand-in for natural images."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 8, 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)


@pytest.fixture(scope="session")
def tiny_preset():
    return TINY


@pytest.fixture(scope="session")
def gray_images():
    # dark blobs in [0, 0.5]: their inversions in [0.5, 1] are a clear shift
    return smooth_images(96, 1) * 0.5


@pytest.fixture(scope="session")
def fitted_detector(gray_images):
    from ood_helpers import OODDetector

    return OODDetector(in_channels=1, preset=TINY, seed=0, progress=False).fit(gray_images)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The offline data folder. Skipped only when nothing is reachable and OOD_DATA_DIR is unset;
    when OOD_DATA_DIR is set (as in CI) a missing folder fails the test instead."""
    env = os.environ.get("OOD_DATA_DIR")
    if env:
        root = Path(env)
        assert (root / "MNIST" / "raw").is_dir(), f"OOD_DATA_DIR={env} is set but holds no MNIST/raw folder"
        return root
    for candidate in (Path("data"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if (candidate / "MNIST" / "raw").is_dir():
            return candidate
    pytest.skip("no MNIST / CIFAR-10 reachable: set OOD_DATA_DIR to the data folder to run data tests")


@pytest.fixture(autouse=True, scope="session")
def _isolated_artifacts(tmp_path_factory):
    """Detectors cached by tests go to a temporary folder, never into the repository's artifacts."""
    previous = os.environ.get("OOD_ARTIFACTS")
    os.environ["OOD_ARTIFACTS"] = str(tmp_path_factory.mktemp("artifacts"))
    yield
    if previous is None:
        os.environ.pop("OOD_ARTIFACTS", None)
    else:
        os.environ["OOD_ARTIFACTS"] = previous


def toy_data(setting: str = "mnist-cifar10", seed: int = 0):
    """Fake OODData for a setting: dark smooth blobs in, their inverses out (no files read)."""
    from ood_helpers import OODData

    channels = 3 if setting.startswith("cifar10") else 1
    images = smooth_images(96, channels, seed=seed) * 0.5
    return OODData(setting, "dark", "bright", channels, images, images[:20], 1 - images[:20])


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
