"""Output files and folders that are never half-written, and locks that keep two runs apart.

Temporaries live beside their target (same folder, so the final rename is atomic) under a hidden
name that carries the writer's PID: ``.<name>.<pid>.<random>.tmp``. A killed writer leaves its
temporary behind; the next writer of the same target removes it once that PID is gone.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import filelock

from .validation import InputError

# mkstemp/mkdtemp create private (0600/0700) entries; outputs should get the usual umask modes.
_UMASK = os.umask(0)
os.umask(_UMASK)

# A temporary whose PID is dead may still belong to a writer in another PID namespace or on
# another host sharing the folder; such a writer keeps touching its file, so wait this long.
STALE_AFTER_S = 60.0
# Temporaries from before PIDs were in the name cannot be checked: only much older ones go.
LEGACY_STALE_AFTER_S = 3600.0


class OutputPathError(InputError):
    """An output path cannot be used: it is a file, its folder cannot be created, or is not writable."""


class LockTimeoutError(TimeoutError):
    """Another process held a lock for longer than the caller was willing to wait."""


def temp_prefix(path: Path) -> str:
    """Return the hidden name prefix of this process's temporaries for ``path``.

    Parameters
    ----------
    path : Path
        The final file or folder.

    Returns
    -------
    str
        ``".<name>.<pid>."``; a random part and a suffix follow it.
    """
    return f".{path.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Delete temporaries of ``path`` left by writers that no longer run.

    Parameters
    ----------
    path : str or Path
        The final file or folder whose temporaries (``.<name>.<pid>.<random>.tmp`` and
        ``.<name>.<pid>.<random>.old``) are looked for in its folder.

    Returns
    -------
    list of Path
        The temporaries removed. Those of a live PID, or touched in the last
        ``STALE_AFTER_S`` seconds, are kept; so are ones that cannot be removed.
    """
    path = Path(path)
    prefix, removed, now = f".{path.name}.", [], time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith((".tmp", ".old"))):
            continue
        parts = name[len(prefix):].split(".")
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if len(parts) == 3 and parts[0].isdigit():
            stale = age > STALE_AFTER_S and not _pid_alive(int(parts[0]))
        elif len(parts) == 2 and parts[1] == "tmp":  # written before the PID was in the name
            stale = age > LEGACY_STALE_AFTER_S
        else:  # another target whose name starts with this one's
            continue
        if not stale:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _probe_writable(folder: Path, what: Path):
    try:
        handle, probe = tempfile.mkstemp(prefix=temp_prefix(what), suffix=".tmp", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(f"cannot write in '{folder}' ({err.strerror or err}), needed for '{what}'; "
                              f"fix the folder's permissions or choose another output folder.") from err


def check_output_dir(path) -> Path:
    """Check, before any training, that a run can write its results to folder ``path``.

    Creates the missing parent folders, then writes and removes a probe file in the parent
    (and in ``path`` when it already exists), because permission bits do not tell whether a
    write will succeed (root, read-only mounts, full quotas).

    Parameters
    ----------
    path : str or Path
        The output folder; it may exist from an earlier run.

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    OutputPathError
        When ``path`` exists and is not a folder, when its parent folders cannot be created,
        or when the parent (or ``path``) is not writable. The message names the path and the fix.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"output folder '{path}' exists and is a file; remove it or choose another "
                              f"output folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"cannot create the folder '{path.parent}' for '{path}' ({err.strerror or err}); "
                              f"check that no part of it is a file and that it is writable, or choose another "
                              f"output folder.") from err
    _probe_writable(path.parent, path)
    if path.is_dir():
        _probe_writable(path, path)
    return path


@contextmanager
def atomic_output_dir(path):
    """Build an output folder under a temporary name, then put it in place of ``path`` at once.

    On normal exit an earlier ``path`` is moved aside, the new folder renamed in, and the old
    one deleted, so ``path`` never mixes files of two runs. On an exception the temporary folder
    is removed and an earlier ``path`` is left untouched. A crash between the two renames leaves
    ``path`` missing and the earlier folder under a hidden ``.old`` name (removed later as stale).

    Parameters
    ----------
    path : str or Path
        The final output folder.

    Yields
    ------
    Path
        An empty hidden folder beside ``path`` (same parent) to write the results into.

    Raises
    ------
    OutputPathError
        When ``path`` is not usable (see :func:`check_output_dir`).
    """
    path = check_output_dir(path)
    remove_stale_temporaries(path)
    work = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(work, 0o777 & ~_UMASK)
    try:
        yield work
        if path.is_symlink() or path.is_dir():
            old = path.parent / f"{temp_prefix(path)}{uuid.uuid4().hex[:8]}.old"
            os.replace(path, old)
            try:
                os.replace(work, path)
            except BaseException:
                os.replace(old, path)
                raise
            if old.is_symlink():
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_report(out_dir, stem: str, results: dict, markdown: str) -> Path:
    """Write ``<stem>.json`` (``results``, indented) and ``<stem>.md`` (``markdown``) into
    ``out_dir`` together (:func:`atomic_output_dir`): what each benchmark script leaves behind.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    OutputPathError
        When ``out_dir`` is not usable (see :func:`check_output_dir`).
    """
    with atomic_output_dir(out_dir) as work:
        (work / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (work / f"{stem}.md").write_text(markdown)
    return Path(out_dir)


@contextmanager
def file_lock(path, timeout: float | None = None, poll_s: float = 0.1):
    """Hold an exclusive lock on ``<path>.lock`` so that one process at a time builds ``path``.

    Uses the cross-platform ``filelock`` package (``flock`` on POSIX, ``msvcrt`` on Windows): the
    operating system releases the lock when its holder exits, even when killed, so a lock file
    left behind is harmless.

    Parameters
    ----------
    path : str or Path
        What the lock protects (e.g. a cache entry); the lock file is ``<path>.lock``, its
        folder is created when missing.
    timeout : float or None
        Seconds to wait for another holder; None waits as long as it takes.
    poll_s : float
        Seconds between attempts while waiting.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    LockTimeoutError
        When another process still holds the lock after ``timeout`` seconds.
    OSError
        When the lock file cannot be created.
    """
    path = Path(path).expanduser()
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)

    def write_pid(handle: int):   # the holder's PID, for the message another waiter gets
        try:
            os.ftruncate(handle, 0)
            os.lseek(handle, 0, os.SEEK_SET)
            os.write(handle, f"{os.getpid()}\n".encode())
        except OSError:   # Windows locks the bytes it would write; the message then says "unknown"
            pass

    options = dict(timeout=-1 if timeout is None else timeout, poll_interval=poll_s, thread_local=False)
    try:
        guard = filelock.FileLock(lock, on_acquired=write_pid, **options)
    except (TypeError, ValueError):   # filelock < 4 lacks on_acquired; its soft fallback has no descriptor
        guard = filelock.FileLock(lock, **options)
    try:
        guard.acquire()
    except filelock.Timeout:
        try:
            holder = lock.read_text(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise LockTimeoutError(
            f"'{lock}' is held by another process (pid {holder}) that is building '{path}'; "
            f"waited {timeout:g} s. Wait for it to finish or stop it (the lock frees "
            f"itself when that process ends).") from None
    try:
        yield lock
    finally:
        guard.release()
