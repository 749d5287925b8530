"""Input checks for the public API.

Every public entry point funnels images through :func:`as_image_batch` (whole batches) or
:func:`iter_image_batches` (batch by batch, memory bounded by the batch size), so a user who
passes a uint8 array, a single image, a dataset or a batch with the wrong layout gets either a
documented conversion or an :class:`InputError` that names the argument, what was expected, what
was given and a fix that works, instead of a shape error from deep inside a convolution.

Documented conversions (everything else raises :class:`InputError`):

- numpy arrays become tensors (``torch.from_numpy``);
- a single image (C, 32, 32) becomes a batch of one;
- uint8 values 0-255 are divided by 255;
- float values within ``RANGE_TOLERANCE`` (1e-6) of [0, 1] (float rounding such as
  1.0000001) are clipped to [0, 1];
- tensors with ``requires_grad=True`` are detached (scores are never differentiated through);
- a map-style ``torch.utils.data.Dataset`` (or a single PIL image) is read item by item, see
  :func:`dataset_to_tensor`;
- a ``torch.utils.data.DataLoader`` is read batch by batch (the first entry of each batch when it
  is an (images, labels) pair): stacked for ``fit``, scored one loader batch at a time;
- numpy arrays of non-native byte order (big-endian ``'>f4'``) are converted to native order.
"""
from __future__ import annotations

import contextlib
import numbers
import operator
import warnings

import numpy as np
import torch

from .networks import IMAGE_SIZE  # noqa: E402  (defined once, with the networks)
CHANNEL_COUNTS = (1, 3)
RANGE_TOLERANCE = 1e-6   # float values this close outside [0, 1] are rounding: clipped, not rejected


class InputError(ValueError):
    """Raised when an argument of the public API does not have the expected form.

    The message names the argument, what was expected, what was given and a fix.
    """


class DegenerateDataWarning(UserWarning):
    """Training images with little spread (few distinct images): the detector learns almost nothing."""


# --------------------------------------------------------------------------- scalars

MAX_SEED = 2**32 - 1   # NumPy's and scikit-learn's seed range, which the baselines pass seeds to


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as a Python int in [0, 2**32 - 1]; Python and numpy integers and 0-d integer tensors
    are accepted. Raises :class:`InputError` naming ``name`` otherwise."""
    if not _is_integer(seed) or not 0 <= int(seed) <= MAX_SEED:
        fix = f"{name}={int(seed) % 2**32}" if _is_integer(seed) and int(seed) > MAX_SEED else f"{name}=0"
        raise InputError(f"{name}: expected an integer in [0, 2**32 - 1] (NumPy's and scikit-learn's seed range), "
                         f"got {seed!r} (type {type(seed).__name__}). Fix: {fix}.")
    return int(seed)


def check_bool(value, name: str, hint: str = "") -> bool:
    """``value`` as a bool if it is a bool or numpy bool; else :class:`InputError` naming ``name``
    (``hint`` says what True does)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}: expected True or False, got {value!r} (type {type(value).__name__}). "
                         f"Fix: {name}=True or {name}=False{f' ({hint})' if hint else ''}.")
    return bool(value)


@contextlib.contextmanager
def float32_default():
    """Run a block with torch's default dtype float32 (networks are built and fed float32 even when
    the session called ``torch.set_default_dtype(torch.float64)``), then restore it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)

def check_in_channels(in_channels, name: str = "in_channels", allow_none: bool = True) -> int | None:
    """``in_channels`` as 1 (grayscale), 3 (RGB) or, with ``allow_none``, None (from the training
    images); InputError otherwise."""
    if in_channels is None and allow_none:
        return None
    if not _is_integer(in_channels) or int(in_channels) not in CHANNEL_COUNTS:
        none = " or None (use the training images' channels)" if allow_none else ""
        raise InputError(f"{name}: expected 1 (grayscale) or 3 (RGB){none}, got {in_channels!r}. "
                         f"Fix: {name}=1 for MNIST-like images, {name}=3 for CIFAR-like ones.")
    return int(in_channels)


def check_fraction(value, name: str, high: float = 1.0, include_high: bool = False) -> float:
    """``value`` as a float in (0, high), or (0, high] with ``include_high``; InputError otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)
    if ok:
        ok = 0 < value < high or (include_high and value == high)
    if not ok:
        raise InputError(f"{name}: expected a number in (0, {high:g}{']' if include_high else ')'}, got {value!r}. "
                         f"Fix: e.g. {name}={min(0.95, high / 5 if high < 1 else 0.95):g} (a fraction, not a percentage).")
    return float(value)


def check_choice(value, choices, name: str):
    """Return ``value`` if it is one of ``choices``.

    Raises
    ------
    InputError
        Naming ``name`` and listing the choices, when ``value`` is not one of them.
    """
    if value not in choices:
        raise InputError(f"{name}: unknown value {value!r}; choose one of {', '.join(map(repr, choices))}.")
    return value


def _is_integer(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not torch.is_floating_point(value) and value.dtype != torch.bool
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_positive_int(value, name: str, example: int = 1) -> int:
    """Return ``value`` as a Python int if it is an integer >= 1.

    Python ints, numpy integers and 0-dimensional integer tensors are accepted; bools, floats
    (even 8.0), strings and None are not.

    Raises
    ------
    InputError
        Naming ``name``, the value and type given, and an example of a valid value.
    """
    if not _is_integer(value) or int(value) < 1:
        fix = f"int({value!r})" if isinstance(value, str) and value.strip().isdigit() and int(value) > 0 else str(example)
        raise InputError(f"{name}: expected a positive integer (>= 1), got {value!r} "
                         f"(type {type(value).__name__}). Fix: pass {name}={fix}.")
    return int(value)


def check_int(value, name: str, low: int, high: int | None = None, example: int | None = None) -> int:
    """``value`` as a Python int in [low, high] (numpy integers count; bools and floats do not);
    InputError naming ``name``, the range and a value that works otherwise."""
    if not _is_integer(value) or int(value) < low or (high is not None and int(value) > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{name}: expected an integer {span}, got {value!r} (type {type(value).__name__}). "
                         f"Fix: {name}={low if example is None else example}.")
    return int(value)


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """Validate a number of images per batch.

    Parameters
    ----------
    batch_size : int
        Images per batch, >= 1. Python ints, numpy integers and 0-d integer tensors are accepted.
    name : str
        The argument name used in the error message.

    Returns
    -------
    int
        ``batch_size`` as a Python int.

    Raises
    ------
    InputError
        For 0, negative numbers, floats (2.5 and also 8.0), bools, strings and None.
    """
    return check_positive_int(batch_size, name, example=256)


# --------------------------------------------------------------------------- conversions

def _pil_to_tensor(image, name: str) -> torch.Tensor:
    """uint8 (C, H, W) from a PIL image: 'L' -> 1 channel, 'RGB' -> 3, 'RGBA' -> 4 (rejected later)."""
    from torchvision.transforms.functional import pil_to_tensor

    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        image = image.convert("RGBA" if mode == "PA" or (mode == "P" and "transparency" in image.info) else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise InputError(f"{name}: expected 8-bit PIL images (mode 'L' or 'RGB'), got mode {mode!r}. "
                         f"Fix: convert them to 8-bit first, e.g. image.convert('L') after scaling to 0-255.")
    return pil_to_tensor(image)


def _is_pil(obj) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with torchvision
        return False
    return isinstance(obj, Image.Image)


def _item_image(item, index: int, name: str):
    """The image part of one dataset item: the item itself or the first entry of a (image, label) pair."""
    if isinstance(item, dict):
        keys = list(item)
        key = next((k for k in keys if isinstance(item[k], (torch.Tensor, np.ndarray)) and np.ndim(item[k]) >= 2
                    or _is_pil(item[k])), keys[0] if keys else "image")
        to_tensor = ("pil_to_tensor" if _is_pil(item.get(key)) else "torch.as_tensor")
        prefix = ("from torchvision.transforms.functional import pil_to_tensor; "
                  if to_tensor == "pil_to_tensor" else "")
        raise InputError(
            f"{name}: the dataset's items are dicts with keys {keys}, so which entry is the image is not "
            f"known; expected items that are an image or an (image, label) pair. Fix: pick the image key "
            f"and stack, e.g. {prefix}{name} = torch.stack([{to_tensor}(dataset[i][{key!r}]) "
            f"for i in range(len(dataset))]).")
    if isinstance(item, (tuple, list)):
        if len(item) == 0:
            raise InputError(f"{name}: dataset item {index} is an empty {type(item).__name__}; "
                             f"expected an image or an (image, label) pair.")
        item = item[0]
    if _is_pil(item):
        return _pil_to_tensor(item, name)
    if isinstance(item, np.ndarray):
        return _from_numpy(item)
    if isinstance(item, torch.Tensor):
        return item.detach()
    raise InputError(f"{name}: dataset item {index} holds a {type(item).__name__}; expected a torch.Tensor, "
                     f"numpy array or PIL image (alone or as the first entry of an (image, label) pair). "
                     f"Fix: give the dataset a transform that returns tensors, e.g. "
                     f"torchvision.transforms.PILToTensor().")


def dataset_to_tensor(dataset, name: str = "images") -> torch.Tensor:
    """Stack the images of a map-style dataset into one tensor.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style (``len`` and ``dataset[i]``). Each item is an image or a tuple/list whose first
        entry is the image (labels are ignored). An image is a torch tensor, a numpy array or a
        PIL image; PIL images become uint8 (C, H, W) with
        ``torchvision.transforms.functional.pil_to_tensor`` ('L' -> 1 channel, 'RGB' -> 3,
        '1' -> 'L', palette and other colour modes -> 'RGB').
    name : str
        The argument name used in error messages.

    Returns
    -------
    torch.Tensor
        (N, ...) stacked images, in the items' dtype (uint8 for PIL images). Geometry and values
        are not checked here; :func:`as_image_batch` does that.

    Raises
    ------
    InputError
        For an ``IterableDataset`` (not converted: it may be unbounded or single-pass; the message
        gives ``torch.stack([x for x, _ in dataset])``), a dataset without ``len``, an empty
        dataset, items that are dicts (the message lists the keys and the stacking fix), items of
        another type, or images of different shapes.
    """
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise InputError(
            f"{name}: got an IterableDataset ({type(dataset).__name__}); it is not read automatically "
            f"because it may be endless or readable only once. Expected a tensor, numpy array or map-style "
            f"Dataset. Fix: stack its images yourself, e.g. {name} = torch.stack([x for x, _ in dataset]) "
            f"for (image, label) items or torch.stack(list(dataset)) for bare images.")
    try:
        size = len(dataset)
    except TypeError:
        raise InputError(f"{name}: the dataset {type(dataset).__name__} has no len(), so it cannot be read "
                         f"as a batch. Fix: stack its images yourself: torch.stack([x for x, _ in dataset]).") from None
    if size == 0:
        raise InputError(f"{name}: the dataset is empty (len 0); pass at least one image.")
    images = [_item_image(dataset[i], i, name) for i in range(size)]
    first = images[0].shape
    for index, image in enumerate(images):
        if image.shape != first:
            raise InputError(f"{name}: dataset images differ in shape: item 0 is {tuple(first)}, item {index} is "
                             f"{tuple(image.shape)}; expected every image (C, 32, 32). Fix: give the dataset a "
                             f"transform that brings every image to one size, e.g. torchvision.transforms."
                             f"CenterCrop(32) or Resize((32, 32)).")
    return torch.stack(images)


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    """A tensor of ``array``; non-native byte order (big-endian data) is converted first, which torch
    cannot read."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(array))


def _loader_images(batch, name: str) -> torch.Tensor:
    """The images of one DataLoader batch: the batch itself or the first entry of (images, labels)."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if isinstance(batch, np.ndarray):
        return _from_numpy(batch)
    if isinstance(batch, torch.Tensor):
        return batch.detach()
    raise InputError(f"{name}: the DataLoader's batches hold a {type(batch).__name__}; expected image tensors "
                     f"(alone or as the first entry of (images, labels)). Fix: give its dataset a transform that "
                     f"returns tensors, e.g. torchvision.transforms.ToTensor().")


def loader_to_tensor(loader, name: str = "images") -> torch.Tensor:
    """Concatenate the image batches of a ``torch.utils.data.DataLoader`` (labels are ignored)."""
    batches = [_loader_images(batch, name) for batch in loader]
    if not batches:
        raise InputError(f"{name}: the DataLoader gave no batch; pass at least one image.")
    shapes = {tuple(b.shape[1:]) for b in batches}
    if len(shapes) > 1:
        raise InputError(f"{name}: the DataLoader's batches differ in image shape {sorted(shapes)}; expected every "
                         f"image (C, 32, 32). Fix: give its dataset a transform such as "
                         f"torchvision.transforms.Resize((32, 32)).")
    return torch.cat(batches)


def _to_tensor(images, name: str) -> tuple[torch.Tensor, bool]:
    """(tensor, came_from_numpy). Datasets and PIL images are converted, anything else rejected."""
    if isinstance(images, np.ndarray):
        if images.dtype == object or images.dtype.kind in "USVcM":
            raise InputError(f"{name}: expected a numeric numpy array (float in [0, 1] or uint8 0-255), "
                             f"got dtype {images.dtype}. Fix: np.stack the images into one float32 or uint8 array.")
        return _from_numpy(images), True
    if isinstance(images, torch.Tensor):
        return images.detach(), False
    if _is_pil(images):
        return _pil_to_tensor(images, name), False
    if isinstance(images, torch.utils.data.DataLoader):
        return loader_to_tensor(images, name), False
    if isinstance(images, torch.utils.data.Dataset):
        return dataset_to_tensor(images, name), False
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (torch.Tensor, np.ndarray)):
        fix = f"torch.stack([torch.as_tensor(x) for x in {name}])"
    elif isinstance(images, (list, tuple)):
        fix = f"torch.tensor({name}, dtype=torch.float32)"
    else:
        fix = f"torch.as_tensor({name})"
    raise InputError(f"{name}: expected a torch.Tensor or numpy array of shape (N, C, 32, 32) (or a map-style "
                     f"Dataset or a DataLoader of images), got {type(images).__name__}. Fix: {fix}.")


# --------------------------------------------------------------------------- checks

class _Hints:
    """Spells fixes in the user's own library: torch for tensors, numpy for arrays."""

    def __init__(self, name: str, numpy: bool, expr: str | None = None):
        self.name, self.numpy = name, numpy
        self.expr = expr or name          # how the user gets the 4-D batch we are looking at

    def lib(self, torch_code: str, numpy_code: str) -> str:
        return numpy_code if self.numpy else torch_code

    def geometry(self, channels: int) -> str:
        return f"ood_helpers.data.to_geometry({self.expr}, channels={channels})"


def _geometry(images: torch.Tensor, channels: int | None, name: str, numpy: bool) -> tuple[torch.Tensor, _Hints]:
    """Check dimensions, size and channels; return the 4-D batch (a view) and the hint speller."""
    shape = tuple(images.shape)
    hints = _Hints(name, numpy)
    want = f"{channels}" if channels is not None else "C"
    if images.dim() == 3:
        if shape[0] in (1, 3, 4) or shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
            if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
                fix = hints.lib(f"{name}.permute(2, 0, 1)", f"np.transpose({name}, (2, 0, 1))")
                fix += "[:3]" if shape[-1] == 4 else ""
                if shape[:2] != (IMAGE_SIZE, IMAGE_SIZE) or (channels is not None and channels != min(shape[-1], 3)):
                    fix = f"ood_helpers.data.to_geometry({fix}[None], channels={channels or min(shape[-1], 3)})"
                raise InputError(f"{name}: expected one image channel-first (C, 32, 32), got {shape}, which looks "
                                 f"channel-last (H, W, C). Fix: {fix}.")
            if channels == 1 and shape[0] in (3, 4):
                # ambiguous for a grayscale detector: one colour image, or a few images without a channel axis
                raise InputError(f"{name}: expected (N, 1, 32, 32) or one image (1, 32, 32), got shape {shape}: "
                                 f"{shape[0]} single-channel images without a channel axis, or one "
                                 f"{shape[0]}-channel image? Fix: {name}[:, None] for {shape[0]} images "
                                 f"({shape[0]}, 1, {shape[1]}, {shape[2]}); ood_helpers.data.to_geometry("
                                 f"{name}[None][:, :3], channels=1) for one colour image.")
            images = images.unsqueeze(0)
            hints.expr = f"{name}[None]"
        else:
            fix = f"{name}[:, None] gives ({shape[0]}, 1, {shape[1]}, {shape[2]})"
            if shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or (channels is not None and channels != 1):
                fix = f"ood_helpers.data.to_geometry({name}, channels={channels or 1}) reads it as (N, H, W)"
            raise InputError(f"{name}: expected 4 dimensions (N, C, 32, 32) or one image (C, 32, 32), got shape "
                             f"{shape}, which looks like {shape[0]} single-channel images without a channel axis. "
                             f"Fix: {fix}.")
    elif images.dim() == 2:
        raise InputError(f"{name}: expected 4 dimensions (N, C, 32, 32) or one image (C, 32, 32), got shape {shape} "
                         f"(one image without a channel axis?). Fix: {name}[None, None] gives (1, 1, {shape[0]}, "
                         f"{shape[1]}).")
    elif images.dim() != 4:
        raise InputError(f"{name}: expected 4 dimensions (N, C, 32, 32) or one image (C, 32, 32), got shape {shape}.")
    if images.shape[0] == 0:
        raise InputError(f"{name}: the batch is empty (shape {shape}); pass at least one image.")
    n, c, h, w = images.shape
    if w in (1, 3, 4) and c not in (1, 3, 4):
        fix = hints.lib(f"{hints.expr}.permute(0, 3, 1, 2)", f"np.transpose({hints.expr}, (0, 3, 1, 2))")
        fix += "[:, :3]" if w == 4 else ""
        if (c, h) != (IMAGE_SIZE, IMAGE_SIZE) or (channels is not None and channels != min(w, 3)):
            fix = f"ood_helpers.data.to_geometry({fix}, channels={channels or min(w, 3)})"
        raise InputError(f"{name}: expected channel-first images (N, {want}, 32, 32), got shape {shape}, which looks "
                         f"channel-last (N, H, W, C) with {w} channel(s). Fix: {fix}.")
    if c == 4 or c == 2:
        keep = 3 if c == 4 else 1
        dropped = f"{hints.expr}[:, :{keep}]"
        then = ""
        if channels is not None and channels != keep:
            then = f", then ood_helpers.data.to_geometry({dropped}, channels={channels}) converts to {channels} channel(s)"
        elif (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
            then = f", then ood_helpers.data.to_geometry({dropped}, channels={keep}) pads or resizes to 32x32"
        raise InputError(f"{name}: expected {channels or '1 or 3'} channel(s) (N, {want}, 32, 32), got {c} "
                         f"(shape {shape}), which looks like {'RGBA' if c == 4 else 'grayscale + alpha'}. "
                         f"Fix: drop the alpha channel with {dropped}{then}.")
    if c not in CHANNEL_COUNTS:
        raise InputError(f"{name}: expected {channels or '1 or 3'} channel(s) (N, {want}, 32, 32), got {c} "
                         f"(shape {shape}). Only grayscale (1) and RGB (3) images are supported; select the "
                         f"channels to use, e.g. {hints.expr}[:, :3].")
    if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        how = ("pads it (centered black border, as MNIST's 28x28 is padded in training)" if h <= IMAGE_SIZE and
               w <= IMAGE_SIZE else "resizes it (bilinear)")
        raise InputError(f"{name}: expected height and width {IMAGE_SIZE}x{IMAGE_SIZE}, got {h}x{w} (shape {shape}). "
                         f"Fix: {hints.geometry(channels or c)} {how}.")
    if channels is not None and c != channels:
        raise InputError(f"{name}: expected {channels} channel(s) (N, {channels}, 32, 32), got {c} (shape {shape}). "
                         f"Fix: {hints.geometry(channels)} converts "
                         f"{'RGB to grayscale' if channels == 1 else 'grayscale to RGB'}.")
    return images, hints


def _fmt(value: float) -> str:
    return f"{value:.8g}"


def _count_non_finite(images: torch.Tensor, chunk: int = 1024) -> tuple[int, list[int]]:
    """Number of NaN/inf values and the first bad image indices, reading ``chunk`` images at a time."""
    bad, first = 0, []
    for start in range(0, len(images), chunk):
        per_image = (~torch.isfinite(images[start:start + chunk])).flatten(1).sum(1)
        bad += int(per_image.sum())
        if len(first) < 5:
            first += [start + int(i) for i in torch.nonzero(per_image).flatten()[:5 - len(first)]]
    return bad, first


def _values(images: torch.Tensor, hints: _Hints) -> bool:
    """Check dtype and value range without a float copy of the whole input.

    Returns whether float values must be clipped (within ``RANGE_TOLERANCE`` of [0, 1]).
    """
    name = hints.name
    if images.dtype == torch.uint8:
        return False
    if not torch.is_floating_point(images):
        if images.dtype == torch.bool:
            fix = hints.lib(f"{name}.float()", f"{name}.astype(np.float32)") + " (True becomes 1.0)"
        elif images.is_complex():
            fix = "take the real part or magnitude first"
        else:
            low, high = (int(v) for v in torch.aminmax(images))
            if 0 <= low and high <= 255 and high > 1:
                fix = hints.lib(f"{name}.to(torch.uint8)", f"{name}.astype(np.uint8)") + " (values 0-255 are pixel values)"
            elif 0 <= low and high <= 1:
                fix = hints.lib(f"{name}.float()", f"{name}.astype(np.float32)") + " (0/1 values as black/white)"
            else:
                fix = (f"its values span [{low}, {high}], not 0-255: rescale to float in [0, 1], e.g. "
                       f"({name} - {low}) / {high - low}")
        raise InputError(f"{name}: expected float values in [0, 1] or uint8 values in 0-255, got dtype "
                         f"{images.dtype}. Fix: {fix}.")
    low, high = (float(v) for v in torch.aminmax(images))
    if not (np.isfinite(low) and np.isfinite(high)):
        bad, first = _count_non_finite(images)
        drop = hints.lib(f"{name}[torch.isfinite({name}).reshape(len({name}), -1).all(1)]",
                         f"{name}[np.isfinite({name}).reshape(len({name}), -1).all(1)]")
        replace = hints.lib(f"torch.nan_to_num({name}, nan=0.0, posinf=1.0, neginf=0.0)",
                            f"np.nan_to_num({name}, nan=0.0, posinf=1.0, neginf=0.0)")
        raise InputError(f"{name}: expected finite values, but it contains {bad} NaN or infinite value(s) "
                         f"(first in image(s) {first}). Fix: find where they come from; to drop those images: "
                         f"{drop}; to replace them: {replace}.")
    if low >= -RANGE_TOLERANCE and high <= 1.0 + RANGE_TOLERANCE:
        return low < 0.0 or high > 1.0
    got = f"expected float values in [0, 1], got range [{_fmt(low)}, {_fmt(high)}]"
    if low < -RANGE_TOLERANCE:
        raise InputError(f"{name}: {got}. Negative values: it looks mean/std normalised (e.g. by "
                         f"torchvision.transforms.Normalize). Fix: undo it per channel, {name} * std + mean, with "
                         f"std and mean the values used to normalise as tensors of shape (1, C, 1, 1), e.g. "
                         f"torch.tensor([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1); for [-1, 1] input "
                         f"(mean = std = 0.5): ({name} + 1) / 2.")
    if high > 1.5:
        raise InputError(f"{name}: {got}. It looks like 0-255 values stored as float: divide by 255 "
                         f"({name} / 255).")
    clamp = hints.lib(f"{name}.clamp(0, 1)", f"np.clip({name}, 0, 1)")
    raise InputError(f"{name}: {got}. Values slightly above 1 usually come from resizing or arithmetic "
                     f"overshoot. Fix: {clamp}.")


def _prepare(images, channels: int | None, name: str) -> tuple[torch.Tensor, bool]:
    if channels is not None and (not _is_integer(channels) or channels not in CHANNEL_COUNTS):
        raise InputError(f"channels: expected 1 or 3 (or None for either), got {channels!r}.")
    converted = None
    if isinstance(images, torch.utils.data.DataLoader):
        converted = f"{name} = ood_helpers.validation.loader_to_tensor({name})"
    elif isinstance(images, torch.utils.data.Dataset) and not isinstance(images, torch.Tensor):
        converted = f"{name} = ood_helpers.validation.dataset_to_tensor({name})"
    elif _is_pil(images):
        converted = f"{name} = torchvision.transforms.functional.pil_to_tensor({name})"
    tensor, numpy = _to_tensor(images, name)
    try:
        batch, hints = _geometry(tensor, channels, name, numpy)
        return batch, _values(batch, hints)
    except InputError as err:
        if converted is None:
            raise
        raise InputError(f"{err} (The fix applies to the stacked tensor: first {converted}.)") from None


def _to_unit_float(batch: torch.Tensor, clip: bool) -> torch.Tensor:
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    batch = batch.float()
    return batch.clamp(0.0, 1.0) if clip else batch


def as_image_batch(images, channels: int | None = None, name: str = "images") -> torch.Tensor:
    """Return ``images`` as one float32 tensor of shape (N, C, 32, 32) with values in [0, 1].

    Parameters
    ----------
    images : torch.Tensor, numpy.ndarray, PIL image or map-style torch.utils.data.Dataset
        (N, C, 32, 32) or one image (C, 32, 32), C = 1 (grayscale) or 3 (RGB), channel-first;
        float in [0, 1] or uint8 in 0-255. A Dataset is read with :func:`dataset_to_tensor`.
    channels : {1, 3} or None
        Required channel count; None accepts 1 or 3.
    name : str
        The argument name used in error messages (e.g. ``"train_images"``).

    Returns
    -------
    torch.Tensor
        float32 (N, C, 32, 32) in [0, 1]. Float32 input in range is returned as is (no copy);
        uint8 is divided by 255; other float dtypes are cast; values within ``RANGE_TOLERANCE``
        (1e-6) outside [0, 1] are clipped; ``requires_grad`` input is detached.

    Raises
    ------
    InputError
        With a fix, for: another type; 2-D or 5-D arrays; channel-last (N, 32, 32, C) layout
        (fix ``images.permute(0, 3, 1, 2)``); RGBA (fix ``images[:, :3]``); a size other than
        32x32 or the wrong channel count (fix ``ood_helpers.data.to_geometry``, which pads small
        images as MNIST is padded); an empty batch or dataset; integer or bool dtypes; NaN or
        infinite values; values outside [0, 1] (0-255 floats: divide by 255; negative values:
        undo mean/std normalisation).
    """
    batch, clip = _prepare(images, channels, name)
    return _to_unit_float(batch, clip)


def iter_image_batches(images, channels: int | None, name: str, batch_size: int):
    """Validate ``images`` once, then yield them as float32 batches; memory bounded by ``batch_size``.

    The whole input is checked up front exactly as by :func:`as_image_batch` (shape, dtype,
    channels, and finiteness and range through ``torch.aminmax`` on the original tensor, which
    allocates no float copy); each batch is then sliced, converted (uint8 / 255, cast, clipped)
    and yielded lazily, so no float copy of the whole input is ever made. A Dataset is first
    stacked in its own dtype (uint8 for PIL images) with :func:`dataset_to_tensor`.

    Parameters
    ----------
    images : torch.Tensor, numpy.ndarray, PIL image or map-style Dataset
        As for :func:`as_image_batch`.
    channels : {1, 3} or None
        Required channel count; None accepts 1 or 3.
    name : str
        The argument name used in error messages.
    batch_size : int
        Images per yielded batch, >= 1 (checked with :func:`check_batch_size`).

    Yields
    ------
    torch.Tensor
        float32 (B, C, 32, 32) in [0, 1] with B <= ``batch_size`` (only the last batch is
        smaller). Float32 batches in range are views of the input, not copies.

    Raises
    ------
    InputError
        As :func:`as_image_batch`, and for an invalid ``batch_size``; raised at the call, before
        the first batch, because validation is not deferred to iteration.
    """
    batch_size = check_batch_size(batch_size)
    if isinstance(images, torch.utils.data.DataLoader):
        return _loader_batches(images, channels, name, batch_size)
    batch, clip = _prepare(images, channels, name)
    return _batches(batch, clip, batch_size)


def _batches(images: torch.Tensor, clip: bool, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield _to_unit_float(images[start:start + batch_size], clip)


def _loader_batches(loader, channels: int | None, name: str, batch_size: int):
    # one loader batch at a time, so memory stays bounded by the loader's batch size too
    seen = 0
    for index, raw in enumerate(loader):
        try:
            batch, clip = _prepare(_loader_images(raw, name), channels, name)
        except InputError as err:
            raise InputError(f"{err} (In DataLoader batch {index}.)") from None
        seen += len(batch)
        yield from _batches(batch, clip, batch_size)
    if not seen:
        raise InputError(f"{name}: the DataLoader gave no batch; pass at least one image.")


def check_spread(images: torch.Tensor, name: str = "images", enough: int = 20) -> int:
    """Count the distinct images of a float batch (N, C, 32, 32); refuse a batch of one repeated image.

    Images are compared through two fixed random projections, ``chunk`` images at a time (no copy
    of the whole batch).

    Returns
    -------
    int
        The number of distinct images.

    Raises
    ------
    InputError
        When every image is the same: nothing tells in from out then.

    Warns
    -----
    DegenerateDataWarning
        When fewer than ``enough`` images are distinct (a few images repeated).
    """
    flat = images.flatten(1)
    directions = torch.randn(flat.shape[1], 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keys = torch.cat([(flat[start:start + 1024].double() @ directions) for start in range(0, len(flat), 1024)])
    distinct = len(torch.unique(torch.round(keys * 1e6), dim=0))
    if distinct == 1:
        raise InputError(f"{name}: expected varied in-distribution training images, got {len(images)} copies of one "
                         f"image (no spread): a detector fitted on them flags almost nothing as out. Fix: pass many "
                         f"different in-distribution images, e.g. ood_helpers.load_setting(...).in_train.")
    if distinct < enough:
        warnings.warn(f"{name}: only {distinct} distinct images among {len(images)} (the rest are repeats); the "
                      f"detector's threshold and score scale rest on almost no spread. Pass at least {enough} "
                      f"different in-distribution images.", DegenerateDataWarning, stacklevel=3)
    return distinct
