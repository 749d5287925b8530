"""Saved detectors shared across notebooks: load when present and matching, else train and save.

Notebook 02 trains, notebook 05 loads what 02 saved; run alone, 05 trains it itself. Files live in
``$OOD_ARTIFACTS`` (default ``./artifacts``, ignored by git) under ``<preset>/<setting>/``. A file
is reused only when it is readable, intact (content hash), and belongs to exactly this request:
the same setting's training images (fingerprint), channels, preset fields, seed and switches.
Anything else is retrained, and the reason is printed. A lock file keeps two kernels from
training the same detector at once: the second waits, then loads what the first saved.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .api import check_seed, fingerprint
from .checkpoints import CheckpointError
from .data import CHANNELS, SETTINGS, OODData, load_setting
from .detector import OODDetector
from .files import file_lock
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
    """Where :func:`get_detector` keeps one detector: ``<artifacts>/<preset>/<setting>/detector_<variant>_seed<seed>.pt``."""
    preset = get_preset(preset)
    return artifact_dir() / preset.name / setting / f"detector_{variant_name(latent_input, noise_augment)}_seed{seed}.pt"


def get_data(setting: str, preset=None, seed: int = 0) -> OODData:
    """The setting's data with the preset's training-set size (see :func:`ood_helpers.data.load_setting`)."""
    check_choice(setting, tuple(SETTINGS), "setting")
    return load_setting(setting, train_limit=get_preset(preset).train_limit, seed=seed)


def _plain(value):
    """JSON's view of a value: tuples and lists compare equal, as they do after a save and load."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _shown(path: Path) -> str:
    """A path as printed in notebooks: relative to the artifacts folder, never a machine path."""
    try:
        return f"{artifact_dir().name}/{path.relative_to(artifact_dir()).as_posix()}"
    except ValueError:
        return path.name


def mismatch(detector: OODDetector, wanted: OODDetector, channels: int, train_fingerprint: str) -> str | None:
    """Why a loaded ``detector`` does not answer the request ``wanted`` (unfitted, same parameters),
    or None when it does."""
    if detector.in_channels_ != channels:
        return f"it was trained on {detector.in_channels_}-channel images, this setting has {channels}"
    if detector.train_fingerprint_ != train_fingerprint:
        return "it was trained on other images (another setting, training-set size or seed)"
    stored, requested = _plain(detector.run_identity_["config"]), _plain(wanted.run_config())
    requested["in_channels"] = stored.get("in_channels")
    differences = sorted(key for key in set(stored) | set(requested) if stored.get(key) != requested.get(key))
    if differences:
        return f"its configuration differs in {', '.join(differences)}"
    return None


def get_detector(setting: str, preset=None, seed: int = 0, latent_input: bool = True, noise_augment: bool = True,
                 data: OODData | None = None, progress: bool = True, verbose: bool = True) -> OODDetector:
    """A fitted detector for ``setting``: loaded from the artifacts folder when a matching one is
    there, else trained on ``data.in_train`` and saved.

    Parameters
    ----------
    setting : a key of :data:`ood_helpers.data.SETTINGS`.
    preset : preset name or :class:`~ood_helpers.presets.Preset` (None = ``$OOD_PRESET`` / auto).
    seed : int >= 0
    latent_input, noise_augment : bool
        The detector's switches (the paper's ablations).
    data : OODData or None
        The setting's data; None loads it with :func:`get_data`.
    progress, verbose : bool
        Progress bars while training; one line saying what was loaded, trained or why retrained.

    Returns
    -------
    OODDetector, fitted.

    Raises
    ------
    InputError
        Unknown setting, bad seed or preset.
    ood_helpers.training.TrainingDivergedError
        When training diverges.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    seed = check_seed(seed)
    preset = get_preset(preset)
    data = data if data is not None else get_data(setting, preset, seed)
    channels = CHANNELS[SETTINGS[setting]["in_data"]]
    wanted = OODDetector(in_channels=channels, preset=preset, seed=seed, latent_input=latent_input,
                         noise_augment=noise_augment, progress=progress)
    train_fingerprint = fingerprint(data.in_train)
    path = detector_path(setting, preset, seed, latent_input, noise_augment)

    def reuse() -> tuple[OODDetector | None, str | None]:
        if not path.exists():
            return None, None
        try:
            detector = OODDetector.load(path, progress=progress)
        except (CheckpointError, FileNotFoundError) as err:
            return None, f"{_shown(path)} is unusable ({str(err).replace(str(path), path.name)})"
        reason = mismatch(detector, wanted, channels, train_fingerprint)
        return (detector, None) if reason is None else (None, f"{_shown(path)}: {reason}")

    detector, reason = reuse()
    if detector is None:
        with file_lock(path):
            detector, reason = reuse()  # another kernel may have trained it while we waited
            if detector is None:
                if reason and verbose:
                    print(f"retraining: {reason}")
                detector = wanted.fit(data.in_train, work_dir=path.parent / f"train_state_{path.stem}")
                detector.save(path)
                if verbose:
                    print(f"trained in {detector.history_['train_seconds']:.0f} s and saved {_shown(path)}")
                return detector
    if verbose:
        print(f"loaded {_shown(path)}")
    return detector
