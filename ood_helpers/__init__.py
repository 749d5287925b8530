"""ood_helpers: the out-of-distribution detector of the ood-notebooks series, piece by piece.

For example::

    from ood_helpers import OODDetector, load_setting
    data = load_setting("mnist-cifar10", train_limit=4000)
    detector = OODDetector(preset="quick", seed=0).fit(data.in_train)
    scores_in = detector.decision_function(data.in_test)     # numpy (N,), higher = more out-of-distribution
    flagged = detector.predict(data.out_test)                # 0 = in, 1 = out, at detector.threshold_

``import ood_helpers`` loads the teaching core only (networks, steps, noise, outliers, loop,
detector); evaluation, baselines, teaching aids, checkpoints and torchrun load when first used.
"""
import importlib
import os

# before torch loads OpenMP: when many kernels share few cores (a hub), idle threads sleep instead
# of spinning and taking the cores from the kernels that compute (set OMP_WAIT_POLICY to override)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from .api import BaseDetector, NotFittedError  # noqa: E402
from .detector import AutoencoderDifferenceDetector, OODDetector, ScoreCalibration  # noqa: E402
from .loop import TrainingDivergedError  # noqa: E402
from .presets import PRESETS, get_preset  # noqa: E402
from .validation import InputError  # noqa: E402

_LAZY = {"load_setting": "data", "OODData": "data", "DatasetNotFoundError": "data",
         "CheckpointError": "checkpoints"}
_SUBMODULES = {"api", "artifacts", "baselines", "checkpoints", "colab", "data", "detector", "distributed",
               "evaluation", "files", "loop", "networks", "noise", "ours", "outliers", "persistence", "presets",
               "pretrain", "runtime", "steps", "teaching", "validation", "variants"}

__all__ = ["BaseDetector", "OODDetector", "AutoencoderDifferenceDetector", "ScoreCalibration", "OODData",
           "load_setting", "PRESETS", "get_preset", "InputError", "CheckpointError", "DatasetNotFoundError",
           "NotFittedError", "TrainingDivergedError", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ood_helpers' has no attribute {name!r}")
