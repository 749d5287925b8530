"""Saved detectors shared across notebooks: load when present and matching, else train and save.

Notebook 02 trains, notebook 05 loads what 02 saved; run alone, 05 trains it itself. Two folders
hold detectors, with the same layout ``<preset>/<setting>/detector_<variant>_seed<seed>.pt``:

1. ``$OOD_PRETRAINED_DIR`` (optional): a shared, read-only folder made once by
   ``python -m ood_helpers pretrain --out DIR`` (:mod:`ood_helpers.pretrain`). Only read: nothing is
   ever written, locked or created there. A missing, unreadable, damaged or non-matching file
   there is reported in one line and the per-user folder is used instead.
2. ``$OOD_ARTIFACTS`` (default ``./artifacts``, ignored by git): the per-user folder, where what
   is trained is saved.

A file is reused only when it is readable, intact (content hash), and belongs to exactly this
request: the same setting's training images (fingerprint), channels, preset fields, seed and
switches. In the per-user folder anything else is retrained, and the reason is printed. A lock
file keeps two kernels from training the same detector at once: the second waits, then loads
what the first saved.
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


def pretrained_dir() -> Path | None:
    """``$OOD_PRETRAINED_DIR`` (the shared, read-only folder of pretrained detectors), or None when unset."""
    value = os.environ.get("OOD_PRETRAINED_DIR")
    return Path(value) if value else None


def variant_name(latent_input: bool = True, noise_augment: bool = True) -> str:
    """'full', 'no-latent', 'no-noise' or 'no-latent-no-noise'."""
    parts = ([] if latent_input else ["no-latent"]) + ([] if noise_augment else ["no-noise"])
    return "-".join(parts) or "full"


VARIANTS = {"full": dict(latent_input=True, noise_augment=True),
            "no-latent": dict(latent_input=False, noise_augment=True),
            "no-noise": dict(latent_input=True, noise_augment=False),
            "no-latent-no-noise": dict(latent_input=False, noise_augment=False)}


def detector_relpath(setting: str, preset=None, seed: int = 0, latent_input: bool = True,
                     noise_augment: bool = True) -> Path:
    """One detector's place inside any detector folder: ``<preset>/<setting>/detector_<variant>_seed<seed>.pt``."""
    preset = get_preset(preset)
    return Path(preset.name) / setting / f"detector_{variant_name(latent_input, noise_augment)}_seed{seed}.pt"


def detector_path(setting: str, preset=None, seed: int = 0, latent_input: bool = True,
                  noise_augment: bool = True) -> Path:
    """Where :func:`get_detector` keeps one detector: ``<artifacts>/<preset>/<setting>/detector_<variant>_seed<seed>.pt``."""
    return artifact_dir() / detector_relpath(setting, preset, seed, latent_input, noise_augment)


def get_data(setting: str, preset=None, seed: int = 0, download: bool | None = None) -> OODData:
    """The setting's data with the preset's training-set size.

    Parameters
    ----------
    setting : a key of :data:`ood_helpers.data.SETTINGS`.
    preset : preset name or :class:`~ood_helpers.presets.Preset` (None = ``$OOD_PRESET`` / auto).
    seed : int
        Seed of the training-image draw.
    download : bool or None
        As :func:`ood_helpers.data.load_images`: None downloads MNIST / CIFAR-10 only into the
        per-user data folder, when ``OOD_DATA_DIR`` is unset and they are not there yet; True also
        downloads into the ``OOD_DATA_DIR`` folder; False never downloads.

    Returns
    -------
    OODData
        See :func:`ood_helpers.data.load_setting`.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    return load_setting(setting, train_limit=get_preset(preset).train_limit, seed=seed, download=download)


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


def _load_matching(path: Path, wanted: OODDetector, channels: int, train_fingerprint: str, shown: str,
                   progress: bool) -> tuple[OODDetector | None, str | None]:
    """(detector, None) when ``path`` holds a detector answering ``wanted``; (None, reason) when it
    is unusable or another run's; (None, None) when there is no file. Only reads ``path``."""
    if not path.exists():
        return None, None
    try:
        detector = OODDetector.load(path, progress=progress)
    except (CheckpointError, OSError) as err:
        return None, f"{shown} is unusable ({str(err).replace(str(path), path.name)})"
    reason = mismatch(detector, wanted, channels, train_fingerprint)
    return (detector, None) if reason is None else (None, f"{shown}: {reason}")


def _shared_shown(relpath: Path) -> str:
    return f"$OOD_PRETRAINED_DIR/{relpath.as_posix()}"


def load_pretrained(wanted: OODDetector, relpath: Path, channels: int, train_fingerprint: str,
                    progress: bool = True) -> tuple[OODDetector | None, str | None]:
    """Look for a matching detector in the shared folder ``$OOD_PRETRAINED_DIR``, read-only.

    Parameters
    ----------
    wanted : OODDetector
        The request: an unfitted detector with the wanted parameters.
    relpath : Path
        :func:`detector_relpath` of the request.
    channels, train_fingerprint : int, str
        The setting's channels and the fingerprint of its training images.
    progress : bool
        Passed to the loaded detector.

    Returns
    -------
    (OODDetector or None, str or None)
        The loaded detector and None; or None and why the shared folder could not serve the request
        (one line naming the file or folder); (None, None) when ``OOD_PRETRAINED_DIR`` is unset.
        Nothing is written, locked or created in the shared folder.
    """
    shared = pretrained_dir()
    if shared is None:
        return None, None
    path, shown = shared / relpath, _shared_shown(relpath)
    try:
        if not shared.is_dir():
            what = "is not a folder" if shared.exists() else "does not exist"
            return None, f"OOD_PRETRAINED_DIR='{shared}' {what}"
        os.listdir(shared)
    except OSError as err:
        return None, f"OOD_PRETRAINED_DIR='{shared}' cannot be read ({err.strerror or err})"
    try:
        present = path.exists()
    except OSError as err:
        return None, f"{shown} cannot be read ({err.strerror or err})"
    if not present:
        return None, f"{shown} is not there (make it with: python -m ood_helpers pretrain --out <that folder>)"
    return _load_matching(path, wanted, channels, train_fingerprint, shown, progress)


def load_or_train(path: Path, wanted: OODDetector, data: OODData, channels: int, train_fingerprint: str,
                  shown: str, progress: bool = True, verbose: bool = True) -> tuple[OODDetector, str]:
    """Load the detector saved at ``path`` when it matches ``wanted``, else train it and save it there.

    Parameters
    ----------
    path : Path
        The detector file in a writable folder (the per-user artifacts, or ``pretrain --out``).
    wanted : OODDetector
        The request: an unfitted detector with the wanted parameters.
    data : OODData
        Its ``in_train`` images train the detector.
    channels, train_fingerprint : int, str
        The setting's channels and the fingerprint of ``data.in_train``.
    shown : str
        How ``path`` is printed (never a machine path in notebook outputs).
    progress, verbose : bool
        Progress bars while training; one line saying what was loaded, trained or why retrained.

    Returns
    -------
    (OODDetector, str)
        The fitted detector and what happened: ``"loaded"``, ``"trained"`` or ``"retrained"``.

    Notes
    -----
    Training holds ``<path>.lock`` (two processes train once: the second waits, then loads) and
    keeps its per-epoch state in ``train_state_<name>/`` beside ``path``, so an interrupted run
    resumes; the file is written atomically.
    """
    detector, reason = _load_matching(path, wanted, channels, train_fingerprint, shown, progress)
    if detector is None:
        with file_lock(path):
            # another process may have trained it while this one waited
            detector, reason = _load_matching(path, wanted, channels, train_fingerprint, shown, progress)
            if detector is None:
                if reason and verbose:
                    print(f"retraining: {reason}")
                detector = wanted.fit(data.in_train, work_dir=path.parent / f"train_state_{path.stem}")
                detector.save(path)
                if verbose:
                    print(f"trained in {detector.history_['train_seconds']:.0f} s and saved {shown}")
                return detector, "retrained" if reason else "trained"
    if verbose:
        print(f"loaded {shown}")
    return detector, "loaded"


def get_detector(setting: str, preset=None, seed: int = 0, latent_input: bool = True, noise_augment: bool = True,
                 data: OODData | None = None, progress: bool = True, verbose: bool = True) -> OODDetector:
    """A fitted detector for ``setting``: loaded from the shared pretrained folder or the artifacts
    folder when a matching one is there, else trained on ``data.in_train`` and saved in the
    artifacts folder.

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

    Notes
    -----
    Looked for first in ``$OOD_PRETRAINED_DIR`` (when set; read only, never written, locked or
    created), then in ``$OOD_ARTIFACTS`` (default ``./artifacts``), both under
    :func:`detector_relpath`. When the shared folder cannot serve the request (folder or file
    missing, unreadable, damaged, or made for other data, preset or seed) one line says so before
    the per-user folder is used.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    seed = check_seed(seed)
    preset = get_preset(preset)
    data = data if data is not None else get_data(setting, preset, seed)
    channels = CHANNELS[SETTINGS[setting]["in_data"]]
    wanted = OODDetector(in_channels=channels, preset=preset, seed=seed, latent_input=latent_input,
                         noise_augment=noise_augment, progress=progress)
    train_fingerprint = fingerprint(data.in_train)
    relpath = detector_relpath(setting, preset, seed, latent_input, noise_augment)
    path = artifact_dir() / relpath

    shared, reason = load_pretrained(wanted, relpath, channels, train_fingerprint, progress)
    if shared is not None:
        if verbose:
            print(f"loaded {_shared_shown(relpath)} (pretrained, read-only)")
        return shared
    if reason and verbose:
        print(f"pretrained detector not used: {reason}; using {_shown(path)}")
    return load_or_train(path, wanted, data, channels, train_fingerprint, _shown(path), progress, verbose)[0]
