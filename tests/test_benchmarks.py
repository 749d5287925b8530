"""The benchmark scripts, shrunk to seconds: they run end to end and report what they measured."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_paper_preset_benchmark_fits_its_budget_and_reports_each_run(data_root, tmp_path):
    out = tmp_path / "paper"
    command = [sys.executable, str(ROOT / "benchmarks" / "paper_preset.py"), "--setting", "mnist-cifar10",
               "--budget-seconds", "12", "--train-limit", "200", "--width", "4", "--timing-images", "100",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OOD_DATA_DIR": str(data_root)})
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    probe = results["runs"][0]
    assert (probe["ae_epochs"], probe["clf_epochs"]) == (1, 1)
    assert results["preset"]["lr"] == 1e-4 and results["preset"]["batch_size"] == 32  # the paper's settings
    assert results["shrunk"] == "train_limit = 200, width = 4"
    for run in results["runs"]:
        assert len(run["epoch_seconds"]["autoencoder"]) == run["ae_epochs"]
        assert 0.0 <= run["auroc"] <= 1.0
    if len(results["runs"]) == 2:
        main = results["runs"][1]
        assert 2 <= main["ae_epochs"] <= 100
    table = (out / "results.md").read_text()
    assert "Smoke test, not the paper preset" in table and "| probe | 1 + 1 |" in table


def _classroom_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("classroom_benchmark", ROOT / "benchmarks" / "classroom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classroom_benchmark_reads_a_saved_pretrain_output():
    classroom = _classroom_module()
    stdout = ("pretrain: 2 detector(s), preset classroom, into '/srv/x'\n"
              "[1/2] classroom/mnist-cifar10/detector_paper-no-aux_seed0.pt: trained in 151 s\n"
              "[2/2] classroom/mnist-cifar10/detector_paper_seed0.pt: present and matching, skipped\n"
              "pretrain: done in 160 s (1 trained, 1 already present). Students read them with: ...\n")
    parsed = classroom.parse_pretrain(stdout, "classroom")
    assert parsed["wall_seconds"] == 160.0
    assert parsed["detectors"] == [
        {"file": "classroom/mnist-cifar10/detector_paper-no-aux_seed0.pt", "action": "trained", "seconds": 151},
        {"file": "classroom/mnist-cifar10/detector_paper_seed0.pt", "action": "present", "seconds": 0}]
    assert classroom.parse_pretrain(stdout, "classroom", wall_seconds=170.5)["wall_seconds"] == 170.5
    import pytest
    with pytest.raises(SystemExit, match="no detector lines"):
        classroom.parse_pretrain("pretrain: done in 3 s\n", "classroom")


def test_scoring_cost_benchmark_times_each_variant_and_counts_a_shared_autoencoder_once(monkeypatch, tmp_path):
    import importlib.util

    from conftest import TINY, toy_data
    from ood_helpers import artifacts

    spec = importlib.util.spec_from_file_location("scoring_cost", ROOT / "benchmarks" / "scoring_cost.py")
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    monkeypatch.setenv("OOD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("OOD_PRETRAINED_DIR", raising=False)
    monkeypatch.setattr(artifacts, "get_data", lambda setting, preset=None, seed=0, download=None: toy_data(setting))
    real = artifacts.get_detector
    monkeypatch.setattr(artifacts, "get_detector", lambda setting, preset, seed, **kw: real(setting, TINY, seed, **kw))
    results = cost.measure("quick", ("mnist-near",), repeats=2)
    rows = {row["variant"]: row for row in results["rows"]}
    assert list(rows) == ["paper", "ours", "ours-rotation"]
    assert [rows[v]["autoencoder_shared"] for v in rows] == [False, True, True]   # one autoencoder, trained once
    assert rows["ours-rotation"]["train_seconds"]["rotation"] > 0 and "rotation" not in rows["ours"]["train_seconds"]
    assert rows["ours"]["throughput_vs_ours"] == 1.0 and all(len(r["rounds"]) == 2 for r in rows.values())
    assert "| mnist-near | ours + rotation score (semantic) |" in cost.markdown(results, "python benchmarks/scoring_cost.py")


def test_write_report_writes_both_files_together(tmp_path):
    from ood_helpers.files import write_report

    out = write_report(tmp_path / "report", "cost", {"rows": [1, 2]}, "# table\n")
    assert json.loads((out / "cost.json").read_text()) == {"rows": [1, 2]}
    assert (out / "cost.md").read_text() == "# table\n" and sorted(p.name for p in out.iterdir()) == ["cost.json", "cost.md"]
    write_report(out, "cost", {"rows": []}, "# again\n")   # a second run replaces the folder whole
    assert json.loads((out / "cost.json").read_text()) == {"rows": []}


def test_fashion_parts_ranks_candidate_scores_by_the_validation_families_only():
    import importlib.util

    import numpy as np
    import torch

    spec = importlib.util.spec_from_file_location("fashion_parts", ROOT / "benchmarks" / "fashion_parts.py")
    parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts)
    bank = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 0.3 + 3 * torch.eye(8)[0]   # one cluster
    # a training latent is its own nearest neighbour; a scaled copy is at distance 0 once normalised
    assert np.allclose(parts.knn_distance(torch.cat([bank[:3], 2 * bank[3:5]]), bank, 1), 0, atol=1e-3)
    assert (parts.knn_distance(-bank[:5], bank, 10) > 1 + parts.knn_distance(bank[:5], bank, 10)).all()
    rng = np.random.default_rng(0)

    def scored(shift: float, test_shift: float = 0.0) -> dict:
        # the classifier separates the family; z's 10-NN distance separates only the test pair
        values = {part: rng.normal(size=200) for part in parts.CANDIDATES}
        values["classifier"] += shift
        values["knn10"] += test_shift
        return values

    scores = {"validation (in)": scored(0), "family: a": scored(3), "far-OOD: noise": scored(4),
              "test in": scored(0), "test out": scored(0, test_shift=3)}
    ranking = parts.candidate_table(scores, ["family: a"], ["far-OOD: noise"])
    assert ranking[0][0] == "classifier" and ranking[0][1] > 0.95   # chosen on the family, not the test
    by_name = {row[0]: row for row in ranking}
    assert by_name["z 10-NN"][4] > 0.95 > by_name["classifier"][4]   # the test column only reports
    assert len(ranking) == len(set(by_name)) and "latent Mahalanobis + latent two-sided" not in " ".join(by_name)


def test_cifar10_fashion_builds_both_fashion_geometries(data_root, monkeypatch):
    import importlib.util

    import torch

    monkeypatch.setenv("OOD_DATA_DIR", str(data_root))
    spec = importlib.util.spec_from_file_location("cifar10_fashion", ROOT / "benchmarks" / "cifar10_fashion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    padded, resized = module.fashion_images("padded"), module.fashion_images("resized")
    for images in (padded, resized):
        assert images.shape == (2000, 3, 32, 32) and images.dtype == torch.float32
        assert 0 <= images.min() and images.max() <= 1 and images.max() > 0.5
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])   # gray as RGB
    for border in (padded[..., :2, :], padded[..., -2:, :], padded[..., :2], padded[..., -2:]):
        assert border.abs().max() == 0   # a 2-pixel black border on every side
    assert resized[..., :2, :].max() > 0 or resized[..., :, :2].max() > 0   # content reaches the edge
    # resized: the same 28x28 picture stretched over 32x32 (no border), so its mean is that of 28x28
    assert abs(resized.mean() / padded.mean() - (32 / 28) ** 2) < 0.05   # same content on a larger area


def test_linear_path_cost_reports_mean_and_std_per_autoencoder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("linear_path_cost", ROOT / "benchmarks" / "linear_path_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with_path, without = module.AUTOENCODERS
    values = {(with_path, "PSNR of CIFAR-10 test images, dB"): [21.0, 23.0],
              (without, "PSNR of CIFAR-10 test images, dB"): [17.0, 17.0],
              (with_path, "AUROC, ours: Fashion-MNIST, resized"): [0.6, 0.7],
              (without, "AUROC, ours: Fashion-MNIST, resized"): [0.85, 0.87],
              (without, "train seconds"): [100.0, 110.0]}
    text = "\n".join(module.render(values, [0, 1], "results/x", 12.0))
    # the sample standard deviation (ddof=1), as compare's tables
    assert "| PSNR of CIFAR-10 test images, dB | 22.0 ± 1.4 | 17.0 ± 0.0 |" in text
    assert "| AUROC, ours: Fashion-MNIST, resized | 0.6500 ± 0.0707 | 0.8600 ± 0.0141 |" in text
    assert "| train seconds | — | 105.0 ± 7.1 |" in text and "--seeds 0 1 --out results/x" in text


def test_fashion_parts_rule_averages_each_candidate_over_the_runs(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("fashion_parts", ROOT / "benchmarks" / "fashion_parts.py")
    parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts)
    # a: best in one run only; b: steady; c: missing from one run, so it cannot be chosen
    runs = {"one": [["a", 0.9, 0, 0, 0.1], ["b", 0.8, 0, 0, 0.1], ["c", 0.99, 0, 0, 0.1]],
            "two": [["b", 0.8, 0, 0, 0.9], ["a", 0.6, 0, 0, 0.9]]}
    rows = parts.rule(runs)
    assert [row[0] for row in rows] == ["b", "a"]
    assert rows[1][1:] == [0.75, 0.6, 0.9]   # mean, worst and best run; the test column plays no part
    folders = []
    for name, candidates in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"candidates": candidates}))
        folders.append(str(tmp_path / name))
    assert parts.main(["--rank-runs", *folders, "--out", str(tmp_path / "rule")]) == 0
    assert json.loads((tmp_path / "rule" / "results.json").read_text())["rule"][0][0] == "b"
    assert "| b | 0.8000 | 0.8000 | 0.8000 |" in (tmp_path / "rule" / "results.md").read_text()


def test_linear_path_cost_trains_the_same_detector_without_the_path_and_checks_out_first(monkeypatch, tmp_path):
    import importlib.util
    import json
    import types

    import numpy as np
    import pytest
    import torch

    spec = importlib.util.spec_from_file_location("linear_path_cost", ROOT / "benchmarks" / "linear_path_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    trained = []

    class Detector:
        def __init__(self, channels, preset, seed, progress=True):
            trained.append((channels, preset, seed))
            self.autoencoder_ = torch.nn.Module()
            self.autoencoder_.forward = lambda x: (x.clamp(0.1, 0.9), None)

        def fit(self, images):
            return self

        def score_components(self, images):
            score = images.mean(dim=(1, 2, 3)).double().numpy()
            return {"score": score, "classifier": -score, "difference_l1": score}

    data = types.SimpleNamespace(in_test=images[:20], out_test=images[20:] * 0.5, in_train=images)
    monkeypatch.setattr(module, "OODDetector", Detector)
    monkeypatch.setattr(module, "get_data", lambda *args, **kwargs: data)
    monkeypatch.setattr(module, "get_detector", lambda *args, **kwargs: Detector(3, "classroom", 0))
    monkeypatch.setattr(module, "fashion_images", lambda geometry: images[:10] * 0.3)
    monkeypatch.setattr(module, "far_ood_suite", lambda channels: {"flat": torch.full((10, 3, 32, 32), 0.5)})
    colour = torch.zeros(10, 3, 32, 32)
    colour[:, 0] = 1.0   # pure red: its grayscale outlier (luma 0.299) is darker
    monkeypatch.setattr(module, "validation_images", lambda setting, preset, seed, n: colour)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as error:   # a bad folder stops the run before anything trains
        module.main(["--seeds", "0", "--out", str(tmp_path / "file" / "x")])
    assert error.value.code == 2 and trained == []
    assert module.main(["--seeds", "0", "1", "--out", str(tmp_path / "out")]) == 0
    fitted = [preset for _, preset, _ in trained if not isinstance(preset, str)]
    assert len(fitted) == 2 and all(p.ae_linear_path is False and p.name == "classroom" for p in fitted)
    values = json.loads((tmp_path / "out" / "results.json").read_text())["values"]
    without = "without it (classroom preset, ae_linear_path=False)"
    # the darker stand-ins score lower than the in-distribution images: 0 for the score, 1 for its negation
    assert np.allclose(values[f"{without} | AUROC, ours: Fashion-MNIST, resized"], [0.0, 0.0])
    assert np.allclose(values[f"{without} | AUROC, classifier logit: Fashion-MNIST, resized"], [1.0, 1.0])
    assert np.allclose(values[f"{without} | AUROC, mean difference image: Fashion-MNIST, resized"], [0.0, 0.0])
    assert f"{without} | AUROC, mean difference image: MNIST (the paper's pair)" not in values
    gray = f"{without} | AUROC, classifier logit: {module.GRAY_FAMILY}"
    assert np.allclose(values[gray], [1.0, 1.0])   # red images vs their darker gray copies


def test_the_committed_fashion_and_linear_path_reports_are_what_their_scripts_render():
    import importlib.util
    import json

    def load(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    folder = ROOT / "results" / "cifar10-fashion"
    saved = json.loads((folder / "results.json").read_text())
    assert load("cifar10_fashion").render(saved["auroc"], saved["command"], saved["preset"], saved["seeds"],
                                          saved["seconds"]) == (folder / "results.md").read_text()
    folder = ROOT / "results" / "linear-path-cost"
    saved = json.loads((folder / "results.json").read_text())
    values = {tuple(key.split(" | ")): numbers for key, numbers in saved["values"].items()}
    lines = load("linear_path_cost").render(values, saved["seeds"], "results/linear-path-cost", saved["seconds"])
    assert "\n".join(lines) == (folder / "results.md").read_text()
