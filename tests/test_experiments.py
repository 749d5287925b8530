"""noise_robustness on a tiny detector and synthetic data: one row per (family, level), sane values."""
import pytest

from ood_helpers.data import OODData
from ood_helpers.experiments import auroc_drop, noise_robustness, robustness_table
from conftest import smooth_images


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
    assert auroc_drop(rows, "gaussian", 0.1) == pytest.approx(rows[0]["auroc_vs_ood"] - rows[1]["auroc_vs_ood"])
    assert robustness_table(rows).count("\n") == len(rows) + 2
