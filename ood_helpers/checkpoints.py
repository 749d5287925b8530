"""Checkpoint files: written atomically, read with ``weights_only=True``, errors that explain.

A checkpoint is a dict ``{"format": ..., "version": ..., "config": {...}, ...tensors...}`` so the
configuration that built the weights travels with them and a mismatch is caught before loading.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a usable checkpoint for what is being loaded."""


def save_checkpoint(payload: dict, path) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, expected_format: str) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint` and check its format tag.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for a truncated,
    foreign or mismatched file, each naming the path and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; train and save first, or check the path.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"'{path}' is not a readable checkpoint (truncated, corrupted or not made by "
                              f"ood_helpers): {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"'{path}' holds {found!r}, expected a {expected_format!r} checkpoint.")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' has checkpoint version {payload.get('version')!r}; this ood_helpers "
                              f"reads version {FORMAT_VERSION}. Retrain, or use the ood_helpers that wrote it.")
    return payload
