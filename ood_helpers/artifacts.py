"""Saved detectors shared across notebooks: load when present, train and save when absent.

Notebook 02 trains, notebook 05 loads what 02 saved; run alone, 05 trains it itself. Files live
in ``$OOD_ARTIFACTS`` (default ``./artifacts``, ignored by git) under ``<preset>/<setting>/``.
A file whose configuration no longer matches the request (another preset's numbers, another
variant) is retrained rather than silently reused.
"""
from __future__ import annotations

import os
from pathlib import Path

from .checkpoints import CheckpointError
from .data import SETTINGS, OODData, load_setting
from .detector import OODDetector
from .presets import get_preset
from .validation import check_choice


def artifact_dir() -> Path:
    """``$OOD_ARTIFACTS`` if set, else ``./artifacts``."""
    return Path(os.environ.get("OOD_ARTIFACTS", "artifacts"))


def variant_name(latent_input: bool = True, noise_augment: bool = True) -> str:
    """'full', 'no-latent', 'no-noise' or 'no-latent-no-noise'."""
    parts = ([] if latent_input else ["no-latent"]) + ([] if noise_augment else ["no-noise"])
    return "-".join(parts) or "full"


def detector_path(setting: str, preset=None, seed: int = 0, latent_input: bool = True,
                  noise_augment: bool = True) -> Path:
    preset = get_preset(preset)
    return artifact_dir() / preset.name / setting / f"detector_{variant_name(latent_input, noise_augment)}_seed{seed}.pt"


def get_data(setting: str, preset=None, seed: int = 0) -> OODData:
    """The setting's data with the preset's training-set size."""
    check_choice(setting, tuple(SETTINGS), "setting")
    return load_setting(setting, train_limit=get_preset(preset).train_limit, seed=seed)


def get_detector(setting: str, preset=None, seed: int = 0, latent_input: bool = True, noise_augment: bool = True,
                 data: OODData | None = None, progress: bool = True, verbose: bool = True) -> OODDetector:
    """A fitted detector for ``setting``: loaded from the artifacts folder, else trained and saved."""
    preset = get_preset(preset)
    path = detector_path(setting, preset, seed, latent_input, noise_augment)
    wanted = {"preset": preset.as_dict(), "seed": seed, "latent_input": latent_input, "noise_augment": noise_augment}
    if path.exists():
        try:
            detector = OODDetector.load(path, progress=progress)
            stored = {key: detector.config()[key] for key in wanted}
            stored["preset"] = dict(stored["preset"], betas=tuple(stored["preset"]["betas"]),
                                    milestones=tuple(stored["preset"]["milestones"]))
            if stored == wanted:
                if verbose:
                    print(f"loaded {path}")
                return detector
            reason = "its configuration differs from this request"
        except (CheckpointError, KeyError) as err:
            reason = str(err)
        if verbose:
            print(f"retraining: {path} is unusable ({reason})")
    data = data if data is not None else get_data(setting, preset, seed)
    detector = OODDetector(data.channels, preset, seed, latent_input, noise_augment, progress=progress)
    detector.fit(data.in_train, work_dir=path.parent / f"train_state_{path.stem}")
    detector.save(path)
    if verbose:
        print(f"trained in {detector.history_['train_seconds']:.0f} s and saved {path}")
    return detector
