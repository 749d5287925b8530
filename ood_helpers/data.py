"""MNIST, Fashion-MNIST and CIFAR-10 in one common geometry: 32x32 float images in [0, 1].

Where the data comes from, in order: the ``root`` argument, the ``OOD_DATA_DIR`` environment
variable, then one per-user cache folder that does not depend on the working directory,
``$XDG_CACHE_HOME/ood-notebooks/data`` (``~/.cache/ood-notebooks/data`` when ``XDG_CACHE_HOME`` is
unset; see :func:`default_data_dir`). A ``./data`` folder is not looked at: it would mean
``notebooks/data`` for a kernel started in ``notebooks/``. MNIST and Fashion-MNIST are read from
the uncompressed IDX files in ``MNIST/raw`` and ``FashionMNIST/raw`` (with torchvision's IDX
reader; both 28x28, zero-padded to 32x32); CIFAR-10 with
``torchvision.datasets.CIFAR10`` when ``cifar-10-batches-py`` holds all its batch files, else from
the offline JPEG copy (``cifar10-jpg/{train,test}/<class>/*.jpg``).

Downloads (see :func:`download_mode`): when no folder was configured (neither ``root`` nor
``OOD_DATA_DIR``) and the per-user folder lacks a dataset, torchvision downloads it there once,
with a progress bar and a one-line notice. A configured folder is never written into unless the
caller passes ``download=True`` or sets ``OOD_DOWNLOAD=1`` (shared copies stay read-only);
``OOD_DOWNLOAD=0`` forbids downloading altogether.

What is found is verified before it is used, and a fault names the file or folder and the fix
(:class:`DatasetCorruptError`): each IDX file's exact size and MD5 (the published digests of the
uncompressed files: MNIST's and Fashion-MNIST's have the same sizes, only the content tells them
apart; :data:`IDX_MD5`); CIFAR-10's ten class folders by
name (labels come from the names, never from sorted positions; folders starting with '.' such
as ``.ipynb_checkpoints`` are ignored), the number of images in each, and every JPEG's decoding.

Decoded datasets are cached in memory, so a notebook that asks twice decodes once; callers always
get copies, never the cached tensors.
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .files import file_lock
from .validation import IMAGE_SIZE, InputError, _geometry, _Hints, _is_integer, _to_tensor, _to_unit_float, _values, check_choice, check_positive_int

DATASETS = ("mnist", "fmnist", "cifar10")
CHANNELS = {"mnist": 1, "fmnist": 1, "cifar10": 3}
PRETTY = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
EVAL_SIZE = 2000          # in + out test images per setting, as in the paper comparison
EVAL_SEED = 20240601      # fixed: every run, every seed, every detector sees the same test draw

# in-distribution / out-of-distribution pairs; near-OOD settings split one dataset's classes
SETTINGS = {
    "mnist-cifar10": dict(in_data="mnist", out_data="cifar10", in_classes=None, out_classes=None),
    "cifar10-mnist": dict(in_data="cifar10", out_data="mnist", in_classes=None, out_classes=None),
    "mnist-near": dict(in_data="mnist", out_data="mnist", in_classes=(0, 1, 2, 3, 4), out_classes=(5, 6, 7, 8, 9)),
    "cifar10-near": dict(in_data="cifar10", out_data="cifar10", in_classes=(0, 1, 2, 3, 4), out_classes=(5, 6, 7, 8, 9)),
    # the pair where likelihoods fail (Nalisnick et al. 2019; Ren et al. 2019): one geometry, 28x28 padded
    "fmnist-mnist": dict(in_data="fmnist", out_data="mnist", in_classes=None, out_classes=None),
    "mnist-fmnist": dict(in_data="mnist", out_data="fmnist", in_classes=None, out_classes=None),
}
PAPER_SETTINGS = ("mnist-cifar10", "cifar10-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and downloading was not allowed."""


class DatasetCorruptError(DatasetNotFoundError):
    """A dataset folder is there but incomplete or damaged.

    The message names the file or folder at fault and the fix. A subclass of
    :class:`DatasetNotFoundError`, so code that catches a missing dataset catches this too.
    """


# MNIST: the four uncompressed IDX files torchvision reads from MNIST/raw, with their exact sizes
MNIST_FILES = {
    "train": (("train-images-idx3-ubyte", 47040016), ("train-labels-idx1-ubyte", 60008)),
    "test": (("t10k-images-idx3-ubyte", 7840016), ("t10k-labels-idx1-ubyte", 10008)),
}
# Fashion-MNIST: the same four names and sizes in FashionMNIST/raw (a drop-in replacement of MNIST)
FMNIST_FILES = {split: tuple(files) for split, files in MNIST_FILES.items()}
# the IDX datasets: their folder under the data folder and their files (one reader for all)
IDX_DATASETS = {"mnist": ("MNIST", MNIST_FILES), "fmnist": ("FashionMNIST", FMNIST_FILES)}
# MD5 of each uncompressed file, as published with the datasets (torchvision's md5s are of the .gz
# files); with equal sizes only these tell MNIST's files from Fashion-MNIST's. A file without an
# entry is not checked.
IDX_MD5 = {
    "mnist": {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "fmnist": {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
               "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
               "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
               "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
}
# CIFAR-10's class names in label order: the JPEG copy is labelled by folder name, never by position
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Fashion-MNIST's class names in label order
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# images per class folder in the complete JPEG copy
CIFAR10_JPG_PER_CLASS = {"train": 5000, "test": 1000}
# files torchvision.datasets.CIFAR10 needs in cifar-10-batches-py (it checks all seven for either split)
CIFAR10_BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
JPEG_SUFFIXES = (".jpg", ".jpeg")
_RESTORE = "restore it from the dataset copy (the complete data folder this one was copied from)"


def default_data_dir() -> Path:
    """The per-user data folder used when neither ``root`` nor ``OOD_DATA_DIR`` is given.

    Returns
    -------
    pathlib.Path
        ``$XDG_CACHE_HOME/ood-notebooks/data`` when ``XDG_CACHE_HOME`` is set (and absolute, as the
        XDG specification requires), else ``~/.cache/ood-notebooks/data``. The same folder whatever
        the working directory, so a notebook kernel and the command line share one copy.
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "ood-notebooks" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder.

    Parameters
    ----------
    root : str, os.PathLike or None
        Used when given.

    Returns
    -------
    pathlib.Path
        ``root`` if given, else ``$OOD_DATA_DIR``, else :func:`default_data_dir` (``~`` expanded).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("OOD_DATA_DIR")
    return Path(env).expanduser() if env else default_data_dir()


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def download_mode(download=None, root=None) -> str:
    """Whether a load may download, given the ``download`` argument, ``root`` and the environment.

    Parameters
    ----------
    download : bool or None
        True: let torchvision download into the data folder, whichever it is. False: never.
        None (the default everywhere): ``$OOD_DOWNLOAD`` when set (1/true/yes/on or 0/false/no/off),
        else download only into the per-user folder, and only what is missing there.
    root : str, os.PathLike or None
        The ``root`` argument of the load; a given ``root`` or ``OOD_DATA_DIR`` is a configured folder.

    Returns
    -------
    str
        ``"always"`` (torchvision's ``download=True``), ``"missing"`` (download what the per-user
        folder lacks) or ``"never"``.

    Raises
    ------
    InputError
        When ``download`` is not None or a bool, or ``OOD_DOWNLOAD`` holds another value.
    """
    if download is not None and not isinstance(download, bool):
        raise InputError(f"download: expected True, False or None (download only into the per-user folder "
                         f"when a dataset is missing), got {download!r}. Fix: download=True.")
    if download is None:
        env = os.environ.get("OOD_DOWNLOAD", "").strip().lower()
        if env in _TRUE:
            download = True
        elif env in _FALSE:
            download = False
        elif env:
            raise InputError(f"OOD_DOWNLOAD: expected 1 (download into the data folder) or 0 (never download), "
                             f"got {os.environ['OOD_DOWNLOAD']!r}. Fix: export OOD_DOWNLOAD=1, or unset it.")
    if download is not None:
        return "always" if download else "never"
    configured = root is not None or bool(os.environ.get("OOD_DATA_DIR"))
    return "never" if configured else "missing"


_FOLDERS = "MNIST/raw, FashionMNIST/raw and cifar10-jpg or cifar-10-batches-py"


def _not_found(name: str, root: Path, searched: list[Path], detail: str = "") -> DatasetNotFoundError:
    # one line (the CLI prints it after 'error: '); ``detail`` may end in a newline
    where = ", ".join(f"'{p}'" for p in searched)
    detail = " ".join(detail.split("\n")).strip()
    return DatasetNotFoundError(
        f"{PRETTY[name]} was not found under the data folder '{root}'. Searched: {where}. {detail + ' ' if detail else ''}"
        f"Fix: set the environment variable OOD_DATA_DIR to the folder that holds it "
        f"(the folder with {_FOLDERS}), or pass download=True "
        f"or set OOD_DOWNLOAD=1 (needs internet; torchvision then downloads into '{root}').{_local_copy_hint()}")


def _local_copy_hint() -> str:
    """A note when ./data holds a copy: it is no longer read without OOD_DATA_DIR."""
    local = Path("data")
    if not os.environ.get("OOD_DATA_DIR") and (any((local / folder / "raw").is_dir() for folder, _ in IDX_DATASETS.values())
                                              or (local / "cifar10-jpg").is_dir()
                                              or (local / "cifar-10-batches-py").is_dir()):
        return (f" A copy is in './data' (here: '{local.resolve()}'), which is not read by default: "
                f"export OOD_DATA_DIR='{local.resolve()}' to use it.")
    return ""


# what torchvision fetches, for the one-line notice
DOWNLOAD_SIZES = {"mnist": "about 11 MB", "fmnist": "about 30 MB", "cifar10": "about 163 MB"}


def _download(name: str, root: Path, train: bool, mode: str, searched: list[Path]) -> None:
    """Let torchvision download ``name`` into ``root``, one process at a time; errors name the fix."""
    from torchvision import datasets

    _check_writable_for_download(root, mode)
    cls = {"mnist": datasets.MNIST, "fmnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    with file_lock(root / f"{cls.__name__}.download"):  # two kernels: the second waits, then finds it
        archive = root / datasets.CIFAR10.filename
        keep_archive = name in IDX_DATASETS or archive.exists()
        if not _missing(name, root, train, jpg_counts=mode != "always"):
            if mode != "always":
                return  # another process downloaded it while this one waited
        else:
            print(f"Downloading {PRETTY[name]} ({DOWNLOAD_SIZES[name]}) with torchvision into '{root}'"
                  + (" (the per-user data folder; set OOD_DATA_DIR to use an existing copy instead)"
                     if mode == "missing" else "") + ".", flush=True)
        try:
            cls(str(root), train=train, download=True)
        except Exception as err:  # URLError, HTTP errors, md5 mismatch: one message that names the fix
            reason = str(err).strip().splitlines()
            reason = reason[-1] if reason else type(err).__name__
            where = "\n  ".join(str(p) for p in searched)
            if mode == "missing":
                fix = (f"Fix: connect to the internet and run again (it is downloaded once, into this per-user "
                       f"folder), or set the environment variable OOD_DATA_DIR to a folder that already holds "
                       f"the datasets ({_FOLDERS}); to download into "
                       f"that folder instead, also pass download=True or set OOD_DOWNLOAD=1.")
            else:
                fix = (f"Fix: check the internet connection and run again, or set the environment variable "
                       f"OOD_DATA_DIR to a folder that already holds the datasets ({_FOLDERS}) "
                       f"and drop download=True / OOD_DOWNLOAD=1.")
            raise DatasetNotFoundError(
                f"{PRETTY[name]} was not found under the data folder '{root}' and downloading it failed "
                f"({type(err).__name__}: {reason}). Searched:\n  {where}\n{fix}{_local_copy_hint()}") from err
        if not keep_archive:  # extracted and verified: the 163 MB archive is not needed again
            archive.unlink(missing_ok=True)


def _missing(name: str, root: Path, train: bool, jpg_counts: bool = True) -> bool:
    """True when the data folder has no copy of the split to read (so a download may fetch one).

    Only presence is checked here; what is present is verified when it is read. ``jpg_counts``:
    the JPEG copy of CIFAR-10 counts as a copy (torchvision's ``download=True`` wants the batches).
    """
    split = "train" if train else "test"
    if name in IDX_DATASETS:
        folder, files = IDX_DATASETS[name]
        return not all((root / folder / "raw" / f).exists() for f, _ in files[split])
    jpg = jpg_counts and (root / "cifar10-jpg" / split).is_dir()
    return _missing_batches(root / "cifar-10-batches-py") != [] and not jpg


def _check_writable_for_download(root: Path, mode: str = "always") -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not root.is_dir() or not os.access(root, os.W_OK):
        why = ("download=True" if mode == "always" else
               "a dataset is missing from the per-user data folder and would be downloaded there,")
        raise DatasetNotFoundError(
            f"{why} but the data folder '{root}' is missing or read-only, so nothing can be "
            f"downloaded there. Point OOD_DATA_DIR (or root=) at a writable folder, or at one that holds "
            f"the datasets.")


def _pad_to_32(images: torch.Tensor) -> torch.Tensor:
    pad_h, pad_w = 32 - images.shape[-2], 32 - images.shape[-1]
    return F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


# --------------------------------------------------------------------------- MNIST, Fashion-MNIST

def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _whose(filename: str, md5: str) -> str | None:
    """The dataset whose ``filename`` has this MD5 (e.g. MNIST's files in the Fashion-MNIST folder)."""
    return next((other for other, digests in IDX_MD5.items() if digests.get(filename) == md5), None)


def _load_idx(name: str, root: Path, split: str, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of an IDX dataset (:data:`IDX_DATASETS`), verified by size and MD5; never written to."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder, files = IDX_DATASETS[name]
    pretty = PRETTY[name]
    raw = root / folder / "raw"
    if mode == "always" or (mode == "missing" and _missing(name, root, split == "train")):
        # torchvision fetches the four files when any is missing; they are checked below
        _download(name, root, split == "train", mode, [raw])
    if not raw.is_dir():
        raise _not_found(name, root, [raw])
    every = [f for split_files in files.values() for f, _ in split_files]
    if not any((raw / f).exists() or (raw / f"{f}.gz").exists() for f in every):
        raise _not_found(name, root, [raw], f"'{raw}' is there but holds none of {pretty}'s files ({', '.join(every)}).\n")
    problems = []
    for filename, size in files[split]:
        path = raw / filename
        if not path.is_file():
            gz = raw / f"{filename}.gz"
            problems.append(f"{path} is missing" + (f" (only {gz.name} is there: decompress it, gunzip -k '{gz}')"
                                                   if gz.is_file() else ""))
        elif path.stat().st_size != size:
            actual = path.stat().st_size
            problems.append(f"{path} has {actual:,} bytes, expected {size:,} "
                            f"({'truncated' if actual < size else 'too long'})")
        elif IDX_MD5.get(name, {}).get(filename) and (md5 := _md5(path)) != IDX_MD5[name][filename]:
            other = _whose(filename, md5)
            problems.append(f"{path} is {PRETTY[other]}'s {filename}, not {pretty}'s" if other and other != name else
                            f"{path} has the right size but other bytes (MD5 {md5}, {pretty}'s is "
                            f"{IDX_MD5[name][filename]})")
    if problems:  # one line: the CLI prints it after 'error: '
        raise DatasetCorruptError(
            f"{pretty} ({split} split) under '{root}' is incomplete or not {pretty}: {'; '.join(problems)}. "
            f"Fix: copy {pretty}'s uncompressed IDX files into '{raw}' from the dataset copy (the complete data "
            f"folder this one was copied from), or delete them "
            f"and pass download=True (needs internet; torchvision downloads {pretty} again into '{root}').")
    (images_file, _), (labels_file, _) = files[split]
    loaded = []
    for filename, reader in ((images_file, read_image_file), (labels_file, read_label_file)):
        try:
            loaded.append(reader(str(raw / filename)))
        except Exception as err:  # torchvision asserts on a bad header; name the file, whatever it raised
            raise DatasetCorruptError(
                f"{pretty} file '{raw / filename}' has the expected size but is not a valid IDX file "
                f"({type(err).__name__}: {err}). Fix: {_RESTORE}.") from err
    images, labels = loaded
    return _pad_to_32(images.unsqueeze(1)), labels.long()


# --------------------------------------------------------------------------- CIFAR-10

def _missing_batches(batches: Path) -> list[str] | None:
    """None when the folder is absent, else the expected batch files it lacks ([] = complete)."""
    if not batches.is_dir():
        return None
    return [f for f in CIFAR10_BATCH_FILES if not (batches / f).is_file()]


def _load_cifar_batches(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets
    from torchvision.datasets.utils import check_integrity

    try:
        ds = datasets.CIFAR10(str(root), train=train, download=download)
    except RuntimeError as err:
        batches = root / datasets.CIFAR10.base_folder
        bad = [f for f, md5 in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list
               if not check_integrity(str(batches / f), md5)]
        if download or not bad:
            raise DatasetNotFoundError(f"CIFAR-10 could not be read from '{batches}': {err}") from err
        raise DatasetCorruptError(
            f"CIFAR-10 batch file(s) in '{batches}' are damaged (MD5 checksum differs): {', '.join(bad)}. "
            f"Fix: {_RESTORE.replace('it', 'them')}, or delete '{batches}' and pass download=True "
            f"(needs internet).") from err
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.long)


def _list_cifar_jpg(folder: Path, split: str) -> tuple[list[Path], list[int]]:
    """Verify the JPEG copy's class folders (by name) and image counts; return (files, labels)."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [c for c in CIFAR10_CLASSES if c not in found]
    extra = [f for f in found if f not in CIFAR10_CLASSES]
    if missing or extra:
        raise DatasetCorruptError(
            f"The CIFAR-10 JPEG copy '{folder}' does not hold exactly CIFAR-10's ten class folders "
            f"({', '.join(CIFAR10_CLASSES)}): missing {missing or 'none'}, unexpected {extra or 'none'}. Labels "
            f"come from folder names, so a missing or extra folder would mislabel images. Fix: restore the "
            f"missing folder(s) from the dataset copy and move unexpected folder(s) out of '{folder}' "
            f"(folders whose name starts with '.' are ignored).")
    files = {c: sorted(p for p in (folder / c).iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in JPEG_SUFFIXES) for c in CIFAR10_CLASSES}
    empty = [c for c in CIFAR10_CLASSES if not files[c]]
    if empty:
        others = sum(len(v) for v in files.values())
        raise DatasetCorruptError(
            f"CIFAR-10 class folder(s) {', '.join(repr(str(folder / c)) for c in empty)} hold no JPEG images "
            f"(the other class folders hold {others:,}). Fix: {_RESTORE.replace('it', 'their images')}.")
    expected = CIFAR10_JPG_PER_CLASS[split]
    wrong = [c for c in CIFAR10_CLASSES if len(files[c]) != expected]
    if wrong:
        counts = "; ".join(f"'{folder / c}' holds {len(files[c]):,}" for c in wrong)
        raise DatasetCorruptError(
            f"CIFAR-10 JPEG copy '{folder}' is incomplete: each class folder of the {split} split must hold "
            f"{expected:,} images, but {counts}. Fix: {_RESTORE.replace('it', 'the missing images')}, and move out images that do not belong.")
    paths = [p for c in CIFAR10_CLASSES for p in files[c]]
    labels = [i for i, c in enumerate(CIFAR10_CLASSES) for _ in files[c]]
    return paths, labels


def _decode_jpegs(paths: list[Path]) -> torch.Tensor:
    """Decode CIFAR-10 JPEGs to uint8 (N, 3, 32, 32); a bad file is named, never a bare decoder error."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    def fail(bad):
        listed = "\n  ".join(f"{path} ({reason})" for path, reason in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        return DatasetCorruptError(
            f"{len(bad)} CIFAR-10 JPEG file(s) cannot be read as a 32x32 image:\n  {listed}{more}\n"
            f"Fix: {_RESTORE.replace('it', 'each file')}; the folder is read as a whole, so every file must be intact.")

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image io in favour of torchcodec; it is still the fastest here
        warnings.simplefilter("ignore", DeprecationWarning)
        readable, bad = [], []
        for path in paths:
            try:
                readable.append((path, read_file(str(path))))
            except RuntimeError as err:
                bad.append((path, "empty file" if path.stat().st_size == 0 else str(err).split(", ")[-1]))
        decoded = None
        if not bad:
            try:  # the fast path: one call for the whole split
                decoded = decode_jpeg([raw for _, raw in readable], mode=ImageReadMode.RGB)
            except RuntimeError:
                decoded = None
        if decoded is None:  # something is wrong: decode file by file to name every bad one
            decoded = []
            for path, raw in readable:
                try:
                    decoded.append(decode_jpeg(raw, mode=ImageReadMode.RGB))
                except RuntimeError as err:
                    bad.append((path, str(err).split(", ")[-1]))
            if bad:
                raise fail(bad)
    bad = [(path, f"decoded shape {tuple(image.shape)}, expected (3, 32, 32)")
           for path, image in zip(paths, decoded) if tuple(image.shape) != (3, 32, 32)]
    if bad:
        raise fail(bad)
    return torch.stack(decoded)


def _load_cifar(root: Path, split: str, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    train = split == "train"
    batches = root / "cifar-10-batches-py"
    jpg = root / "cifar10-jpg" / split
    if mode == "always" or (mode == "missing" and _missing("cifar10", root, train)):
        _download("cifar10", root, train, mode, [batches, jpg])
        if mode == "always" or _missing_batches(batches) == []:
            return _load_cifar_batches(root, train, False)
    lacks = _missing_batches(batches)
    if lacks == []:
        return _load_cifar_batches(root, train, False)
    batch_note = "" if lacks is None else (f"'{batches}' is there but lacks {', '.join(lacks)}, so the JPEG copy "
                                           f"'{jpg}' was used instead.\n")
    if not jpg.is_dir():
        raise _not_found("cifar10", root, [batches, jpg], batch_note.replace("was used instead", "was looked for")
                         + (f"'{jpg}' is missing.\n" if lacks is not None else ""))
    try:
        paths, labels = _list_cifar_jpg(jpg, split)
        return _decode_jpegs(paths), torch.tensor(labels, dtype=torch.long)
    except DatasetCorruptError as err:
        if batch_note:
            raise DatasetCorruptError(f"{batch_note}{err}") from None
        raise


@functools.lru_cache(maxsize=8)
def _load_raw(name: str, train: bool, root: str, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split once: (uint8 images N x C x 32 x 32, int64 labels N). Cached: never hand out.

    ``mode`` is :func:`download_mode`'s answer."""
    split = "train" if train else "test"
    if name in IDX_DATASETS:
        return _load_idx(name, Path(root), split, mode)
    return _load_cifar(Path(root), split, mode)


def _check_classes(classes, name: str):
    if classes is None:
        return None
    names = {"cifar10": CIFAR10_CLASSES, "fmnist": FMNIST_CLASSES}.get(name)
    labels = ", ".join(f"{i}={c}" for i, c in enumerate(names)) if names else "the digits 0-9"
    if isinstance(classes, (str, bytes)) or _is_integer(classes) or not hasattr(classes, "__iter__"):
        fix = f"classes=[{int(classes)}]" if _is_integer(classes) else "classes=[0, 1, 2, 3, 4]"
        raise InputError(f"classes: expected a list of labels 0-9 ({labels}), got {classes!r}. Fix: {fix}.")
    values = list(classes)
    bad = [c for c in values if not _is_integer(c) or not 0 <= int(c) <= 9]
    if not values or bad:
        valid = [int(c) for c in values if c not in bad]
        raise InputError(f"classes: expected a non-empty list of labels 0-9 ({labels}), got {values!r}"
                         + (f"; not valid: {bad!r}" if bad else "") +
                         f". Fix: e.g. classes={valid or [0, 1, 2, 3, 4]}.")
    return [int(c) for c in values]


def load_images(name: str, split: str = "train", root=None, download: bool | None = None,
                classes=None, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one dataset split, in the dataset's own channels.

    Parameters
    ----------
    name : {"mnist", "fmnist", "cifar10"}
    split : {"train", "test"}
    root : str, os.PathLike or None
        Data folder; see :func:`data_root`.
    download : bool or None
        True: let torchvision download into the data folder (needs internet and a writable
        folder). False: never download. None: ``$OOD_DOWNLOAD`` if set, else download only into the
        per-user folder :func:`default_data_dir`, when neither ``root`` nor ``OOD_DATA_DIR`` is given
        and the dataset is not there yet (see :func:`download_mode`).
    classes : list of int or None
        Keep only these labels (0-9; CIFAR-10: 0=airplane ... 9=truck). None keeps all.
    limit : int or None
        Draw this many images at random (seeded by ``seed``, dataset order preserved); >= 1.
        A limit at or above the number of images returns them all.
    seed : int
        Seed of the ``limit`` draw.

    Returns
    -------
    images : torch.Tensor
        uint8 (N, C, 32, 32), values 0-255; C = 1 for MNIST and Fashion-MNIST (28x28 padded with a
        2-pixel black border) and 3 for CIFAR-10. A fresh copy: changing it never changes later loads.
    labels : torch.Tensor
        int64 (N,). For defining benchmarks, never for training a detector.

    Raises
    ------
    InputError
        For an unknown ``name`` or ``split``, ``classes`` outside 0-9, a ``limit`` that is not
        None or a positive int, or a non-integer ``seed``.
    DatasetNotFoundError
        When the dataset is not in the data folder and was not (or could not be) downloaded: the
        message names the folders searched, the variable ``OOD_DATA_DIR`` and the switch
        (``download=True`` / ``OOD_DOWNLOAD=1``).
    DatasetCorruptError
        When it is there but incomplete or damaged: a missing or truncated MNIST file, a corrupt
        JPEG, an empty, missing or extra CIFAR-10 class folder, a wrong image count, or an IDX
        file of the right size but another MD5 (e.g. MNIST's files in ``FashionMNIST/raw``). The
        message names the file or folder and the fix.
    """
    check_choice(name, DATASETS, "name")
    check_choice(split, ("train", "test"), "split")
    classes = _check_classes(classes, name)
    if limit is not None:
        limit = check_positive_int(limit, "limit", example=1000)
    if not _is_integer(seed):
        raise InputError(f"seed: expected an integer, got {seed!r} (type {type(seed).__name__}). Fix: seed=0.")
    mode = download_mode(download, root)
    images, labels = _load_raw(name, split == "train", str(data_root(root)), mode)
    copied = False
    if classes is not None:
        keep = torch.isin(labels, torch.tensor(classes))
        images, labels, copied = images[keep], labels[keep], True
    if limit is not None and limit < len(images):
        generator = torch.Generator().manual_seed(int(seed))
        index = torch.randperm(len(images), generator=generator)[:limit].sort().values
        images, labels, copied = images[index], labels[index], True
    if not copied:  # the cached tensors themselves: hand out copies, so callers cannot corrupt the cache
        images, labels = images.clone(), labels.clone()
    return images, labels


def to_geometry(images, channels: int) -> torch.Tensor:
    """Convert images to the common geometry: float32 (N, channels, 32, 32) in [0, 1].

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        (N, C, H, W), (N, H, W) (single-channel) or (H, W) (one single-channel image), channel
        first, C = 1 or 3; uint8 0-255 or float in [0, 1] (values within 1e-6 of it are clipped).
        A map-style Dataset or a PIL image is first stacked as by
        :func:`ood_helpers.validation.as_image_batch`.
    channels : {1, 3}
        Channels of the result.

    Returns
    -------
    torch.Tensor
        float32 (N, channels, 32, 32) in [0, 1]. uint8 is scaled by 1/255. Images no larger than
        32x32 in both dimensions are zero-padded, centered (a black border; MNIST's 28x28 gets the
        same 2-pixel border as in training); images larger in either dimension are resized to 32x32
        with bilinear, antialiased interpolation (``torchvision.transforms.functional.resize``;
        aspect ratio not kept). RGB becomes grayscale with the ITU-R 601 luma weights
        (0.299, 0.587, 0.114); grayscale is repeated to RGB.

    Raises
    ------
    InputError
        For ``channels`` other than 1 or 3; images that are not 2-4 dimensional, empty, RGBA or
        channel-last; an integer or bool dtype; NaN/inf or values outside [0, 1] (the message
        gives the fix, as for :func:`ood_helpers.validation.as_image_batch`).
    """
    from torchvision.transforms.functional import InterpolationMode, resize

    if not _is_integer(channels) or channels not in (1, 3):
        raise InputError(f"channels: expected 1 (grayscale) or 3 (RGB), got {channels!r}.")
    tensor, numpy = _to_tensor(images, "images")
    if tensor.dim() == 2:
        tensor = tensor[None, None]
    elif tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.dim() != 4:
        raise InputError(f"images: expected 4 dimensions (N, C, H, W), (N, H, W) or (H, W), got shape "
                         f"{tuple(tensor.shape)}.")
    if len(tensor) == 0:
        raise InputError(f"images: the batch is empty (shape {tuple(tensor.shape)}); pass at least one image.")
    n, c, h, w = tensor.shape
    if c not in (1, 3):  # raises, naming the layout and the fix: channel-last, RGBA, other counts
        _geometry(tensor, channels, "images", numpy)
    hints = _Hints("images", numpy)
    tensor = _to_unit_float(tensor, _values(tensor, hints))
    if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        if h <= IMAGE_SIZE and w <= IMAGE_SIZE:
            tensor = _pad_to_32(tensor)
        else:
            tensor = resize(tensor, [IMAGE_SIZE, IMAGE_SIZE], interpolation=InterpolationMode.BILINEAR,
                            antialias=True).clamp_(0.0, 1.0)
    if tensor.shape[1] == channels:
        return tensor
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (tensor * weights).sum(1, keepdim=True)
    return tensor.repeat(1, 3, 1, 1)


@dataclass
class OODData:
    """One benchmark setting: in-distribution training images and a fixed test draw.

    All tensors are float (N, C, 32, 32) in [0, 1], C = channels of the in-distribution set.
    ``in_test`` and ``out_test`` hold ``EVAL_SIZE`` images each, drawn with ``EVAL_SEED``.
    """
    setting: str
    in_name: str
    out_name: str
    channels: int
    in_train: torch.Tensor
    in_test: torch.Tensor
    out_test: torch.Tensor

    def __repr__(self):
        return (f"OODData({self.setting}: in={self.in_name} train {tuple(self.in_train.shape)}, "
                f"test {tuple(self.in_test.shape)}; out={self.out_name} test {tuple(self.out_test.shape)})")


def describe_setting(setting: str) -> tuple[str, str]:
    """Human-readable (in, out) names of a setting.

    Parameters
    ----------
    setting : str
        A key of ``SETTINGS``.

    Returns
    -------
    (str, str)
        E.g. ('CIFAR-10', 'MNIST') or ('MNIST classes 0,1,2,3,4', 'MNIST classes 5,6,7,8,9').

    Raises
    ------
    InputError
        For an unknown ``setting``.
    """
    spec = SETTINGS[check_choice(setting, tuple(SETTINGS), "setting")]
    name_in, name_out = PRETTY[spec["in_data"]], PRETTY[spec["out_data"]]
    if spec["in_classes"] is not None:
        name_in += " classes " + ",".join(map(str, spec["in_classes"]))
        name_out += " classes " + ",".join(map(str, spec["out_classes"]))
    return name_in, name_out


def load_setting(setting: str, train_limit: int | None = None, root=None, download: bool | None = None,
                 eval_size: int = EVAL_SIZE, seed: int = 0) -> OODData:
    """Load a benchmark setting (see ``SETTINGS``) in the in-distribution geometry.

    Parameters
    ----------
    setting : str
        A key of ``SETTINGS``: "mnist-cifar10", "cifar10-mnist", "mnist-near", "cifar10-near",
        "fmnist-mnist", "mnist-fmnist".
    train_limit : int or None
        Cap on the number of in-distribution training images (drawn with ``seed``), >= 1; None
        uses all.
    root : str, os.PathLike or None
        Data folder; see :func:`data_root`.
    download : bool or None
        As :func:`load_images`: None downloads only into the per-user folder, and only what is
        missing there, when no folder was configured.
    eval_size : int
        In- and out-of-distribution test images each, >= 1 (all when a split has fewer). Drawn
        with the fixed ``EVAL_SEED``: the test draw does not depend on ``seed``, so every run is
        scored on the same images.
    seed : int
        Seed of the training draw.

    Returns
    -------
    OODData
        float32 (N, C, 32, 32) tensors in [0, 1], C = the in-distribution channels; the
        out-of-distribution images converted with :func:`to_geometry`.

    Raises
    ------
    InputError
        For an unknown ``setting``, or ``train_limit`` / ``eval_size`` / ``seed`` of the wrong
        kind (named as such).
    DatasetNotFoundError, DatasetCorruptError
        As :func:`load_images`.
    """
    spec = SETTINGS[check_choice(setting, tuple(SETTINGS), "setting")]
    if train_limit is not None:
        train_limit = check_positive_int(train_limit, "train_limit", example=4000)
    eval_size = check_positive_int(eval_size, "eval_size", example=EVAL_SIZE)
    if not _is_integer(seed):
        raise InputError(f"seed: expected an integer, got {seed!r} (type {type(seed).__name__}). Fix: seed=0.")
    channels = CHANNELS[spec["in_data"]]
    in_train, _ = load_images(spec["in_data"], "train", root, download, spec["in_classes"], train_limit, seed)
    in_test, _ = load_images(spec["in_data"], "test", root, download, spec["in_classes"], eval_size, EVAL_SEED)
    out_test, _ = load_images(spec["out_data"], "test", root, download, spec["out_classes"], eval_size, EVAL_SEED + 1)
    name_in, name_out = describe_setting(setting)
    return OODData(setting, name_in, name_out, channels, to_geometry(in_train, channels),
                   to_geometry(in_test, channels), to_geometry(out_test, channels))


def sample(images, n: int, seed: int = 0):
    """``n`` images drawn at random without replacement, reproducibly.

    Use this instead of ``images[:n]``: the offline CIFAR-10 copy is stored class by class, so the
    first images of a split are all airplanes.

    Parameters
    ----------
    images : torch.Tensor (N, ...)
        Any batch indexed along its first dimension, e.g. images (N, C, 32, 32).
    n : int
        How many to draw, 1 <= n <= N.
    seed : int
        Seeds the draw (a private generator: the global random state is untouched).

    Returns
    -------
    torch.Tensor (n, ...)
        The drawn items, in the order drawn.

    Raises
    ------
    InputError
        When ``n`` is not an integer in [1, N].
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= len(images):
        raise InputError(f"n: expected a number of images in [1, {len(images)}], got {n!r}.")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:n]]
