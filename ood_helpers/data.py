"""MNIST and CIFAR-10 in one common geometry: 32x32 float images in [0, 1].

Where the data comes from, in order: the ``root`` argument, the ``OOD_DATA_DIR`` environment
variable, then ``./data``. MNIST is read with ``torchvision.datasets.MNIST``; CIFAR-10 with
``torchvision.datasets.CIFAR10`` when the original batches are there, else from the offline
JPEG copy (``cifar10-jpg/{train,test}/<class>/*.jpg``) listed by
``torchvision.datasets.ImageFolder``. Nothing is ever written into the data folder unless the
caller passes ``download=True``.

Decoded datasets are cached in memory, so a notebook that asks twice decodes once.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .validation import InputError, check_choice

DATASETS = ("mnist", "cifar10")
CHANNELS = {"mnist": 1, "cifar10": 3}
PRETTY = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
EVAL_SIZE = 2000          # in + out test images per setting, as in the paper comparison
EVAL_SEED = 20240601      # fixed: every run, every seed, every detector sees the same test draw

# in-distribution / out-of-distribution pairs; near-OOD settings split one dataset's classes
SETTINGS = {
    "mnist-cifar10": dict(in_data="mnist", out_data="cifar10", in_classes=None, out_classes=None),
    "cifar10-mnist": dict(in_data="cifar10", out_data="mnist", in_classes=None, out_classes=None),
    "mnist-near": dict(in_data="mnist", out_data="mnist", in_classes=(0, 1, 2, 3, 4), out_classes=(5, 6, 7, 8, 9)),
    "cifar10-near": dict(in_data="cifar10", out_data="cifar10", in_classes=(0, 1, 2, 3, 4), out_classes=(5, 6, 7, 8, 9)),
}
PAPER_SETTINGS = ("mnist-cifar10", "cifar10-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and downloading was not allowed."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$OOD_DATA_DIR``, else ``./data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("OOD_DATA_DIR")
    return Path(env) if env else Path("data")


def _not_found(name: str, root: Path, searched: list[Path]) -> DatasetNotFoundError:
    where = "\n  ".join(str(p) for p in searched)
    return DatasetNotFoundError(
        f"{PRETTY[name]} was not found under the data folder '{root}'. Searched:\n  {where}\n"
        f"Fix: set the environment variable OOD_DATA_DIR to the folder that holds it "
        f"(the folder with MNIST/raw and cifar10-jpg or cifar-10-batches-py), or pass download=True "
        f"(needs internet; torchvision then downloads into '{root}').")


def _check_writable_for_download(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not root.is_dir() or not os.access(root, os.W_OK):
        raise DatasetNotFoundError(
            f"download=True but the data folder '{root}' is missing or read-only, so nothing can be "
            f"downloaded there. Point OOD_DATA_DIR (or root=) at a writable folder.")


def _pad_to_32(images: torch.Tensor) -> torch.Tensor:
    pad_h, pad_w = 32 - images.shape[-2], 32 - images.shape[-1]
    return F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


@functools.lru_cache(maxsize=8)
def _load_raw(name: str, train: bool, root: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split once: (uint8 images N x C x 32 x 32, int64 labels N)."""
    from torchvision import datasets

    root_path = Path(root)
    if name == "mnist":
        raw = root_path / "MNIST" / "raw"
        if download:
            _check_writable_for_download(root_path)
        elif not raw.is_dir() or not any(raw.iterdir()):
            raise _not_found(name, root_path, [raw])
        try:
            ds = datasets.MNIST(str(root_path), train=train, download=download)
        except RuntimeError as err:
            raise _not_found(name, root_path, [raw]) from err
        return _pad_to_32(ds.data.unsqueeze(1)), ds.targets.clone().long()

    batches = root_path / "cifar-10-batches-py"
    jpg = root_path / "cifar10-jpg" / ("train" if train else "test")
    if batches.is_dir() or download:
        if download:
            _check_writable_for_download(root_path)
        ds = datasets.CIFAR10(str(root_path), train=train, download=download)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(ds.targets, dtype=torch.long)
    if not jpg.is_dir():
        raise _not_found(name, root_path, [batches, jpg])
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    try:
        folder = datasets.ImageFolder(str(jpg))
    except FileNotFoundError as err:
        raise _not_found(name, root_path, [batches, jpg]) from err
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image io in favour of torchcodec; it is still the fastest here
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg([read_file(path) for path, _ in folder.samples], mode=ImageReadMode.RGB)
    return torch.stack(decoded), torch.tensor(folder.targets, dtype=torch.long)


def load_images(name: str, split: str = "train", root=None, download: bool = False,
                classes=None, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one dataset split, in its own channels.

    Returns (uint8 tensor N x C x 32 x 32 with C = 1 for MNIST and 3 for CIFAR-10, int64 labels N).
    ``classes`` keeps only those labels; ``limit`` draws that many images at random (seeded,
    order preserved). Labels are returned for defining benchmarks, never for training.
    """
    check_choice(name, DATASETS, "name")
    check_choice(split, ("train", "test"), "split")
    images, labels = _load_raw(name, split == "train", str(data_root(root)), bool(download))
    if classes is not None:
        keep = torch.isin(labels, torch.tensor(list(classes)))
        images, labels = images[keep], labels[keep]
    if limit is not None and limit < len(images):
        if limit <= 0:
            raise InputError(f"limit: expected a positive number of images, got {limit}.")
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(images), generator=generator)[:limit].sort().values
        images, labels = images[index], labels[index]
    return images, labels


def to_geometry(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert images to float (N, channels, 32, 32) in [0, 1].

    uint8 input is scaled by 1/255; RGB becomes grayscale with the ITU-R 601 luma weights;
    grayscale is repeated to RGB; other sizes are resized (bilinear) to 32x32.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if images.shape[-2:] != (32, 32):
        images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images * weights).sum(1, keepdim=True)
    if images.shape[1] == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    raise InputError(f"channels: cannot convert {images.shape[1]} channel(s) to {channels}; expected 1 or 3.")


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
    """Human-readable (in, out) names of a setting, e.g. ('CIFAR-10', 'MNIST')."""
    spec = SETTINGS[check_choice(setting, tuple(SETTINGS), "setting")]
    name_in, name_out = PRETTY[spec["in_data"]], PRETTY[spec["out_data"]]
    if spec["in_classes"] is not None:
        name_in += " classes " + ",".join(map(str, spec["in_classes"]))
        name_out += " classes " + ",".join(map(str, spec["out_classes"]))
    return name_in, name_out


def load_setting(setting: str, train_limit: int | None = None, root=None, download: bool = False,
                 eval_size: int = EVAL_SIZE, seed: int = 0) -> OODData:
    """Load a benchmark setting (see ``SETTINGS``) in the in-distribution geometry.

    ``train_limit`` caps the number of in-distribution training images (drawn with ``seed``).
    The test draw does not depend on ``seed``: every run is scored on the same images.
    """
    spec = SETTINGS[check_choice(setting, tuple(SETTINGS), "setting")]
    channels = CHANNELS[spec["in_data"]]
    in_train, _ = load_images(spec["in_data"], "train", root, download, spec["in_classes"], train_limit, seed)
    in_test, _ = load_images(spec["in_data"], "test", root, download, spec["in_classes"], eval_size, EVAL_SEED)
    out_test, _ = load_images(spec["out_data"], "test", root, download, spec["out_classes"], eval_size, EVAL_SEED + 1)
    name_in, name_out = describe_setting(setting)
    return OODData(setting, name_in, name_out, channels, to_geometry(in_train, channels),
                   to_geometry(in_test, channels), to_geometry(out_test, channels))
