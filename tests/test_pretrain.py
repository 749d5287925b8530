"""Train once, load many (issue 14): ``pretrain --out DIR`` fills a folder that ``OOD_PRETRAINED_DIR=DIR``
reads without ever writing there; anything it cannot serve falls back to the per-user folder, saying why.
"""
from __future__ import annotations

import builtins
import dataclasses
import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from ood_helpers import OODData, OODDetector, artifacts, pretrain as pretrain_module
from ood_helpers.__main__ import main
from ood_helpers.pretrain import notebook_plan, plan, pretrain
from ood_helpers.variants import VARIANTS
from conftest import TINY, smooth_images, toy_data

TWO_EPOCHS = dataclasses.replace(TINY, ae_epochs=2, clf_epochs=2, checkpoint_every_epoch=True)
FILE = "quick/mnist-cifar10/detector_paper_seed0.pt"


_toy_data = toy_data


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """Fake data for every setting; a fresh per-user folder; no shared folder unless a test sets one."""
    monkeypatch.setattr(pretrain_module, "get_data", lambda setting, preset, seed, download=None: _toy_data(setting))
    monkeypatch.setenv("OOD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("OOD_PRETRAINED_DIR", raising=False)
    return tmp_path


def _snapshot(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size, p.stat().st_mode)
                  for p in [root, *root.rglob("*")])


def _make_read_only(root: Path):
    for path in [*root.rglob("*"), root]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)


@pytest.fixture
def no_writes_under(monkeypatch):
    """Fail on any write, create, rename or delete under the given folders (chmod is not enough
    when the tests run as root)."""
    guarded: list[Path] = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path) -> bool:
        if not guarded:
            return False
        try:
            resolved = Path(os.fsdecode(path)).resolve()
        except (TypeError, ValueError):
            return False
        return any(resolved == g or g in resolved.parents for g in guarded)

    def check(path, what):
        if inside(path):
            raise AssertionError(f"{what} under the shared folder: {path}")

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            check(file, f"open(mode={mode!r})")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags:
            check(path, "os.open for writing")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    for name in ("mkdir", "makedirs", "remove", "unlink", "rmdir", "rename", "replace", "utime", "chmod"):
        real = getattr(os, name)

        def wrapper(path, *args, _real=real, _name=name, **kwargs):
            check(path, f"os.{_name}")
            if _name in ("rename", "replace") and args:
                check(args[0], f"os.{_name} (target)")
            return _real(path, *args, **kwargs)
        monkeypatch.setattr(os, name, wrapper)
    return guarded


def _forbid_training(monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("a detector was trained although a matching one was available")
    monkeypatch.setattr(OODDetector, "_fit", fail)


# -- the shared folder --------------------------------------------------------------------------------
def test_pretrain_out_is_what_the_shared_folder_reads_read_only(toy, monkeypatch, capsys, no_writes_under):
    shared = toy / "pretrained"
    records = pretrain(shared, TINY, progress=False)
    assert [(r["setting"], r["variant"], r["action"]) for r in records] == [
        (s, v, "trained") for s in ("mnist-cifar10", "cifar10-mnist", "fmnist-mnist")
        for v in ("paper-no-aux", "paper", "paper-no-noise", "ours")] + [
        (s, v, "trained") for s in ("mnist-near", "cifar10-near") for v in ("paper", "ours", "ours-rotation")]
    assert not list(shared.rglob("train_state*")), "finished detectors keep no training state"
    _make_read_only(shared)
    before = _snapshot(shared)
    no_writes_under.append(shared.resolve())
    _forbid_training(monkeypatch)
    monkeypatch.setattr(artifacts, "file_lock", lambda path: pytest.fail(f"locked {path}"))
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(shared))
    capsys.readouterr()
    for setting, _, variant in notebook_plan():
        detector = artifacts.get_detector(setting, TINY, 0, variant=variant, data=_toy_data(setting), progress=False)
        assert detector.get_params() | VARIANTS[variant].flags == detector.get_params()
        assert detector.decision_function(_toy_data(setting).in_test).shape == (20,)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 18 and all(line.startswith("loaded $OOD_PRETRAINED_DIR/quick/") for line in out), out
    assert f"loaded $OOD_PRETRAINED_DIR/{FILE} (pretrained, read-only)" in out
    assert _snapshot(shared) == before
    assert not (toy / "artifacts").exists(), "nothing is written to the per-user folder either"


def _shared_with_one_detector(toy) -> Path:
    shared = toy / "pretrained"
    pretrain(shared, TINY, settings=["mnist-cifar10"], variants=["paper"], progress=False)
    return shared


def _other_preset(shared):
    other = OODDetector(1, dataclasses.replace(TINY, lr=5e-3), seed=0, latent_distance=False, latent_mahalanobis=False,
                        progress=False).fit(_toy_data().in_train)
    other.save(shared / FILE)
    return "its configuration differs in preset"


def _other_seed(shared):
    other = OODDetector(1, TINY, seed=1, latent_distance=False, latent_mahalanobis=False, progress=False)
    other.fit(_toy_data().in_train)
    other.save(shared / FILE)
    return "its configuration differs in seed"


def _other_data(shared):
    other = OODDetector(1, TINY, seed=0, latent_distance=False, latent_mahalanobis=False, progress=False)
    other.fit(_toy_data(seed=5).in_train).save(shared / FILE)
    return "trained on other images"


def _truncated(shared):
    path = shared / FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return f"$OOD_PRETRAINED_DIR/{FILE} is unusable ('detector_paper_seed0.pt' is not a readable checkpoint (truncated"


def _not_a_file(shared):
    (shared / FILE).unlink()
    (shared / FILE).mkdir()
    return "is not a file"


def _missing_file(shared):
    (shared / FILE).unlink()
    return f"$OOD_PRETRAINED_DIR/{FILE} is not there (make it with: python -m ood_helpers pretrain"


def _missing_folder(shared):
    shutil.rmtree(shared)
    return f"OOD_PRETRAINED_DIR='{shared}' does not exist"


@pytest.mark.parametrize("damage", [_missing_folder, _missing_file, _truncated, _not_a_file, _other_preset,
                                    _other_seed, _other_data])
def test_shared_folder_that_cannot_serve_falls_back_with_one_line(damage, toy, monkeypatch, capsys,
                                                                 no_writes_under):
    shared = _shared_with_one_detector(toy)
    expected = damage(shared)
    if shared.exists():
        _make_read_only(shared)
    before = _snapshot(shared) if shared.exists() else None
    no_writes_under.append(shared.resolve())
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(shared))
    capsys.readouterr()
    detector = artifacts.get_detector("mnist-cifar10", TINY, 0, data=_toy_data(), progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pretrained detector not used: ") and expected in out[0], out
    assert out[0].endswith(f"; using artifacts/{FILE}")
    assert out[1].startswith("trained in ") and out[1].endswith(f"saved artifacts/{FILE}")
    assert (toy / "artifacts" / FILE).is_file() and detector.seed == 0
    assert (_snapshot(shared) if shared.exists() else None) == before
    # the next kernel: the shared folder still cannot serve, the per-user copy is loaded
    artifacts.get_detector("mnist-cifar10", TINY, 0, data=_toy_data(), progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pretrained detector not used: ") and out[1] == f"loaded artifacts/{FILE}"


def test_other_preset_in_the_shared_folder_is_a_missing_file(toy, monkeypatch, capsys):
    shared = _shared_with_one_detector(toy)
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(shared))
    capsys.readouterr()
    artifacts.get_detector("mnist-cifar10", TINY, 1, data=_toy_data(), progress=False)
    assert "detector_paper_seed1.pt is not there" in capsys.readouterr().out.splitlines()[0]


# -- pretrain: resume, skip, validation ----------------------------------------------------------------
class Interrupt(Exception):
    pass


def test_pretrain_skips_present_detectors_and_resumes_an_interrupted_one(toy, monkeypatch, capsys):
    out = toy / "pretrained"
    original_fit = OODDetector.fit

    def interrupt_no_aux(self, images, y=None, work_dir=None, on_epoch_end=None):
        def stop(epoch, loss):
            raise Interrupt
        return original_fit(self, images, y, work_dir=work_dir, on_epoch_end=None if self.latent_input else stop)

    monkeypatch.setattr(OODDetector, "fit", interrupt_no_aux)
    with pytest.raises(Interrupt):
        pretrain(out, TWO_EPOCHS, settings=["mnist-cifar10"], variants=["paper", "paper-no-aux"], progress=False)
    monkeypatch.setattr(OODDetector, "fit", original_fit)
    assert (out / FILE).is_file()
    interrupted = out / "quick/mnist-cifar10/detector_paper-no-aux_seed0.pt"
    assert not interrupted.exists()
    states = interrupted.parent / "train_state"
    # paper-no-aux shares paper's autoencoder (its finished state), so it was stopped in its classifier
    assert len(list(states.glob("autoencoder_state_*.pt"))) == 1
    assert len(list(states.glob("classifier_state_*.pt"))) == 1

    records = pretrain(out, TWO_EPOCHS, settings=["mnist-cifar10"], variants=["paper", "paper-no-aux"], progress=False)
    assert [r["action"] for r in records] == ["present", "trained"]
    resumed = OODDetector.load(interrupted)
    assert resumed.history_["epoch_seconds"]["autoencoder"] == [], "the autoencoder came from paper's finished state"
    assert len(resumed.history_["epoch_seconds"]["classifier"]) == TWO_EPOCHS.clf_epochs - 1, \
        "classifier epoch 1 came from the saved state"
    assert not states.exists()
    printed = capsys.readouterr().out
    assert f"[1/2] {FILE}: present and matching, skipped" in printed
    assert "[2/2] quick/mnist-cifar10/detector_paper-no-aux_seed0.pt: trained in" in printed

    _forbid_training(monkeypatch)
    files = lambda: sorted((str(p), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file())  # noqa: E731
    before = files()
    records = pretrain(out, TWO_EPOCHS, settings=["mnist-cifar10"], variants=["paper", "paper-no-aux"], progress=False)
    assert [r["action"] for r in records] == ["present", "present"] and files() == before


def test_pretrain_retrains_a_damaged_file_in_its_folder(toy, capsys):
    out = _shared_with_one_detector(toy)
    (out / FILE).write_bytes(b"not a checkpoint")
    records = pretrain(out, TINY, settings=["mnist-cifar10"], variants=["paper"], progress=False)
    assert records[0]["action"] == "retrained" and OODDetector.load(out / FILE).seed == 0


@pytest.mark.parametrize("make_bad", ["file", "under-a-file"])
def test_pretrain_validates_out_before_loading_or_training(make_bad, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrain_module, "get_data", lambda *a, **k: pytest.fail("data loaded before --out was checked"))
    _forbid_training(monkeypatch)
    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" if make_bad == "file" else tmp_path / "taken" / "pretrained"
    assert main(["pretrain", "--preset", "quick", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: ") and str(tmp_path / "taken") in err and len(err.strip().splitlines()) == 1


def test_plan_is_what_the_notebooks_use_and_names_bad_choices():
    assert plan() == [(s, 0, v) for s in ("mnist-cifar10", "cifar10-mnist", "fmnist-mnist")
                      for v in ("paper-no-aux", "paper", "paper-no-noise", "ours")]
    assert notebook_plan() == plan() + [(s, 0, v) for s in ("mnist-near", "cifar10-near") for v in ("paper", "ours", "ours-rotation")]
    with pytest.raises(Exception, match="variants"):
        plan(variants=["half"])
    with pytest.raises(Exception, match="variants"):
        plan(variants=["full"])        # the old name of ours
    with pytest.raises(Exception, match="seeds"):
        plan(seeds=[-1])
    with pytest.raises(Exception, match="settings"):
        plan(settings=[])


def test_cli_pretrain_then_shared_load(toy, monkeypatch, capsys):
    out = toy / "made-by-cli"
    monkeypatch.setattr(pretrain_module, "get_preset", lambda name: TINY)
    assert main(["pretrain", "--preset", "quick", "--out", str(out), "--settings", "cifar10-mnist",
                 "--variants", "paper-no-noise", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] quick/cifar10-mnist/detector_paper-no-noise_seed0.pt: trained in" in printed
    assert f"export OOD_PRETRAINED_DIR='{out.resolve()}'" in printed
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(out))
    _forbid_training(monkeypatch)
    artifacts.get_detector("cifar10-mnist", TINY, 0, variant="paper-no-noise", data=_toy_data("cifar10-mnist"),
                           progress=False)
    assert capsys.readouterr().out.startswith("loaded $OOD_PRETRAINED_DIR/quick/cifar10-mnist/detector_paper-no-noise_seed0.pt")
