"""Issue 13: the paper's method stands apart from ours.

The switches are independent (latent_input = the paper's z injection, latent_distance,
latent_mahalanobis and difference_term = our terms), the named variants are defined once, detector files carry the new switch and
older ones are refused, the autoencoder is shared by the variants and can be had alone, the
standard path's step functions are what the loop runs, and ``ablation`` writes the paper's Table 3
like for like beside what our additions add.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import ood_helpers.detector as detector_module
import ood_helpers.networks as networks_module
import ood_helpers.evaluation.compare as evaluation
from conftest import TINY, smooth_images, toy_data
from ood_helpers import CheckpointError, InputError, OODData, OODDetector, artifacts, get_preset
from ood_helpers import pretrain as pretrain_module
from ood_helpers import runtime, steps
from ood_helpers.__main__ import main
from ood_helpers.checkpoints import load_checkpoint, save_checkpoint
from ood_helpers.persistence import DETECTOR_FORMAT, DETECTOR_VERSION
from ood_helpers.detector import fit_autoencoder
from ood_helpers.networks import AutoEncoder, DifferenceClassifier, new_autoencoder
from ood_helpers.noise import NoiseAugment
from ood_helpers.pretrain import NOTEBOOK_VARIANTS, pretrain
from ood_helpers.variants import ADDITION_VARIANTS, NEGATIVES_NOTE, TABLE3_VARIANTS, VARIANTS, get_variant, variant_of
from ood_helpers.detector import build_detector

GRAY = smooth_images(96, 1, seed=0) * 0.5      # dark blobs in [0, 0.5]
PROBE = torch.cat([smooth_images(8, 1, seed=7) * 0.5, 1 - smooth_images(8, 1, seed=8) * 0.5])


pytestmark = pytest.mark.usefixtures("single_thread")


_FITTED: dict = {}


def fitted(variant: str, preset=TINY) -> OODDetector:
    """One TINY detector per variant (seed 0, the same images), fitted once per module."""
    key = (variant, preset.name, preset.ae_epochs)
    if key not in _FITTED:
        _FITTED[key] = build_detector(variant, 1, preset, seed=0, progress=False).fit(GRAY)
    return _FITTED[key]


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# -- 1. the variants, defined once ---------------------------------------------------------------------
def test_the_variants_table_is_what_the_issue_asks_for():
    expected = {  # key: (latent_input, latent_distance, noise_augment, origin, label); rotation_score below
        "paper": (True, False, True, "paper", "paper's method (Fig. 2, our reimplementation)"),
        "paper-no-aux": (False, False, True, "paper", "paper w/o auxiliary input (Table 3)"),
        "paper-no-noise": (True, False, False, "paper", "paper w/o noise augmentation (Table 3)"),
        "ours": (True, True, True, "ours", "ours: the paper's method + two latent distances"),
        "ours-distance-only": (False, True, True, "ours", "ours: our latent distances instead of z injection"),
        "ours-rotation": (True, True, True, "ours", "ours + rotation score (semantic)"),
    }
    assert list(VARIANTS) == list(expected)
    assert [key for key in VARIANTS if VARIANTS[key].rotation_score] == ["ours-rotation"]
    for key, (latent_input, latent_distance, noise, origin, label) in expected.items():
        variant = VARIANTS[key]
        assert variant.key == key and variant.label == label and variant.origin == origin
        assert variant.flags == dict(latent_input=latent_input, latent_distance=latent_distance, noise_augment=noise,
                                     rotation_score=key == "ours-rotation", latent_mahalanobis=origin == "ours",
                                     difference_term=False)
        assert variant.origin_label == {"paper": "paper's method", "ours": "ours"}[origin]
        detector = build_detector(key, 1, TINY, seed=3, progress=False)
        assert variant_of(detector) == key and detector.seed == 3
        assert {name: detector.get_params()[name] for name in variant.flags} == variant.flags
        assert artifacts.detector_relpath("mnist-cifar10", TINY, 3, key).as_posix() == \
            f"quick/mnist-cifar10/detector_{key}_seed3.pt"
    # the paper's variants never use our distance; ours always do
    assert all(not VARIANTS[k].latent_distance for k in VARIANTS if VARIANTS[k].origin == "paper")
    assert all(VARIANTS[k].latent_distance for k in VARIANTS if VARIANTS[k].origin == "ours")
    assert TABLE3_VARIANTS == ("paper", "paper-no-aux", "paper-no-noise")
    assert ADDITION_VARIANTS == ("paper", "ours", "ours-distance-only")
    assert NOTEBOOK_VARIANTS == ("paper-no-aux", "paper", "paper-no-noise", "ours")
    assert evaluation.COMPARE_VARIANTS == ("paper", "ours", "ours-rotation")
    assert variant_of(OODDetector(latent_input=False, latent_distance=False, noise_augment=False)) is None
    assert variant_of(OODDetector()) == "ours"   # the defaults are ours
    assert variant_of(OODDetector(difference_term=True)) is None   # ours with the difference term: unnamed
    assert variant_of(OODDetector(latent_mahalanobis=False)) is None
    # one table: the old definitions are gone
    for module, name in ((artifacts, "VARIANTS"), (artifacts, "variant_name"), (evaluation, "OURS")):
        assert not hasattr(module, name), f"{module.__name__}.{name} still defined"


@pytest.mark.parametrize("bad, hint", [("full", "renamed 'ours'"), ("no-latent", "renamed 'paper-no-aux'"),
                                       ("half", "Fix"), (None, "Fix")])
def test_an_unknown_variant_is_named_with_a_fix(bad, hint):
    with pytest.raises(InputError, match="^variant: expected one of paper, ") as error:
        get_variant(bad)
    assert hint in str(error.value)
    with pytest.raises(InputError, match="variant"):
        artifacts.get_detector("mnist-cifar10", TINY, 0, variant=bad, data=object())


# -- 2. the switches are independent ---------------------------------------------------------------
def _standardised_logit(detector, parts):
    calibration = detector.calibration_
    return (parts["classifier"] - calibration.classifier_mean) / calibration.classifier_std


def test_without_latent_distance_the_score_is_exactly_the_standardised_logit():
    paper = fitted("paper")
    parts = paper.score_components(PROBE)
    np.testing.assert_array_equal(parts["score"], _standardised_logit(paper, parts))
    np.testing.assert_array_equal(paper.decision_function(PROBE), parts["score"])
    assert "latent" not in parts and "mahalanobis" not in parts
    assert set(paper.held_out_scores_) == {"score", "classifier", "difference_l1"}
    assert paper.latent_bank_ is None and paper.latent_mean_ is None and paper.latent_precision_ is None
    c = paper.calibration_
    assert c.latent_mean is None and c.difference_std is None and c.mahalanobis_centre is None
    assert paper.classifier_.trunk.inject_stage == 2 and hasattr(paper.classifier_.trunk, "inject")  # z still injected


def test_latent_distance_changes_only_the_score_and_latent_input_only_the_classifier():
    paper, ours = fitted("paper"), fitted("ours")
    # the same autoencoder and the same classifier: latent_distance does not touch training
    assert weights_equal(paper.autoencoder_, ours.autoencoder_)
    assert weights_equal(paper.classifier_, ours.classifier_)
    parts = ours.score_components(PROBE)
    c = ours.calibration_
    latent = (parts["latent"] - c.latent_mean) / c.latent_std
    two_sided = (np.abs(parts["mahalanobis"] - c.mahalanobis_centre) - c.mahalanobis_mean) / c.mahalanobis_std
    np.testing.assert_allclose(parts["score"], _standardised_logit(ours, parts) + latent + two_sided, rtol=1e-12)
    # the Mahalanobis term: centred on the held-out mean, its absolute value standardised there
    held = ours.held_out_scores_["mahalanobis"]
    assert abs(c.mahalanobis_centre - held.mean()) < 1e-9
    assert abs(c.mahalanobis_mean - np.abs(held - held.mean()).mean()) < 1e-9
    assert abs(c.mahalanobis_std - np.abs(held - held.mean()).std()) < 1e-9
    from ood_helpers.ours import mahalanobis
    torch.testing.assert_close(torch.from_numpy(parts["mahalanobis"]).float(),
                               mahalanobis(parts["z"], ours.latent_mean_, ours.latent_precision_))
    assert ours.latent_mean_.shape == (TINY.latent_dim,)
    assert ours.latent_precision_.shape == (TINY.latent_dim, TINY.latent_dim)
    # the distance is to the nearest unit-length training latent: between 0 and 2
    assert 0 <= parts["latent"].min() and parts["latent"].max() <= 2 and ours.latent_bank_.shape[1] == TINY.latent_dim
    np.testing.assert_allclose(ours.latent_bank_.norm(dim=1).numpy(), 1, rtol=1e-5)
    np.testing.assert_allclose(_standardised_logit(ours, parts), _standardised_logit(paper, paper.score_components(PROBE)),
                               rtol=1e-12)
    assert np.abs(latent).max() > 0.1 and np.abs(two_sided).max() > 0.1
    assert set(ours.held_out_scores_) == {"score", "classifier", "latent", "mahalanobis", "difference_l1"}
    # the distance is what separates the inversions at this tiny budget
    assert ours.decision_function(PROBE[8:]).mean() > ours.decision_function(PROBE[:8]).mean()


def test_the_latent_distance_is_to_the_nearest_unit_length_training_latent():
    from ood_helpers.ours import latent_bank, nearest_latent_distance

    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images = torch.rand(30, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    bank = latent_bank(encoder, images, batch_size=7)
    assert bank.shape == (30, 3)
    np.testing.assert_allclose(bank.norm(dim=1).numpy(), 1, rtol=1e-5)
    with torch.no_grad():
        z = encoder(images)
    # a training latent, or any positive multiple of it, is at distance 0; its opposite at 2 from it
    torch.testing.assert_close(nearest_latent_distance(3 * z, bank, batch_size=4), torch.zeros(30), atol=1e-3, rtol=0)
    far = nearest_latent_distance(-z[:1], bank[:1])
    torch.testing.assert_close(far, torch.tensor([2.0]))
    # more training latents than the bank keeps: a seeded draw of that many, the same for the same seed
    small = latent_bank(encoder, images, size=10, generator=torch.Generator().manual_seed(1))
    again = latent_bank(encoder, images, size=10, generator=torch.Generator().manual_seed(1))
    assert small.shape == (10, 3) and torch.equal(small, again)
    assert all(torch.isclose(row, bank, atol=1e-6).all(dim=1).any() for row in small)


def test_the_difference_term_adds_the_standardised_mean_difference_only_when_switched_on():
    ours = build_detector("ours", 1, TINY, seed=0, progress=False).set_params(difference_term=True).fit(GRAY)
    # only the score changes: the networks come out the same
    assert weights_equal(ours.classifier_, fitted("paper").classifier_)
    without = OODDetector(**{**ours.get_params(), "difference_term": False})
    without.params_, without.calibration_ = without.get_params(), ours.calibration_
    without.autoencoder_, without.classifier_, without.latent_bank_ = ours.autoencoder_, ours.classifier_, ours.latent_bank_
    without.latent_mean_, without.latent_precision_ = ours.latent_mean_, ours.latent_precision_
    without.device_, without.in_channels_ = ours.device_, ours.in_channels_
    parts = ours.score_components(PROBE)
    c = ours.calibration_
    np.testing.assert_allclose(ours.decision_function(PROBE) - without._combine(parts),
                               (parts["difference_l1"] - c.difference_mean) / c.difference_std, rtol=1e-9, atol=1e-9)
    held = ours.held_out_scores_["difference_l1"]
    assert abs(c.difference_mean - held.mean()) < 1e-9 and abs(c.difference_std - held.std()) < 1e-9


def test_without_latent_input_the_classifier_has_no_inject_module_and_the_distance_is_still_used():
    detector = fitted("ours-distance-only")
    trunk = detector.classifier_.trunk
    assert trunk.inject_stage is None and not hasattr(trunk, "inject")
    detector.classifier_.eval()
    with torch.no_grad():
        difference = torch.rand(4, 1, 32, 32)
        z = torch.randn(4, TINY.latent_dim)
        torch.testing.assert_close(detector.classifier_(difference, z), detector.classifier_(difference, 10 * z))
    parts = detector.score_components(PROBE)
    c = detector.calibration_
    ours_terms = (parts["latent"] - c.latent_mean) / c.latent_std + (
        np.abs(parts["mahalanobis"] - c.mahalanobis_centre) - c.mahalanobis_mean) / c.mahalanobis_std
    np.testing.assert_allclose(parts["score"], _standardised_logit(detector, parts) + ours_terms, rtol=1e-12)
    assert detector.latent_bank_.shape[1] == TINY.latent_dim
    no_aux = fitted("paper-no-aux")
    assert weights_equal(no_aux.classifier_, detector.classifier_)   # the same classifier, another score
    assert not weights_equal(no_aux.classifier_, fitted("paper").classifier_)


# -- 3. files -------------------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_the_new_switch(tmp_path):
    for variant in ("paper", "ours-distance-only"):
        detector = fitted(variant)
        loaded = OODDetector.load(detector.save(tmp_path / f"{variant}.pt"))
        switches = ("latent_input", "latent_distance", "noise_augment", "seed", "inject_stage")
        assert {k: loaded.get_params()[k] for k in switches} == {k: detector.get_params()[k] for k in switches}
        assert variant_of(loaded) == variant and loaded.run_identity_["variant"] == variant
        assert (loaded.latent_bank_ is None) == (variant == "paper")
        assert set(loaded.held_out_scores_) == set(detector.held_out_scores_)
        np.testing.assert_array_equal(loaded.decision_function(PROBE), detector.decision_function(PROBE))
        payload = load_checkpoint(tmp_path / f"{variant}.pt", DETECTOR_FORMAT)
        assert payload["version"] == DETECTOR_VERSION == 7 and payload["config"]["latent_distance"] is (variant != "paper")
        assert payload["config"]["latent_mahalanobis"] is (variant != "paper")
        assert (payload["latent_precision"] is None) == (variant == "paper")


def test_a_file_of_an_older_version_or_without_the_switch_is_refused(tmp_path):
    path = fitted("ours").save(tmp_path / "d.pt")
    payload = load_checkpoint(path, DETECTOR_FORMAT)
    old = dict(payload, version=2, config={k: v for k, v in payload["config"].items() if k != "latent_distance"})
    save_checkpoint(old, tmp_path / "old.pt")
    for load in (OODDetector.load, OODDetector.load_autoencoder):
        with pytest.raises(CheckpointError, match=r"old.pt' is a detector file of version 2.*since version 4.*"
                                                  r"re-run pretrain"):
            load(tmp_path / "old.pt")
    save_checkpoint(dict(old, version=DETECTOR_VERSION), tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt' lacks key 'config.latent_distance'"):
        OODDetector.load(tmp_path / "edited.pt")


def test_a_file_of_version_6_reads_as_ours_without_the_mahalanobis_term(tmp_path):
    ours = fitted("ours")
    path = ours.save(tmp_path / "d.pt")
    payload = dict(load_checkpoint(path, DETECTOR_FORMAT), version=6)
    del payload["latent_mean"], payload["latent_precision"]
    payload["config"] = {k: v for k, v in payload["config"].items() if k != "latent_mahalanobis"}
    identity = payload["run_identity"]
    payload["run_identity"] = {**identity, "config": {k: v for k, v in identity["config"].items()
                                                      if k != "latent_mahalanobis"}}
    save_checkpoint(payload, tmp_path / "six.pt")
    six = OODDetector.load(tmp_path / "six.pt")
    assert six.latent_mahalanobis is False and six.run_identity_["config"]["latent_mahalanobis"] is False
    assert six.latent_mean_ is None and variant_of(six) is None   # what it is: ours without the new term
    parts = ours.score_components(PROBE)
    c = ours.calibration_
    np.testing.assert_allclose(six.decision_function(PROBE), _standardised_logit(ours, parts) + (
        parts["latent"] - c.latent_mean) / c.latent_std, rtol=1e-9)


def test_load_autoencoder_reads_only_the_autoencoder(tmp_path, monkeypatch):
    detector = fitted("paper")
    path = detector.save(tmp_path / "d.pt")
    monkeypatch.setattr(networks_module, "DifferenceClassifier", _no_classifier)
    autoencoder = OODDetector.load_autoencoder(path, in_channels=1, preset="quick")
    assert isinstance(autoencoder, AutoEncoder) and not autoencoder.training
    assert weights_equal(autoencoder, detector.autoencoder_)
    with pytest.raises(CheckpointError, match="saved for 1 channel.*expected 3"):
        OODDetector.load_autoencoder(path, in_channels=3)


def _no_classifier(*args, **kwargs):
    raise AssertionError("a DifferenceClassifier was built")


# -- 4. the shared autoencoder, and the autoencoder alone ---------------------------------------------
def test_variants_of_one_seed_share_the_autoencoder_at_the_quick_preset():
    quick = get_preset("quick")
    paper, no_aux, ours = (fitted(v, quick) for v in ("paper", "paper-no-aux", "ours"))
    assert len(paper.history_["autoencoder_l1"]) == quick.ae_epochs == 4
    assert weights_equal(paper.autoencoder_, no_aux.autoencoder_) and weights_equal(paper.autoencoder_, ours.autoencoder_)
    assert paper.history_["autoencoder_l1"] == no_aux.history_["autoencoder_l1"] == ours.history_["autoencoder_l1"]
    alone = fit_autoencoder(GRAY, 1, quick, seed=0, progress=False)
    assert weights_equal(alone, paper.autoencoder_)
    other_seed = fit_autoencoder(GRAY, 1, quick, seed=1, progress=False)
    assert not weights_equal(other_seed, paper.autoencoder_)
    without_noise = fit_autoencoder(GRAY, 1, quick, seed=0, noise_augment=False, progress=False)
    assert not weights_equal(without_noise, paper.autoencoder_)


_toy = toy_data


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("OOD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.delenv("OOD_PRETRAINED_DIR", raising=False)
    return tmp_path


def test_get_autoencoder_trains_it_alone_equal_to_the_detectors(folders, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        patch.setattr(networks_module, "DifferenceClassifier", _no_classifier)
        alone = artifacts.get_autoencoder("mnist-cifar10", TINY, 0, data=_toy(), progress=False)
    assert "trained the autoencoder alone" in capsys.readouterr().out
    assert not (folders / "artifacts").exists(), "the autoencoder alone is not saved"
    detector = artifacts.get_detector("mnist-cifar10", TINY, 0, variant="paper", data=_toy(), progress=False)
    assert weights_equal(alone, detector.autoencoder_)


def test_get_autoencoder_reads_the_paper_files_autoencoder_shared_folder_first(folders, monkeypatch, capsys):
    monkeypatch.setattr(pretrain_module, "get_data", lambda setting, preset, seed, download=None: _toy(setting))
    shared = folders / "pretrained"
    pretrain(shared, TINY, settings=["cifar10-mnist"], variants=["paper", "paper-no-noise"], progress=False)
    local = artifacts.get_detector("cifar10-mnist", TINY, 0, variant="paper", data=_toy("cifar10-mnist"), progress=False)
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(shared))
    monkeypatch.setattr(networks_module, "DifferenceClassifier", _no_classifier)
    monkeypatch.setattr(artifacts, "fit_autoencoder", lambda *a, **k: pytest.fail("trained although a file matched"))
    capsys.readouterr()
    for noise, variant in ((True, "paper"), (False, "paper-no-noise")):
        autoencoder = artifacts.get_autoencoder("cifar10-mnist", TINY, 0, noise_augment=noise,
                                                data=_toy("cifar10-mnist"), progress=False)
        line = capsys.readouterr().out.strip()
        assert line == (f"loaded the autoencoder of $OOD_PRETRAINED_DIR/quick/cifar10-mnist/detector_{variant}_seed0.pt "
                        f"(pretrained, read-only)")
        expected = OODDetector.load_autoencoder(shared / f"quick/cifar10-mnist/detector_{variant}_seed0.pt")
        assert weights_equal(autoencoder, expected)
        if variant == "paper":   # the shared file's autoencoder is the one a fresh training gives
            assert weights_equal(autoencoder, local.autoencoder_)
    # a shared folder for other images: the per-user file is used, and said so
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(folders / "nothing-here"))
    artifacts.get_autoencoder("cifar10-mnist", TINY, 0, data=_toy("cifar10-mnist"), progress=False)
    assert capsys.readouterr().out.strip() == "loaded the autoencoder of artifacts/quick/cifar10-mnist/detector_paper_seed0.pt"
    with pytest.raises(InputError, match="noise_augment: expected True or False"):
        artifacts.get_autoencoder("cifar10-mnist", TINY, 0, noise_augment="yes", data=_toy("cifar10-mnist"))


# -- 5. the step functions are the standard path's step -------------------------------------------------
ONE_BATCH = smooth_images(TINY.batch_size, 1, seed=4) * 0.5   # one batch per epoch: epoch loss = step loss


def test_autoencoder_loss_is_the_loops_first_step(monkeypatch):
    calls = []
    real = steps.autoencoder_loss
    monkeypatch.setattr(detector_module, "autoencoder_loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(0)
    autoencoder, losses = detector_module.train_autoencoder_stage(
        ONE_BATCH, 1, TINY, torch.Generator().manual_seed(3), runtime.run_options("cpu"), True, progress=False)
    assert calls == [1] and len(losses) == 1
    torch.manual_seed(0)
    by_hand = new_autoencoder(1, TINY).train()
    generator = torch.Generator().manual_seed(3)
    index = torch.randperm(len(ONE_BATCH), generator=generator)     # the loop's epoch order
    loss = real(by_hand, ONE_BATCH[index], NoiseAugment(TINY.noise_max_severity), generator)
    assert loss.shape == () and float(loss.detach()) == pytest.approx(losses[0], rel=1e-6)
    clean = real(by_hand, ONE_BATCH[index])
    assert float(clean.detach()) != pytest.approx(losses[0], rel=1e-6)      # the noise is part of the step


def test_classifier_batch_and_loss_are_the_loops_first_step(monkeypatch):
    torch.manual_seed(1)
    autoencoder = AutoEncoder(1, TINY.width, TINY.latent_dim, TINY.stem).eval()
    classifier = DifferenceClassifier(1, TINY.width, TINY.latent_dim, TINY.stem, True, 2)
    by_hand = copy.deepcopy(classifier).train()
    noise = NoiseAugment(TINY.noise_max_severity)

    def make_step(networks, generator):
        return lambda index: steps.classifier_loss(networks[0], networks[1],
                                                   *steps.classifier_batch(ONE_BATCH, index, None, noise, generator))

    losses = runtime.train_stage(classifier, make_step, len(ONE_BATCH), schedule=TINY.schedule(1),
                                 generator=torch.Generator().manual_seed(5), options=runtime.run_options("cpu"),
                                 name="classifier", progress=False, frozen=(autoencoder,))
    generator = torch.Generator().manual_seed(5)
    index = torch.randperm(len(ONE_BATCH), generator=generator)
    batch, labels = steps.classifier_batch(ONE_BATCH, index, None, noise, generator)
    n = len(index)
    assert batch.shape == (2 * n, 1, 32, 32) and 0 <= float(batch.min()) and float(batch.max()) <= 1
    assert labels.tolist() == [0.0] * n + [1.0] * n
    loss = steps.classifier_loss(by_hand, autoencoder, batch, labels)
    assert float(loss.detach()) == pytest.approx(losses[0], rel=1e-6)
    plain, _ = steps.classifier_batch(ONE_BATCH, index, ("invert",), None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain[:n], ONE_BATCH[index])                         # in-distribution half unchanged
    assert float((plain[n:] - ONE_BATCH[index]).abs().mean()) > 0.2                  # outliers made of partners


# -- 6. the ablation ---------------------------------------------------------------------------------------
def _fake_load_setting(setting, train_limit=None, seed=0, **_):
    channels = 3 if setting.startswith("cifar10") else 1
    images = smooth_images(96, channels, seed=seed) * 0.5
    return OODData(setting, f"dark {setting}", "bright", channels, images,
                   smooth_images(30, channels, seed=50) * 0.5, 1 - smooth_images(30, channels, seed=51) * 0.5)


def test_ablation_writes_both_tables_with_origins_and_reuses_the_shared_folder(folders, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "load_setting", _fake_load_setting)
    monkeypatch.setattr(pretrain_module, "get_data",
                        lambda setting, preset, seed, download=None: _fake_load_setting(setting, seed=seed))
    shared = folders / "pretrained"
    pretrain(shared, TINY, variants=list(VARIANTS), progress=False)
    monkeypatch.setenv("OOD_PRETRAINED_DIR", str(shared))
    monkeypatch.setattr(OODDetector, "_fit", lambda *a, **k: pytest.fail("a pretrained detector was retrained"))
    out = folders / "ablation"
    monkeypatch.setattr(evaluation, "get_preset", lambda preset: TINY)   # the files were made with TINY
    assert main(["ablation", "--preset", "quick", "--seeds", "0", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert saved["kind"] == "ablation" and saved["preset"] == "quick" and saved["seeds"] == [0]
    assert saved["settings"] == ["mnist-cifar10", "cifar10-mnist"] and saved["negatives"] == NEGATIVES_NOTE
    assert saved["command"].endswith("python -m ood_helpers ablation --preset quick --seeds 0 --out " + str(out))
    assert {"platform", "cpus", "torch", "cuda"} <= set(saved["machine"])
    for setting in ("mnist-cifar10", "cifar10-mnist"):
        rows = saved["results"][setting]["variants"]
        assert list(rows) == ["paper", "paper-no-aux", "paper-no-noise", "ours", "ours-distance-only"]
        for key, row in rows.items():
            assert row["origin"] == VARIANTS[key].origin and len(row["auroc_per_seed"]) == 1
            assert row["auroc_mean"] == row["auroc_per_seed"][0] and row["auroc_std"] is None
            assert 0 <= row["aupr_mean"] <= 1 and 0 <= row["fpr95_mean"] <= 1
            assert row["run_identities"][0]["variant"] == key
            assert row["delta_vs_paper"]["mean"] == pytest.approx(row["auroc_mean"] - rows["paper"]["auroc_mean"])
        assert rows["ours"]["delta_vs_without_distance"]["variant"] == "paper"
        assert rows["ours-distance-only"]["delta_vs_without_distance"]["variant"] == "paper-no-aux"
    reported = {key: row["paper_reported"] for key, row in saved["results"]["cifar10-mnist"]["variants"].items()}
    assert reported == {"paper": 0.5908, "paper-no-aux": 0.5624, "paper-no-noise": 0.5873, "ours": None,
                        "ours-distance-only": None}
    assert saved["results"]["mnist-cifar10"]["variants"]["paper"]["paper_reported"] == 0.9718
    # two tables per setting, every row labelled with its origin
    assert markdown.count("(a) Table 3, like for like") == 2 and markdown.count("(b) what our additions add") == 2
    assert "| paper w/o auxiliary input (Table 3) | paper's method |" in markdown
    assert "| ours: our latent distances instead of z injection | ours |" in markdown
    assert "| paper's method (Fig. 2, our reimplementation) | paper's method |" in markdown
    assert "paper (reported)" in markdown and "0.5624" in markdown and "reference" in markdown
    assert NEGATIVES_NOTE in markdown and saved["command"] in markdown
    assert "linear path" not in markdown, "TINY's autoencoder has no linear path"
    monkeypatch.setattr(evaluation, "get_preset", get_preset)
    assert "also has our linear path" in evaluation.ablation_markdown({**saved, "preset": "classroom"})
    assert "linear path" not in evaluation.ablation_markdown({**saved, "preset": "paper"})
    assert "(a) Table 3, like for like" in printed and not list(folders.glob("artifacts/**/*.pt"))


@pytest.mark.parametrize("kwargs, match", [(dict(settings=["mnist-svhn"]), "settings"), (dict(settings=[]), "settings"),
                                           (dict(seeds=[0, 0]), "seeds"), (dict(seeds=[-1]), "seeds"),
                                           (dict(preset="huge"), "preset")])
def test_ablation_rejects_bad_arguments_before_loading_anything(kwargs, match, monkeypatch):
    monkeypatch.setattr(evaluation, "load_setting", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(InputError, match=match):
        evaluation.ablation(progress=False, **kwargs)


def test_ablation_checks_its_output_folder_before_loading_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "load_setting", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / "taken").write_text("x")
    assert main(["ablation", "--preset", "quick", "--seeds", "0", "--out", str(tmp_path / "taken"),
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
