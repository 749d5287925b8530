"""Training presets: one switch from a CI smoke run to the paper's full settings.

- ``quick``: CI and nbval; about half a minute per detector on 2 CPU cores.
- ``classroom``: a laptop CPU, a few minutes per detector; the default. Its autoencoder has our
  linear path beside the ResNet (``ae_linear_path``; the paper has none), so that its CIFAR-10
  reconstructions look like their inputs (mean PSNR >= 20 dB) after 12 epochs on 4,500 images.
- ``paper``: the paper's settings (ResNet-18 width 64, Adam lr 1e-4, betas (0.9, 0.99), batch 32,
  100 epochs, MultiStepLR gamma 0.2 at epochs 40 and 80); only when chosen, best on a GPU.

``OOD_PRESET`` in the environment chooses one for notebooks and the CLI.
"""
from __future__ import annotations

import os
import difflib
import math
from dataclasses import asdict, dataclass, fields, replace

from .validation import InputError, check_choice, check_positive_int


# valid values named in the errors of a bad field (the quick preset's)
_EXAMPLES = {"width": 8, "latent_dim": 64, "batch_size": 64, "ae_epochs": 4, "clf_epochs": 3, "rotation_epochs": 2,
             "lr": 2e-3, "gamma": 0.2}


@dataclass(frozen=True)
class Preset:
    """What is trained: network sizes, optimiser, schedule and data cap (see the module doc).
    How it runs (device, precision, compile, processes) is :mod:`ood_helpers.runtime`'s.

    Raises InputError for a field of the wrong kind, naming it and a value that works.
    """

    name: str
    width: int                 # base width of every ResNet-18 (64 = torchvision's resnet18)
    stem: str                  # "imagenet" (stride 4, CPU friendly) or "cifar" (stride 1)
    latent_dim: int            # size of z
    batch_size: int            # images per class per step
    lr: float
    betas: tuple
    ae_epochs: int
    clf_epochs: int
    milestones: tuple          # fractions of the epochs where the learning rate is multiplied by gamma
    gamma: float
    train_limit: int | None    # most in-distribution training images used (None = all)
    noise_max_severity: float  # upper end of noise-augmentation severity
    checkpoint_every_epoch: bool
    # ours, not the paper's: a linear path beside the ResNet autoencoder (ood_helpers.networks.Encoder),
    # so a CPU budget of a few epochs reconstructs CIFAR-10 at >= 20 dB mean PSNR
    ae_linear_path: bool = False
    # ours, not the paper's: epochs of the rotation-prediction network (OODDetector(rotation_score=True)
    # only); each epoch shows every image four times (one per rotation), so the paper preset takes 30
    rotation_epochs: int = 2

    def __post_init__(self):
        for field in ("width", "latent_dim", "batch_size", "ae_epochs", "clf_epochs", "rotation_epochs"):
            object.__setattr__(self, field, check_positive_int(getattr(self, field), field, _EXAMPLES[field]))
        if self.train_limit is not None:
            object.__setattr__(self, "train_limit", check_positive_int(self.train_limit, "train_limit", 4000))
        for field in ("lr", "gamma"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise InputError(f"{field}: expected a positive, finite number, got {value!r}. "
                                 f"Fix: {field}={_EXAMPLES[field]!r}.")

    def milestone_epochs(self, epochs: int) -> list[int]:
        """The epochs (1-based, < ``epochs``) after which MultiStepLR lowers the learning rate:
        ``milestones`` as fractions of ``epochs`` (the paper: 0.4 and 0.8 of 100 = 40 and 80)."""
        return sorted({max(1, round(f * epochs)) for f in self.milestones if round(f * epochs) < epochs})

    def schedule(self, epochs: int) -> dict:
        """The loop's optimiser and schedule arguments for a stage of ``epochs`` epochs."""
        return dict(epochs=epochs, batch_size=self.batch_size, lr=self.lr, betas=tuple(self.betas),
                    milestones=self.milestone_epochs(epochs), gamma=self.gamma)

    def as_dict(self) -> dict:
        """Every field by name (tuples kept), e.g. to record a run's configuration."""
        return asdict(self)


PRESETS = {
    "quick": Preset("quick", width=8, stem="imagenet", latent_dim=64, batch_size=64, lr=2e-3, betas=(0.9, 0.99),
                    ae_epochs=4, clf_epochs=3, milestones=(0.4, 0.8), gamma=0.2, train_limit=4000,
                    noise_max_severity=0.15, checkpoint_every_epoch=False, rotation_epochs=2),
    "classroom": Preset("classroom", width=16, stem="imagenet", latent_dim=256, batch_size=64, lr=2e-3,
                        betas=(0.9, 0.99), ae_epochs=12, clf_epochs=2, milestones=(0.4, 0.8), gamma=0.2,
                        train_limit=10000, noise_max_severity=0.15, checkpoint_every_epoch=True,
                        ae_linear_path=True, rotation_epochs=6),
    "paper": Preset("paper", width=64, stem="cifar", latent_dim=512, batch_size=32, lr=1e-4, betas=(0.9, 0.99),
                    ae_epochs=100, clf_epochs=100, milestones=(0.4, 0.8), gamma=0.2, train_limit=None,
                    noise_max_severity=0.15, checkpoint_every_epoch=True, rotation_epochs=30),
}


def default_preset_name() -> str:
    """``$OOD_PRESET`` if set, else ``classroom``, GPU or not: the paper's hour-long schedule runs
    only when chosen (``OOD_PRESET=paper``, ``--preset paper`` or the notebooks' ``PRESET`` line).

    Raises
    ------
    InputError
        When ``$OOD_PRESET`` names no preset.
    """
    name = os.environ.get("OOD_PRESET")
    if name:
        return check_choice(name, tuple(PRESETS), "OOD_PRESET")
    return "classroom"


def get_preset(preset: str | Preset | None = None, **overrides) -> Preset:
    """A preset by name (None = :func:`default_preset_name`), optionally with fields replaced."""
    if isinstance(preset, Preset):
        base = preset
    else:
        base = PRESETS[check_choice(preset or default_preset_name(), tuple(PRESETS), "preset")]
    unknown = sorted(set(overrides) - {field.name for field in fields(Preset)})
    if unknown:
        names = sorted(field.name for field in fields(Preset) if field.name != "name")
        close = difflib.get_close_matches(unknown[0], names, n=1)
        raise InputError(f"{unknown[0]}: not a preset field (given {', '.join(unknown)}); the fields are "
                         f"{', '.join(names)}." + (f" Fix: {close[0]}=..." if close else ""))
    return replace(base, **overrides) if overrides else base
