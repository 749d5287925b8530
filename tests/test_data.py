"""Data loading: geometry, configuration, clear errors, nothing written into the data folder."""
import numpy as np
import pytest
import torch

from ood_helpers import DatasetNotFoundError, InputError, data, load_setting
from ood_helpers.data import data_root, load_images, to_geometry


def test_to_geometry_converts_channels_size_and_range():
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb = to_geometry(gray, channels=3)
    assert rgb.shape == (2, 3, 32, 32) and rgb.dtype == torch.float32
    assert 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    colour = torch.rand(2, 3, 32, 32)
    luma = to_geometry(colour, channels=1)
    expected = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    assert torch.allclose(luma[:, 0], expected, atol=1e-6)


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root("elsewhere").name == "elsewhere"
    monkeypatch.delenv("OOD_DATA_DIR")
    assert data_root().name == "data"


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_dataset_names_folder_variable_and_switch(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as info:
        load_images(name, "test", root=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "OOD_DATA_DIR" in message and "download=True" in message


def test_empty_data_folder_is_reported(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="MNIST"):
        load_images("mnist", "test", root=tmp_path)


def test_download_into_read_only_folder_is_refused(tmp_path, monkeypatch):
    # root may write anywhere, so the read-only check is driven through os.access
    monkeypatch.setattr("ood_helpers.data.os.access", lambda path, mode: False)
    with pytest.raises(DatasetNotFoundError, match="read-only"):
        load_images("mnist", "test", root=tmp_path, download=True)


def test_unknown_names_are_rejected():
    with pytest.raises(InputError, match="name"):
        load_images("svhn")
    with pytest.raises(InputError, match="setting"):
        load_setting("mnist-svhn")


def _snapshot(root):
    return sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_dir() or p.suffix != ".jpg")


@pytest.mark.data
def test_real_settings_have_the_common_geometry_and_write_nothing(data_root):
    before = _snapshot(data_root)
    mnist_in = load_setting("mnist-cifar10", train_limit=500, root=data_root)
    cifar_in = load_setting("cifar10-mnist", train_limit=500, root=data_root)
    assert mnist_in.in_train.shape == (500, 1, 32, 32) and mnist_in.out_test.shape == (2000, 1, 32, 32)
    assert cifar_in.in_train.shape == (500, 3, 32, 32) and cifar_in.out_test.shape == (2000, 3, 32, 32)
    for tensor in (mnist_in.in_train, mnist_in.out_test, cifar_in.in_train, cifar_in.out_test):
        assert tensor.dtype == torch.float32 and 0 <= float(tensor.min()) and float(tensor.max()) <= 1
    # MNIST is padded, not stretched: a 2-pixel black border
    assert float(mnist_in.in_test[:, :, :2].max()) == 0.0
    # grayscale MNIST repeated to three identical channels for a CIFAR-10 detector
    assert torch.equal(cifar_in.out_test[:, 0], cifar_in.out_test[:, 2])
    # the test draw is fixed: another training seed sees the very same test images
    again = load_setting("mnist-cifar10", train_limit=500, root=data_root, seed=5)
    assert torch.equal(again.in_test, mnist_in.in_test)
    assert not torch.equal(again.in_train, mnist_in.in_train)
    assert _snapshot(data_root) == before, "loading wrote into the data folder"


@pytest.mark.data
def test_near_ood_split_by_class(data_root):
    images, labels = load_images("mnist", "test", root=data_root, classes=(0, 1, 2, 3, 4))
    assert set(labels.tolist()) == {0, 1, 2, 3, 4} and len(images) == len(labels)


# -- argument validation -------------------------------------------------------------------------

def test_classes_outside_0_9_are_named(tmp_path):
    with pytest.raises(InputError) as info:
        load_images("mnist", "test", root=tmp_path, classes=[42])
    message = str(info.value)
    assert message.startswith("classes:") and "0-9" in message and "42" in message
    with pytest.raises(InputError, match="airplane"):
        load_images("cifar10", "test", root=tmp_path, classes=[3, -1])
    with pytest.raises(InputError, match=r"classes=\[3\]"):
        load_images("mnist", "test", root=tmp_path, classes=3)
    with pytest.raises(InputError, match="classes"):
        load_images("mnist", "test", root=tmp_path, classes=[])


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_limit_eval_size_and_train_limit_are_validated_by_their_own_names(tmp_path, bad):
    with pytest.raises(InputError, match="^limit: expected a positive integer"):
        load_images("mnist", "test", root=tmp_path, limit=bad)
    with pytest.raises(InputError, match="^eval_size: expected a positive integer"):
        load_setting("mnist-cifar10", eval_size=bad, root=tmp_path)
    with pytest.raises(InputError, match="^train_limit: expected a positive integer"):
        load_setting("mnist-cifar10", train_limit=bad, root=tmp_path)


# -- fake data folders ---------------------------------------------------------------------------

def _idx(path, array):
    """Write an IDX file (the MNIST format): magic, dimensions (big-endian int32), uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def _fake_mnist_test(root, n=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    images[np.arange(n), 14, 14] = 10 * labels + 5
    _idx(raw / "t10k-images-idx3-ubyte", images)
    _idx(raw / "t10k-labels-idx1-ubyte", labels)
    return raw


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """A 20-image MNIST test split; the expected file sizes are patched to match it."""
    raw = _fake_mnist_test(tmp_path)
    monkeypatch.setitem(data.MNIST_FILES, "test", tuple((f, (raw / f).stat().st_size)
                                                         for f, _ in data.MNIST_FILES["test"]))
    monkeypatch.setitem(data.IDX_MD5, "mnist", {})   # tiny files: the published digests cannot match
    return tmp_path


def test_load_images_hands_out_copies_never_the_cache(small_mnist):
    images, labels = load_images("mnist", "test", root=small_mnist)
    assert images.shape == (20, 1, 32, 32) and images[3, 0, 16, 16] == 35   # 28 -> 32, 2-pixel border
    images[labels == 3] = 0
    labels[:] = 7
    again, again_labels = load_images("mnist", "test", root=small_mnist)
    assert again[3, 0, 16, 16] == 35 and again_labels[3] == 3
    # every return path: also with classes and a limit at or above the size
    for kwargs in ({"classes": [3]}, {"limit": 100}, {"limit": 5}):
        part, _ = load_images("mnist", "test", root=small_mnist, **kwargs)
        part.fill_(0)
        assert load_images("mnist", "test", root=small_mnist)[0][3, 0, 16, 16] == 35


def test_mnist_missing_or_truncated_file_is_named(tmp_path):
    raw = _fake_mnist_test(tmp_path)      # real expected sizes: the 20-image files are "truncated"
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("mnist", "test", root=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "7,840,016" in message and "truncated" in message
    assert "was not found" not in message and "download=True" in message
    (raw / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte is missing"):
        load_images("mnist", "test", root=tmp_path)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetNotFoundError, match="gunzip"):
        load_images("mnist", "test", root=tmp_path)


def test_mnist_file_of_the_right_size_but_bad_header_is_named(small_mnist):
    path = small_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\xff" * path.stat().st_size)
    with pytest.raises(data.DatasetCorruptError, match="t10k-labels-idx1-ubyte"):
        load_images("mnist", "test", root=small_mnist)


def _jpeg(path, value=128):
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path, format="JPEG", quality=90)


def _fake_cifar_jpg(root, split="test", per_class=2, classes=data.CIFAR10_CLASSES):
    folder = root / "cifar10-jpg" / split
    for index, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            _jpeg(folder / name / f"{i}.jpg", 20 * index)
    return folder


@pytest.fixture
def two_per_class(monkeypatch):
    monkeypatch.setitem(data.CIFAR10_JPG_PER_CLASS, "test", 2)


def test_jpeg_copy_beside_an_empty_batches_folder_and_hidden_folders(tmp_path, two_per_class):
    folder = _fake_cifar_jpg(tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()                 # empty: must not hide the JPEG copy
    (folder / ".ipynb_checkpoints").mkdir()                    # hidden: not a class
    (folder / "cat" / ".DS_Store").write_bytes(b"junk")        # hidden file: not an image
    images, labels = load_images("cifar10", "test", root=tmp_path)
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == [i for i in range(10) for _ in range(2)]
    # labels by name: deer (4) holds value 80 whatever the folder order on disk
    assert abs(int(images[labels == 4].float().mean()) - 80) <= 2


def test_missing_or_extra_class_folder_is_named(tmp_path, two_per_class):
    _fake_cifar_jpg(tmp_path, classes=data.CIFAR10_CLASSES[1:])
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("cifar10", "test", root=tmp_path)
    assert "missing ['airplane']" in str(info.value) and "restore" in str(info.value)
    (tmp_path / "cifar10-jpg" / "test" / "airplane").mkdir()
    (tmp_path / "cifar10-jpg" / "test" / "misc").mkdir()
    with pytest.raises(data.DatasetCorruptError, match=r"unexpected \['misc'\]"):
        load_images("cifar10", "test", root=tmp_path)


def test_empty_class_folder_is_named(tmp_path, two_per_class):
    folder = _fake_cifar_jpg(tmp_path)
    for path in (folder / "cat").iterdir():
        path.unlink()
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("cifar10", "test", root=tmp_path)
    message = str(info.value)
    assert str(folder / "cat") in message and "no JPEG images" in message and "18" in message
    assert "was not found" not in message


def test_wrong_image_count_is_named(tmp_path):
    folder = _fake_cifar_jpg(tmp_path)        # 2 per class, the complete copy has 1,000
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("cifar10", "test", root=tmp_path)
    assert "1,000" in str(info.value) and f"'{folder / 'airplane'}' holds 2" in str(info.value)


@pytest.mark.parametrize("damage", [b"", b"not a jpeg at all", "truncated"])
def test_corrupt_jpeg_is_named(tmp_path, two_per_class, damage):
    folder = _fake_cifar_jpg(tmp_path)
    bad = folder / "horse" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200] if damage == "truncated" else damage)
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("cifar10", "test", root=tmp_path)
    assert str(bad) in str(info.value) and "restore" in str(info.value)


def test_both_cifar_copies_incomplete_says_what_each_lacks(tmp_path, two_per_class):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"x")
    _fake_cifar_jpg(tmp_path, classes=data.CIFAR10_CLASSES[:9])
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("cifar10", "test", root=tmp_path)
    message = str(info.value)
    assert "lacks data_batch_2" in message and "batches.meta" in message and "missing ['truck']" in message


def test_complete_but_damaged_batches_are_named(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in data.CIFAR10_BATCH_FILES:
        (batches / name).write_bytes(b"not a pickle")
    with pytest.raises(data.DatasetCorruptError, match="data_batch_1.*MD5|MD5.*data_batch_1"):
        load_images("cifar10", "test", root=tmp_path)


@pytest.mark.data
def test_real_loads_are_copies(data_root):
    images, labels = load_images("mnist", "test", root=data_root)
    assert images.shape == (10_000, 1, 32, 32)
    images[labels == 3] = 0
    again, again_labels = load_images("mnist", "test", root=data_root)
    assert float(again[again_labels == 3].float().mean()) > 10


# -- Fashion-MNIST: the same IDX reader, checked by size and by content ---------------------------

def _fake_idx_test(root, folder, value, n=20):
    """A tiny IDX test split in ``root/folder/raw`` whose pixel (14, 14) is ``value`` everywhere."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    images = np.full((n, 28, 28), 0, dtype=np.uint8)
    images[:, 14, 14] = value
    _idx(raw / "t10k-images-idx3-ubyte", images)
    _idx(raw / "t10k-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


@pytest.fixture
def tiny_idx(tmp_path, monkeypatch):
    """Tiny MNIST and Fashion-MNIST test splits (other pixels, same sizes) with their sizes and MD5s
    as the expected ones: the same situation as the real files, in a few hundred bytes."""
    import hashlib

    for name, folder, value in (("mnist", "MNIST", 7), ("fmnist", "FashionMNIST", 200)):
        raw = _fake_idx_test(tmp_path / name, folder, value)
        files = tuple((f, (raw / f).stat().st_size) for f, _ in data.MNIST_FILES["test"])
        monkeypatch.setitem(data.IDX_DATASETS[name][1], "test", files)
        monkeypatch.setitem(data.IDX_MD5, name, {f: hashlib.md5((raw / f).read_bytes()).hexdigest() for f, _ in files})
    return tmp_path


def _names(root):
    return sorted(str(p) for p in root.rglob("*"))


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_fashion_mnist_loads_padded_and_writes_nothing(tiny_idx):
    root = tiny_idx / "fmnist"
    before = _snapshot(root)
    images, labels = load_images("fmnist", "test", root=root)
    assert images.shape == (20, 1, 32, 32) and bool((images[:, 0, 16, 16] == 200).all())
    assert labels.tolist() == [i % 10 for i in range(20)]
    assert _snapshot(root) == before


def test_fashion_mnist_folder_missing_truncated_or_holding_mnist_is_named_in_one_line(tiny_idx):
    import shutil

    root = tiny_idx / "fmnist"
    raw = root / "FashionMNIST" / "raw"
    # MNIST's files, same names and sizes, other bytes: named by content
    for path in raw.iterdir():
        shutil.copyfile(tiny_idx / "mnist" / "MNIST" / "raw" / path.name, path)
    before, names = _snapshot(root), _names(root)
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("fmnist", "test", root=root)
    message = _one_line(info)
    assert _snapshot(root) == before
    assert f"{raw / 't10k-images-idx3-ubyte'} is MNIST's t10k-images-idx3-ubyte, not Fashion-MNIST's" in message
    assert "Fix:" in message and str(raw) in message and "download=True" in message
    # another file of the right size: the digests differ, and the message says so
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * (raw / "t10k-labels-idx1-ubyte").stat().st_size)
    with pytest.raises(data.DatasetCorruptError, match="t10k-labels-idx1-ubyte has the right size but other bytes"):
        load_images("fmnist", "test", root=root)
    # truncated
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00" * 100)
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("fmnist", "test", root=root)
    assert "t10k-images-idx3-ubyte has 100 bytes" in _one_line(info) and "truncated" in str(info.value)
    assert _names(root) == names, "loading wrote into the data folder"
    # missing folder: the dataset, the folder searched, the variable and the switch
    shutil.rmtree(root / "FashionMNIST")
    with pytest.raises(DatasetNotFoundError) as info:
        load_images("fmnist", "test", root=root)
    message = _one_line(info)
    assert message.startswith("Fashion-MNIST was not found") and str(raw) in message
    assert "OOD_DATA_DIR" in message and "download=True" in message
    assert not (root / "FashionMNIST").exists()


def test_fashion_mnist_classes_are_named(tmp_path):
    with pytest.raises(InputError, match="Ankle boot"):
        load_images("fmnist", "test", root=tmp_path, classes=[10])


@pytest.mark.data
def test_real_fashion_mnist_and_the_new_pair(data_root, tmp_path):
    before = _snapshot(data_root)
    images, labels = load_images("fmnist", "test", root=data_root)
    # Fashion-MNIST's test split has exactly 1,000 of each class (MNIST's does not)
    assert images.shape == (10_000, 1, 32, 32) and torch.bincount(labels).tolist() == [1000] * 10
    pair = load_setting("fmnist-mnist", train_limit=300, root=data_root, eval_size=500)
    back = load_setting("mnist-fmnist", train_limit=300, root=data_root, eval_size=500)
    assert pair.in_train.shape == (300, 1, 32, 32) and pair.out_test.shape == (500, 1, 32, 32)
    assert float(pair.in_test[:, :, :2].max()) == 0.0 and float(pair.out_test[:, :, :2].max()) == 0.0
    assert (pair.in_name, pair.out_name, back.in_name, back.out_name) == ("Fashion-MNIST", "MNIST", "MNIST",
                                                                           "Fashion-MNIST")
    assert back.in_train.shape == (300, 1, 32, 32) and back.out_test.shape == (500, 1, 32, 32)
    # not MNIST under another name: Fashion-MNIST's clothes are much brighter on average
    assert float(pair.in_test.mean()) > float(back.in_test.mean()) + 0.1
    assert _snapshot(data_root) == before
    # the real MNIST files in a Fashion-MNIST folder: same sizes, told apart by the published MD5s
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in data.MNIST_FILES["test"]:
        (raw / name).symlink_to(data_root / "MNIST" / "raw" / name)
    with pytest.raises(data.DatasetCorruptError, match="is MNIST's t10k-images-idx3-ubyte, not Fashion-MNIST's"):
        load_images("fmnist", "test", root=tmp_path)
