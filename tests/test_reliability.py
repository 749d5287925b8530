"""Issue 22: degenerate data, ordinary numbers, concurrency and files never give a silent wrong result.

One test per kind of failure the issue reports; each compares two paths in the same process (no
stored numbers), on tiny synthetic images and the tiny preset of ``conftest``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, smooth_images, toy_data

from ood_helpers import OODDetector, get_preset
from ood_helpers.baselines import MeanIntensityDetector
from ood_helpers.checkpoints import CheckpointError, CheckpointWriteError
from ood_helpers.validation import InputError

pytestmark = pytest.mark.usefixtures("single_thread")

IMAGES = smooth_images(96, 1, seed=0) * 0.5
TEST = smooth_images(24, 1, seed=1) * 0.5


def tiny(**params) -> OODDetector:
    return OODDetector(**{"in_channels": 1, "preset": TINY, "seed": 0, "progress": False, "device": "cpu",
                          **params})


@pytest.fixture(scope="module")
def fitted():
    return tiny().fit(IMAGES)


# 1 ------------------------------------------------------------------------------------------------
def test_degenerate_training_data():
    from ood_helpers.api import DegenerateDataWarning

    repeated = IMAGES[:1].repeat(200, 1, 1, 1)
    for detector in (tiny(), MeanIntensityDetector(in_channels=1)):
        with pytest.raises(InputError, match=r"images: expected varied .* 200 copies of one image.*Fix"):
            detector.fit(repeated)
        assert not hasattr(detector, "threshold_")
    few = IMAGES[:5].repeat(8, 1, 1, 1)   # five images repeated: 5 distinct among 40
    with pytest.warns(DegenerateDataWarning, match="only 5 distinct images among 40"):
        MeanIntensityDetector(in_channels=1).fit(few)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        MeanIntensityDetector(in_channels=1).fit(IMAGES)   # varied images: no warning


# 2 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{"batch_size": 1}, {"train_limit": 3}], ids=["batch_size=1", "train_limit=3"])
def test_budget_that_trains_nothing(overrides):
    detector = tiny(preset=get_preset(TINY, **overrides))
    with pytest.raises(InputError, match=r"nothing would be trained: \d+ training item\(s\) in batches of "
                                         r"batch_size=\d+ give no mini-batch of at least 2.*Fix: batch_size >= 2"):
        detector.fit(IMAGES)
    assert not hasattr(detector, "threshold_") and not hasattr(detector, "history_")


# 3 ------------------------------------------------------------------------------------------------
def test_same_seed_same_scores_under_concurrency():
    sequential = tiny().fit(IMAGES).decision_function(TEST)

    def fit_and_score(_):
        return tiny().fit(IMAGES).decision_function(TEST)

    for _ in range(2):
        with ThreadPoolExecutor(2) as pool:
            for scores in pool.map(fit_and_score, range(2)):
                assert np.array_equal(scores, sequential)


# 4 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fitted_with", [False, True], ids=["distance-off-then-on", "distance-on-then-off"])
def test_parameters_changed_after_fit(fitted_with, tmp_path):
    detector = tiny(latent_distance=fitted_with).fit(IMAGES)
    scores, flags, threshold = detector.decision_function(TEST), detector.predict(1 - TEST), detector.threshold_
    detector.set_params(latent_distance=not fitted_with, seed=5, threshold_quantile=0.5)
    assert np.array_equal(detector.decision_function(TEST), scores)     # used from the next fit on only
    assert np.array_equal(detector.predict(1 - TEST), flags) and detector.threshold_ == threshold
    assert set(detector.score_components(TEST[:4])) >= ({"latent"} if fitted_with else {"classifier"})
    loaded = OODDetector.load(detector.save(tmp_path / "det.pt"), device="cpu")
    assert loaded.latent_distance is fitted_with and loaded.seed == 0
    assert np.array_equal(loaded.decision_function(TEST), scores)
    detector.fit(IMAGES)                                                 # now they take effect
    assert detector.params_["latent_distance"] is (not fitted_with) and detector.params_["seed"] == 5
    assert (detector.latent_bank_ is None) is fitted_with
    assert not np.array_equal(detector.decision_function(TEST), scores)


# 5 ------------------------------------------------------------------------------------------------
def test_ordinary_numbers_and_global_state(fitted, tmp_path):
    expected = fitted.decision_function(TEST)
    assert np.array_equal(tiny(seed=np.arange(3)[0]).fit(IMAGES).decision_function(TEST), expected)
    assert np.array_equal(MeanIntensityDetector(in_channels=1, seed=np.int64(3)).fit(IMAGES).threshold_,
                          MeanIntensityDetector(in_channels=1, seed=3).fit(IMAGES).threshold_)
    for seed in (2**64, 2**32, -1):
        with pytest.raises(InputError, match=r"seed: expected an integer in \[0, 2\*\*32 - 1\].*Fix: seed="):
            tiny(seed=seed).fit(IMAGES)
    # big-endian arrays (e.g. read from FITS or network byte order) are converted, not refused
    big_endian = TEST.numpy().astype(">f4")
    assert np.array_equal(fitted.decision_function(big_endian), expected)
    # a session that made float64 the default still fits and loads float32 networks
    path = fitted.save(tmp_path / "det.pt")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        refit = tiny().fit(IMAGES).decision_function(TEST)
        loaded = OODDetector.load(path, device="cpu").decision_function(TEST)
        assert torch.get_default_dtype() == torch.float64   # the session's choice is left alone
    finally:
        torch.set_default_dtype(previous)
    assert np.array_equal(refit, expected) and np.array_equal(loaded, expected)


# 6 ------------------------------------------------------------------------------------------------
def test_paths_and_folders(fitted, tmp_path, monkeypatch):
    from ood_helpers import artifacts, data, pretrain
    from ood_helpers.files import OutputPathError

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    expected = fitted.decision_function(TEST)
    # ~ is the user's home, for save, load and every folder variable
    fitted.save("~/models/det.pt")
    assert (home / "models" / "det.pt").is_file() and not (tmp_path / "~").exists()
    assert np.array_equal(OODDetector.load("~/models/det.pt").decision_function(TEST), expected)
    monkeypatch.setenv("OOD_DATA_DIR", "~/data")
    monkeypatch.setenv("OOD_ARTIFACTS", "~/artifacts")
    monkeypatch.setenv("OOD_PRETRAINED_DIR", "~/pretrained")
    assert data.data_root() == home / "data"
    assert artifacts.artifact_dir() == home / "artifacts" and artifacts.pretrained_dir() == home / "pretrained"
    # saving onto a symlink replaces the file it points to and keeps the link
    target, link = tmp_path / "real.pt", tmp_path / "link.pt"
    other = tiny(seed=1).fit(IMAGES)
    other.save(target)
    link.symlink_to(target)
    fitted.save(link)
    assert link.is_symlink() and np.array_equal(OODDetector.load(target).decision_function(TEST), expected)
    # a read-only file is refused, not overwritten
    target.chmod(0o444)
    before = target.read_bytes()
    with pytest.raises(CheckpointWriteError, match=r"read-only, so it was not overwritten.*chmod u\+w"):
        other.save(target)
    assert target.read_bytes() == before
    # an artifacts folder that cannot be written names the variable and the fix
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("OOD_ARTIFACTS", str(blocker / "artifacts"))
    monkeypatch.delenv("OOD_PRETRAINED_DIR")
    with pytest.raises(OutputPathError, match=r"OOD_ARTIFACTS=.*cannot be written.*Fix: export OOD_ARTIFACTS="):
        artifacts.get_detector("mnist-cifar10", TINY, data=toy_data("mnist-cifar10"), verbose=False, progress=False)
    # pretrain leaves detectors, not lock files, in the shared folder
    monkeypatch.setattr(pretrain, "get_data", lambda setting, *args, **kwargs: toy_data(setting))
    out = tmp_path / "shared"
    records = pretrain.pretrain(out, TINY, settings=["mnist-cifar10"], variants=["paper"], progress=False)
    assert [r["action"] for r in records] == ["trained"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["detector_paper_seed0.pt"]


# 7 ------------------------------------------------------------------------------------------------
def test_inputs_the_ecosystem_hands_over(fitted, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from ood_helpers.teaching.widgets import explorer_state

    labels = torch.zeros(len(IMAGES), dtype=torch.long)
    loader = DataLoader(TensorDataset(IMAGES, labels), batch_size=10)
    baseline = MeanIntensityDetector(in_channels=1)
    assert np.array_equal(baseline.fit(loader).decision_function(TEST), baseline.fit(IMAGES).decision_function(TEST))
    test_loader = DataLoader(TEST, batch_size=8)    # bare image batches, scored loader batch by batch
    assert np.array_equal(fitted.decision_function(test_loader, batch_size=4),
                          fitted.decision_function(TEST, batch_size=4))
    with pytest.raises(InputError, match=r"images: expected height and width 32x32.*In DataLoader batch 0"):
        fitted.decision_function(DataLoader(torch.rand(4, 1, 28, 28), batch_size=2))
    # the noise explorer takes every detector of the interface
    state = explorer_state(baseline, TEST[0], "gaussian", 0.0)
    assert state["score"] == state["clean_score"] == float(baseline.decision_function(TEST[:1])[0])
    assert state["reconstruction"] is None
    import matplotlib.pyplot as plt

    from ood_helpers.teaching.widgets import draw_explorer
    figure = draw_explorer(state, baseline.decision_function(TEST), baseline.decision_function(1 - TEST))
    assert len(figure.axes) == 3   # clean, noisy, histograms: no reconstruction panels to draw
    plt.close(figure)
    # a GPU this machine lacks is the caller's argument, not a broken file
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"device: 'cuda' asks for an NVIDIA GPU.*Fix: device='cpu'"):
            tiny(device="cuda").fit(IMAGES)
        path = fitted.save(tmp_path / "det.pt")
        with pytest.raises(InputError, match=r"device: 'cuda'") as caught:
            OODDetector.load(path, device="cuda")
        assert not isinstance(caught.value, CheckpointError)


# 8 ------------------------------------------------------------------------------------------------
def test_portability_without_fcntl(tmp_path):
    code = ("import sys, warnings; sys.modules['fcntl'] = None; warnings.simplefilter('ignore')\n"
            "import ood_helpers, ood_helpers.artifacts, ood_helpers.pretrain, ood_helpers.files as files\n"
            f"with files.file_lock({str(tmp_path / 'entry')!r}, timeout=5): print('locked')\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root)}, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "locked"


# 9 ------------------------------------------------------------------------------------------------
def test_output_a_log_can_hold(capsys):
    tiny(progress=True).fit(IMAGES)
    err = capsys.readouterr().err
    assert "\r" not in err                                   # no redrawn progress bars in a log
    lines = err.strip().splitlines()
    assert len(lines) == TINY.ae_epochs + TINY.clf_epochs, err
    assert all(" epoch 1/1: loss " in line for line in lines)
    usage = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()  # the CLI guide (was the README)
    assert "--no-progress" in usage
