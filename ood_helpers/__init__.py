"""ood_helpers: the out-of-distribution detector of the ood-notebooks series, piece by piece.

    from ood_helpers import OODDetector, load_setting
    data = load_setting("mnist-cifar10", train_limit=4000)
    det = OODDetector(in_channels=data.channels, preset="quick", seed=0).fit(data.in_train)
    scores_in, scores_out = det.score(data.in_test), det.score(data.out_test)
"""
from .checkpoints import CheckpointError
from .data import DatasetNotFoundError, OODData, load_setting
from .detector import NotFittedError, OODDetector
from .presets import PRESETS, get_preset
from .validation import InputError

__all__ = ["OODDetector", "OODData", "load_setting", "PRESETS", "get_preset", "InputError", "CheckpointError",
           "DatasetNotFoundError", "NotFittedError"]
__version__ = "0.1.0"
