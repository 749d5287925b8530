"""Checkpoint files: written atomically, read with ``weights_only=True``, verified, errors that explain.

A checkpoint holds a dict ``{"format": ..., "config": {...}, ...tensors...}`` so the configuration
that built the weights travels with them and a mismatch is caught before loading. On disk it is
wrapped as ``{"ood_helpers_checkpoint": FORMAT_VERSION, "sha256": ..., "payload": payload}``; the
hash covers every key, number and tensor byte, because neither torch nor its zip container
checks the data (one flipped bit in the weights would otherwise load silently).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import stat
import struct
import tempfile
from pathlib import Path

import torch

from .loop import Hooks
from .files import _UMASK, remove_stale_temporaries, temp_prefix

FORMAT_VERSION = 2
_MARK = "ood_helpers_checkpoint"
_RETRAIN = "delete it and retrain (or re-download it)"


class CheckpointError(ValueError):
    """A file is not a usable checkpoint for what is being loaded."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, read-only or unwritable folder)."""


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def _unpickler_detail(err: BaseException) -> str:
    # torch's weights_only refusal is a paragraph of advice (including "load with weights_only=False",
    # which must not be followed for an unknown file); keep only the line that says what it found.
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        found = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        if found:
            return found.split(" was not an allowed global")[0][:200]
    return _first_line(err)


# -- content hash ---------------------------------------------------------------------------------
# Every item is fed as a type tag plus length-prefixed bytes, so no two different payloads share an
# encoding; dict keys are sorted by their encoding, so insertion order does not matter.
def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<Q", len(data)) + data


def _feed(digest, obj, where: str):
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu()
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise TypeError(f"save_checkpoint: {where} is a {tensor.layout} tensor; store dense tensors.")
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(_chunk(b"T", f"{tensor.dtype}{tuple(tensor.shape)}".encode()))
        digest.update(b"B" + struct.pack("<Q", raw.nbytes))
        digest.update(raw.data)
    elif isinstance(obj, dict):
        digest.update(_chunk(b"D", f"{type(obj).__name__}:{len(obj)}".encode()))
        items = sorted(((_key_bytes(key, where), key, value) for key, value in obj.items()), key=lambda i: i[0])
        for encoded, key, value in items:
            digest.update(encoded)
            _feed(digest, value, f"{where}[{key!r}]")
        extra = getattr(obj, "__dict__", None)  # e.g. the _metadata of a state_dict
        if extra:
            _feed(digest, dict(extra), f"{where}.__dict__")
    elif isinstance(obj, (list, tuple)):
        digest.update(_chunk(b"L", f"{type(obj).__name__}:{len(obj)}".encode()))
        for index, value in enumerate(obj):
            _feed(digest, value, f"{where}[{index}]")
    elif obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
        digest.update(_chunk(b"P", f"{type(obj).__name__}:{obj!r}".encode()))
    else:
        raise TypeError(f"save_checkpoint: {where} is a {type(obj).__name__}; store tensors, dicts, lists, "
                        f"tuples, numbers, strings and None only.")


def _key_bytes(key, where: str) -> bytes:
    digest = hashlib.sha256()
    _feed(digest, key, f"{where} key")
    return digest.digest()


def _content_hash(payload: dict) -> str:
    digest = hashlib.sha256(_chunk(b"V", str(FORMAT_VERSION).encode()))
    _feed(digest, payload, "payload")
    return digest.hexdigest()


# -- writing --------------------------------------------------------------------------------------
def _write_error(err: BaseException, path: Path) -> CheckpointWriteError:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MB"
    except OSError:
        free = "unknown"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointWriteError(f"no space left on device while writing '{path}' (free: {free}); free space "
                                    f"or choose another folder.")
    if isinstance(err, OSError):
        return CheckpointWriteError(f"cannot write '{path}' ({err.strerror or _first_line(err)}); check the "
                                    f"folder's permissions or choose another folder.")
    # torch reports a failed write from its zip writer as a RuntimeError "enforce fail at
    # inline_container.cc ... file write failed", without the errno; a full disk is the usual cause.
    return CheckpointWriteError(f"writing '{path}' failed, most likely no space left on device (free: {free}; "
                                f"{_first_line(err)}); free space or choose another folder.")


def _is_write_failure(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("inline_container" in text or "write" in text)


def save_checkpoint(payload: dict, path) -> Path:
    """Write ``payload`` and its content hash to ``path`` atomically.

    The file is written to a temporary ``.<name>.<pid>.<random>.tmp`` in the same folder, synced,
    then renamed over ``path``: a crash mid-write leaves the previous checkpoint intact, and
    concurrent writers never produce a torn file (the last rename wins). Temporaries left by
    killed writers of the same ``path`` are removed first.

    Parameters
    ----------
    payload : dict
        ``{"format": str, ...}`` whose values are tensors, dicts, lists, tuples, numbers,
        strings or None (nested). A ``"version"`` key, if any, is stored as given; the file
        format version is stamped by this function.
    path : str or Path
        Destination; ``~`` is expanded and missing parent folders are created. A symlink is kept:
        the file it points to is replaced. A read-only file is not overwritten.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    TypeError
        When ``payload`` is not a dict with a string ``"format"``, or holds a value of another type.
    CheckpointWriteError
        When ``path`` is a read-only file, or the write fails: no space left on device (with the
        free space), or a folder that cannot be created or written. The temporary file is removed.
    """
    path = Path(path).expanduser()
    if not isinstance(payload, dict) or not isinstance(payload.get("format"), str):
        raise TypeError("save_checkpoint: payload must be a dict with a string 'format' key.")
    # a symlink stays a link: the file it points to is replaced, in its own folder (atomic there)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = target.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISREG(mode) and not mode & stat.S_IWUSR:
        raise CheckpointWriteError(f"'{path}' is read-only, so it was not overwritten. Fix: save under another "
                                   f"name, or make it writable first (chmod u+w '{target}') if replacing it is meant.")
    wrapped = {_MARK: FORMAT_VERSION, "sha256": _content_hash(payload), "payload": payload}
    tmp, path_given, path = None, path, target
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        handle, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
        os.fchmod(handle, 0o666 & ~_UMASK)
        with os.fdopen(handle, "wb") as file:
            torch.save(wrapped, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        tmp = None
    except Exception as err:
        if _is_write_failure(err):
            raise _write_error(err, path) from err
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path_given


# -- reading --------------------------------------------------------------------------------------
def _unwrap(data, path: Path) -> dict:
    if not isinstance(data, dict):
        raise CheckpointError(f"'{path}' holds {type(data).__name__!r} data, not an ood_helpers checkpoint; "
                              f"{_RETRAIN}.")
    if _MARK in data:
        version = data[_MARK]
    elif "format" in data and "version" in data:
        version = data["version"]  # the layout of format version 1: the payload itself, no hash
    else:
        raise CheckpointError(f"'{path}' is not an ood_helpers checkpoint (keys {sorted(map(str, data))[:8]}); "
                              f"{_RETRAIN}.")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"'{path}' has an unreadable format version {version!r} (corrupted); {_RETRAIN}.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"'{path}' was written by a newer ood_helpers (format version {version}, this one "
                              f"reads {FORMAT_VERSION}): upgrade ood_helpers or retrain.")
    if version < FORMAT_VERSION or _MARK not in data:
        raise CheckpointError(f"'{path}' was written by an older ood_helpers (format version {version}, this one "
                              f"reads {FORMAT_VERSION}); it is a cache: delete it and retrain.")
    payload, stored = data.get("payload"), data.get("sha256")
    if not isinstance(payload, dict) or not isinstance(stored, str) or len(data) != 3:
        raise CheckpointError(f"'{path}' has a damaged checkpoint layout (corrupted); {_RETRAIN}.")
    try:
        actual = _content_hash(payload)
    except TypeError as err:
        raise CheckpointError(f"'{path}' holds a value of an unexpected type (corrupted): {err}; "
                              f"{_RETRAIN}.") from err
    if actual != stored:
        raise CheckpointError(f"'{path}': content hash mismatch: the file is corrupted; {_RETRAIN}.")
    return payload


def load_checkpoint(path, expected_format: str, required=None) -> dict:
    """Load a checkpoint saved by :func:`save_checkpoint`, verify its hash and check its format tag.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    expected_format : str
        The ``"format"`` the payload must carry (e.g. the detector's format name).
    required : iterable of str or mapping of str to type, optional
        Keys the payload must have, checked with :func:`require`.

    Returns
    -------
    dict
        The payload exactly as it was passed to :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (the message names it).
    CheckpointError
        When the file is empty, unreadable, truncated, corrupted (content hash mismatch), not a
        checkpoint, holds pickled code (refused by ``weights_only=True``), was written by an older
        or newer ood_helpers, has another format, or lacks a required key. One line naming the
        file, the reason and the fix.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; train and save first, or check the path.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' is not a file; pass the checkpoint file, not a folder.")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"'{path}' is empty (0 bytes), e.g. from an interrupted copy or a full disk; "
                                  f"{_RETRAIN}.")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        detail = _unpickler_detail(err)
        if detail.startswith("Unsupported global"):
            raise CheckpointError(f"'{path}' holds pickled Python code or classes that a safe load "
                                  f"(weights_only=True) refuses ({detail}): a foreign or corrupted file; "
                                  f"{_RETRAIN} from a source you trust.") from err
        raise CheckpointError(f"'{path}' is not a readable checkpoint (truncated, corrupted or not made by "
                              f"ood_helpers: {detail}); {_RETRAIN}.") from err
    except (PermissionError, IsADirectoryError) as err:
        raise CheckpointError(f"cannot read '{path}' ({err.strerror}); check its permissions.") from err
    except Exception as err:  # whatever a damaged file makes the unpickler or zip reader raise
        raise CheckpointError(f"'{path}' is not a readable checkpoint (truncated, corrupted or not made by "
                              f"ood_helpers: {_first_line(err)}); {_RETRAIN}.") from err
    payload = _unwrap(data, path)
    if payload.get("format") != expected_format:
        raise CheckpointError(f"'{path}' holds a {payload.get('format')!r} checkpoint, expected "
                              f"{expected_format!r}; pass the right file.")
    if required is not None:
        require(payload, required, path)
    return payload


def require(payload: dict, keys, path, where: str = "") -> dict:
    """Check that a loaded payload has the keys (and value types) a caller is about to use.

    Parameters
    ----------
    payload : dict
        A payload from :func:`load_checkpoint`, or a dict inside it.
    keys : iterable of str or mapping of str to type or tuple of types
        Required keys; a dotted key such as ``"config.in_channels"`` looks inside nested dicts.
        With a mapping, each value must also be an instance of the given type(s).
    path : str or Path
        The checkpoint file, for the message.
    where : str
        Prefix of the dotted names in messages when ``payload`` is a nested dict (e.g. ``"config"``).

    Returns
    -------
    dict
        ``payload``, for chaining.

    Raises
    ------
    CheckpointError
        ``"'<path>' lacks key 'x' ..."`` for a missing key, or names the key, the expected and the
        found type; the fix is to delete the file and retrain.
    """
    types = keys if isinstance(keys, dict) else dict.fromkeys(keys)
    for dotted, kind in types.items():
        value, name = payload, where
        for part in dotted.split("."):
            name = f"{name}.{part}" if name else part
            if not isinstance(value, dict) or part not in value:
                raise CheckpointError(f"'{path}' lacks key {name!r} (written by another version of the program, "
                                      f"or damaged); {_RETRAIN}.")
            value = value[part]
        if kind is not None and not isinstance(value, kind):
            expected = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            raise CheckpointError(f"'{path}': key {name!r} holds a {type(value).__name__}, expected {expected}; "
                                  f"{_RETRAIN}.")
    return payload


# -- the training state, saved after every epoch: a loop hook (ood_helpers.loop.Hooks) -----------------
STATE_FORMAT = "ood_helpers.training_state"


def state_file(work_dir, stage: str, identity: dict) -> Path:
    """Where one stage's training state is kept: a name unique to the run's identity, so runs that
    differ in anything (seed, preset field, data) never share a state file."""
    from .api import fingerprint

    return Path(work_dir).expanduser() / f"{stage}_state_{fingerprint(identity)}.pt"


class TrainingState(Hooks):
    """Saves the whole training state after every epoch (atomically; under torchrun rank 0 only)
    and resumes a run of the same identity from it; a state of another identity, or an unreadable
    one, is ignored and overwritten."""

    def __init__(self, path, identity: dict):
        self.path, self.identity = Path(path), json.loads(json.dumps(identity, default=str))

    def on_start(self, run):
        if not self.path.exists():
            return
        try:
            state = load_checkpoint(self.path, STATE_FORMAT)
            if json.loads(json.dumps(state.get("config"), default=str)) != self.identity:
                return
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            run.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            run.epoch, run.losses = int(state["epoch"]), [float(x) for x in state["losses"]]
        except (CheckpointError, KeyError, RuntimeError, ValueError, TypeError):
            return   # an unusable state is a cache miss: the run starts from epoch 0 and overwrites it

    def on_epoch_end(self, run):
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        save_checkpoint({"format": STATE_FORMAT, "version": 3, "config": self.identity, "epoch": run.epoch,
                         "losses": run.losses, "model": run.model.state_dict(),
                         "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                         "generator": run.generator.get_state(), "torch_rng": torch.get_rng_state()}, self.path)
