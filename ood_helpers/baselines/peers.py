"""External peers from PyOD (optional extra: ``pip install .[peers]``): its AutoEncoder, VAE and
DeepSVDD, run on flattened raw pixels with PyOD's own defaults for everything the budget does not
set. ``decision_function`` is already "higher = more anomalous".

Without PyOD, building one of these raises ``ImportError`` with :data:`PYOD_MISSING`;
:func:`pyod_available` tells beforehand.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from ..training import seed_everything
from .base import BudgetedDetector, subsample

PYOD_MISSING = "PyOD is not installed: pip install .[peers]"


def pyod_available() -> bool:
    """True when ``import pyod`` works."""
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True


def require_pyod() -> None:
    """Raise ``ImportError(PYOD_MISSING)`` unless PyOD can be imported."""
    try:
        import pyod  # noqa: F401
    except ImportError as err:
        raise ImportError(PYOD_MISSING) from err


class PyODPeer(BudgetedDetector):
    """Common wrapper: flatten (N, C, 32, 32) to (N, C*1024), fit the PyOD model, score with
    ``decision_function``. Constructor as the other baselines: ``(in_channels, preset, seed, progress)``."""

    name = "PyOD peer"

    def __init__(self, in_channels: int, preset="quick", seed: int = 0, progress: bool = True, **overrides):
        require_pyod()
        super().__init__(in_channels, preset, seed, progress, **overrides)

    def _make(self, n_features: int):
        raise NotImplementedError

    @staticmethod
    def _flat(images: torch.Tensor) -> np.ndarray:
        return images.flatten(1).numpy().astype(np.float32)

    def _quiet(self):
        return contextlib.nullcontext() if self.progress else contextlib.redirect_stdout(io.StringIO())

    def _fit(self, images):
        images = subsample(images, self.budget["train_limit"], self.seed)
        seed_everything(self.seed)
        flat = self._flat(images)
        self.model_ = self._make(flat.shape[1])
        with self._quiet():
            self.model_.fit(flat)

    def _score(self, images):
        with self._quiet():
            return np.asarray(self.model_.decision_function(self._flat(images)), dtype=np.float64)


class PyODAutoEncoderDetector(PyODPeer):
    """PyOD's fully connected AutoEncoder; score = reconstruction error."""

    name = "PyOD AutoEncoder"
    BUDGETS = {
        "quick": dict(epochs=5, hidden=(128, 64), batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, hidden=(256, 128, 64), batch_size=64, lr=1e-3, train_limit=12000),
        "paper": dict(epochs=100, hidden=(512, 256, 128), batch_size=32, lr=1e-3, train_limit=None),
    }

    def _make(self, n_features):
        from pyod.models.auto_encoder import AutoEncoder

        b = self.budget
        return AutoEncoder(epoch_num=b["epochs"], hidden_neuron_list=list(b["hidden"]), batch_size=b["batch_size"],
                           lr=b["lr"], random_state=self.seed, verbose=1 if self.progress else 0)


class PyODVAEDetector(PyODPeer):
    """PyOD's fully connected VAE; score = reconstruction error of the decoded mean."""

    name = "PyOD VAE"
    BUDGETS = {
        "quick": dict(epochs=5, encoder=(128, 64), latent_dim=16, batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, encoder=(256, 128, 64), latent_dim=32, batch_size=64, lr=1e-3,
                          train_limit=12000),
        "paper": dict(epochs=100, encoder=(512, 256, 128), latent_dim=64, batch_size=32, lr=1e-3, train_limit=None),
    }

    def _make(self, n_features):
        from pyod.models.vae import VAE

        b = self.budget
        return VAE(epoch_num=b["epochs"], encoder_neuron_list=list(b["encoder"]),
                   decoder_neuron_list=list(reversed(b["encoder"])), latent_dim=b["latent_dim"],
                   batch_size=b["batch_size"], lr=b["lr"], random_state=self.seed,
                   verbose=1 if self.progress else 0)


class PyODDeepSVDDDetector(PyODPeer):
    """PyOD's DeepSVDD (Ruff et al. 2018): distance to a hypersphere centre in a learned feature space."""

    name = "PyOD DeepSVDD"
    BUDGETS = {
        "quick": dict(epochs=5, hidden=(128, 64), batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, hidden=(256, 128, 64), batch_size=64, lr=1e-3, train_limit=12000),
        "paper": dict(epochs=100, hidden=(512, 256, 128), batch_size=32, lr=1e-4, train_limit=None),
    }

    def _make(self, n_features):
        from pyod.models.deep_svdd import DeepSVDD

        b = self.budget
        return DeepSVDD(n_features=n_features, hidden_neurons=list(b["hidden"]), epochs=b["epochs"],
                        batch_size=b["batch_size"], learning_rate=b["lr"], random_state=self.seed,
                        verbose=1 if self.progress else 0)
