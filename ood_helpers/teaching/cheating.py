"""The anti-pattern of notebook 04: a classifier trained with the test OOD set as its "out" class.

DO NOT USE FOR RESULTS. It shows what training on the test OOD set would pretend.
"""
from __future__ import annotations

import torch

from ..api import check_seed, seeded
from ..detector import OODDetector
from ..loop import run_epochs
from ..networks import new_classifier
from ..runtime import Progress
from ..steps import classifier_loss, difference_image
from ..validation import InputError, as_image_batch, check_batch_size, check_positive_int, iter_image_batches


class CheatingClassifier:
    """A difference-image classifier trained with *real* OOD images as its "out" class.

    DO NOT USE FOR RESULTS: it exists to show, in notebook 04, what training on the test OOD set
    would pretend. Built by :func:`train_cheating_classifier`; it scores images exactly like the
    real classifier of an :class:`~ood_helpers.OODDetector` (difference image and z from the
    detector's frozen autoencoder), without calibration or latent distance.

    Attributes
    ----------
    detector_ : ood_helpers.OODDetector
        The fitted detector whose autoencoder it reads.
    classifier_ : ood_helpers.networks.DifferenceClassifier
    history_ : list of float
        Mean training loss (binary cross-entropy) per epoch.
    """

    def __init__(self, detector, classifier, history: list):
        self.detector_, self.classifier_, self.history_ = detector, classifier, history

    @torch.no_grad()
    def decision_function(self, images, batch_size: int = 256):
        """The classifier's logit per image: higher = more out-of-distribution.

        Parameters
        ----------
        images : torch.Tensor, numpy array or map-style Dataset
            (N, C, 32, 32) float in [0, 1] or uint8 0-255, C = the detector's channels.
        batch_size : int > 0

        Returns
        -------
        numpy.ndarray of float64, shape (N,)
            Unbounded logits.

        Raises
        ------
        InputError
            Bad images or batch size.
        """
        batch_size = check_batch_size(batch_size)
        autoencoder, device = self.detector_.autoencoder_.eval(), self.detector_.device_
        self.classifier_.eval()
        logits = []
        for batch in iter_image_batches(images, self.detector_.in_channels_, "images", batch_size):
            batch = batch.to(device)
            reconstruction, z = autoencoder(batch)
            logits.append(self.classifier_(difference_image(batch, reconstruction), z).float().cpu())
        return torch.cat(logits).double().numpy()

    def __repr__(self):
        return f"CheatingClassifier(trained {len(self.history_)} epochs on real OOD images; do not do this)"


def train_cheating_classifier(detector, in_images, ood_images, epochs: int | None = None, seed: int = 0,
                              progress: bool = True) -> CheatingClassifier:
    """DO NOT USE FOR RESULTS: the anti-pattern notebook 04 warns about.

    Trains a fresh classifier of the detector's architecture (difference image + z, on the
    detector's frozen autoencoder) with ``in_images`` as class 0 and *real* out-of-distribution
    images ``ood_images`` as class 1, instead of synthetic outliers. Each step pairs a mini-batch
    of in images with as many OOD images drawn at random. Same optimiser, schedule and loop
    (:func:`run_epochs`) as the real classifier, no noise augmentation.

    Parameters
    ----------
    detector : ood_helpers.OODDetector
        A fitted detector; its autoencoder is used, never changed.
    in_images, ood_images : (N, C, 32, 32) and (M, C, 32, 32)
        Float in [0, 1] or uint8 0-255, C = the detector's channels; N >= 2, M >= 1.
    epochs : int or None
        Defaults to the detector preset's classifier epochs.
    seed : int >= 0
        Seeds weights, batch order and OOD partners; the global random state is restored after.
    progress : bool
        Show a progress bar per epoch.

    Returns
    -------
    CheatingClassifier

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    InputError
        Bad images, seed or epochs.
    TrainingDivergedError
        When the loss becomes NaN or infinite.
    """
    if not isinstance(detector, OODDetector):
        raise InputError(f"detector: expected a fitted OODDetector, got {type(detector).__name__}.")
    detector._check_fitted("train_cheating_classifier")
    seed = check_seed(seed)
    channels, preset, device = detector.in_channels_, detector.preset_, detector.device_
    epochs = preset.clf_epochs if epochs is None else check_positive_int(epochs, "epochs")
    in_images = as_image_batch(in_images, channels, "in_images")
    ood_images = as_image_batch(ood_images, channels, "ood_images")
    if len(in_images) < 2:
        raise InputError(f"in_images: expected at least 2 images, got {len(in_images)}.")
    autoencoder = detector.autoencoder_.eval()
    with torch.enable_grad(), seeded(seed) as generator:
        classifier = new_classifier(channels, preset, True, detector.inject_stage).to(device)

        def step(index):
            partners = torch.randint(len(ood_images), (len(index),), generator=generator)
            batch = torch.cat([in_images[index], ood_images[partners]]).to(device)
            labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))]).to(device)
            return classifier_loss(classifier, autoencoder, batch, labels)

        history = run_epochs(classifier, step, len(in_images), generator=generator, name="cheating classifier",
                             hooks=[Progress("cheating classifier")] if progress else [], **preset.schedule(epochs))
    return CheatingClassifier(detector, classifier, history)
