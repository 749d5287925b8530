"""Noise-level explorer (ood_helpers.teaching.widgets): the pure state function, the figure, the widget.

A tiny detector fitted on synthetic bar images keeps this file at a few seconds; the real-browser
check of the same widget lives in tests/browser.
"""
import copy

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ood_helpers import InputError, NotFittedError, OODDetector, get_preset  # noqa: E402
from ood_helpers.noise import NOISE_FAMILIES  # noqa: E402
from ood_helpers.teaching.widgets import (EXPLORER_DIFFERENCE_MAX, NoiseExplorer, describe_state,  # noqa: E402
                                          draw_explorer, explorer_state, noise_explorer)


def bar_images(n: int, seed: int) -> torch.Tensor:
    """MNIST-like stand-ins: a bright vertical and a dimmer horizontal bar on black."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 32, 32)
    for i in range(n):
        r, c = torch.randint(6, 20, (2,), generator=generator).tolist()
        h, w = torch.randint(4, 11, (2,), generator=generator).tolist()
        images[i, 0, r:r + h, c:c + 3] = 1.0
        images[i, 0, r:r + 3, c:c + w] = 0.8
    return images


@pytest.fixture(scope="module")
def explorer_setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster than two here
    preset = get_preset("quick", ae_epochs=1, clf_epochs=1, train_limit=200)
    detector = OODDetector(in_channels=1, preset=preset, seed=0, progress=False).fit(bar_images(100, 0))
    images = bar_images(6, 1)
    out = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    in_scores, out_scores = detector.decision_function(bar_images(40, 3)), detector.decision_function(out)
    yield detector, images, in_scores, out_scores
    torch.set_num_threads(threads)


def test_severity_zero_is_the_clean_score(explorer_setup):
    detector, images, in_scores, _ = explorer_setup
    state = explorer_state(detector, images[0], "gaussian", 0.0, in_scores=in_scores)
    assert torch.equal(state["noisy"], images[0])
    assert state["score"] == float(detector.decision_function(images[:1])[0])
    assert state["score"] == state["clean_score"]
    assert state["in_percent_below"] == pytest.approx(100 * np.mean(in_scores < state["score"]))
    assert state["out_percent_below"] is None
    for key in ("clean", "noisy", "reconstruction", "difference"):
        assert state[key].shape == (1, 32, 32)


@pytest.mark.parametrize("family", NOISE_FAMILIES)
def test_noise_changes_image_and_score(explorer_setup, family):
    detector, images, _, _ = explorer_setup
    clean = explorer_state(detector, images[0], family, 0.0)
    noisy = explorer_state(detector, images[0], family, 0.3)
    assert not torch.equal(noisy["noisy"], images[0])
    assert noisy["score"] != clean["score"]
    assert noisy["clean_score"] == clean["score"]
    # seeded: the same arguments give the same noisy image and score
    again = explorer_state(detector, images[0], family, 0.3)
    assert torch.equal(again["noisy"], noisy["noisy"]) and again["score"] == noisy["score"]


def test_state_errors(explorer_setup):
    detector, images, _, _ = explorer_setup
    with pytest.raises(InputError, match="family"):
        explorer_state(detector, images[0], "pink_noise", 0.1)
    with pytest.raises(InputError, match="severity"):
        explorer_state(detector, images[0], "gaussian", 1.5)
    with pytest.raises(InputError, match="one image"):
        explorer_state(detector, images[:2], "gaussian", 0.1)
    with pytest.raises(InputError, match="channel"):
        explorer_state(detector, torch.rand(3, 32, 32), "gaussian", 0.1)
    with pytest.raises(NotFittedError):
        explorer_state(OODDetector(1, preset="quick", progress=False), images[0], "gaussian", 0.1)
    # the channels come from the fitted detector (in_channels_), also when the parameter was None
    taken_from_data = copy.copy(detector).set_params(in_channels=None)
    with pytest.raises(InputError, match="channel"):
        explorer_state(taken_from_data, torch.rand(3, 32, 32), "gaussian", 0.1)


def test_draw_explorer(explorer_setup):
    detector, images, in_scores, out_scores = explorer_setup
    state = explorer_state(detector, images[0], "salt_pepper", 0.2, in_scores=in_scores, out_scores=out_scores)
    before = set(plt.get_fignums())
    fig = draw_explorer(state, in_scores, out_scores)
    try:
        assert len(fig.axes) == 6  # clean, noisy, reconstruction, difference, its colour bar, histograms
        assert any(line.get_label() == "this image" for line in fig.axes[5].get_lines())
        # the series' colour scale, fixed: the same colour is the same error at every slider position
        assert fig.axes[3].get_images()[0].get_clim() == (0, EXPLORER_DIFFERENCE_MAX)
    finally:
        plt.close(fig)
    assert set(plt.get_fignums()) == before
    assert "salt_pepper noise at severity 0.20" in describe_state(state)


def test_widget_children_and_updates(explorer_setup):
    detector, images, in_scores, out_scores = explorer_setup
    before = set(plt.get_fignums())
    explorer = noise_explorer(detector, images, in_scores, out_scores, index=1)
    assert isinstance(explorer, NoiseExplorer) and isinstance(explorer, widgets.VBox)
    controls, score_text, figure = explorer.children
    assert list(controls.children) == [explorer.family, explorer.severity, explorer.image_index]
    assert isinstance(explorer.family, widgets.Dropdown) and explorer.family.options == NOISE_FAMILIES
    assert isinstance(explorer.severity, widgets.FloatSlider)
    assert (explorer.severity.min, explorer.severity.max, explorer.severity.step) == (0.0, 0.5, 0.05)
    assert explorer.severity.continuous_update is False and explorer.image_index.continuous_update is False
    assert (explorer.image_index.value, explorer.image_index.max) == (1, len(images) - 1)
    assert score_text is explorer.score_text and isinstance(score_text, widgets.HTML)
    assert figure is explorer.figure and isinstance(figure, widgets.Output)
    assert "ood-severity" in explorer.severity._dom_classes

    def shown():
        return explorer.score_text.value, explorer.figure.outputs[0]["data"]["image/png"]

    first = shown()
    assert "score" in first[0] and "higher = more out-of-distribution" in first[0]
    assert "in-distribution images score lower" in first[0]
    assert explorer.state["score"] == float(detector.decision_function(images[1:2])[0])

    explorer.severity.value = 0.3
    second = shown()
    assert second[0] != first[0] and second[1] != first[1]
    assert "gaussian noise at severity 0.30" in second[0] and explorer.error is None

    explorer.family.value = "blur"
    third = shown()
    assert third[0] != second[0] and "blur noise at severity 0.30" in third[0]

    explorer.image_index.value = 2
    assert shown()[0] != third[0]
    assert set(plt.get_fignums()) == before  # every figure was closed after drawing


def test_widget_argument_errors(explorer_setup):
    detector, images, in_scores, out_scores = explorer_setup
    with pytest.raises(InputError, match="families"):
        noise_explorer(detector, images, in_scores, out_scores, families=("gaussian", "pink_noise"))
    with pytest.raises(InputError, match="max_severity"):
        noise_explorer(detector, images, in_scores, out_scores, max_severity=1.5)
    with pytest.raises(InputError, match="index"):
        noise_explorer(detector, images, in_scores, out_scores, index=len(images))
    with pytest.raises(InputError, match="in_scores"):
        noise_explorer(detector, images, [], out_scores)
    with pytest.raises(NotFittedError):
        noise_explorer(OODDetector(1, preset="quick", progress=False), images, in_scores, out_scores)
    small = noise_explorer(detector, images[:1], in_scores, out_scores, families=("poisson",), max_severity=0.2)
    assert small.family.options == ("poisson",) and small.image_index.disabled and small.severity.max == 0.2


def test_the_explorer_falls_back_to_a_picture_where_widgets_do_not_render(explorer_setup):
    """Issue 25: Colab without its widget manager, a static page: the output carries a PNG too."""
    import base64

    detector, images, in_scores, out_scores = explorer_setup
    explorer = noise_explorer(detector, images, in_scores, out_scores)
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["text/plain"].startswith("<noise explorer figure: score")
    explorer.severity.value = 0.3  # the picture follows the controls
    assert explorer._repr_mimebundle_()["image/png"] != bundle["image/png"]
    plt.close("all")
