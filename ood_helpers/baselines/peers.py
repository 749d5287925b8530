r"""External peers from PyOD (Zhao, Nasrullah & Li, "PyOD: A Python Toolbox for Scalable Outlier
Detection", JMLR 2019): its AutoEncoder, VAE and DeepSVDD, run on flattened raw pixels with PyOD's
own defaults for everything the budget does not set. PyOD's ``decision_function`` is already
"higher = more anomalous"; ``threshold_`` comes from our held-out split, not PyOD's
``contamination``.

PyOD is an optional extra (``pip install .[peers]``). Building a peer needs nothing; fitting one
without PyOD raises ``ImportError`` with :data:`PYOD_MISSING`; :func:`pyod_available` tells
beforehand.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from ..api import seeded
from ..validation import InputError, check_seed
from .base import BudgetedDetector, flat_pixels, resolve_budget

PYOD_MISSING = "PyOD is not installed: pip install .[peers]"

__all__ = ["PYOD_MISSING", "pyod_available", "require_pyod", "PyODPeer", "PyODAutoEncoderDetector",
           "PyODVAEDetector", "PyODDeepSVDDDetector"]


def pyod_available() -> bool:
    """True when ``import pyod`` works.

    Returns
    -------
    bool
    """
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True


def require_pyod() -> None:
    """Make sure PyOD can be imported.

    Raises
    ------
    ImportError
        With the message :data:`PYOD_MISSING` (how to install it), when it cannot.
    """
    try:
        import pyod  # noqa: F401
    except ImportError as err:
        raise ImportError(PYOD_MISSING) from err


class PyODPeer(BudgetedDetector):
    """Common wrapper (abstract): flatten (N, C, 32, 32) to (N, C * 1024) float32 pixels, fit the
    PyOD model, score with its ``decision_function``.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`. ``seed`` is PyOD's
        ``random_state``; ``progress`` turns PyOD's per-epoch log on (``verbose=1``).

    Attributes
    ----------
    model_ : pyod.models.base.BaseDetector
        The fitted PyOD detector.
    budget_, device_, history_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Raises
    ------
    ImportError
        From ``fit`` (not from ``__init__``), with :data:`PYOD_MISSING`, when PyOD is missing.

    Notes
    -----
    PyOD seeds the global generators itself when it builds a model; ``fit`` restores them
    afterwards, and ``decision_function`` runs PyOD under :func:`ood_helpers.api.seeded` too,
    so models that sample while scoring (the VAE) are deterministic and leave the caller's
    random state alone.
    """

    name = "PyOD peer"

    def _check_params(self):
        super()._check_params()
        require_pyod()

    def _make(self, n_features: int):
        raise NotImplementedError

    def _quiet(self):
        return contextlib.nullcontext() if self.progress else contextlib.redirect_stdout(io.StringIO())

    def _train(self, images, generator):
        flat = flat_pixels(images)
        self.model_ = self._make(flat.shape[1])
        with self._quiet():
            self.model_.fit(flat)

    def _decision_batch(self, batch):
        with self._quiet(), seeded((check_seed(self.params_["seed"]) + 1) % 2**32):
            return np.asarray(self.model_.decision_function(flat_pixels(batch)), dtype=np.float64)

    def _verbose(self) -> int:
        return 1 if self.progress else 0


class PyODAutoEncoderDetector(PyODPeer):
    r"""PyOD's fully connected AutoEncoder on raw pixels; score = reconstruction distance.

    .. math:: s(x) = \lVert \hat x - g_\theta(f_\theta(\hat x)) \rVert_2

    with :math:`\hat x` the pixels standardised per feature by PyOD (``preprocessing=True``) and
    :math:`f, g` the encoder and decoder (hidden sizes ``hidden``, batch norm, dropout 0.2).
    Values are >= 0; higher = worse reconstruction = more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`PyODPeer`.

    Attributes
    ----------
    model_ : pyod.models.auto_encoder.AutoEncoder

    Notes
    -----
    Budget keys: ``epochs``, ``hidden``, ``batch_size``, ``lr``, ``train_limit``.
    Source: Zhao et al., JMLR 2019 (PyOD); Aggarwal, *Outlier Analysis*, 2017 (the method).
    """

    name = "PyOD AutoEncoder"
    BUDGETS = {
        "quick": dict(epochs=5, hidden=(128, 64), batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, hidden=(256, 128, 64), batch_size=64, lr=1e-3, train_limit=12000),
        "paper": dict(epochs=100, hidden=(512, 256, 128), batch_size=32, lr=1e-3, train_limit=None),
    }

    def _make(self, n_features):
        from pyod.models.auto_encoder import AutoEncoder

        b = self.budget_
        return AutoEncoder(epoch_num=b["epochs"], hidden_neuron_list=list(b["hidden"]), batch_size=b["batch_size"],
                           lr=b["lr"], random_state=check_seed(self.seed), device=self.device_, verbose=self._verbose())


class PyODVAEDetector(PyODPeer):
    r"""PyOD's fully connected VAE (Kingma & Welling 2014) on raw pixels; score = reconstruction
    distance of one sampled decoding.

    .. math:: s(x) = \lVert \hat x - g_\theta(\mu_\phi(\hat x) + \sigma_\phi(\hat x) \odot \epsilon) \rVert_2,
              \quad \epsilon \sim \mathcal{N}(0, I)

    with :math:`\hat x` the pixels standardised per feature by PyOD. Values are >= 0; higher =
    more out-of-distribution. :math:`\epsilon` is drawn from the global torch generator seeded
    with ``seed + 1`` at each batch, so scores are reproducible for a fixed ``batch_size`` but
    change slightly with it.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`PyODPeer`.

    Attributes
    ----------
    model_ : pyod.models.vae.VAE

    Notes
    -----
    Budget keys: ``epochs``, ``encoder`` (hidden sizes; the decoder mirrors them),
    ``latent_dim``, ``batch_size``, ``lr``, ``train_limit``. Source: Zhao et al., JMLR 2019.
    """

    name = "PyOD VAE"
    BUDGETS = {
        "quick": dict(epochs=5, encoder=(128, 64), latent_dim=16, batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, encoder=(256, 128, 64), latent_dim=32, batch_size=64, lr=1e-3,
                          train_limit=12000),
        "paper": dict(epochs=100, encoder=(512, 256, 128), latent_dim=64, batch_size=32, lr=1e-3, train_limit=None),
    }

    def _make(self, n_features):
        from pyod.models.vae import VAE

        b = self.budget_
        return VAE(epoch_num=b["epochs"], encoder_neuron_list=list(b["encoder"]),
                   decoder_neuron_list=list(reversed(b["encoder"])), latent_dim=b["latent_dim"],
                   batch_size=b["batch_size"], lr=b["lr"], random_state=check_seed(self.seed), device=self.device_,
                   verbose=self._verbose())


class PyODDeepSVDDDetector(PyODPeer):
    r"""PyOD's Deep SVDD (Ruff et al., "Deep One-Class Classification", ICML 2018) on raw pixels;
    score = squared distance to the hypersphere centre in a learned feature space.

    .. math:: s(x) = \lVert \phi_W(\hat x) - c \rVert^2

    with :math:`\hat x` the pixels standardised by PyOD, :math:`\phi_W` a fully connected network
    (hidden sizes ``hidden``) trained to pull training images towards the fixed centre
    :math:`c` (the mean initial feature). Values are >= 0; higher = further from the centre =
    more out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`PyODPeer`; PyOD's DeepSVDD runs on the CPU whatever ``device`` says.

    Attributes
    ----------
    model_ : pyod.models.deep_svdd.DeepSVDD

    Notes
    -----
    Budget keys: ``epochs``, ``hidden`` (at least two sizes), ``batch_size``, ``lr``,
    ``train_limit``. Source: Zhao et al., JMLR 2019 (PyOD).
    """

    name = "PyOD DeepSVDD"
    BUDGETS = {
        "quick": dict(epochs=5, hidden=(128, 64), batch_size=64, lr=1e-3, train_limit=4000),
        "classroom": dict(epochs=10, hidden=(256, 128, 64), batch_size=64, lr=1e-3, train_limit=12000),
        "paper": dict(epochs=100, hidden=(512, 256, 128), batch_size=32, lr=1e-4, train_limit=None),
    }

    def _check_params(self):
        super()._check_params()
        hidden = resolve_budget(type(self), self.preset, self.budget)["hidden"]
        if len(hidden) < 2:
            raise InputError(f"budget['hidden']: expected at least two layer sizes for PyOD's DeepSVDD (the last is "
                             f"the feature space), got {hidden!r}. Fix: budget={{'hidden': (128, 64)}}.")

    def _make(self, n_features):
        from pyod.models.deep_svdd import DeepSVDD

        b = self.budget_
        return DeepSVDD(n_features=n_features, hidden_neurons=list(b["hidden"]), epochs=b["epochs"],
                        batch_size=b["batch_size"], learning_rate=b["lr"], random_state=check_seed(self.seed),
                        verbose=self._verbose())
