"""The command line: clear errors for bad names, and the integration run on the real data."""
import json

import pytest

from ood_helpers.__main__ import main


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--setting", "mnist-svhn", "--preset", "quick"], "invalid choice"),
    (["reproduce", "--setting", "mnist-cifar10", "--preset", "huge"], "invalid choice"),
])
def test_unknown_setting_or_preset_exits_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_one_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OOD_DATA_DIR", str(tmp_path / "empty"))
    assert main(["reproduce", "--setting", "mnist-cifar10", "--preset", "quick", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST was not found") and "Traceback" not in err


@pytest.mark.parametrize("command", [
    ["reproduce", "--setting", "fmnist-mnist", "--preset", "quick"],
    ["compare", "--setting", "mnist-fmnist", "--preset", "quick"],
    ["ablation", "--settings", "fmnist-mnist", "mnist-fmnist", "--preset", "quick", "--seeds", "0"],
    ["pretrain", "--settings", "fmnist-mnist", "--variants", "paper", "--preset", "quick", "--out", "OUT"],
])
def test_fashion_pair_everywhere_and_a_missing_folder_is_one_line(command, monkeypatch, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "MNIST" / "raw").mkdir(parents=True)      # MNIST's folder there, Fashion-MNIST's not
    monkeypatch.setenv("OOD_DATA_DIR", str(data))
    monkeypatch.setenv("OOD_DOWNLOAD", "0")
    argv = [str(tmp_path / "out") if part == "OUT" else part for part in command]
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "was not found" in err and "OOD_DATA_DIR" in err
    assert sorted(p.name for p in data.rglob("*")) == ["MNIST", "raw"], "the data folder was written into"


@pytest.mark.data
@pytest.mark.slow
def test_reproduce_quick_mnist_in_cifar10_out(data_root, monkeypatch, tmp_path, capsys):
    """Integration on the real offline data: the quick preset must reach AUROC >= 0.95."""
    monkeypatch.setenv("OOD_DATA_DIR", str(data_root))
    out = tmp_path / "run"
    assert main(["reproduce", "--setting", "mnist-cifar10", "--preset", "quick", "--seed", "0",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    for key in ("setting", "preset", "seed", "auroc", "aupr", "fpr95", "train_seconds"):
        assert key in results
    assert results["setting"] == "mnist-cifar10" and results["preset"] == "quick"
    assert results["auroc"] >= 0.95, results
    assert (out / "roc.png").stat().st_size > 1000 and (out / "detector.pt").exists()
    assert results["variant"] == "paper" and results["paper_reported_auroc"] == 0.9718   # the paper's method by default
    assert "| paper's method (Fig. 2, our reimplementation), measured |" in capsys.readouterr().out
