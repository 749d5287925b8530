"""Evaluation on tiny synthetic settings: the comparison (files, keys, noisy groups, skips, errors),
noise robustness, and output folders that are checked before training and written together."""
from __future__ import annotations

import json
import sys

import pytest
import torch

import ood_helpers.evaluation.compare as compare
from ood_helpers.__main__ import main
from ood_helpers.data import OODData
from ood_helpers.evaluation import noise_robustness, robustness_table
from conftest import smooth_images
from ood_helpers import InputError, OODData
from ood_helpers.baselines import PYOD_MISSING

from test_baselines import blobs


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch):
    """Replace the real data with synthetic blobs (in) and their inversions (out); count loads."""
    calls = []

    def fake_load_setting(setting, train_limit=None, seed=0, **_):
        calls.append((setting, train_limit, seed))
        channels = 3 if setting.startswith("cifar10") else 1
        return OODData(setting, "blobs", "inverted blobs", channels, blobs(120, channels, seed),
                       blobs(60, channels, 100), 1.0 - blobs(60, channels, 101))

    monkeypatch.setattr(compare, "load_setting", fake_load_setting)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(threads)


def test_writes_results_with_expected_keys(tmp_path, tiny_data):
    results = compare.run_comparison("mnist-cifar10", preset="quick", seeds=(0, 1), out_dir=tmp_path,
                                     detectors=["mean-intensity", "PCA reconstruction"], progress=False)
    assert tiny_data == [("mnist-cifar10", 4000, 0), ("mnist-cifar10", 4000, 1)]
    for name in ("results.json", "results.md", "roc.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["setting"] == "mnist-cifar10" and saved["preset"] == "quick" and saved["seeds"] == [0, 1]
    assert saved["detectors"] == ["mean-intensity", "pca"]
    assert saved["paper_reported"]["paper's method (Fig. 2, our reimplementation)"] == 0.9718
    group, *far = saved["groups"]
    assert group["name"] == "clean" and group["kind"] == "clean" and group["out_set"] == "inverted blobs"
    assert [g["name"] for g in far] == ["far-OOD: uniform noise", "far-OOD: gaussian noise", "far-OOD: constant colour",
                                        "far-OOD: rademacher noise"]
    assert [g["kind"] for g in far] == ["far-OOD"] * 4 and saved["far_ood_sets"] == [g["out_set"] for g in far]
    # the sets whose kind a training family shares say so; rademacher noise is the held-out one
    assert [g["related_family"] for g in far] == ["pixel_shuffle", "pixel_shuffle", "flat", None]
    assert all(g["in_images"] == g["out_images"] == 60 for g in far)   # as many far-OOD images as in-distribution
    rows = {row["key"]: row for row in group["rows"]}
    assert set(rows) == {"mean-intensity", "pca"}
    for row in rows.values():
        assert {"detector", "auroc_mean", "auroc_std", "auroc_per_seed", "aupr_mean", "fpr95_mean",
                "train_seconds", "score_seconds", "paper_reported"} <= set(row)
        assert len(row["auroc_per_seed"]) == 2 and row["auroc_mean"] > 0.9 and row["auroc_std"] >= 0
        assert row["paper_reported"] is None
    markdown = (tmp_path / "results.md").read_text()
    assert saved["command"] in markdown
    assert "python -m ood_helpers compare --setting mnist-cifar10 --preset quick --seeds 0 1" in saved["command"]
    assert "paper (reported)" in markdown and "roc.png" in markdown
    assert "far-OOD sanity set: clean in-distribution test images against uniform noise" in markdown
    assert "rademacher noise (synthetic, never seen in training; no outlier family of its kind" in markdown
    # the paper's number belongs to the paper's pair only, never to a far-OOD group
    assert all(row["paper_reported"] is None for g in far for row in g["rows"])
    table = compare.format_table(results)
    assert "| mean intensity |" in table and "± " in table


def test_paper_and_ours_are_separate_labelled_rows_and_autoencoder_difference(tiny_data):
    results = compare.run_comparison("cifar10-mnist", preset="quick", seeds=[0], progress=False,
                                     detectors=["ours", "paper", "ae-difference"])
    rows = {row["key"]: row for row in results["groups"][0]["rows"]}
    assert list(rows) == ["paper", "ours", "ae-difference"]
    assert [g["kind"] for g in results["groups"]] == ["clean"] + ["far-OOD"] * 4
    assert rows["paper"]["detector"] == "paper's method (Fig. 2, our reimplementation)"
    assert rows["ours"]["detector"] == "ours: the paper's method + two latent distances"
    # the paper's number belongs to its method; it has none for our addition
    assert rows["paper"]["paper_reported"] == 0.5908 and rows["ours"]["paper_reported"] is None
    assert rows["ae-difference"]["train_seconds"] == rows["paper"]["train_seconds"]   # no extra training
    assert rows["paper"]["auroc_std"] is None                                        # one seed: no spread
    assert "files" not in results
    assert r"autoencoder difference (mean \|I - D(E(I))\|)" in compare.format_table(results)   # pipes escaped
    for old in ("ours-no-latent", "ours-no-noise"):                                   # the ablation is its own command
        with pytest.raises(InputError, match="detectors"):
            compare.resolve_detectors([old])


def test_noisy_setting_has_one_group_per_level(tmp_path, tiny_data):
    results = compare.run_comparison("mnist-cifar10+noise", preset="quick", seeds=[0], out_dir=tmp_path,
                                     detectors=["mean-intensity"], progress=False)
    assert tiny_data == [("mnist-cifar10", 4000, 0)]
    assert [g["noise_level"] for g in results["groups"]] == [0.0, 0.05, 0.1, 0.2]   # no far-OOD groups here
    assert [g["kind"] for g in results["groups"]] == ["clean", "noisy", "noisy", "noisy"]
    assert all(len(g["rows"]) == 1 for g in results["groups"])
    assert results["groups"][0]["rows"][0]["paper_reported"] is None   # mean intensity is not in the paper
    table = compare.format_table(results)
    assert table.count("### ") == 4 and "Gaussian noise (std 0.2)" in table


def test_far_ood_groups_score_the_same_images_for_every_detector_and_seed(tiny_data):
    results = compare.run_comparison("mnist-cifar10", preset="quick", seeds=[0, 1], progress=False,
                                     detectors=["mean-intensity"])
    by_name = {g["name"]: g["rows"][0] for g in results["groups"]}
    # mean intensity on dark blobs: uniform noise (mean 0.5) is brighter than every blob image
    assert by_name["far-OOD: uniform noise"]["auroc_mean"] > 0.99
    # the far-OOD sets do not depend on the seed: a deterministic detector gives equal AUROCs
    assert len(set(by_name["far-OOD: gaussian noise"]["auroc_per_seed"])) == 1


def test_pyod_peers_skipped_with_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyod", None)
    results = compare.run_comparison("mnist-cifar10", seeds=[0], out_dir=tmp_path, progress=False,
                                     detectors=["mean-intensity", "pyod-vae", "pyod-deepsvdd"])
    assert results["skipped"]["pyod-vae"]["reason"] == PYOD_MISSING
    assert set(results["skipped"]) == {"pyod-vae", "pyod-deepsvdd"}
    assert [row["key"] for row in results["groups"][0]["rows"]] == ["mean-intensity"]
    assert "PyOD is not installed: pip install .[peers]" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("kwargs, match", [
    (dict(setting="mnist-svhn"), "setting"),
    (dict(setting="mnist-cifar10", preset="huge"), "preset"),
    (dict(setting="mnist-cifar10", seeds=[]), "seeds"),
    (dict(setting="mnist-cifar10", seeds=[0, 0]), "seeds"),
    (dict(setting="mnist-cifar10", detectors=["nope"]), "detectors"),
])
def test_bad_arguments_raise_input_error(kwargs, match, tiny_data):
    with pytest.raises(InputError, match=match):
        compare.run_comparison(progress=False, **kwargs)
    assert tiny_data == []   # rejected before any data is loaded


def test_cli_compare(tmp_path, capsys):
    assert main(["compare", "--setting", "mnist-near", "--seeds", "0", "--out", str(tmp_path),
                 "--preset", "quick", "--detectors", "mean-intensity", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| mean intensity |" in out and (tmp_path / "results.md").is_file()


def test_preset_none_follows_ood_preset(monkeypatch):
    monkeypatch.setenv("OOD_PRESET", "quick")
    results = compare.run_comparison("mnist-near", preset=None, detectors=["mean-intensity"], progress=False)
    assert results["preset"] == "quick" and "--preset quick" in results["command"]
    assert "--out" not in results["command"]


def test_noise_robustness_rows(fitted_detector):
    data = OODData("toy", "dark blobs", "bright blobs", 1, smooth_images(40, 1) * 0.5,
                   smooth_images(40, 1, seed=1) * 0.5, 0.5 + smooth_images(40, 1, seed=2) * 0.5)
    rows = noise_robustness(fitted_detector, data, families=("gaussian", "blur"), levels=(0.0, 0.1))
    assert [(r["family"], r["level"]) for r in rows] == [("gaussian", 0.0), ("gaussian", 0.1), ("blur", 0.0), ("blur", 0.1)]
    clean = rows[0]
    # at level 0 nothing changes: 5% of clean in images lie above their own 95% threshold
    assert clean["fpr_noisy_in"] == pytest.approx(0.05, abs=0.03)
    assert clean["auroc_vs_ood"] == pytest.approx(clean["auroc_noisy_ood"])
    for row in rows:
        assert 0 <= row["auroc_vs_ood"] <= 1 and 0 <= row["fpr_noisy_in"] <= 1
    assert robustness_table(rows).count("\n") == len(rows) + 2


# -- output folders: checked before any training, written together (issue 12, item 6) --------------
@pytest.mark.parametrize("command", ["reproduce", "compare", "robustness"])
def test_output_that_is_a_file_fails_before_training(command, tmp_path, capsys, monkeypatch, tiny_data):
    trained = []
    monkeypatch.setattr(compare, "build_detector", lambda *a, **k: trained.append(1))
    monkeypatch.setattr(compare, "get_detector", lambda *a, **k: trained.append(1))
    target = tmp_path / "results.txt"
    target.write_text("an earlier file")
    argv = [command, "--setting", "mnist-cifar10", "--preset", "quick", "--out", str(target), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results.txt" in err and "Traceback" not in err
    assert trained == [] and tiny_data == []   # nothing was loaded or trained
    assert target.read_text() == "an earlier file"


def test_unwritable_output_fails_before_training(tmp_path, capsys, monkeypatch, tiny_data):
    import ood_helpers.files as files

    def refuse(folder, what):
        raise files.OutputPathError(f"cannot write in '{folder}' (Read-only file system), needed for '{what}'")
    monkeypatch.setattr(files, "_probe_writable", refuse)
    assert main(["reproduce", "--setting", "mnist-cifar10", "--preset", "quick", "--out",
                 str(tmp_path / "run"), "--no-progress"]) == 2
    assert "Read-only" in capsys.readouterr().err and tiny_data == []


def test_a_failed_comparison_leaves_the_earlier_results_whole(tmp_path, tiny_data, monkeypatch):
    compare.run_comparison("mnist-cifar10", preset="quick", seeds=[0], out_dir=tmp_path / "out",
                           detectors=["mean-intensity"], progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk went away while drawing")
    monkeypatch.setattr(compare, "_write_comparison_files", broken)
    with pytest.raises(RuntimeError, match="disk went away"):
        compare.run_comparison("mnist-cifar10", preset="quick", seeds=[1], out_dir=tmp_path / "out",
                               detectors=["mean-intensity"], progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a temporary folder was left behind"


def test_recorded_command_names_the_data_folder_relative_to_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path.parent / "shared" / "data"))
    command = compare.command_line("mnist-cifar10", "quick", [0], "results/x")
    assert command.startswith("OOD_DATA_DIR=../shared/data python -m ood_helpers compare") and str(tmp_path) not in command


def test_committed_results_carry_no_machine_paths():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "results"
    for path in root.glob("*/results.*"):
        assert not re.search(r"=/(?:tmp|work|root|home)/", path.read_text()), path


def test_against_clean_reports_auroc_and_flagged_share_and_names_bad_arguments():
    from conftest import smooth_images

    from ood_helpers.baselines import MeanIntensityDetector
    from ood_helpers.evaluation.far_ood import far_ood_suite

    train = smooth_images(40, 1, seed=0) * 0.4
    detector = MeanIntensityDetector().fit(train)
    results = compare.against_clean(detector, smooth_images(30, 1, seed=1) * 0.4, far_ood_suite(1, n=30))
    assert set(results) == {"uniform noise", "gaussian noise", "constant colour", "rademacher noise"}
    assert results["uniform noise"]["auroc"] > 0.99 and results["uniform noise"]["flagged"] == 1.0
    with pytest.raises(InputError, match="test_sets: expected a non-empty dict"):
        compare.against_clean(detector, train, {})
    with pytest.raises(InputError, match="detector: expected a detector"):
        compare.against_clean(object(), train, {"x": train})
