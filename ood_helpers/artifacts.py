"""Saved detectors shared across notebooks: load when present and matching, else train and save.

Notebook 02 trains, notebook 05 loads what 02 saved; run alone, 05 trains it itself. Detectors are
asked for by variant (:mod:`ood_helpers.variants`: ``paper``, ``paper-no-aux``, ``paper-no-noise``,
``ours``, ``ours-distance-only``). Two folders hold them, with the same layout
``<preset>/<setting>/detector_<variant>_seed<seed>.pt``:

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

:func:`get_autoencoder` gives the autoencoder alone: read from the matching ``paper`` (or
``paper-no-noise``) detector file when there is one, else trained alone, equal to that
detector's autoencoder.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .api import check_seed, fingerprint
from .checkpoints import CheckpointError, CheckpointWriteError
from .data import CHANNELS, SETTINGS, OODData, load_setting
from .detector import OODDetector, fit_autoencoder
from .persistence import read_detector_file
from .files import OutputPathError, file_lock
from .networks import AutoEncoder
from .presets import get_preset
from .checkpoints import state_file
from .validation import check_bool, check_choice
from .detector import build_detector
from .variants import get_variant

STATE_DIR = "train_state"   # per-epoch training states, beside the detector files of one folder


def artifact_dir() -> Path:
    """``$OOD_ARTIFACTS`` if set (``~`` expanded), else ``./artifacts``."""
    return Path(os.environ.get("OOD_ARTIFACTS") or "artifacts").expanduser()


def pretrained_dir() -> Path | None:
    """``$OOD_PRETRAINED_DIR`` (the shared, read-only folder of pretrained detectors), or None when unset."""
    value = os.environ.get("OOD_PRETRAINED_DIR")
    return Path(value).expanduser() if value else None


def detector_relpath(setting: str, preset=None, seed: int = 0, variant: str = "paper") -> Path:
    """One detector's place inside any detector folder: ``<preset>/<setting>/detector_<variant>_seed<seed>.pt``.

    Parameters
    ----------
    setting : str
    preset : preset name or Preset (None = ``$OOD_PRESET`` / auto)
    seed : int >= 0
    variant : a key of :data:`ood_helpers.variants.VARIANTS`

    Raises
    ------
    InputError
        Unknown variant or preset.
    """
    preset = get_preset(preset)
    return Path(preset.name) / setting / f"detector_{get_variant(variant).key}_seed{seed}.pt"


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
    return _mismatch(detector.in_channels_, detector.train_fingerprint_, detector.run_identity_["config"],
                     wanted, channels, train_fingerprint)


def _mismatch(stored_channels: int, stored_fingerprint: str, stored_config: dict, wanted: OODDetector, channels: int,
              train_fingerprint: str) -> str | None:
    if stored_channels != channels:
        return f"it was trained on {stored_channels}-channel images, this setting has {channels}"
    if stored_fingerprint != train_fingerprint:
        return "it was trained on other images (another setting, training-set size or seed)"
    stored, requested = _plain(stored_config), _plain(wanted.run_config())
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
    keeps its per-epoch state in ``train_state/`` beside ``path``, so an interrupted run resumes;
    the file is written atomically. The finished autoencoder's state is kept there (named by
    :func:`ood_helpers.detector.autoencoder_identity`): the other variants of the same seed, preset
    and noise switch resume it instead of training the same autoencoder again.
    """
    detector, reason = _load_matching(path, wanted, channels, train_fingerprint, shown, progress)
    if detector is None:
        with file_lock(path):
            # another process may have trained it while this one waited
            detector, reason = _load_matching(path, wanted, channels, train_fingerprint, shown, progress)
            if detector is None:
                if reason and verbose:
                    print(f"retraining: {reason}")
                work = path.parent / STATE_DIR
                detector = wanted.fit(data.in_train, work_dir=work)
                detector.save(path)
                # the autoencoder's state stays: other variants of this seed resume it instead of retraining
                for stage in ("classifier", "rotation"):
                    state_file(work, stage, detector.run_identity_).unlink(missing_ok=True)
                if verbose:
                    print(f"trained in {detector.history_['train_seconds']:.0f} s and saved {shown}")
                return detector, "retrained" if reason else "trained"
    if verbose:
        print(f"loaded {shown}")
    return detector, "loaded"


def get_detector(setting: str, preset=None, seed: int = 0, variant: str = "paper", data: OODData | None = None,
                 progress: bool = True, verbose: bool = True) -> OODDetector:
    """A fitted detector for ``setting``: loaded from the shared pretrained folder or the artifacts
    folder when a matching one is there, else trained on ``data.in_train`` and saved in the
    artifacts folder.

    Parameters
    ----------
    setting : a key of :data:`ood_helpers.data.SETTINGS`.
    preset : preset name or :class:`~ood_helpers.presets.Preset` (None = ``$OOD_PRESET`` / auto).
    seed : int >= 0
    variant : str
        A key of :data:`ood_helpers.variants.VARIANTS`: ``"paper"`` (the paper's method, the
        default), ``"paper-no-aux"`` / ``"paper-no-noise"`` (its Table 3 ablations), ``"ours"``
        (paper + our two latent distances) or ``"ours-distance-only"``.
    data : OODData or None
        The setting's data; None loads it with :func:`get_data`.
    progress, verbose : bool
        Progress bars while training; one line saying what was loaded, trained or why retrained.

    Returns
    -------
    OODDetector, fitted, with the variant's switches.

    Raises
    ------
    InputError
        Unknown setting or variant, bad seed or preset.
    ood_helpers.files.OutputPathError
        When a detector must be trained and the artifacts folder is not writable (the message
        names ``OOD_ARTIFACTS`` and the fix).
    ood_helpers.loop.TrainingDivergedError
        When training diverges.

    Notes
    -----
    Looked for first in ``$OOD_PRETRAINED_DIR`` (when set; read only, never written, locked or
    created), then in ``$OOD_ARTIFACTS`` (default ``./artifacts``), both under
    :func:`detector_relpath`. When the shared folder cannot serve the request (folder or file
    missing, unreadable, damaged, of an older version, or made for other data, preset or seed)
    one line says so before the per-user folder is used.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    seed = check_seed(seed)
    variant = get_variant(variant).key
    preset = get_preset(preset)
    data = data if data is not None else get_data(setting, preset, seed)
    channels = CHANNELS[SETTINGS[setting]["in_data"]]
    wanted = build_detector(variant, channels, preset, seed, progress)
    train_fingerprint = fingerprint(data.in_train)
    relpath = detector_relpath(setting, preset, seed, variant)
    path = artifact_dir() / relpath

    shared, reason = load_pretrained(wanted, relpath, channels, train_fingerprint, progress)
    if shared is not None:
        if verbose:
            print(f"loaded {_shared_shown(relpath)} (pretrained, read-only)")
        return shared
    if reason and verbose:
        print(f"pretrained detector not used: {reason}; using {_shown(path)}")
    try:
        return load_or_train(path, wanted, data, channels, train_fingerprint, _shown(path), progress, verbose)[0]
    except (OSError, OutputPathError, CheckpointWriteError) as err:
        where = (f"OOD_ARTIFACTS={os.environ['OOD_ARTIFACTS']!r}" if os.environ.get("OOD_ARTIFACTS")
                 else f"the default artifacts folder '{artifact_dir()}'")
        raise OutputPathError(f"cannot save the detector this session trains: {where} cannot be written "
                              f"({getattr(err, 'strerror', None) or err}). Fix: export OOD_ARTIFACTS=<a folder you "
                              f"can write> (e.g. ~/ood-artifacts) and restart the kernel, or set OOD_PRETRAINED_DIR "
                              f"to a folder of pretrained detectors.") from err


def _autoencoder_file(path: Path, wanted: OODDetector, channels: int, train_fingerprint: str, shown: str,
                      device) -> tuple[AutoEncoder | None, str | None]:
    """(autoencoder, None) when the detector file at ``path`` answers ``wanted``; (None, reason)
    when it is unusable or another run's; (None, None) when there is no file. Only reads ``path``
    and builds no classifier."""
    try:
        if not path.exists():
            return None, None
        payload = read_detector_file(path)
    except (CheckpointError, OSError) as err:
        return None, f"{shown} is unusable ({str(err).replace(str(path), path.name)})"
    reason = _mismatch(payload["in_channels"], str(payload["train_fingerprint"]), payload["run_identity"]["config"],
                       wanted, channels, train_fingerprint)
    if reason is not None:
        return None, f"{shown}: {reason}"
    try:
        return OODDetector.load_autoencoder(path, device=device), None
    except (CheckpointError, OSError) as err:
        return None, f"{shown} is unusable ({str(err).replace(str(path), path.name)})"


def get_autoencoder(setting: str, preset=None, seed: int = 0, noise_augment: bool = True, data: OODData | None = None,
                    progress: bool = True, verbose: bool = True, device=None) -> AutoEncoder:
    """The trained autoencoder (E, D) of ``setting`` alone, never building a classifier.

    If the matching ``paper`` detector file (``paper-no-noise`` when ``noise_augment`` is False)
    is in ``$OOD_PRETRAINED_DIR`` (read only) or, failing that, in ``$OOD_ARTIFACTS``, only its
    autoencoder is read (:meth:`~ood_helpers.detector.OODDetector.load_autoencoder`). Otherwise
    an autoencoder alone is trained (:func:`~ood_helpers.detector.fit_autoencoder`) with exactly
    the split and random stream that detector would use, so it equals that detector's
    autoencoder; it is not saved. The autoencoder does not depend on ``latent_input`` or
    ``latent_distance``: ``paper``, ``paper-no-aux``, ``ours`` and ``ours-distance-only`` of one
    seed share it.

    Parameters
    ----------
    setting : a key of :data:`ood_helpers.data.SETTINGS`.
    preset : preset name or Preset (None = ``$OOD_PRESET`` / auto).
    seed : int >= 0
    noise_augment : bool
        The paper's noise-addition augmentation of the autoencoder's inputs.
    data : OODData or None
        The setting's data; None loads it with :func:`get_data`.
    progress, verbose : bool
        Progress bars while training; one line saying what was loaded or trained.
    device : str, torch.device or None
        Where the autoencoder goes (None = CUDA, else MPS, else CPU).

    Returns
    -------
    ood_helpers.networks.AutoEncoder
        In eval mode; ``autoencoder(images)`` maps (N, C, 32, 32) in [0, 1] to
        (reconstruction (N, C, 32, 32) in [0, 1], z (N, latent_dim)).

    Raises
    ------
    InputError
        Unknown setting, bad seed, preset or noise_augment.
    ood_helpers.loop.TrainingDivergedError
        When training diverges.
    """
    check_choice(setting, tuple(SETTINGS), "setting")
    seed = check_seed(seed)
    check_bool(noise_augment, "noise_augment", "True is the paper's method, False its ablation")
    preset = get_preset(preset)
    data = data if data is not None else get_data(setting, preset, seed)
    channels = CHANNELS[SETTINGS[setting]["in_data"]]
    variant = "paper" if noise_augment else "paper-no-noise"
    wanted = build_detector(variant, channels, preset, seed, progress)
    train_fingerprint = fingerprint(data.in_train)
    relpath = detector_relpath(setting, preset, seed, variant)
    reasons = []
    shared = pretrained_dir()
    if shared is not None:
        autoencoder, reason = _autoencoder_file(shared / relpath, wanted, channels, train_fingerprint,
                                                _shared_shown(relpath), device)
        if autoencoder is not None:
            if verbose:
                print(f"loaded the autoencoder of {_shared_shown(relpath)} (pretrained, read-only)")
            return autoencoder
        reasons.append(reason or f"{_shared_shown(relpath)} is not there")
    path = artifact_dir() / relpath
    autoencoder, reason = _autoencoder_file(path, wanted, channels, train_fingerprint, _shown(path), device)
    if autoencoder is not None:
        if verbose:
            print(f"loaded the autoencoder of {_shown(path)}")
        return autoencoder
    reasons.append(reason or f"{_shown(path)} is not there")
    start = time.perf_counter()
    autoencoder = fit_autoencoder(data.in_train, channels, preset, seed, noise_augment,
                                  wanted.held_out_fraction, device, progress)
    if verbose:
        print(f"trained the autoencoder alone in {time.perf_counter() - start:.0f} s (not saved; no matching "
              f"detector file: {'; '.join(reasons)})")
    return autoencoder
