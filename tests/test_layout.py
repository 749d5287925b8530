"""The package's layout (issue 21): a teaching core a student reads in one sitting, machinery above it,
no import cycle, and ``import ood_helpers`` loading the core only."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import ood_helpers
from ood_helpers import steps

PACKAGE = Path(ood_helpers.__file__).parent
# the paper's method (networks, steps, augmentation, loop, fit and score) and what it stands on
CORE = {"networks", "steps", "noise", "outliers", "loop", "detector", "presets", "variants", "ours"}
BENEATH_THE_CORE = {"api", "validation", "runtime", "_version"}
MACHINERY = ("distributed", "checkpoints", "persistence", "files", "artifacts", "pretrain", "evaluation", "baselines",
             "teaching", "data", "colab")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> dict[str, bool]:
    """Every ood_helpers module ``path`` imports -> whether at module level (else inside a function)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: dict[str, bool] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("ood_helpers"):
                continue
            targets = [base]
            for alias in node.names:   # "from . import runtime" imports the submodule runtime
                if (PACKAGE.parent / (base + "." + alias.name).replace(".", "/")).with_suffix(".py").exists() or \
                        (PACKAGE.parent / (base + "." + alias.name).replace(".", "/") / "__init__.py").exists():
                    targets.append(f"{base}.{alias.name}")
            for target in targets:
                found[target] = found.get(target, False) or node.col_offset == 0
    return found


GRAPH = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def test_no_import_cycle_at_module_or_function_level():
    edges = {module: {target for target in targets if target in GRAPH and target != module}
             for module, targets in GRAPH.items()}
    # a package imports its parent package implicitly; that is no cycle of ours
    for module in edges:
        edges[module] = {t for t in edges[module] if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_core_imports_no_machinery():
    allowed = {f"ood_helpers.{name}" for name in CORE | BENEATH_THE_CORE} | {"ood_helpers"}
    for name in CORE | BENEATH_THE_CORE:
        module = f"ood_helpers.{name}"
        at_module_level = {target for target, top in GRAPH[module].items() if top}
        assert at_module_level <= allowed, f"{module} imports {sorted(at_module_level - allowed)} at module level"


def test_import_ood_helpers_loads_the_core_only():
    code = "import ood_helpers, sys; print(' '.join(sorted(m for m in sys.modules if m.startswith('ood_helpers'))))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=PACKAGE.parent).stdout.split())
    assert loaded, "nothing of ood_helpers was loaded"
    for name in MACHINERY:
        assert f"ood_helpers.{name}" not in loaded, f"import ood_helpers loaded ood_helpers.{name}"
    assert ood_helpers.evaluation.__name__ == "ood_helpers.evaluation"   # the rest, on first use


def test_each_step_reads_in_under_40_lines():
    for step in (steps.autoencoder_loss, steps.difference_image):
        assert len(inspect.getsourcelines(step)[0]) < 40, step.__name__
    classifier_step = inspect.getsourcelines(steps.classifier_batch)[0] + inspect.getsourcelines(steps.classifier_loss)[0]
    assert len(classifier_step) < 40


def test_the_version_has_one_source():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "ood_helpers._version.__version__" in pyproject
    assert 'version = "' not in pyproject.split("[project]")[1].split("[")[0]
    assert ood_helpers.__version__ == (PACKAGE / "_version.py").read_text().split('"')[1]
