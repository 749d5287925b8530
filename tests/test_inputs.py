"""Image input validation: every bad input gets an InputError with a fix, and following the fix works."""
import inspect

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from ood_helpers import InputError
from ood_helpers.data import _pad_to_32, to_geometry
from ood_helpers.validation import as_image_batch, check_batch_size, dataset_to_tensor, iter_image_batches


def _error(images, channels=None, name="images"):
    with pytest.raises(InputError) as info:
        as_image_batch(images, channels, name)
    return str(info.value)


# -- 1. channel-last -----------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_channel_last_batch_says_permute_and_the_fix_works(channels):
    images = torch.rand(5, 32, 32, channels)
    message = _error(images, channels)
    assert "channel-last" in message and "images.permute(0, 3, 1, 2)" in message
    assert "pad or resize" not in message
    fixed = as_image_batch(images.permute(0, 3, 1, 2), channels)
    assert fixed.shape == (5, channels, 32, 32) and torch.equal(fixed[:, 0], images[..., 0])


def test_channel_last_numpy_gets_the_numpy_fix():
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    message = _error(images, 3)
    assert "np.transpose(images, (0, 3, 1, 2))" in message
    assert as_image_batch(np.transpose(images, (0, 3, 1, 2)), 3).shape == (4, 3, 32, 32)


def test_channel_last_single_image_and_rgba():
    image = torch.rand(32, 32, 3)
    message = _error(image, 3)
    assert "images.permute(2, 0, 1)" in message
    assert as_image_batch(image.permute(2, 0, 1), 3).shape == (1, 3, 32, 32)
    rgba = torch.rand(2, 32, 32, 4)
    message = _error(rgba, 3)
    assert "images.permute(0, 3, 1, 2)[:, :3]" in message
    assert as_image_batch(rgba.permute(0, 3, 1, 2)[:, :3], 3).shape == (2, 3, 32, 32)


# -- 2. RGBA -------------------------------------------------------------------------------------

def test_rgba_says_drop_alpha_then_grayscale():
    images = torch.rand(3, 4, 32, 32)
    message = _error(images)
    assert "RGBA" in message and "images[:, :3]" in message
    assert as_image_batch(images[:, :3]).shape == (3, 3, 32, 32)
    message = _error(images, channels=1, name="train_images")
    assert "expected 1 channel" in message
    assert "ood_helpers.data.to_geometry(train_images[:, :3], channels=1)" in message
    gray = as_image_batch(to_geometry(images[:, :3], channels=1), 1)
    assert gray.shape == (3, 1, 32, 32)


# -- 3. value ranges -----------------------------------------------------------------------------

def test_mean_std_normalised_input_is_recognised_and_undone():
    clean = torch.rand(4, 3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)
    images = (clean - mean) / std                    # about [-2.0, 2.1]
    message = _error(images, 3)
    assert "mean/std normalised" in message and "images * std + mean" in message and "per channel" in message
    assert "divide by 255" not in message
    # undoing it leaves float rounding of a few 1e-7 around 0 and 1: clipped, not refused
    restored = as_image_batch(images * std + mean, 3)
    assert float(restored.min()) >= 0.0 and float(restored.max()) <= 1.0
    assert torch.allclose(restored, clean, atol=1e-5)


def test_divide_by_255_only_for_0_255_values():
    images = torch.rand(2, 1, 32, 32) * 255
    message = _error(images)
    assert "divide by 255" in message
    assert float(as_image_batch(images / 255).max()) <= 1.0
    assert "divide by 255" not in _error(torch.rand(2, 1, 32, 32) * 1.2)


def test_float_rounding_is_clipped_and_real_overshoot_is_reported_with_digits():
    images = torch.rand(2, 1, 32, 32)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 1.0000001, -1e-7
    batch = as_image_batch(images)
    assert float(batch.max()) == 1.0 and float(batch.min()) == 0.0
    images[0, 0, 0, 0] = 1.00001
    message = _error(images)
    assert "1.00001" in message and "got range [0, 1]" not in message
    assert "images.clamp(0, 1)" in message
    assert float(as_image_batch(images.clamp(0, 1)).max()) == 1.0


# -- 4. batch size and lazy batches -----------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 2.5, 8.0, None, True, "8", np.float64(4)])
def test_check_batch_size_rejects(bad):
    with pytest.raises(InputError, match="batch_size: expected a positive integer"):
        check_batch_size(bad)
    with pytest.raises(InputError, match="chunk"):
        check_batch_size(bad, name="chunk")


def test_check_batch_size_accepts_integers():
    assert check_batch_size(np.int64(8)) == 8 and type(check_batch_size(np.int32(3))) is int
    assert check_batch_size(int("8")) == 8 and check_batch_size(torch.tensor(5)) == 5


def test_iter_image_batches_matches_as_image_batch():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    batches = list(iter_image_batches(images, 3, "images", 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(b.dtype == torch.float32 for b in batches)
    assert torch.equal(torch.cat(batches), as_image_batch(images, 3))
    with pytest.raises(InputError, match="batch_size"):
        iter_image_batches(images, 3, "images", 0)


def test_iter_image_batches_validates_before_the_first_batch():
    images = torch.rand(600, 1, 32, 32)
    images[-1, 0, 0, 0] = float("nan")          # in the last batch only
    with pytest.raises(InputError, match="NaN or infinite"):
        iter_image_batches(images, 1, "images", 256)   # raised at the call, not while iterating
    images[-1, 0, 0, 0] = 2.0
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        iter_image_batches(images, 1, "images", 256)


class _FloatAllocations(TorchFunctionMode):
    """Records the size of every floating-point tensor a torch operation returns."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                self.sizes.append(tensor.numel())
        return out


def test_iter_image_batches_never_makes_a_float_copy_of_the_whole_input():
    images = torch.randint(0, 256, (20_000, 3, 32, 32), dtype=torch.uint8)   # CIFAR-sized, 61 MB
    one_batch = 256 * 3 * 32 * 32
    with _FloatAllocations() as record:
        batches = iter_image_batches(images, 3, "images", 256)
        first = next(batches)
        created_before_first = list(record.sizes)
        count = 1 + sum(1 for _ in batches)
    assert first.shape == (256, 3, 32, 32) and count == 79
    # lazy: the first batch exists before any later batch was converted
    assert sum(size == one_batch for size in created_before_first) <= 2
    # memory bounded by the batch: no float tensor larger than one batch (a full copy is 78x that)
    assert max(record.sizes) <= one_batch
    with _FloatAllocations() as whole:
        as_image_batch(images, 3)
    assert max(whole.sizes) == images.numel()     # the check above can fail: as_image_batch does copy


def test_iter_image_batches_clips_rounding_per_batch():
    images = torch.rand(5, 1, 32, 32)
    images[4, 0, 0, 0] = 1.0000001
    last = list(iter_image_batches(images, 1, "images", 2))[-1]
    assert float(last.max()) == 1.0


# -- 5. autograd -----------------------------------------------------------------------------------

def test_requires_grad_input_is_detached():
    images = torch.rand(3, 1, 32, 32, requires_grad=True)
    batch = as_image_batch(images)
    assert not batch.requires_grad and torch.equal(batch, images.detach())
    assert not any(b.requires_grad for b in iter_image_batches(images, 1, "images", 2))


# -- 6. datasets -----------------------------------------------------------------------------------

def test_torchvision_dataset_of_pil_images():
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    dataset = FakeData(size=6, image_size=(3, 32, 32), random_offset=3)
    batch = as_image_batch(dataset, 3)
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(batch[2], pil_to_tensor(dataset[2][0]).float() / 255)
    assert torch.equal(torch.cat(list(iter_image_batches(dataset, 3, "images", 4))), batch)
    gray = FakeData(size=2, image_size=(1, 32, 32))
    assert as_image_batch(gray, 1).shape == (2, 1, 32, 32)
    # a single PIL image is one image
    assert as_image_batch(dataset[0][0], 3).shape == (1, 3, 32, 32)


def test_dataset_with_wrong_size_says_stack_first():
    from torchvision.datasets import FakeData

    dataset = FakeData(size=2, image_size=(1, 28, 28))
    message = _error(dataset, 1, "train_images")
    assert "dataset_to_tensor(train_images)" in message and "to_geometry(train_images, channels=1)" in message
    train_images = dataset_to_tensor(dataset)
    assert as_image_batch(to_geometry(train_images, channels=1), 1).shape == (2, 1, 32, 32)


class _Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_dataset_of_pairs_and_of_numpy_images():
    pairs = _Items([(torch.rand(1, 32, 32), 0), (torch.rand(1, 32, 32), 1)])
    assert as_image_batch(pairs, 1).shape == (2, 1, 32, 32)
    arrays = _Items([np.zeros((3, 32, 32), dtype=np.uint8)] * 3)
    assert as_image_batch(arrays, 3).shape == (3, 3, 32, 32)


def test_dataset_of_dicts_names_keys_and_the_fix_works():
    dataset = _Items([{"label": 0, "image": torch.rand(3, 32, 32)} for _ in range(3)])
    message = _error(dataset, 3)
    assert "['label', 'image']" in message
    assert "torch.stack([torch.as_tensor(dataset[i]['image']) for i in range(len(dataset))])" in message
    images = torch.stack([torch.as_tensor(dataset[i]['image']) for i in range(len(dataset))])
    assert as_image_batch(images, 3).shape == (3, 3, 32, 32)


def test_iterable_dataset_gets_the_stacking_fix():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([(torch.rand(1, 32, 32), 0), (torch.rand(1, 32, 32), 1)])

    dataset = Stream()
    message = _error(dataset, 1)
    assert "IterableDataset" in message and "torch.stack([x for x, _ in dataset])" in message
    assert as_image_batch(torch.stack([x for x, _ in dataset]), 1).shape == (2, 1, 32, 32)


def test_empty_dataset_and_mixed_sizes():
    assert "empty" in _error(_Items([]))
    message = _error(_Items([torch.rand(1, 32, 32), torch.rand(1, 28, 28)]))
    assert "item 1" in message and "(1, 28, 28)" in message


# -- 7. 28x28 is padded as in training ------------------------------------------------------------------

def test_to_geometry_pads_small_images_like_training():
    mnist = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(to_geometry(mnist, channels=1), _pad_to_32(mnist).float() / 255)
    assert torch.equal(to_geometry(mnist.numpy(), channels=1), to_geometry(mnist, channels=1))
    padded = to_geometry(torch.ones(1, 1, 20, 30), channels=1)
    assert padded.shape == (1, 1, 32, 32) and float(padded.sum()) == 20 * 30
    large = to_geometry(torch.rand(2, 3, 64, 48), channels=3)
    assert large.shape == (2, 3, 32, 32) and 0 <= float(large.min()) and float(large.max()) <= 1


def test_small_image_hint_pads_and_then_passes():
    images = torch.rand(2, 1, 28, 28)
    message = _error(images, 1)
    assert "32x32" in message and "ood_helpers.data.to_geometry(images, channels=1)" in message and "pad" in message
    fixed = as_image_batch(to_geometry(images, channels=1), 1)
    assert torch.equal(fixed[:, :, 2:30, 2:30], images) and float(fixed[:, :, :2].max()) == 0.0
    # one image (C, 28, 28): the hint adds the batch axis, since to_geometry reads 3-D input as (N, H, W)
    message = _error(images[0], 1)
    assert "to_geometry(images[None], channels=1)" in message
    assert as_image_batch(to_geometry(images[0][None], channels=1), 1).shape == (1, 1, 32, 32)


# -- 8. unchanged behaviour ------------------------------------------------------------------------

def test_documented_conversions():
    uint8 = np.full((2, 1, 32, 32), 255, dtype=np.uint8)
    batch = as_image_batch(uint8)
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32 and float(batch.max()) == 1.0
    assert as_image_batch(torch.rand(3, 32, 32)).shape == (1, 3, 32, 32)
    assert "allow_empty" not in inspect.signature(as_image_batch).parameters


@pytest.mark.parametrize("bad, message", [
    (torch.ones(2, 1, 32, 32, dtype=torch.int64), "dtype"),
    (torch.ones(2, 1, 32, 32, dtype=torch.bool), "dtype"),
    (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
    (torch.full((1, 1, 32, 32), float("inf")), "NaN or infinite"),
    (torch.rand(0, 1, 32, 32), "empty"),
    (torch.rand(32, 32), "4 dimensions"),
    (torch.rand(2, 3, 32, 32), "expected 1 channel"),
    ([[0.0]], "torch.Tensor or numpy array"),
])
def test_bad_inputs_keep_their_messages(bad, message):
    with pytest.raises(InputError, match=message):
        as_image_batch(bad, 1)


def test_integer_and_nan_fixes_work():
    ints = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.int64)
    message = _error(ints)
    assert "images.to(torch.uint8)" in message
    assert as_image_batch(ints.to(torch.uint8)).shape == (2, 1, 32, 32)
    images = torch.rand(3, 1, 32, 32)
    images[1, 0, 5, 5] = float("nan")
    message = _error(images)
    assert "image(s) [1]" in message
    kept = as_image_batch(images[torch.isfinite(images).reshape(len(images), -1).all(1)])
    assert len(kept) == 2


@pytest.mark.parametrize("n", [3, 4])
def test_a_few_grayscale_images_without_a_channel_axis_are_not_read_as_one_colour_image(n):
    from ood_helpers.validation import as_image_batch
    images = torch.rand(n, 32, 32)
    with pytest.raises(InputError, match=rf"{n} single-channel images .*Fix: images\[:, None\]"):
        as_image_batch(images, channels=1, name="images")
    assert as_image_batch(images[:, None], channels=1, name="images").shape == (n, 1, 32, 32)  # the fix works
