"""Baseline detectors, all with one interface: ``fit(images) -> self``, ``score(images) -> numpy (N,)``,
higher = more out-of-distribution, trained on in-distribution images only, never on labels."""
from .base import BaseDetector
from .classical import MeanIntensityDetector

__all__ = ["BaseDetector", "MeanIntensityDetector"]
