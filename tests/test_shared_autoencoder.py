"""Variants of one seed train their common autoencoder once when they share a work_dir.

``paper``, ``paper-no-aux`` and ``ours`` have the same autoencoder (it depends on neither z
switch). With one ``work_dir`` (``pretrain``, ``get_detector``, ``ablation``) the second variant
resumes the first one's finished autoencoder state, and its result is exactly what a run of its
own would give.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from conftest import TINY, smooth_images
from ood_helpers.detector import autoencoder_identity
from ood_helpers.detector import build_detector

STATEFUL = dataclasses.replace(TINY, ae_epochs=2, clf_epochs=2, checkpoint_every_epoch=True)
GRAY = smooth_images(96, 1, seed=0) * 0.5
PROBE = torch.cat([smooth_images(8, 1, seed=7) * 0.5, 1 - smooth_images(8, 1, seed=8) * 0.5])


def _fit(variant, work_dir, noise=None):
    detector = build_detector(variant, 1, STATEFUL, seed=0, progress=False)
    return detector.fit(GRAY, work_dir=work_dir)


def test_the_second_variant_resumes_the_first_ones_autoencoder_and_scores_as_if_alone(tmp_path):
    shared = tmp_path / "shared"
    paper = _fit("paper", shared)
    assert len(paper.history_["epoch_seconds"]["autoencoder"]) == 2
    assert len(list(shared.glob("autoencoder_state_*.pt"))) == 1
    ours = _fit("ours", shared)
    assert ours.history_["epoch_seconds"]["autoencoder"] == [], "no autoencoder epoch was run again"
    assert ours.history_["autoencoder_l1"] == paper.history_["autoencoder_l1"]
    alone = _fit("ours", tmp_path / "alone")
    assert len(alone.history_["epoch_seconds"]["autoencoder"]) == 2
    np.testing.assert_array_equal(ours.decision_function(PROBE), alone.decision_function(PROBE))


def test_no_noise_variant_does_not_share_and_the_identity_ignores_only_classifier_switches(tmp_path):
    shared = tmp_path / "shared"
    paper = _fit("paper", shared)
    no_noise = _fit("paper-no-noise", shared)
    assert len(no_noise.history_["epoch_seconds"]["autoencoder"]) == 2, "another noise switch trains its own"
    assert len(list(shared.glob("autoencoder_state_*.pt"))) == 2
    no_aux = build_detector("paper-no-aux", 1, STATEFUL, seed=0, progress=False).fit(GRAY, work_dir=shared)
    assert autoencoder_identity(no_aux.run_identity_) == autoencoder_identity(paper.run_identity_)
    assert autoencoder_identity(no_noise.run_identity_) != autoencoder_identity(paper.run_identity_)
    other_seed = build_detector("paper", 1, STATEFUL, seed=1, progress=False).fit(GRAY, work_dir=shared)
    assert autoencoder_identity(other_seed.run_identity_) != autoencoder_identity(paper.run_identity_)
