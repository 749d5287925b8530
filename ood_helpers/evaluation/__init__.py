"""Evaluation above the detectors: metrics, the comparison and ablation tables (``compare``),
far-OOD sets, reports, and the numbers the paper and the literature report.

The comparison's functions are reachable here too (``ood_helpers.evaluation.run_comparison``),
loaded on first use, so ``from ood_helpers.evaluation import metrics`` stays light.
"""
import importlib


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    compare = importlib.import_module(".compare", __name__)
    try:
        return getattr(compare, name)
    except AttributeError:
        raise AttributeError(f"module 'ood_helpers.evaluation' has no attribute {name!r}") from None
