"""Baseline detectors, all on the one interface of :class:`ood_helpers.api.BaseDetector`:
``fit(images) -> self``, ``decision_function(images) -> numpy (N,)`` (higher = more
out-of-distribution), ``predict(images) -> 0/1`` at ``threshold_``; trained on in-distribution
images only, never on labels or outliers.

``BASELINES`` maps a short name to its class (a class's ``origin``, where set, names the published
method it implements, for the comparison tables); :func:`make_detector` builds one by name with the
common arguments (``in_channels``, ``preset``, ``seed``, ``progress``) and budget overrides::

    from ood_helpers.baselines import make_detector
    vae = make_detector("vae", in_channels=1, preset="quick", seed=0, epochs=1).fit(train_images)
    # the same as VAEDetector(in_channels=1, preset="quick", seed=0, budget={"epochs": 1})

The PyOD peers (``"pyod-*"``) need the optional extra ``pip install .[peers]``; without it, fitting
one (or building it with :func:`make_detector`) raises ``ImportError`` with :data:`PYOD_MISSING`.
"""
from __future__ import annotations

from ..api import BaseDetector
from ..validation import InputError, check_choice
from .base import BudgetedDetector, preset_name, resolve_budget
from .classical import IsolationForestDetector, KNNDetector, MeanIntensityDetector, PCAReconstructionDetector
from .deep import DeepBaseline
from .dsebm import DSEBMDetector
from .peers import PYOD_MISSING, PyODAutoEncoderDetector, PyODDeepSVDDDetector, PyODVAEDetector, pyod_available, require_pyod
from .likelihood import InputComplexityDetector, LikelihoodRatioDetector
from .pixelcnn import PixelCNNDetector
from .vae import VAEDetector

BASELINES = {
    "vae": VAEDetector,
    "dsebm": DSEBMDetector,
    "pixelcnn": PixelCNNDetector,
    "likelihood-ratio": LikelihoodRatioDetector,
    "input-complexity": InputComplexityDetector,
    "mean-intensity": MeanIntensityDetector,
    "isolation-forest": IsolationForestDetector,
    "pca": PCAReconstructionDetector,
    "knn": KNNDetector,
    "pyod-autoencoder": PyODAutoEncoderDetector,
    "pyod-vae": PyODVAEDetector,
    "pyod-deepsvdd": PyODDeepSVDDDetector,
}
PYOD_BASELINES = ("pyod-autoencoder", "pyod-vae", "pyod-deepsvdd")


def make_detector(name: str, in_channels=None, preset="quick", seed=0, progress=True, **budget) -> BaseDetector:
    """Build the baseline ``name`` (a key of ``BASELINES``), unfitted, with its arguments checked.

    Parameters
    ----------
    name : str
        A key of :data:`BASELINES`.
    in_channels : {1, 3} or None
        None takes the channels from the training images.
    preset : {"quick", "classroom", "paper"}, Preset or None
        The budget; the mean-intensity detector has none (the value is still checked).
    seed : int >= 0
    progress : bool
        Progress bars while training (ignored by the mean-intensity detector).
    **budget
        Single budget entries, e.g. ``epochs=1``; passed as ``budget={...}``.

    Returns
    -------
    ood_helpers.api.BaseDetector
        Unfitted.

    Raises
    ------
    InputError
        Unknown ``name`` or any invalid argument (checked here, as ``fit`` would, so a typo
        fails before a long run rather than in it); budget entries for the mean-intensity
        detector.
    ImportError
        With :data:`PYOD_MISSING` for a PyOD peer when PyOD is not installed.
    """
    cls = BASELINES[check_choice(name, tuple(BASELINES), "name")]
    if cls is MeanIntensityDetector:
        preset_name(preset)  # same validation as the others
        if budget:
            raise InputError(f"{', '.join(sorted(budget))}: the mean-intensity detector has no budget options; "
                             f"drop them. Fix: make_detector('mean-intensity', in_channels, seed=seed).")
        detector = cls(in_channels=in_channels, seed=seed)
    else:
        detector = cls(in_channels=in_channels, preset=preset, seed=seed, budget=dict(budget) or None,
                       progress=progress)
    detector._check_params()
    return detector


__all__ = ["BaseDetector", "BudgetedDetector", "DeepBaseline", "MeanIntensityDetector", "IsolationForestDetector",
           "PCAReconstructionDetector", "KNNDetector", "VAEDetector", "DSEBMDetector", "PixelCNNDetector",
           "LikelihoodRatioDetector", "InputComplexityDetector",
           "PyODAutoEncoderDetector", "PyODVAEDetector", "PyODDeepSVDDDetector", "BASELINES", "PYOD_BASELINES",
           "PYOD_MISSING", "make_detector", "pyod_available", "require_pyod", "resolve_budget"]
