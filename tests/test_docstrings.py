"""Every public name of ood_helpers is documented (numpydoc): what it is, the shapes of the images
and scores it takes, and, for the user-facing entry points, what it raises."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import ood_helpers

IMAGE_ARGUMENTS = ("images", "image", "in_scores", "out_scores", "scores", "train_images")
# what a user calls directly: each says in a Raises section what a bad call gives
ENTRY_POINTS = [
    "api.BaseDetector.fit", "api.BaseDetector.decision_function", "api.BaseDetector.predict",
    "detector.OODDetector.fit", "detector.OODDetector.score_components", "detector.OODDetector.explain",
    "detector.OODDetector.save", "detector.OODDetector.load", "detector.AutoencoderDifferenceDetector.from_detector",
    "data.load_images", "data.load_setting", "data.to_geometry", "noise.add_noise", "outliers.make_outliers",
    "outliers.apply_family", "validation.as_image_batch", "validation.iter_image_batches", "evaluation.metrics.auroc",
    "evaluation.metrics.fpr_at_tpr", "artifacts.get_detector", "evaluation.compare.run_comparison", "evaluation.compare.reproduce",
    "checkpoints.load_checkpoint", "checkpoints.save_checkpoint", "teaching.widgets.noise_explorer", "teaching.widgets.explorer_state",
    "detector.OODDetector.load_autoencoder", "persistence.read_detector_file", "detector.fit_autoencoder",
    "artifacts.get_autoencoder", "artifacts.detector_relpath", "evaluation.compare.ablation", "variants.get_variant",
    "detector.build_detector", "steps.autoencoder_loss", "steps.classifier_batch", "steps.classifier_loss",
    "runtime.run_options", "runtime.pick_device", "loop.run_epochs",
]


def _public_names():
    modules = [importlib.import_module(info.name)
               for info in pkgutil.walk_packages(ood_helpers.__path__, "ood_helpers.")
               if not info.name.endswith("__main__")]
    for module in modules:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for member, value in vars(obj).items():
                        if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, classmethod)):
                            yield f"{module.__name__}.{name}.{member}", getattr(obj, member)


PUBLIC = dict(_public_names())


def test_the_package_has_public_names():
    assert len(PUBLIC) > 100


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_documented(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if any(argument in parameters for argument in IMAGE_ARGUMENTS) and not inspect.isclass(obj):
        assert "(N" in doc or "(C" in doc or "(B" in doc, f"{name} takes images or scores but states no shape"


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_say_what_they_raise(name):
    obj = PUBLIC[f"ood_helpers.{name}"]
    assert "Raises" in (inspect.getdoc(obj) or ""), f"{name} does not say what it raises"
