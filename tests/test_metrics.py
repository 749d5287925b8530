import numpy as np
import pytest

from ood_helpers import InputError
from ood_helpers import metrics


def test_auroc_against_hand_computed_values():
    assert metrics.auroc([0, 1], [2, 3]) == 1.0
    assert metrics.auroc([2, 3], [0, 1]) == 0.0
    # pairs (in, out): (0,1) ok, (0,3) ok, (2,1) wrong, (2,3) ok -> 3/4
    assert metrics.auroc([0, 2], [1, 3]) == 0.75
    # a tie counts one half: (1,1) -> 0.5
    assert metrics.auroc([1], [1]) == 0.5


def test_aupr_hand_computed():
    # ranking out, in, out: precision at the two out hits is 1 and 2/3 -> (1 + 2/3) / 2
    assert metrics.aupr([2], [3, 1]) == pytest.approx((1 + 2 / 3) / 2)


def test_fpr_at_95_tpr():
    in_scores = np.arange(100)            # 0..99
    out_scores = np.arange(50, 150)       # 50..149
    # to catch 95 of 100 out images the threshold drops to 55, flagging in images 55..99 = 45
    assert metrics.fpr_at_tpr(in_scores, out_scores, 0.95) == pytest.approx(0.45)


def test_roc_points_run_from_zero_to_one():
    fpr, tpr = metrics.roc_points([0, 1, 2], [1.5, 3])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    in_scores, out_scores = rng.normal(0, 1, 300), rng.normal(1, 1, 300)
    low, high = metrics.bootstrap_auroc_ci(in_scores, out_scores, n_boot=200)
    assert low < metrics.auroc(in_scores, out_scores) < high
    assert high - low < 0.15


def test_fpr_at_threshold_on_noisy_in_images():
    clean = np.arange(100)
    assert metrics.fpr_at_threshold(clean, clean, 0.95) == pytest.approx(0.05)
    assert metrics.fpr_at_threshold(clean, clean + 1000, 0.95) == 1.0


@pytest.mark.parametrize("bad", [[], [np.nan], [np.inf]])
def test_empty_or_non_finite_scores_are_rejected(bad):
    with pytest.raises(InputError):
        metrics.auroc(bad, [1.0])
