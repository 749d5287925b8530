"""The set-up files stay in step: environment.yml and pyproject.toml, README and CI."""
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _environment_names() -> set[str]:
    env = (ROOT / "environment.yml").read_text()
    return {_name(line.strip()[2:]) for line in env.splitlines() if line.strip().startswith("- ")}


def test_environment_yml_is_the_runtime_and_nothing_for_tests():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = _environment_names()
    missing = [n for n in map(_name, project["dependencies"]) if CONDA_NAMES.get(n, n) not in listed]
    assert not missing, f"environment.yml lacks runtime dependencies {missing}"
    test_tools = {_name(r) for r in project["optional-dependencies"]["test"]}
    assert {"pytest", "nbval", "playwright", "pyod"} <= test_tools
    leaked = sorted(test_tools & listed)
    assert not leaked, f"environment.yml gives every student the test tools {leaked}; keep them in the test extra"
    env = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in env and "pytorch\n" not in env.split("channels:")[1].split("dependencies:")[0]
    # repo2docker builds the environment before the repository is copied in: no local install here
    body = [line.split("#")[0] for line in env.splitlines()]
    assert not any(re.search(r"-e\s|\s\.\s*$|file:", line) for line in body), "environment.yml installs the repository"


def test_postbuild_installs_the_package_from_the_repository_without_dependencies():
    post = ROOT / "postBuild"
    assert post.is_file() and os.access(post, os.X_OK), "postBuild must exist and be executable"
    assert not (ROOT / "binder").exists(), "a binder/ folder would make repo2docker ignore the root files"
    text = post.read_text()
    assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    install = [line for line in text.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert len(install) == 1 and "--no-deps" in install[0] and re.search(r"(-e )?\.$", install[0].strip())
    # --no-build-isolation needs the build backend in the environment
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert "--no-build-isolation" not in install[0] or all(_name(r) in _environment_names() for r in requires)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", ci, re.MULTILINE)
    assert "OOD_DATA_DIR" in ci


def test_torch_ranges_admit_the_offline_wheels():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if _name(d) == "torch")
    vision_req = next(d for d in deps if _name(d) == "torchvision")
    assert "==" not in torch_req and "==" not in vision_req
    low, high = re.findall(r"[\d.]+", torch_req)[:2]
    assert tuple(map(int, low.split("."))) <= (2, 14, 1) < tuple(map(int, high.split("."))) + (0,)


def test_the_book_has_its_own_extra_and_make_test_builds_and_checks_it():
    """Issue 25: `make site` installs the docs extra (never `make lab`), `make test` runs test-site."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    docs = {_name(r) for r in project["optional-dependencies"]["docs"]}
    assert {"jupyter-book", "sphinx-argparse", "sphinx-mathjax-offline"} <= docs
    assert next(r for r in project["optional-dependencies"]["docs"] if _name(r) == "jupyter-book").endswith("<2")
    assert not docs & _environment_names(), "the book's tools stay out of the students' environment"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\btest-site\b", makefile, re.M)
    assert re.search(r"^site: setup-docs$", makefile, re.M) and re.search(r"^lab: setup$", makefile, re.M)
    assert re.search(r"^test-unit: setup\n.*--ignore=tests/site", makefile, re.M)
    assert "[test,docs]" in makefile.split("$(DOCS_STAMP):")[1].split("\n\n")[0]
    config = (ROOT / "docs" / "_config.yml").read_text()
    assert re.search(r'execute_notebooks: "off"', config) and "nitpicky: true" in config
    workflow = (ROOT / ".github" / "workflows" / "site.yml").read_text()
    assert "make site" in workflow and "_build/html" in workflow
