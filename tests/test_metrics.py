import numpy as np
import pytest

from ood_helpers import InputError
from ood_helpers.evaluation import metrics


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


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_resamples_are_scored_like_auroc(ties):
    """The counting shortcut gives each resample the AUROC that sorting it would (ties half)."""
    rng = np.random.default_rng(3)
    in_scores, out_scores = rng.normal(0, 1, 250), rng.normal(0.4, 1, 170)
    if ties:
        in_scores, out_scores = np.round(in_scores, 1), np.round(out_scores, 1)
    draw = np.random.default_rng(7)   # the same stream: in indices, then out indices, per resample
    values = [metrics.auroc(in_scores[draw.integers(0, 250, 250)], out_scores[draw.integers(0, 170, 170)])
              for _ in range(100)]
    expected = np.quantile(values, 0.05), np.quantile(values, 0.95)
    np.testing.assert_allclose(metrics.bootstrap_auroc_ci(in_scores, out_scores, n_boot=100, level=0.9, seed=7),
                               expected, rtol=0, atol=1e-12)


def test_fpr_at_threshold_on_noisy_in_images():
    clean = np.arange(100)
    assert metrics.fpr_at_threshold(clean, clean, 0.95) == pytest.approx(0.05)
    assert metrics.fpr_at_threshold(clean, clean + 1000, 0.95) == 1.0


@pytest.mark.parametrize("bad", [[], [np.nan], [np.inf]])
def test_empty_or_non_finite_scores_are_rejected(bad):
    with pytest.raises(InputError):
        metrics.auroc(bad, [1.0])


METRICS = [metrics.auroc, metrics.aupr, metrics.fpr_at_tpr, metrics.roc_points, metrics.summarize,
           lambda a, b: metrics.bootstrap_auroc_ci(a, b, n_boot=20)]


@pytest.mark.parametrize("metric", METRICS)
def test_two_column_probabilities_are_refused_with_the_column_fix(metric):
    rng = np.random.default_rng(0)
    in_probs = rng.dirichlet([5, 1], 50)      # columns (p_in, p_out)
    out_probs = rng.dirichlet([1, 5], 50)
    with pytest.raises(InputError, match=r"in_scores: expected 1-D scores.*\(50, 2\).*in_scores\[:, 1\]"):
        metric(in_probs, out_probs)
    metric(in_probs[:, 1], out_probs[:, 1])   # the fix works
    assert metrics.auroc(in_probs[:, 1], out_probs[:, 1]) > 0.9


def test_column_vector_is_flattened_and_other_shapes_refused():
    column = np.arange(5.0).reshape(5, 1)
    assert metrics.auroc(column, column + 10) == metrics.auroc(np.arange(5.0), np.arange(5.0) + 10) == 1.0
    with pytest.raises(InputError, match=r"\[:, j\]"):
        metrics.auroc(np.zeros((4, 3)), [1.0])
    with pytest.raises(InputError, match="single number"):
        metrics.auroc(0.5, [1.0])
    with pytest.raises(InputError, match="out_scores"):
        metrics.auroc([1.0], np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="numbers"):
        metrics.auroc(["a", "b"], [1.0])


def test_torch_scores_are_accepted():
    import torch

    scores = torch.tensor([0.0, 1.0], requires_grad=True)
    assert metrics.auroc(scores, scores + 2) == 1.0


def test_fpr_at_threshold_validates_both_arrays_and_keep():
    clean = np.arange(100.0)
    with pytest.raises(InputError, match="in_scores_test.*NaN"):
        metrics.fpr_at_threshold(clean, [np.nan, 1000.0])
    with pytest.raises(InputError, match="in_scores_reference.*empty"):
        metrics.fpr_at_threshold([], clean)
    with pytest.raises(InputError, match=r"in_scores_reference.*\[:, 1\]"):
        metrics.fpr_at_threshold(np.zeros((5, 2)), clean)
    for bad in (0, 1.5, -0.1, 95, True, "0.95", np.nan):
        with pytest.raises(InputError, match=r"keep: expected a number in \(0, 1\]"):
            metrics.fpr_at_threshold(clean, clean, keep=bad)
    assert metrics.fpr_at_threshold(clean, clean, keep=1) == 0.0


@pytest.mark.parametrize("bad", [0, 1.5, -0.5, 95, np.nan, None])
def test_fpr_at_tpr_rejects_a_tpr_outside_0_1(bad):
    with pytest.raises(InputError, match=r"tpr: expected a number in \(0, 1\]"):
        metrics.fpr_at_tpr([0.0, 1.0], [2.0, 3.0], tpr=bad)


def test_bootstrap_arguments_are_named():
    scores = np.arange(10.0)
    for bad in (0, -3, 2.5, None):
        with pytest.raises(InputError, match="n_boot"):
            metrics.bootstrap_auroc_ci(scores, scores + 1, n_boot=bad)
    for bad in (0, 1, 1.2, 95):
        with pytest.raises(InputError, match=r"level: expected a number in \(0, 1\)"):
            metrics.bootstrap_auroc_ci(scores, scores + 1, n_boot=10, level=bad)
    with pytest.raises(InputError, match="seed"):
        metrics.bootstrap_auroc_ci(scores, scores + 1, n_boot=10, seed=-1)
    low, high = metrics.bootstrap_auroc_ci(scores, scores + 5, n_boot=np.int64(50), level=0.9, seed=np.int64(1))
    assert 0 <= low <= high <= 1


def test_widget_reference_scores_follow_the_same_rule():
    from ood_helpers.teaching.widgets import _as_scores

    probs = np.random.default_rng(0).dirichlet([1, 1], 10)
    with pytest.raises(InputError, match=r"in_scores\[:, 1\]"):
        _as_scores(probs, "in_scores")
    assert _as_scores(probs[:, 1:], "in_scores").shape == (10,)
    with pytest.raises(InputError, match="out_scores"):
        _as_scores([np.inf], "out_scores")


# -- psnr (notebook 02) -------------------------------------------------------------------------------
def test_psnr_hand_computed_values():
    import torch

    images = np.zeros((3, 1, 4, 4))
    reconstructions = images.copy()
    reconstructions[0] += 0.1          # MSE 0.01 -> 20 dB
    reconstructions[1, :, :2] = 1.0    # half the pixels off by 1: MSE 0.5 -> 10 log10(2) dB
    values = metrics.psnr(images, reconstructions)
    assert values.shape == (3,) and values.dtype == np.float64
    assert values[0] == pytest.approx(20.0) and values[1] == pytest.approx(10 * np.log10(2))
    assert values[2] == np.inf                          # a perfect reconstruction
    as_tensors = metrics.psnr(torch.from_numpy(images).float(), torch.from_numpy(reconstructions).float())
    assert as_tensors[:2] == pytest.approx(values[:2], abs=1e-4)


def test_psnr_is_per_image_and_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3, 8, 8)), rng.random((5, 3, 8, 8))
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(b, a))
    assert metrics.psnr(a[2:3], b[2:3])[0] == pytest.approx(metrics.psnr(a, b)[2])


@pytest.mark.parametrize("images, reconstructions, message", [
    (np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 5)), "same shape"),
    (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "N, C, H, W"),
    (np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 4, 4)), "non-empty"),
    (np.full((1, 1, 4, 4), 255.0), np.zeros((1, 1, 4, 4)), r"\[0, 1\]"),
    (np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), np.nan), "NaN"),
    ("images", np.zeros((1, 1, 4, 4)), "numbers"),
])
def test_psnr_refuses_bad_input(images, reconstructions, message):
    with pytest.raises(InputError, match=message):
        metrics.psnr(images, reconstructions)
