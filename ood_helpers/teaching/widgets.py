"""Noise-level explorer for notebook 06: how does one image's score move as noise is added?

Three layers, so the logic can be tested without a browser and the picture without widgets:

- :func:`explorer_state` (pure): noisy copy of one image, its reconstruction, difference image,
  score, and where that score ranks among given in- / out-of-distribution scores.
- :func:`draw_explorer`: a matplotlib Figure of one state (images + score histograms with a
  marker at this image's score).
- :func:`noise_explorer`: the ipywidgets front end (family dropdown, severity slider, image
  slider, score text, figure), which calls the two functions above on every change.

For example::

    from ood_helpers.data import sample
    from ood_helpers.teaching.widgets import noise_explorer
    images = sample(data.in_test, 16)   # a random draw: the CIFAR-10 copy is stored class by class
    noise_explorer(detector, images, detector.decision_function(data.in_test),
                   detector.decision_function(data.out_test))
"""
from __future__ import annotations

import base64
import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..noise import NOISE_FAMILIES, add_noise
from .plots import _to_hwc, difference_magnitude, plot_score_histograms
from ..validation import InputError, as_image_batch, check_choice, check_int

SEVERITY_STEP = 0.05
FLAG_QUANTILE = 0.95  # an image is "flagged" when it scores above 95% of in-distribution images
EXPLORER_DIFFERENCE_MAX = 0.5   # top of the explorer's difference colour scale (values above are clipped)


def _as_scores(scores, name: str) -> np.ndarray:
    """Reference scores as float64 (N,): the same rule as every metric (see
    :func:`ood_helpers.evaluation.metrics.check_scores`: 1-D or (N, 1), non-empty, finite; (N, 2)
    probabilities are refused with the fix ``scores[:, 1]``)."""
    from ..evaluation.metrics import check_scores

    return check_scores(scores, name)


def _percent_below(scores: np.ndarray | None, score: float) -> float | None:
    return None if scores is None else float(100.0 * np.mean(scores < score))


def _channels(detector, what: str) -> int | None:
    """The fitted detector's image channels; raises its NotFittedError before ``fit``."""
    if hasattr(detector, "_check_fitted"):
        detector._check_fitted(what)
    return getattr(detector, "in_channels_", None) or getattr(detector, "in_channels", None)


def explorer_state(detector, image, family: str, severity: float, seed: int = 0,
                   in_scores=None, out_scores=None) -> dict:
    """Noise one image and score it; no widgets, no drawing.

    Parameters
    ----------
    detector : fitted detector
        Any detector of the interface (``decision_function`` and ``in_channels_``): ours and the
        autoencoder difference also show their reconstruction (through ``explain``); for the
        others ``reconstruction`` and ``difference`` are None.
    image : torch.Tensor (C, 32, 32) or (1, C, 32, 32)
        One image, float in [0, 1] or uint8 0-255.
    family : str
        One of :data:`~ood_helpers.noise.NOISE_FAMILIES`.
    severity : float in [0, 1]
        0 leaves the image unchanged.
    seed : int
        Seeds the noise, so the same (family, severity, seed) always gives the same noisy image;
        for gaussian, speckle and salt_pepper a larger severity strengthens one fixed noise pattern.
    in_scores, out_scores : array-like (N,) or None
        Optional reference scores; when given, the state says what percentage of them lie
        strictly below this image's score.

    Returns
    -------
    dict
        ``family``, ``severity``, ``seed``; tensors (C, 32, 32) ``clean``, ``noisy``,
        ``reconstruction``, ``difference`` (in [0, 1]; None for a detector without ``explain``);
        floats ``score`` (the noisy image) and
        ``clean_score``; ``in_percent_below`` / ``out_percent_below`` (float in [0, 100] or
        None), ``threshold`` (the 95th percentile of ``in_scores``) and ``flagged`` (score above
        it), both None without ``in_scores``.

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    InputError
        Unknown family, severity outside [0, 1], not exactly one image, wrong channels, or empty or
        non-finite reference scores.
    """
    check_choice(family, NOISE_FAMILIES, "family")
    images = as_image_batch(image, _channels(detector, "explorer_state"), "image")
    if len(images) != 1:
        raise InputError(f"image: expected one image (C, 32, 32) or a batch of one, got {len(images)} images.")
    in_scores = None if in_scores is None else _as_scores(in_scores, "in_scores")
    out_scores = None if out_scores is None else _as_scores(out_scores, "out_scores")
    noisy = add_noise(images, family, severity, torch.Generator().manual_seed(int(seed)))
    # scored one at a time, exactly as ``detector.decision_function(image)`` would (batch size can
    # move the last digits of a convolution), so severity 0 reproduces the detector's own score
    if hasattr(detector, "explain"):
        parts = detector.explain(noisy)
        score = float(parts["score"][0])
    else:   # a baseline: the shared interface gives the score; it has no reconstruction to show
        parts = {"reconstruction": None, "difference": None}
        score = float(detector.decision_function(noisy)[0])
    clean_score = float(detector.decision_function(images)[0])
    threshold = None if in_scores is None else float(np.quantile(in_scores, FLAG_QUANTILE))
    return {
        "family": family, "severity": float(severity), "seed": int(seed),
        "clean": images[0], "noisy": noisy[0],
        "reconstruction": None if parts["reconstruction"] is None else parts["reconstruction"][0],
        "difference": None if parts["difference"] is None else parts["difference"][0],
        "score": score, "clean_score": clean_score,
        "in_percent_below": _percent_below(in_scores, score),
        "out_percent_below": _percent_below(out_scores, score),
        "threshold": threshold, "flagged": None if threshold is None else bool(score > threshold),
    }


def describe_state(state: dict) -> str:
    """One line of plain text for a state, e.g. for the widget's score label or a print.

    Parameters
    ----------
    state : dict
        A result of :func:`explorer_state`.

    Returns
    -------
    str
        E.g. ``score 1.234 (higher = more out-of-distribution; clean image 0.321), gaussian noise
        at severity 0.15; 87% of in-distribution images score lower; ...``.
    """
    text = (f"score {state['score']:.3f} (higher = more out-of-distribution; clean image "
            f"{state['clean_score']:.3f}), {state['family']} noise at severity {state['severity']:.2f}")
    if state.get("in_percent_below") is not None:
        text += f"; {state['in_percent_below']:.0f}% of in-distribution images score lower"
    if state.get("out_percent_below") is not None:
        text += f"; {state['out_percent_below']:.0f}% of out-of-distribution images score lower"
    if state.get("flagged") is not None:
        verdict = "flagged as out-of-distribution" if state["flagged"] else "passes as in-distribution"
        text += f" ({verdict} at the {100 * FLAG_QUANTILE:.0f}% in-distribution threshold)"
    return text


def draw_explorer(state: dict, in_scores, out_scores, in_label: str = "in-distribution",
                  out_label: str = "out-of-distribution"):
    """Figure for one :func:`explorer_state`: clean input, noisy input, reconstruction and
    difference image on top; in / out score histograms with a line at this image's score below.

    Parameters
    ----------
    state : dict
        A result of :func:`explorer_state`.
    in_scores, out_scores : array-like (N,) and (M,)
        Non-empty, finite reference scores.
    in_label, out_label : str
        Legend entries of the histograms.

    Returns
    -------
    matplotlib.figure.Figure
        Created through pyplot: close it (``plt.close(fig)``) when done.

    Raises
    ------
    InputError
        When a score array is empty or holds NaN or infinite values.
    """
    in_scores, out_scores = _as_scores(in_scores, "in_scores"), _as_scores(out_scores, "out_scores")
    fig = plt.figure(figsize=(8.0, 5.4))
    grid = fig.add_gridspec(2, 4, height_ratios=(1.0, 1.15))
    difference = state["difference"]
    panels = [("clean input", state["clean"]), (f"{state['family']} {state['severity']:.2f}", state["noisy"])]
    if difference is not None:
        panels += [("reconstruction", state["reconstruction"]), ("|difference|, mean over channels", None)]
    for col, (title, picture) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        if picture is not None:
            ax.imshow(_to_hwc(picture), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:   # the series' colour scale, fixed: the same colour is the same error at every slider position
            magnitude = difference_magnitude(difference.reshape(1, -1, *difference.shape[-2:]))[0]
            shown = ax.imshow(magnitude.numpy(), cmap="magma", vmin=0, vmax=EXPLORER_DIFFERENCE_MAX,
                              interpolation="nearest")
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :])
    plot_score_histograms(in_scores, out_scores, in_label=in_label, out_label=out_label, ax=ax,
                          title=f"this image (line): score {state['score']:.3f}, among the scores of clean test images",
                          marker=state["score"], show_auroc=False)
    fig.tight_layout()
    return fig


def figure_png(fig, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure at ``dpi`` (the figure is left open).

    Returns
    -------
    bytes
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class NoiseExplorer(widgets.VBox):
    """The widget returned by :func:`noise_explorer`: a VBox whose parts are attributes.

    ``family`` (Dropdown), ``severity`` (FloatSlider), ``image_index`` (IntSlider),
    ``score_text`` (HTML), ``figure`` (Output); ``state`` is the latest :func:`explorer_state`
    and ``error`` the latest error message (None when the last update worked).
    """

    def __init__(self, detector, images, in_scores, out_scores, index, families, max_severity, seed, dpi):
        self.detector, self.images, self.seed, self.dpi = detector, images, seed, dpi
        self.in_scores, self.out_scores = in_scores, out_scores
        self.state, self.error = None, None
        style = {"description_width": "70px"}
        self.family = widgets.Dropdown(options=list(families), value=families[0], description="noise",
                                       style=style, layout=widgets.Layout(width="230px"))
        self.severity = widgets.FloatSlider(value=0.0, min=0.0, max=max_severity, step=SEVERITY_STEP,
                                            description="severity", readout_format=".2f",
                                            continuous_update=False, style=style)
        self.image_index = widgets.IntSlider(value=index, min=0, max=len(images) - 1, step=1,
                                             description="image", continuous_update=False, style=style,
                                             disabled=len(images) == 1)
        self.score_text = widgets.HTML(value="")
        self.figure = widgets.Output(layout=widgets.Layout(min_height="300px"))
        for widget, name in ((self.family, "ood-family"), (self.severity, "ood-severity"),
                             (self.image_index, "ood-image"), (self.score_text, "ood-score"),
                             (self.figure, "ood-figure")):
            widget.add_class(name)
        controls = widgets.HBox([self.family, self.severity, self.image_index])
        super().__init__([controls, self.score_text, self.figure])
        self.add_class("ood-noise-explorer")
        for widget in (self.family, self.severity, self.image_index):
            widget.observe(self._on_change, names="value")
        self.update(raise_errors=True)

    def _on_change(self, change):
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        """The widget view, plus the current figure as ``image/png`` and its description as
        ``text/plain``: a front end that cannot render widgets (a static page, a Colab whose
        widget manager is off) shows the picture instead of nothing."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None and self.figure.outputs:
            data = self.figure.outputs[0]["data"]
            bundle.update({"image/png": data["image/png"], "text/plain": data["text/plain"]})
        return bundle

    def update(self, raise_errors: bool = False):
        """Recompute the state for the current controls and redraw text and figure.

        An error is shown in the score text (a widget callback's traceback would go unseen)
        and kept in ``error``; ``raise_errors`` re-raises it as well."""
        try:
            state = explorer_state(self.detector, self.images[self.image_index.value], self.family.value,
                                   self.severity.value, self.seed, self.in_scores, self.out_scores)
            fig = draw_explorer(state, self.in_scores, self.out_scores)
            try:
                png = figure_png(fig, self.dpi)
            finally:
                plt.close(fig)
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            self.score_text.value = f"<span style='color:#b00'>{html.escape(self.error)}</span>"
            if raise_errors:
                raise
            return
        self.state, self.error = state, None
        text = describe_state(state)
        head, _, rest = text.partition(" (")
        self.score_text.value = f"<b>{html.escape(head)}</b> ({html.escape(rest)}"
        # Setting ``outputs`` directly (instead of ``with output: display(fig)``) works the same
        # in a kernel and outside one, and never lets the inline backend show the figure twice.
        self.figure.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                         "text/plain": f"<noise explorer figure: {text}>"}},)


def noise_explorer(detector, images, in_scores, out_scores, index: int = 0, families=NOISE_FAMILIES,
                   max_severity: float = 0.5, seed: int = 0, dpi: int = 80):
    """Interactive noise-level explorer: pick a noise family, a severity and an image; see the
    noisy image, its reconstruction and difference image, its score, and where that score sits
    among in- and out-of-distribution scores.

    Parameters
    ----------
    detector : ood_helpers.OODDetector
        Fitted.
    images : torch.Tensor (N, C, 32, 32)
        In-distribution images to explore (a handful is plenty), float in [0, 1] or uint8.
    in_scores, out_scores : array-like (N,) and (M,)
        Reference scores, e.g. ``detector.decision_function(data.in_test)`` / ``out_test``.
    index : int in [0, N)
        The image shown first.
    families : sequence of str
        Noise families offered, a subset of :data:`~ood_helpers.noise.NOISE_FAMILIES`.
    max_severity : float in (0, 1]
        The severity slider's upper end; the slider moves in steps of 0.05.
    seed : int
        Seeds the noise (see :func:`explorer_state`).
    dpi : int
        Resolution of the figure.

    Returns
    -------
    NoiseExplorer
        An ``ipywidgets.VBox`` (see ``NoiseExplorer`` for its parts); display it as the last
        expression of a cell.

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    InputError
        Bad images, scores, families, ``max_severity`` or ``index``.
    """
    images = as_image_batch(images, _channels(detector, "noise_explorer"), "images")
    in_scores, out_scores = _as_scores(in_scores, "in_scores"), _as_scores(out_scores, "out_scores")
    families = tuple(families) if not isinstance(families, str) else (families,)
    if not families:
        raise InputError("families: expected at least one noise family.")
    for family in families:
        check_choice(family, NOISE_FAMILIES, "families")
    try:
        max_severity = float(max_severity)
    except (TypeError, ValueError):
        raise InputError(f"max_severity: expected a number in (0, 1], got {max_severity!r}.") from None
    if not 0.0 < max_severity <= 1.0:
        raise InputError(f"max_severity: expected a number in (0, 1], got {max_severity!r}.")
    index = check_int(index, "index", 0, len(images) - 1)
    return NoiseExplorer(detector, images, in_scores, out_scores, int(index), families, max_severity,
                           int(seed), int(dpi))
