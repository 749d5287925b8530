"""Baseline detectors, all with one interface: ``fit(images) -> self``, ``score(images) -> numpy (N,)``,
higher = more out-of-distribution, trained on in-distribution images only, never on labels.

``BASELINES`` maps a short name to its class; :func:`make_detector` builds one by name with the
common arguments (``in_channels``, ``preset``, ``seed``, ``progress``)::

    from ood_helpers.baselines import make_detector
    vae = make_detector("vae", in_channels=1, preset="quick", seed=0).fit(train_images)

The PyOD peers ("pyod-*") need the optional extra ``pip install .[peers]``; without it building
one raises ``ImportError`` with :data:`PYOD_MISSING`.
"""
from __future__ import annotations

from ..validation import check_choice
from .base import BaseDetector, BudgetedDetector, check_in_channels, preset_name
from .classical import IsolationForestDetector, MeanIntensityDetector, PCAReconstructionDetector
from .deep import DeepBaseline
from .dsebm import DSEBMDetector
from .peers import (PYOD_MISSING, PyODAutoEncoderDetector, PyODDeepSVDDDetector, PyODVAEDetector, pyod_available,
                    require_pyod)
from .pixelcnn import PixelCNNDetector
from .vae import VAEDetector

BASELINES = {
    "vae": VAEDetector,
    "dsebm": DSEBMDetector,
    "pixelcnn": PixelCNNDetector,
    "mean-intensity": MeanIntensityDetector,
    "isolation-forest": IsolationForestDetector,
    "pca": PCAReconstructionDetector,
    "pyod-autoencoder": PyODAutoEncoderDetector,
    "pyod-vae": PyODVAEDetector,
    "pyod-deepsvdd": PyODDeepSVDDDetector,
}
PYOD_BASELINES = ("pyod-autoencoder", "pyod-vae", "pyod-deepsvdd")


def make_detector(name: str, in_channels: int, preset="quick", seed: int = 0, progress: bool = True,
                  **overrides) -> BaseDetector:
    """Build the baseline ``name`` (a key of ``BASELINES``), unfitted.

    ``overrides`` replace single entries of the preset's budget (e.g. ``epochs=1``); the
    mean-intensity detector has no budget and ignores ``preset`` and ``progress``.
    """
    cls = BASELINES[check_choice(name, tuple(BASELINES), "name")]
    if cls is MeanIntensityDetector:
        preset_name(preset)  # same validation as the others
        return cls(check_in_channels(in_channels), int(seed))
    return cls(in_channels, preset=preset, seed=seed, progress=progress, **overrides)


__all__ = ["BaseDetector", "DeepBaseline", "MeanIntensityDetector", "IsolationForestDetector",
           "PCAReconstructionDetector", "VAEDetector", "DSEBMDetector", "PixelCNNDetector",
           "PyODAutoEncoderDetector", "PyODVAEDetector", "PyODDeepSVDDDetector", "BASELINES", "PYOD_BASELINES",
           "PYOD_MISSING", "make_detector", "pyod_available", "require_pyod"]
