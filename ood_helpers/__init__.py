"""ood_helpers: the out-of-distribution detector of the ood-notebooks series, piece by piece.

For example::

    from ood_helpers import OODDetector, load_setting
    data = load_setting("mnist-cifar10", train_limit=4000)
    detector = OODDetector(preset="quick", seed=0).fit(data.in_train)
    scores_in = detector.decision_function(data.in_test)     # numpy (N,), higher = more out-of-distribution
    flagged = detector.predict(data.out_test)                # 0 = in, 1 = out, at detector.threshold_

Every detector (ours, the autoencoder difference, every baseline) follows the interface of
:class:`ood_helpers.api.BaseDetector`.
"""
from .api import BaseDetector, NotFittedError
from .checkpoints import CheckpointError
from .data import DatasetNotFoundError, OODData, load_setting
from .detector import AutoencoderDifferenceDetector, OODDetector, ScoreCalibration
from .presets import PRESETS, get_preset
from .training import TrainingDivergedError
from .validation import InputError

__all__ = ["BaseDetector", "OODDetector", "AutoencoderDifferenceDetector", "ScoreCalibration", "OODData",
           "load_setting", "PRESETS", "get_preset", "InputError", "CheckpointError", "DatasetNotFoundError",
           "NotFittedError", "TrainingDivergedError"]
__version__ = "0.2.0"
