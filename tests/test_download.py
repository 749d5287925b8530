"""Data on a fresh online machine (issue 14), tested for real against an HTTP server on 127.0.0.1.

The test builds tiny gzipped MNIST IDX files and a tiny CIFAR-10 python-batches tar.gz, serves them
from a ``http.server`` thread, and points torchvision's mirrors, URLs and MD5 sums at them. The
expected MNIST file sizes are patched to the tiny files' (the size check itself stays). No test
needs the internet, and the only folder written is the per-user cache (``XDG_CACHE_HOME``).
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from ood_helpers import DatasetNotFoundError, artifacts, data, load_setting
from ood_helpers.data import download_mode, load_images

MNIST_N = {"train": 30, "t10k": 20}
CIFAR_PER_BATCH, CIFAR_TEST = 6, 12


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def _idx(array: np.ndarray) -> bytes:
    kind = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, kind, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_files() -> dict[str, bytes]:
    """Uncompressed IDX contents by file name: digit images with a known pixel per label."""
    files = {}
    for prefix, n in MNIST_N.items():
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 14, 14] = 20 * labels + 7
        files[f"{prefix}-images-idx3-ubyte"] = _idx(images)
        files[f"{prefix}-labels-idx1-ubyte"] = _idx(labels)
    return files


def _cifar_batches() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    batches = {}
    for name, n in [*((f"data_batch_{i}", CIFAR_PER_BATCH) for i in range(1, 6)), ("test_batch", CIFAR_TEST)]:
        payload = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        batches[name] = pickle.dumps(payload, protocol=2)
    batches["batches.meta"] = pickle.dumps({"label_names": list(data.CIFAR10_CLASSES)}, protocol=2)
    return batches


class _Server:
    """Serves a folder on 127.0.0.1 and counts the GET requests per path."""

    def __init__(self, folder: Path):
        counts = self.counts = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there: connection refused, as offline


@pytest.fixture
def fake_internet(tmp_path_factory, monkeypatch):
    """torchvision pointed at a local server holding a tiny MNIST and CIFAR-10; returns (server, contents)."""
    served = tmp_path_factory.mktemp("served")
    mnist = _mnist_files()
    (served / "mnist").mkdir()
    resources = []
    for name, raw in mnist.items():
        gz = gzip.compress(raw, mtime=0)
        (served / "mnist" / f"{name}.gz").write_bytes(gz)
        resources.append((f"{name}.gz", _md5(gz)))
    batches = _cifar_batches()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (served / "cifar-10-python.tar.gz").write_bytes(archive.getvalue())
    server = _Server(served)

    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"{server.url}/mnist/"])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{server.url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", _md5(archive.getvalue()))
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{i}", _md5(batches[f"data_batch_{i}"])]
                                                         for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", _md5(batches["test_batch"])]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                   "md5": _md5(batches["batches.meta"])})
    # helper A's size check stays; it expects the tiny files' sizes
    for split, prefix in (("train", "train"), ("test", "t10k")):
        monkeypatch.setitem(data.MNIST_FILES, split, ((f"{prefix}-images-idx3-ubyte", len(mnist[f"{prefix}-images-idx3-ubyte"])),
                                                      (f"{prefix}-labels-idx1-ubyte", len(mnist[f"{prefix}-labels-idx1-ubyte"]))))
    monkeypatch.setitem(data.IDX_MD5, "mnist", {name: _md5(raw) for name, raw in mnist.items()})
    data._load_raw.cache_clear()
    yield server, mnist, batches
    data._load_raw.cache_clear()
    server.close()


@pytest.fixture
def fresh_user(tmp_path, monkeypatch):
    """No data configured, an empty home and cache, and a working directory of its own."""
    for variable in ("OOD_DATA_DIR", "OOD_DOWNLOAD"):
        monkeypatch.delenv(variable, raising=False)
    home, cache, work = tmp_path / "home", tmp_path / "cache", tmp_path / "work"
    for folder in (home, cache, work):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.chdir(work)
    return tmp_path


def _everything(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_fresh_machine_downloads_once_into_the_per_user_folder(fake_internet, fresh_user, capsys):
    server, mnist, batches = fake_internet
    target = fresh_user / "cache" / "ood-notebooks" / "data"
    assert data.data_root() == target and download_mode() == "missing"

    setting = load_setting("mnist-cifar10", eval_size=10)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"Downloading MNIST (about 11 MB) with torchvision into '{target}' (the per-user data folder; set "
        f"OOD_DATA_DIR to use an existing copy instead).",
        f"Downloading CIFAR-10 (about 163 MB) with torchvision into '{target}' (the per-user data folder; set "
        f"OOD_DATA_DIR to use an existing copy instead)."]
    assert setting.in_train.shape == (30, 1, 32, 32) and setting.out_test.shape == (10, 1, 32, 32)
    # the pixels are the served ones: label k has value 20k + 7 at (14, 14), padded by 2 to (16, 16)
    images, labels = load_images("mnist", "test")
    assert torch.equal(images[:, 0, 16, 16], (20 * labels + 7).to(torch.uint8))
    cifar, cifar_labels = load_images("cifar10", "test")
    served = pickle.loads(batches["test_batch"])
    assert torch.equal(cifar, torch.from_numpy(served["data"]).view(-1, 3, 32, 32))
    assert cifar_labels.tolist() == served["labels"]
    # torchvision asks twice per file (a GET to follow redirects, then the download)
    assert set(server.counts) == {*(f"/mnist/{name}.gz" for name in mnist), "/cifar-10-python.tar.gz"}
    requests = sum(server.counts.values())

    # only the cache folder was written: the datasets, torchvision's .gz files, the download locks;
    # CIFAR-10's archive is removed once extracted and verified
    assert _everything(fresh_user / "home") == set() and _everything(fresh_user / "work") == set()
    assert not (target / "cifar-10-python.tar.gz").exists()
    assert {p.name for p in (target / "MNIST" / "raw").iterdir()} == set(mnist) | {f"{n}.gz" for n in mnist}
    assert {p.name for p in (target / "cifar-10-batches-py").iterdir()} == set(batches)
    assert {p.name for p in target.iterdir()} == {"MNIST", "cifar-10-batches-py", "MNIST.download.lock",
                                                  "CIFAR10.download.lock"}

    # a new kernel: read from the cache, no request, no notice
    data._load_raw.cache_clear()
    artifacts.get_data("cifar10-mnist", "quick")
    assert "Downloading" not in capsys.readouterr().out
    assert sum(server.counts.values()) == requests


def test_the_size_check_still_refuses_a_download_of_the_wrong_size(fake_internet, fresh_user, monkeypatch):
    monkeypatch.setitem(data.MNIST_FILES, "test", (("t10k-images-idx3-ubyte", 7840016), ("t10k-labels-idx1-ubyte", 10008)))
    with pytest.raises(data.DatasetCorruptError, match="t10k-images-idx3-ubyte has 15,696 bytes, expected 7,840,016"):
        load_images("mnist", "test")


def test_a_configured_folder_is_never_downloaded_into_unless_asked(fake_internet, fresh_user, monkeypatch, capsys):
    server = fake_internet[0]
    configured = fresh_user / "shared-copy"
    monkeypatch.setenv("OOD_DATA_DIR", str(configured))
    with pytest.raises(DatasetNotFoundError) as info:
        load_images("mnist", "test")
    message = str(info.value)
    assert str(configured) in message and "OOD_DATA_DIR" in message and "download=True" in message
    assert "OOD_DOWNLOAD=1" in message
    assert not configured.exists() and server.counts == {}
    assert _everything(fresh_user / "cache") == set()

    images, _ = load_images("mnist", "test", download=True)
    assert len(images) == MNIST_N["t10k"] and (configured / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert f"into '{configured}'." in capsys.readouterr().out
    monkeypatch.setenv("OOD_DOWNLOAD", "1")
    images, _ = load_images("cifar10", "test")  # the switch as a variable, e.g. for a notebook
    assert len(images) == CIFAR_TEST and (configured / "cifar-10-batches-py" / "test_batch").is_file()
    assert _everything(fresh_user / "cache") == set()


def test_root_argument_counts_as_configured(fake_internet, fresh_user):
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_images("cifar10", "test", root=fresh_user / "elsewhere")
    assert fake_internet[0].counts == {} and not (fresh_user / "elsewhere").exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_message_names_the_folder_the_variable_and_the_switch(name, fake_internet, fresh_user, monkeypatch):
    offline = _closed_port_url()
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"{offline}/mnist/"])
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{offline}/cifar-10-python.tar.gz")
    with pytest.raises(DatasetNotFoundError) as info:
        load_images(name, "test")
    message = str(info.value)
    target = fresh_user / "cache" / "ood-notebooks" / "data"
    assert message.startswith(f"{data.PRETTY[name]} was not found under the data folder '{target}' and downloading "
                              f"it failed (")
    assert "Connection refused" in message or "URLError" in message or "RuntimeError" in message
    assert "OOD_DATA_DIR" in message and "download=True" in message and "OOD_DOWNLOAD=1" in message
    assert ("MNIST/raw" if name == "mnist" else "cifar-10-batches-py") in message
    # nothing outside the cache folder
    assert _everything(fresh_user / "home") == set() and _everything(fresh_user / "work") == set()


def test_local_data_folder_is_not_read_but_named(fake_internet, fresh_user, monkeypatch):
    monkeypatch.setenv("OOD_DOWNLOAD", "0")
    (fresh_user / "work" / "data" / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_images("mnist", "test")
    assert "A copy is in './data'" in str(info.value) and "export OOD_DATA_DIR=" in str(info.value)
    assert fake_internet[0].counts == {}


def test_download_switches_are_validated(monkeypatch):
    monkeypatch.delenv("OOD_DATA_DIR", raising=False)
    monkeypatch.setenv("OOD_DOWNLOAD", "maybe")
    with pytest.raises(data.InputError, match="OOD_DOWNLOAD: expected 1 .* got 'maybe'"):
        download_mode()
    assert download_mode(False) == "never" and download_mode(True) == "always"
    monkeypatch.setenv("OOD_DOWNLOAD", "0")
    assert download_mode() == "never"
    with pytest.raises(data.InputError, match="download: expected True, False or None"):
        download_mode("yes")


@pytest.fixture
def fake_fashion(fake_internet, tmp_path_factory, monkeypatch):
    """Fashion-MNIST served like MNIST: the same tiny files with other pixels (value 250 at (14, 14))."""
    folder = tmp_path_factory.mktemp("served-fashion")
    files = {}
    for prefix, n in MNIST_N.items():
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 14, 14] = 250
        files[f"{prefix}-images-idx3-ubyte"] = _idx(images)
        files[f"{prefix}-labels-idx1-ubyte"] = _idx(np.arange(n) % 10)
    fashion_server = _Server(folder)
    resources = []
    for name, raw in files.items():
        gz = gzip.compress(raw, mtime=0)
        (folder / f"{name}.gz").write_bytes(gz)
        resources.append((f"{name}.gz", _md5(gz)))
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [f"{fashion_server.url}/"])
    monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        monkeypatch.setitem(data.FMNIST_FILES, split, tuple((f"{prefix}-{kind}", len(files[f"{prefix}-{kind}"]))
                                                           for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")))
    monkeypatch.setitem(data.IDX_MD5, "fmnist", {name: _md5(raw) for name, raw in files.items()})
    yield fashion_server, files
    fashion_server.close()


def test_fashion_mnist_downloads_like_mnist_and_is_checked_by_content(fake_fashion, fresh_user, capsys):
    server, files = fake_fashion
    target = fresh_user / "cache" / "ood-notebooks" / "data"
    setting = load_setting("fmnist-mnist", eval_size=10)
    printed = capsys.readouterr().out
    assert f"Downloading Fashion-MNIST (about 30 MB) with torchvision into '{target}'" in printed
    assert setting.in_train.shape == (30, 1, 32, 32) and setting.out_test.shape == (10, 1, 32, 32)
    assert bool((setting.in_test[:, 0, 16, 16] == 250 / 255).all())
    assert set(server.counts) == {f"/{name}.gz" for name in files}
    assert {p.name for p in (target / "FashionMNIST" / "raw").iterdir()} == set(files) | {f"{n}.gz" for n in files}
    assert _everything(fresh_user / "home") == set() and _everything(fresh_user / "work") == set()
    # a copy whose content is MNIST's (same names and sizes): refused, naming the file and the fix
    raw = target / "FashionMNIST" / "raw"
    mnist_raw = target / "MNIST" / "raw"
    for name in files:
        (raw / name).write_bytes((mnist_raw / name).read_bytes())
    data._load_raw.cache_clear()
    with pytest.raises(data.DatasetCorruptError) as info:
        load_images("fmnist", "test", download=False)
    message = str(info.value)
    assert "\n" not in message and "is MNIST's t10k-images-idx3-ubyte, not Fashion-MNIST's" in message
    assert str(raw) in message and "Fix:" in message
