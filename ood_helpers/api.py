"""The one interface every detector follows: ours, the autoencoder difference and every baseline.

It follows scikit-learn's estimator rules and PyOD's detector conventions (Zhao, Nasrullah & Li,
"PyOD: A Python Toolbox for Scalable Outlier Detection", JMLR 2019):

- ``__init__`` only stores its arguments; ``get_params`` / ``set_params`` / ``sklearn.base.clone``
  work; validation happens in :meth:`BaseDetector.fit`; a parameter set after ``fit`` takes effect
  at the next ``fit`` (scoring uses ``params_``, the parameters ``fit`` ran with);
- ``fit(images) -> self`` learns from in-distribution images only (no labels, no outliers);
  learned state ends in ``_``;
- ``decision_function(images) -> numpy (N,)``: higher = more out-of-distribution;
- ``predict(images) -> numpy (N,)`` of 0 (in) / 1 (out) at ``threshold_``, which ``fit`` sets so
  that ``threshold_quantile`` (0.95) of *held-out* in-distribution training images count as in;
- no side effects: ``fit`` leaves the process's global random state as it found it, works inside
  ``torch.no_grad()``, and an interrupted or failed ``fit`` leaves the previous fitted state.

A subclass implements ``_fit(train, held_out, generator)`` and ``_decision_batch(batch)``.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
import threading

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from .validation import (DegenerateDataWarning, InputError, as_image_batch, check_batch_size, check_fraction,
                         check_in_channels, check_seed, check_spread, float32_default, iter_image_batches)


def fingerprint(value) -> str:
    """A short SHA-256 hex digest (16 digits) of a tensor or a JSON-able value: the identity of a
    run's data or configuration. Tensors are hashed by dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]

DEFAULT_BATCH_SIZE = 256


class NotFittedError(_SklearnNotFittedError):
    """A detector was asked to score before ``fit`` (or ``load``).

    Subclasses scikit-learn's ``NotFittedError``, so code written for scikit-learn catches it.
    """


# torch's, NumPy's and Python's process-wide generators are shared by every thread: a fit that
# seeds them (weight initialisation draws from them; PyOD seeds them itself) holds this lock, so two
# fits in threads never draw from each other's streams and each gives the scores of a sequential fit
GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with every random generator seeded by ``seed``, then restore them.

    Inside the block Python's ``random``, NumPy's global generator and torch's CPU (and CUDA)
    generators are seeded, so code that draws from them (weight initialisation, dropout)
    reproduces; on exit all of them are restored, so the caller's random state is unchanged.
    The block holds :data:`GLOBAL_RNG_LOCK` (blocks in other threads wait) and runs with torch's
    default dtype float32, whatever the session set.

    Parameters
    ----------
    seed : int
        In [0, 2**32 - 1] (see :func:`ood_helpers.validation.check_seed`); numpy integers count.

    Yields
    ------
    torch.Generator
        A CPU generator seeded with ``seed`` for the data pipeline (orders, noise, outliers).
    """
    seed = check_seed(seed)
    with GLOBAL_RNG_LOCK, float32_default():
        python_state, numpy_state = random.getstate(), np.random.get_state()
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            try:
                yield torch.Generator().manual_seed(seed)
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)


def split_held_out(images: torch.Tensor, fraction: float, generator: torch.Generator,
                   minimum: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Split training images into (train, held_out), drawn with ``generator``.

    Parameters
    ----------
    images : torch.Tensor (N, C, 32, 32)
    fraction : float in (0, 1)
        Share of images held out (at least ``minimum``).
    generator : torch.Generator

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The remaining images and the held-out ones, both in their original order.

    Raises
    ------
    InputError
        When fewer than ``minimum`` images would be left to train on.
    """
    if len(images) < 2 * minimum:
        raise InputError(f"images: expected at least {2 * minimum} images to hold {minimum} out, got {len(images)}.")
    order = torch.randperm(len(images), generator=generator)
    n_held = max(minimum, int(round(fraction * len(images))))
    return images[order[n_held:].sort().values], images[order[:n_held].sort().values]


class BaseDetector(BaseEstimator):
    """Abstract out-of-distribution detector (scikit-learn / PyOD conventions).

    Subclasses take at least ``in_channels``, ``seed``, ``threshold_quantile`` and
    ``held_out_fraction`` in ``__init__`` (and store them unchanged), and implement

    - ``_fit(train, held_out, generator)``: learn from ``train`` (float (N, C, 32, 32) in [0, 1]);
      ``held_out`` may be used for calibration, never for gradient steps;
    - ``_decision_batch(batch) -> torch.Tensor | numpy (B,)``: scores of one batch, higher = more OOD.

    Attributes set by ``fit``
    -------------------------
    params_ : dict
        A copy of ``get_params()`` taken by ``fit``: scoring, ``threshold_`` and ``save`` use
        it, so ``set_params`` after ``fit`` changes nothing until the next ``fit``
        (scikit-learn's rule).
    in_channels_ : int
        Channels of the training images.
    threshold_ : float
        The ``threshold_quantile`` quantile of the decision function on held-out in-distribution
        training images: :meth:`predict` flags images scoring above it.
    n_train_ : dict
        Image counts: ``{"fit": ..., "held_out": ...}``.
    train_fingerprint_ : str
        A SHA-256 digest (16 hex digits) of the images given to ``fit``, as float32 (N, C, 32, 32):
        which data a fitted detector belongs to.
    """

    name = "detector"
    min_train_images = 20

    # -- the subclass contract --------------------------------------------------------------------
    def _fit(self, train: torch.Tensor, held_out: torch.Tensor, generator: torch.Generator, **fit_params):
        raise NotImplementedError

    def _decision_batch(self, batch: torch.Tensor):
        raise NotImplementedError

    def _check_params(self):
        """Validate constructor arguments (called by ``fit``); subclasses extend it."""
        check_in_channels(self.in_channels)
        check_seed(self.seed)
        check_fraction(self.threshold_quantile, "threshold_quantile", include_high=True)
        check_fraction(self.held_out_fraction, "held_out_fraction", high=0.5)

    # -- the interface ----------------------------------------------------------------------------
    def fit(self, images, y=None, **fit_params) -> "BaseDetector":
        """Learn what in-distribution images look like.

        Parameters
        ----------
        images : torch.Tensor, numpy array or map-style Dataset
            In-distribution training images (N, C, 32, 32), float in [0, 1] or uint8 0-255
            (see :func:`ood_helpers.validation.as_image_batch` for every accepted form). A seeded
            ``held_out_fraction`` of them is held out to set ``threshold_``.
        y : None
            Ignored; present for scikit-learn compatibility. No labels are ever used.
        **fit_params
            Passed to the detector's training (e.g. ``work_dir`` for :class:`OODDetector`).

        Returns
        -------
        self

        Raises
        ------
        InputError
            Bad images or constructor arguments (the message names which and how to fix it).
        ood_helpers.loop.TrainingDivergedError
            The training loss became NaN or infinite.

        Notes
        -----
        Runs under ``torch.enable_grad()`` (so it works inside ``torch.no_grad()``) with all
        global random generators seeded by ``seed`` and restored afterwards (under
        :data:`GLOBAL_RNG_LOCK`: fits in several threads run one at a time and give the scores of
        sequential fits). Training images that are all one image raise :class:`InputError`; fewer
        distinct images than ``min_train_images`` warn (:class:`DegenerateDataWarning`). If fitting
        fails or is interrupted (Ctrl-C), the detector keeps the state it had before: the previous
        fit, or none.
        """
        if y is not None:
            raise InputError(f"y: expected None (detectors learn from in-distribution images only, without "
                             f"labels), got {type(y).__name__}. Fix: call fit(images).")
        self._check_params()
        # what fit is run with, copied: a parameter changed later takes effect at the next fit only
        params = copy.deepcopy(self.get_params(deep=False))
        images = as_image_batch(images, self.in_channels, "images")
        if len(images) < self.min_train_images:
            raise InputError(f"images: expected at least {self.min_train_images} training images to fit, got "
                             f"{len(images)}.")
        check_spread(images, "images", self.min_train_images)
        previous = dict(self.__dict__)
        try:
            with torch.enable_grad(), seeded(params["seed"]) as generator:
                for key in [key for key in self.__dict__ if key.endswith("_") and not key.startswith("__")]:
                    del self.__dict__[key]
                self.params_ = params
                self.in_channels_ = images.shape[1]
                self.train_fingerprint_ = fingerprint(images)
                train, held_out = split_held_out(images, self.held_out_fraction, generator)
                self.n_train_ = {"fit": len(train), "held_out": len(held_out)}
                self._fit(train, held_out, generator, **fit_params)
                # "higher": at least threshold_quantile of the held-out images score <= threshold_
                self.threshold_ = float(np.quantile(self._decision(held_out), self.threshold_quantile,
                                                    method="higher"))
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise
        return self

    def decision_function(self, images, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Out-of-distribution score per image: higher = more out-of-distribution.

        Parameters
        ----------
        images : torch.Tensor, numpy array or map-style Dataset
            (N, C, 32, 32) float in [0, 1] or uint8 0-255, C = ``in_channels_``; one image
            (C, 32, 32) is a batch of one.
        batch_size : int > 0
            Images per forward pass; memory use is bounded by it, not by N.

        Returns
        -------
        numpy.ndarray of float64, shape (N,)

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``load``.
        InputError
            Bad images or batch size.
        """
        self._check_fitted("decision_function")
        return self._decision(images, batch_size)

    def predict(self, images, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """0 (in-distribution) or 1 (out-of-distribution) per image, at ``threshold_``.

        Returns
        -------
        numpy.ndarray of int64, shape (N,)
            ``decision_function(images) > threshold_``.

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``load``.
        InputError
            Bad images or batch size.
        """
        self._check_fitted("predict")
        return (self._decision(images, batch_size) > self.threshold_).astype(np.int64)

    # -- helpers ----------------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    def _check_fitted(self, method: str):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"{method}: this {type(self).__name__} is not fitted yet; call fit(images) "
                                 f"first{' or ' + type(self).__name__ + '.load(path)' if hasattr(self, 'load') else ''}.")

    @torch.no_grad()
    def _decision(self, images, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        batch_size = check_batch_size(batch_size)
        scores = [np.asarray(torch.as_tensor(self._decision_batch(batch)).detach().double().cpu())
                  for batch in iter_image_batches(images, self.in_channels_, "images", batch_size)]
        return np.concatenate(scores)


__all__ = ["BaseDetector", "NotFittedError", "DegenerateDataWarning", "GLOBAL_RNG_LOCK", "seeded", "fingerprint", "split_held_out", "check_seed", "DEFAULT_BATCH_SIZE"]
