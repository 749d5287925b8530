"""Detector files: :meth:`OODDetector.save` and :meth:`OODDetector.load` write and read them here.

One file holds the weights, the latent density, the calibration, the threshold and the
configuration; it is written atomically with a content hash and read with
``torch.load(..., weights_only=True)`` (:mod:`ood_helpers.checkpoints`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoints import CheckpointError, load_checkpoint, require, save_checkpoint
from .networks import AutoEncoder, new_autoencoder
from .presets import Preset, get_preset
from .runtime import pick_device
from .validation import InputError, float32_default

DETECTOR_FORMAT = "ood_helpers.detector"
# 5: the preset no longer holds how a run executes (fast_path, precision, compile_step: ood_helpers.runtime)
# 6: our latent distance is the nearest training latent's, and our difference term is a switch
# 7: our two-sided Mahalanobis distance of z is a switch again (latent_mahalanobis); files of version 6
#    are read as having it off, which is what they are
DETECTOR_VERSION = 7
_KEYS = ("config", "in_channels", "run_identity", "autoencoder", "classifier", "rotation_net", "rotation_mean",
         "rotation_precision", "latent_bank", "latent_mean", "latent_precision", "calibration", "threshold", "held_out_scores",
         "history", "validation", "n_train", "train_fingerprint")
_CHANGES = {4: "the classifier also learns that an image of noise or of one colour is out, and our latent term "
                "is two-sided",
            5: "the preset holds the method only, and noise and outliers come from one batched implementation",
            6: "our latent distance is to the nearest training latent, and our difference term is a switch"}
_SWITCHES = ("latent_input", "latent_distance", "noise_augment", "rotation_score", "difference_term",
             "latent_mahalanobis")


def save_detector(detector, path) -> Path:
    """Write a fitted detector to ``path`` (atomic, hashed); raises NotFittedError before ``fit``."""
    detector._check_fitted("save")
    params = dict(detector.params_)   # what it was fitted with, whatever set_params did since
    params.update(preset=detector.preset_.as_dict(), device=None, outlier_families=list(detector.outlier_families_))
    held = {key: torch.from_numpy(np.asarray(value)) for key, value in detector.held_out_scores_.items()}
    rotation = None if detector.rotation_net_ is None else detector.rotation_net_.state_dict()
    return save_checkpoint({
        "format": DETECTOR_FORMAT, "version": DETECTOR_VERSION, "config": params,
        "in_channels": detector.in_channels_, "run_identity": detector.run_identity_,
        "autoencoder": detector.autoencoder_.state_dict(), "classifier": detector.classifier_.state_dict(),
        "rotation_net": rotation, "rotation_mean": detector.rotation_mean_,
        "rotation_precision": detector.rotation_precision_, "latent_bank": detector.latent_bank_,
        "latent_mean": detector.latent_mean_, "latent_precision": detector.latent_precision_,
        "calibration": detector.calibration_.as_dict(),
        "threshold": detector.threshold_, "held_out_scores": held, "history": detector.history_,
        "validation": detector.validation_, "n_train": detector.n_train_,
        "train_fingerprint": detector.train_fingerprint_}, path)


def _preset_from_dict(fields: dict, path) -> Preset:
    known = set(Preset.__dataclass_fields__)
    extra, missing = sorted(set(fields) - known), sorted(known - set(fields))
    if extra or missing:
        raise CheckpointError(f"'{path}': its preset has fields {extra or ''} unknown to this ood_helpers"
                              f"{' and lacks ' + str(missing) if missing else ''}; it was written by another "
                              f"version of ood_helpers. Fix: retrain, or use the ood_helpers that wrote it.")
    return Preset(**dict(fields, betas=tuple(fields["betas"]), milestones=tuple(fields["milestones"])))


def read_detector_file(path, in_channels: int | None = None, preset=None) -> dict:
    """The verified contents of a detector file, without building a network: hash, format,
    version, every field, and the optional expectations ``in_channels`` and ``preset``.
    ``config["preset"]`` comes back as a :class:`Preset`.

    Raises FileNotFoundError (no file) or CheckpointError (corrupted, foreign, older, incomplete,
    mismatching; the message names the file and the fix).
    """
    payload = load_checkpoint(path, DETECTOR_FORMAT)
    version = payload.get("version")
    if version == 6 and isinstance(payload.get("config"), dict) and isinstance(payload.get("run_identity"), dict):
        payload = _from_version_6(payload)
        version = DETECTOR_VERSION
    if version != DETECTOR_VERSION:
        why = "".join(f" (since version {since} {change})" for since, change in _CHANGES.items()
                      if isinstance(version, int) and version < since)
        raise CheckpointError(f"'{path}' is a detector file of version {version!r}; this ood_helpers reads version "
                              f"{DETECTOR_VERSION}{why}. Fix: delete it and re-run pretrain (python -m ood_helpers "
                              f"pretrain --out <folder>), or let artifacts.get_detector retrain it.")
    require(payload, _KEYS, path)
    require(payload["config"], _SWITCHES, path, "config")
    payload = dict(payload)
    config = payload["config"] = dict(payload["config"])
    try:
        config["preset"] = _preset_from_dict(dict(config["preset"]), path)
        channels = payload["in_channels"] = int(payload["in_channels"])
    except CheckpointError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError, InputError) as err:
        raise CheckpointError(f"'{path}': its configuration is not one of this ood_helpers ({err}). "
                              f"Fix: delete it and retrain.") from err
    if in_channels is not None and channels != in_channels:
        raise CheckpointError(f"'{path}' was saved for {channels} channel(s); expected {in_channels}. "
                              f"Fix: load the detector trained for these images.")
    if preset is not None and config["preset"].name != get_preset(preset).name:
        raise CheckpointError(f"'{path}' was saved with preset {config['preset'].name!r}; expected "
                              f"{get_preset(preset).name!r}. Fix: load or train one for that preset.")
    return payload


def _from_version_6(payload: dict) -> dict:
    """A version-6 payload as version 7 reads it: the same detector, our Mahalanobis term off."""
    identity = dict(payload["run_identity"])
    if isinstance(identity.get("config"), dict):
        identity["config"] = {**identity["config"], "latent_mahalanobis": False}
    return {"latent_mean": None, "latent_precision": None, **payload, "run_identity": identity,
            "config": {**payload["config"], "latent_mahalanobis": False}}


def _broken(path, err) -> CheckpointError:
    message = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return CheckpointError(f"'{path}': its contents do not form a detector of this ood_helpers ({message}). "
                           f"Fix: delete it and retrain.")


def load_detector(cls, path, in_channels=None, preset=None, device=None, progress: bool = True):
    """A fitted ``cls`` (an OODDetector class) from a file of :func:`save_detector`.

    Raises FileNotFoundError, CheckpointError, or InputError for a ``device`` this machine lacks.
    """
    device = pick_device(device)   # a device this machine lacks is the caller's to fix, not the file's
    payload = read_detector_file(path, in_channels, preset)
    config = payload["config"]
    with float32_default():   # a session's float64 default would build float64 networks
        try:
            detector = cls(**{**config, "device": device, "progress": progress})
            detector._restore(payload, device)
        except CheckpointError:
            raise
        except (RuntimeError, TypeError, KeyError, ValueError, AttributeError, InputError) as err:
            raise _broken(path, err) from err
    return detector


def load_autoencoder(path, in_channels=None, preset=None, device=None) -> AutoEncoder:
    """Only the autoencoder of a detector file (verified like :func:`load_detector`), in eval mode."""
    device = pick_device(device)
    payload = read_detector_file(path, in_channels, preset)
    try:
        with float32_default():
            autoencoder = new_autoencoder(payload["in_channels"], payload["config"]["preset"])
        autoencoder.load_state_dict(payload["autoencoder"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise _broken(path, err) from err
    return autoencoder.to(device).eval()
