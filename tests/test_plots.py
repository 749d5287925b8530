"""The pictures the notebooks draw: the paper's flow charts, difference images on one colour scale, ROC
curves that stay readable when they crowd into the corner, and the noise explorer's figure."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ood_helpers.teaching import plots  # noqa: E402
from ood_helpers.validation import InputError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bold(ax) -> set:
    """The words drawn in bold: the highlighted parts of a diagram."""
    return {text.get_text() for text in ax.texts if text.get_fontweight() == "bold"}


def test_pipeline_diagram_highlights_the_part_a_notebook_builds():
    ax = plots.pipeline_diagram(highlight="autoencoder")
    assert {"encoder E\n(ResNet-18)", "latent z", "decoder D\n(ResNet-18)", "reconstruction\nÎ = D(E(I))"} <= _bold(ax)
    assert not any("classifier" in text or "difference" in text for text in _bold(ax))
    ax = plots.pipeline_diagram(highlight=("classifier", "difference"), aux_input=False)
    assert not any("auxiliary input" in text.get_text() for text in ax.texts)   # Figure 2 without z
    ax = plots.pipeline_diagram(highlight="latent_distance", latent_distance=True, noise=True)
    texts = {text.get_text() for text in ax.texts}
    assert "latent distance\nof z (ours)" in _bold(ax) and "noise augmentation\n(training only)" in texts
    assert "z: auxiliary input (paper, Figure 2)" in texts


@pytest.mark.parametrize("call", [
    lambda: plots.pipeline_diagram(highlight="nothing"),
    lambda: plots.pipeline_diagram(highlight="z_input", aux_input=False),
    lambda: plots.pipeline_diagram(highlight="noise"),
    lambda: plots.classifier_diagram(inject_stage=5),
    lambda: plots.classifier_diagram(inject_stage=True),
    lambda: plots.classifier_diagram(highlight="inject", latent_input=False),
    lambda: plots.classifier_diagram(shapes={"stage9": "(1, 1, 1)"}),
])
def test_diagrams_refuse_unknown_or_hidden_parts(call):
    with pytest.raises(InputError):
        call()


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_classifier_diagram_places_z_after_its_stage(stage):
    ax = plots.classifier_diagram(highlight="inject", inject_stage=stage, shapes={f"stage{stage}": "(64, 2, 2)"})
    texts = {text.get_text() for text in ax.texts}
    assert f"z enters after stage {stage}" in texts and "(64, 2, 2)" in texts and "+" in texts
    ax = plots.classifier_diagram(inject_stage=stage, shapes={"inject": "z (64,) -> (16,)"})
    assert f"z enters after stage {stage}\nz (64,) -> (16,)" in {text.get_text() for text in ax.texts}
    without = plots.classifier_diagram(latent_input=False)
    assert "+" not in {text.get_text() for text in without.texts}


def test_difference_images_share_one_colour_scale(gray_images):
    images, other = gray_images[:6], 1 - gray_images[6:12]
    differences = {"in": (images - images.flip(0)).abs(), "out": (other - images).abs()}
    fig = plots.show_difference_images({"in": images, "out": other}, differences, ncols=6)
    scales = {im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "magma"}
    top = max(float(plots.difference_magnitude(d).max()) for d in differences.values())
    assert len(scales) == 1 and list(scales)[0] == pytest.approx((0.0, top))   # one scale ...
    assert len(fig.axes) == 2 * 2 * 6 + 1                                        # ... and one colour bar
    fig = plots.show_difference_images({"in": images}, {"in": differences["in"]}, ncols=6, vmax=0.7)
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "magma"} == {(0, 0.7)}
    with pytest.raises(InputError, match="same non-empty names"):
        plots.show_difference_images({"in": images}, {"out": images})


def test_reconstructions_use_a_given_scale_and_a_colour_bar(gray_images):
    images = gray_images[:5]
    difference = (images - images.flip(0)).abs()
    fig = plots.show_reconstructions(images, images.flip(0), difference, scores=np.arange(5), vmax=0.9)
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "magma"} == {(0, 0.9)}
    assert len(fig.axes) == 3 * 5 + 1
    magnitude = plots.difference_magnitude(difference.expand(-1, 3, -1, -1))
    assert magnitude.shape == (5, 32, 32) and np.allclose(magnitude.numpy(), difference[:, 0].numpy())


def test_roc_curves_on_a_log_axis_with_the_highlighted_on_top():
    rng = np.random.default_rng(0)
    curves = {"a": (rng.normal(0, 1, 50), rng.normal(3, 1, 50)), "ours": (rng.normal(0, 1, 50), rng.normal(9, 1, 50))}
    ax = plots.plot_roc_curves(curves, log_fpr=True, highlight="ours", legend="outside")
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == pytest.approx(0.5 / 50 / 2)
    lines = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    assert lines["ours"].get_zorder() > lines["a"].get_zorder() and lines["ours"].get_linewidth() > 2
    assert min(lines["ours"].get_xdata()) == pytest.approx(0.5 / 50)                 # FPR 0 drawn at 0.5 / N
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1      # outside: hides no curve
    ax = plots.plot_roc_curves(curves, legend="below")
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0
    assert plots.plot_roc_curves(curves, legend="none").get_legend() is None
    with pytest.raises(InputError, match="highlight"):
        plots.plot_roc_curves(curves, highlight="paper")
    with pytest.raises(InputError, match="legend"):
        plots.plot_roc_curves(curves, legend="left")


def test_histogram_title_for_one_image_has_no_auroc():
    rng = np.random.default_rng(0)
    in_scores, out_scores = rng.normal(0, 1, 100), rng.normal(2, 1, 100)
    assert "AUROC" in plots.plot_score_histograms(in_scores, out_scores, title="sets").get_title()
    ax = plots.plot_score_histograms(in_scores, out_scores, title="this image", marker=1.0, show_auroc=False)
    assert ax.get_title() == "this image"


def test_explorer_figure_never_mixes_one_score_with_a_set_auroc(fitted_detector, gray_images):
    from ood_helpers.teaching import widgets

    in_scores = fitted_detector.decision_function(gray_images[:40])
    out_scores = fitted_detector.decision_function(1 - gray_images[:40])
    state = widgets.explorer_state(fitted_detector, gray_images[0], "gaussian", 0.3, in_scores=in_scores)
    fig = widgets.draw_explorer(state, in_scores, out_scores)
    title = fig.axes[-1].get_title()
    assert f"{state['score']:.3f}" in title and "AUROC" not in title
