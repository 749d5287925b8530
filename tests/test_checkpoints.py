"""Checkpoint files and output folders: every damaged file is refused with a clear error, never loaded."""
from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ood_helpers import checkpoints, files
from ood_helpers.checkpoints import FORMAT_VERSION, CheckpointError, CheckpointWriteError, load_checkpoint, require, save_checkpoint
from ood_helpers.files import LockTimeoutError, OutputPathError, atomic_output_dir, check_output_dir, file_lock, remove_stale_temporaries
from ood_helpers.validation import InputError

FORMAT = "test-detector"
WEIGHTS = torch.arange(64, dtype=torch.float32) * 1.5 + 0.25  # distinctive bytes to find in the file


def make_payload() -> dict:
    torch.manual_seed(0)
    return {"format": FORMAT, "version": 1,
            "config": {"name": "marker-config-name", "in_channels": 3, "betas": (0.9, 0.999), "seed": None},
            "weights": WEIGHTS.clone(), "model": torch.nn.Linear(3, 2).state_dict(),
            "half": torch.ones(2, 3, dtype=torch.bfloat16), "mask": torch.tensor([True, False]),
            "scalar": torch.tensor(7), "losses": [0.5, 0.25], "steps": {0: 10, 1: 20}}


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        extra_a, extra_b = getattr(a, "__dict__", None), getattr(b, "__dict__", None)  # a state_dict's _metadata
        return (a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
                and (extra_a == extra_b if not (extra_a or extra_b) else same(dict(extra_a), dict(extra_b))))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def flipped(source: Path, target: Path, offset: int, bit: int = 0) -> Path:
    raw = bytearray(source.read_bytes())
    raw[offset] ^= 1 << bit
    target.write_bytes(bytes(raw))
    return target


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(make_payload(), tmp_path / "det.pt")


# -- what works ------------------------------------------------------------------------------------
def test_round_trip_returns_the_payload_unchanged(saved):
    assert FORMAT_VERSION == 2
    loaded = load_checkpoint(saved, FORMAT)
    assert same(loaded, make_payload())
    assert loaded["model"]._metadata == make_payload()["model"]._metadata
    assert hidden(saved.parent) == []


def test_unsupported_values_are_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match=r"payload\['config'\]\['obj'\] is a object"):
        save_checkpoint({"format": FORMAT, "config": {"obj": object()}}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="format"):
        save_checkpoint({"config": {}}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", FORMAT)


# -- unreadable, foreign, truncated, old and new files ------------------------------------------
def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt' is empty \(0 bytes\).*retrain"):
        load_checkpoint(tmp_path / "empty.pt", FORMAT)


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"\x00" * 100, b"PK\x03\x04garbage"])
def test_foreign_bytes(tmp_path, content):
    (tmp_path / "f.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"f\.pt' is not a readable checkpoint.*retrain") as info:
        load_checkpoint(tmp_path / "f.pt", FORMAT)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("obj", [[1, 2], {"a": torch.ones(2)}, torch.ones(3)])
def test_foreign_torch_files(tmp_path, obj):
    torch.save(obj, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match=r"f\.pt'.*not an ood_helpers checkpoint.*retrain"):
        load_checkpoint(tmp_path / "f.pt", FORMAT)


def test_truncated_files(saved, tmp_path):
    raw = saved.read_bytes()
    for size in (1, 10, len(raw) // 3, len(raw) // 2, len(raw) - 30, len(raw) - 1):
        (tmp_path / "cut.pt").write_bytes(raw[:size])
        with pytest.raises(CheckpointError, match=r"cut\.pt'.*retrain"):
            load_checkpoint(tmp_path / "cut.pt", FORMAT)


def test_other_format(saved):
    with pytest.raises(CheckpointError, match=r"holds a 'test-detector' checkpoint, expected 'training-state'"):
        load_checkpoint(saved, "training-state")


calls = []


def _side_effect():
    calls.append("ran")
    return "pwned"


class Evil:
    def __reduce__(self):
        return _side_effect, ()


def test_pickled_code_is_refused_and_not_run(tmp_path):
    torch.save({"format": FORMAT, "version": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt' holds pickled Python code or classes.*"
                                              r"weights_only=True.*_side_effect"):
        load_checkpoint(tmp_path / "evil.pt", FORMAT)
    assert calls == []


def test_newer_version(tmp_path):
    payload = make_payload()
    torch.save({"ood_helpers_checkpoint": 3, "sha256": "0" * 64, "payload": payload}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match=r"new\.pt' was written by a newer ood_helpers \(format version 3, "
                                              r"this one reads 2\): upgrade ood_helpers or retrain"):
        load_checkpoint(tmp_path / "new.pt", FORMAT)


def test_version_one_files_must_be_retrained(tmp_path):
    torch.save(make_payload(), tmp_path / "old.pt")  # the version-1 layout: the bare payload, no hash
    with pytest.raises(CheckpointError, match=r"old\.pt' was written by an older ood_helpers \(format version 1.*"
                                              r"delete it and retrain"):
        load_checkpoint(tmp_path / "old.pt", FORMAT)


def test_require(saved):
    payload = load_checkpoint(saved, FORMAT, required=["config.in_channels", "weights"])
    assert require(payload, {"config": dict, "losses": list}, saved) is payload
    with pytest.raises(CheckpointError, match=r"det\.pt' lacks key 'calibration'"):
        require(payload, ["calibration"], saved)
    with pytest.raises(CheckpointError, match=r"lacks key 'config\.width'"):
        load_checkpoint(saved, FORMAT, required=["config.width"])
    with pytest.raises(CheckpointError, match=r"lacks key 'config\.seed\.x'"):
        require(payload, ["config.seed.x"], saved)
    with pytest.raises(CheckpointError, match=r"key 'losses' holds a list, expected dict or Tensor"):
        require(payload, {"losses": (dict, torch.Tensor)}, saved)
    with pytest.raises(CheckpointError, match=r"lacks key 'config\.x'"):
        require(payload["config"], ["x"], saved, where="config")


# -- flipped bits ------------------------------------------------------------------------------------
def test_flipped_bits_in_the_weights_are_caught(saved, tmp_path):
    raw = saved.read_bytes()
    start = raw.find(WEIGHTS.numpy().tobytes())
    assert start > 0
    for offset in (start, start + 1, start + 100, start + 3, start + 255):  # mantissa, exponent, sign bytes
        for bit in (0, 7):
            with pytest.raises(CheckpointError, match="content hash mismatch: the file is corrupted"):
                load_checkpoint(flipped(saved, tmp_path / "bad.pt", offset, bit), FORMAT)


def test_flipped_bits_in_the_metadata_are_caught(saved, tmp_path):
    raw = saved.read_bytes()
    offsets = [raw.find(text) + 3 for text in (b"marker-config-name", b"in_channels", b"losses", b"weight")]
    offsets.append(raw.find(b"sha256") + 12)  # inside the stored hash itself
    assert min(offsets) > 3
    for offset in offsets:
        with pytest.raises(CheckpointError):
            load_checkpoint(flipped(saved, tmp_path / "bad.pt", offset), FORMAT)


def test_random_flips_never_load_silently(saved, tmp_path):
    original, size = make_payload(), saved.stat().st_size
    rng = random.Random(1234)
    outcomes = {"refused": 0, "intact": 0}
    for _ in range(50):
        bad = flipped(saved, tmp_path / "bad.pt", rng.randrange(size), rng.randrange(8))
        try:
            loaded = load_checkpoint(bad, FORMAT)
        except CheckpointError as err:
            assert "bad.pt" in str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
        else:  # a flip in an unused part of the zip container
            assert same(loaded, original)
            outcomes["intact"] += 1
    assert outcomes["refused"] > 25


# -- temporaries, failed and concurrent writes -------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    aged = time.time() - 2 * files.STALE_AFTER_S
    dead, live = dead_pid(), os.getpid()
    names = {"dead": f".det.pt.{dead}.abc123.tmp", "live": f".det.pt.{live}.def456.tmp",
             "fresh_dead": f".det.pt.{dead}.ghi789.tmp", "legacy": ".det.pt.k3j4h5.tmp",
             "other_target": f".det.pt.bak.{dead}.xyz.tmp", "dead_dir": f".det.pt.{dead}.q1w2.old"}
    for key, name in names.items():
        target = tmp_path / name
        target.mkdir() if key == "dead_dir" else target.write_bytes(b"partial")
        if key != "fresh_dead":
            os.utime(target, (aged - 7200, aged - 7200) if key == "legacy" else (aged, aged))
    save_checkpoint(make_payload(), tmp_path / "det.pt")
    assert hidden(tmp_path) == sorted([names["live"], names["fresh_dead"], names["other_target"]])
    assert remove_stale_temporaries(tmp_path / "det.pt") == []


def partial_save_then(error):
    def fake_save(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise error
    return fake_save


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4096 vs 2048"),
    RuntimeError("[enforce fail at inline_container.cc:810] . PytorchStreamWriter failed writing file data/3: "
                 "file write failed"),
])
def test_full_disk_gives_a_clear_error_and_keeps_the_old_file(saved, monkeypatch, error):
    monkeypatch.setattr(checkpoints.torch, "save", partial_save_then(error))
    with pytest.raises(CheckpointWriteError, match=r"no space left on device.*free: \d+ MB.*"
                                                   r"free space or choose another folder") as info:
        save_checkpoint({"format": FORMAT, "config": {}}, saved)
    assert f"'{saved}'" in str(info.value)
    assert isinstance(info.value, CheckpointError) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert hidden(saved.parent) == []
    assert same(load_checkpoint(saved, FORMAT), make_payload())


def test_unwritable_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointWriteError, match=r"cannot write '.*afile/det\.pt'"):
        save_checkpoint(make_payload(), tmp_path / "afile" / "det.pt")


def test_interrupted_save_keeps_the_previous_file(saved, monkeypatch):
    monkeypatch.setattr(checkpoints.torch, "save", partial_save_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": FORMAT, "config": {}}, saved)
    monkeypatch.undo()
    assert hidden(saved.parent) == []
    assert same(load_checkpoint(saved, FORMAT), make_payload())


def test_concurrent_writers_and_readers_never_see_a_torn_file(tmp_path):
    path, errors, seen = tmp_path / "c.pt", [], set()

    def write(index):
        for _ in range(5):
            payload = {"format": FORMAT, "writer": index, "data": torch.full((2000,), float(index))}
            try:
                save_checkpoint(payload, path)
            except Exception as err:  # noqa: BLE001 - collected for the assertion
                errors.append(err)

    def read():
        for _ in range(20):
            if path.exists():
                try:
                    payload = load_checkpoint(path, FORMAT)
                    assert torch.all(payload["data"] == payload["writer"])
                    seen.add(payload["writer"])
                except Exception as err:  # noqa: BLE001
                    errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert load_checkpoint(path, FORMAT)["writer"] in range(4)
    assert hidden(tmp_path) == []


# -- output folders ----------------------------------------------------------------------------------
def test_atomic_output_dir_replaces_an_earlier_run(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "old.txt").write_text("run 1")
    with atomic_output_dir(out) as work:
        assert work.parent == tmp_path and work.name.startswith(f".results.{os.getpid()}.")
        (work / "new.txt").write_text("run 2")
        assert (out / "old.txt").exists()  # the earlier run stays in place until the end
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert hidden(tmp_path) == []


def test_atomic_output_dir_failure_leaves_the_earlier_run_untouched(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "old.txt").write_text("run 1")
    with pytest.raises(RuntimeError, match="training died"):
        with atomic_output_dir(out) as work:
            (work / "new.txt").write_text("half")
            raise RuntimeError("training died")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert (out / "old.txt").read_text() == "run 1"
    assert hidden(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(tmp_path / "fresh"):
            raise KeyboardInterrupt
    assert not (tmp_path / "fresh").exists() and hidden(tmp_path) == []


def test_check_output_dir(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b" / "out") == tmp_path / "a" / "b" / "out"
    assert (tmp_path / "a" / "b").is_dir() and hidden(tmp_path / "a" / "b") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=r"'.*file' exists and is a file; remove it or choose another"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(OutputPathError, match=r"cannot create the folder '.*file/sub'.*choose another output"):
        check_output_dir(tmp_path / "file" / "sub" / "out")
    assert issubclass(OutputPathError, InputError)


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EROFS, "Read-only file system")])
def test_check_output_dir_read_only(tmp_path, monkeypatch, error):
    # tests run as root, where permission bits do not stop writes: fail the probe instead
    real_open = os.open

    def refusing_open(name, *args, **kwargs):
        if Path(name).parent == tmp_path / "ro":
            raise error
        return real_open(name, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(OutputPathError, match=rf"cannot write in '.*ro' \({error.strerror}\), needed for "
                                              rf"'.*ro/out'.*choose another output folder"):
        check_output_dir(tmp_path / "ro" / "out")


# -- locks -------------------------------------------------------------------------------------------
HOLDER = r"""
import sys, time, types
from pathlib import Path
root, target, go, done = sys.argv[1:5]
# load ood_helpers.files without the package __init__, which imports the models
package = types.ModuleType("ood_helpers")
package.__path__ = [root]
sys.modules["ood_helpers"] = package
from ood_helpers.files import file_lock
with file_lock(target):
    print("locked", flush=True)
    while not Path(go).exists():
        time.sleep(0.02)
    time.sleep(0.5)
    Path(done).write_text("finished")
"""


def test_file_lock_between_processes(tmp_path):
    target, go, done = tmp_path / "cache" / "entry", tmp_path / "go", tmp_path / "done"
    root = Path(checkpoints.__file__).parent
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(target), str(go), str(done)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match=rf"entry\.lock' is held by another process \(pid {holder.pid}\)"):
            with file_lock(target, timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3
        go.touch()
        with file_lock(target) as lock:  # waits for the holder to finish
            assert done.read_text() == "finished"
            assert lock == tmp_path / "cache" / "entry.lock"
        with file_lock(target, timeout=0):  # free again
            pass
    finally:
        go.touch()
        assert holder.wait(timeout=60) == 0
