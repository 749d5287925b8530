"""What every budgeted baseline shares: the constructor, per-preset budgets and their checks.

The abstract detector itself is :class:`ood_helpers.api.BaseDetector`; this module adds
:class:`BudgetedDetector`, whose size (epochs, width, cap on training images, ...) comes from a
per-preset ``BUDGETS`` dict, with single entries overridden by the ``budget`` argument::

    VAEDetector(in_channels=1, preset="quick", seed=0, budget={"epochs": 1})

Every argument is stored unchanged by ``__init__`` (scikit-learn's rule, so ``clone`` works);
``fit`` validates them and resolves the budget into ``budget_``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..api import BaseDetector
from ..presets import PRESETS, Preset, default_preset_name
from ..runtime import pick_device
from ..validation import InputError, _is_integer, check_bool, check_choice

__all__ = ["BudgetedDetector", "preset_name", "resolve_budget", "subsample", "check_bool", "flat_pixels"]


def preset_name(preset) -> str:
    """The name of a preset given as a :class:`~ood_helpers.presets.Preset`, a name or None.

    Parameters
    ----------
    preset : {"quick", "classroom", "paper"}, Preset or None
        None means :func:`ood_helpers.presets.default_preset_name` (``$OOD_PRESET``, else
        ``classroom``).

    Returns
    -------
    str
        One of ``PRESETS``' names.

    Raises
    ------
    InputError
        For any other value, naming ``preset`` and listing the valid names.
    """
    if isinstance(preset, Preset):
        return check_choice(preset.name, tuple(PRESETS), "preset.name")
    if preset is not None and not isinstance(preset, str):
        raise InputError(f"preset: expected one of {', '.join(map(repr, PRESETS))}, a Preset or None, got "
                         f"{preset!r} (type {type(preset).__name__}). Fix: preset='quick'.")
    return check_choice(preset or default_preset_name(), tuple(PRESETS), "preset")


def _check_budget_value(cls_name: str, key: str, value, default):
    """One budget entry, checked against the type of the preset's own value."""
    def fail(expected: str, example):
        raise InputError(f"budget[{key!r}]: expected {expected} for {cls_name}, got {value!r} "
                         f"(type {type(value).__name__}). Fix: budget={{{key!r}: {example!r}}}.")

    if key == "train_limit":
        if value is not None and (not _is_integer(value) or value < 2):
            fail("None (all images) or an integer >= 2", 4000)
    elif isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            fail("True or False", default)
    elif _is_integer(default):
        if not _is_integer(value) or value < 1:
            fail("a positive integer", default)
        if key == "batch_size" and value < 2:
            fail("an integer >= 2 (a mini-batch needs two images)", default)
    elif isinstance(default, float):
        ok = (_is_integer(value) or isinstance(value, (float, np.floating))) and np.isfinite(value) and value > 0
        if not ok:
            fail("a positive number", default)
    elif isinstance(default, tuple):
        if not isinstance(value, (tuple, list)) or not value or not all(_is_integer(v) and v >= 1 for v in value):
            fail("a non-empty tuple of positive integers", default)


def resolve_budget(cls, preset, budget) -> dict:
    """``cls.BUDGETS[preset]`` with the entries of ``budget`` replacing single values.

    Parameters
    ----------
    cls : type
        A :class:`BudgetedDetector` subclass.
    preset : {"quick", "classroom", "paper"}, Preset or None
    budget : dict or None
        Overrides, e.g. ``{"epochs": 1}``; None keeps the preset's budget.

    Returns
    -------
    dict
        A new dict with every key of ``cls.BUDGETS[preset]``.

    Raises
    ------
    InputError
        When ``preset`` is unknown, ``budget`` is not a dict, has keys the class does not know
        (the message lists the valid keys) or a value of the wrong kind.
    """
    name = preset_name(preset)
    defaults = cls.BUDGETS[name]
    if budget is None:
        return dict(defaults)
    if not isinstance(budget, dict):
        raise InputError(f"budget: expected None or a dict overriding entries of {cls.__name__}.BUDGETS[{name!r}] "
                         f"(keys {sorted(defaults)}), got {type(budget).__name__}. Fix: budget={{'epochs': 1}} "
                         f"or budget=None.")
    unknown = sorted(map(str, set(budget) - set(defaults)))
    if unknown:
        first = sorted(defaults)[0]
        raise InputError(f"budget: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(defaults)}. "
                         f"Fix: e.g. budget={{{first!r}: {defaults[first]!r}}}.")
    for key, value in budget.items():
        _check_budget_value(cls.__name__, key, value, defaults[key])
    return {**defaults, **{key: tuple(value) if isinstance(value, list) else value for key, value in budget.items()}}


def subsample(images: torch.Tensor, limit: int | None, generator: torch.Generator) -> torch.Tensor:
    """At most ``limit`` of ``images`` (None = all), drawn with ``generator``, order preserved.

    Parameters
    ----------
    images : torch.Tensor (N, ...)
    limit : int or None
    generator : torch.Generator

    Returns
    -------
    torch.Tensor (min(N, limit), ...)
    """
    if limit is None or len(images) <= limit:
        return images
    keep = torch.randperm(len(images), generator=generator)[:limit].sort().values
    return images[keep]


def flat_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, C, 32, 32) tensor -> float32 numpy (N, C * 1024) of raw pixels (for scikit-learn / PyOD)."""
    return images.detach().flatten(1).cpu().numpy().astype(np.float32, copy=False)


class BudgetedDetector(BaseDetector):
    """A baseline whose size comes from a per-preset budget (abstract).

    Parameters
    ----------
    in_channels : {1, 3} or None
        Channels of the images (1 MNIST-like, 3 CIFAR-like); None takes them from the training
        images. Images are (N, in_channels, 32, 32), float in [0, 1] or uint8 0-255.
    preset : {"quick", "classroom", "paper"}, Preset or None
        Picks ``BUDGETS[preset]``; a :class:`~ood_helpers.presets.Preset` counts by its name;
        None = ``$OOD_PRESET``, else ``classroom``.
    seed : int >= 0
        Seeds everything random in ``fit``: same seed + budget + machine = same scores.
    budget : dict or None
        Replaces single entries of ``BUDGETS[preset]``, e.g. ``{"epochs": 1}``; unknown keys are
        rejected by ``fit`` with the list of valid ones.
    threshold_quantile : float in (0, 1]
        ``threshold_`` keeps this share of held-out in-distribution images "in".
    held_out_fraction : float in (0, 0.5)
        Share of the training images held out to set ``threshold_``.
    device : str, torch.device or None
        Where torch models train and score; None = CUDA, else Apple MPS, else CPU. Ignored by
        the scikit-learn baselines.
    progress : bool
        Progress bars (or PyOD's epoch log) while training.

    Attributes
    ----------
    budget_ : dict
        The resolved budget.
    device_ : torch.device
    history_ : dict
        ``train_seconds``, ``n_images`` (images trained on, after ``train_limit``), ``budget``,
        and ``loss`` (mean loss per epoch) for the deep baselines.
    threshold_, in_channels_, n_train_
        See :class:`ood_helpers.api.BaseDetector`.

    Raises
    ------
    InputError
        From ``fit`` (never from ``__init__``): a bad argument, an unknown ``preset``, a
        ``budget`` that is not a dict, has unknown keys (the message lists the valid ones) or a
        value of the wrong kind; bad images.

    Notes
    -----
    Subclasses set ``BUDGETS`` (preset name -> dict with at least ``train_limit``) and implement
    ``_train(images, generator)`` (images already capped at ``train_limit``) and
    ``_decision_batch(batch)``.
    """

    name = "budgeted baseline"
    BUDGETS: dict = {}

    def __init__(self, in_channels=None, preset="quick", seed=0, budget=None, threshold_quantile=0.95,
                 held_out_fraction=0.1, device=None, progress=True):
        self.in_channels = in_channels
        self.preset = preset
        self.seed = seed
        self.budget = budget
        self.threshold_quantile = threshold_quantile
        self.held_out_fraction = held_out_fraction
        self.device = device
        self.progress = progress

    def _check_params(self):
        super()._check_params()
        resolve_budget(type(self), self.preset, self.budget)
        pick_device(self.device)
        check_bool(self.progress, "progress")

    def _fit(self, train, held_out, generator):
        self.budget_ = resolve_budget(type(self), self.preset, self.budget)
        self.device_ = pick_device(self.device)
        images = subsample(train.detach(), self.budget_["train_limit"], generator)
        start = time.perf_counter()
        extra = self._train(images, generator) or {}
        self.history_ = {**extra, "train_seconds": time.perf_counter() - start, "n_images": len(images),
                         "budget": dict(self.budget_)}

    def _train(self, images: torch.Tensor, generator: torch.Generator) -> dict | None:
        """Learn from ``images`` (float (N, C, 32, 32) in [0, 1]); may return extra history entries."""
        raise NotImplementedError
