"""Colab as the launch buttons promise: each notebook's setup cell, run in a simulated Colab (a fake
``google.colab`` module, the shell and pip stubbed, a temporary folder as /content), is right on a
first run and after "Restart session"; the repository's address is held in one place."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from ood_helpers import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _setup_cell(notebook: Path) -> str:
    cells = [cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code"]
    return "".join(cells[0]["source"])


class FakeColab:
    """What the cell touches on Colab: ``google.colab.output``, ``get_ipython().system`` (git) and pip."""

    def __init__(self, content: Path, monkeypatch):
        self.content, self.shell_calls, self.pip_calls, self.widget_calls = content, [], [], 0
        google, package, output = (types.ModuleType(name) for name in ("google", "google.colab", "google.colab.output"))
        output.enable_custom_widget_manager = self._enable_widgets
        package.output, google.colab = output, package
        for name, module in (("google", google), ("google.colab", package), ("google.colab.output", output)):
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(colab, "_pip_install", self.pip_calls.append)

    def _enable_widgets(self):
        self.widget_calls += 1

    def system(self, command: str):
        """``git clone -q --depth 1 URL DEST``: a copy of this checkout stands in for the clone."""
        self.shell_calls.append(command)
        words = command.split()
        assert words[:2] == ["git", "clone"], command
        destination = Path(words[-1])
        for part in ("ood_helpers", "notebooks", "results"):
            shutil.copytree(ROOT / part, destination / part, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
        shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")

    def run_cell(self, source: str) -> dict:
        """A new kernel runs the cell: /content replaced by the temporary folder, cwd at /content."""
        os.chdir(self.content)
        namespace = {"get_ipython": lambda: self, "__name__": "__main__"}
        exec(compile(source.replace("/content", str(self.content)), "<setup cell>", "exec"), namespace)
        return namespace


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # restored afterwards, like sys.path and the environment
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("OOD_PRESET", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    content = tmp_path / "content"
    content.mkdir()
    return FakeColab(content, monkeypatch)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_setup_cell_on_a_first_run_and_after_restart_session(notebook, fake_colab):
    source = _setup_cell(notebook)
    clone = fake_colab.content / "ood-notebooks"

    first = fake_colab.run_cell(source)
    assert len(fake_colab.shell_calls) == 1 and colab.repository_url(ROOT) in fake_colab.shell_calls[0]
    assert fake_colab.pip_calls == [str(clone)]
    assert Path.cwd() == clone / "notebooks" and sys.path[0] == str(clone)
    assert (Path.cwd() / "../results/mnist-cifar10/results.md").is_file()  # what notebook 07 reads
    assert fake_colab.widget_calls == 1 and first["PRESET"] == "classroom"

    # Runtime -> Restart session: a new kernel in /content, the clone and the install still there
    sys.path.remove(str(clone))
    fake_colab.run_cell(source)
    assert len(fake_colab.shell_calls) == 1 and len(fake_colab.pip_calls) == 1  # nothing done twice
    assert Path.cwd() == clone / "notebooks", "a re-run must change into notebooks/ again"
    assert sys.path.count(str(clone)) == 1 and fake_colab.widget_calls == 2


def test_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("OOD_PRESET", raising=False)
    calls = []
    namespace = {"get_ipython": lambda: types.SimpleNamespace(system=calls.append)}
    exec(_setup_cell(NOTEBOOKS[0]), namespace)
    assert calls == [] and Path.cwd() == tmp_path and namespace["PRESET"] == "classroom"


def test_a_failed_clone_says_what_to_do(fake_colab, monkeypatch):
    monkeypatch.setattr(fake_colab, "system", fake_colab.shell_calls.append)  # git clone fails: no folder
    # the cell says so before it imports anything: on Colab ood_helpers exists only in the clone
    with pytest.raises(AssertionError, match=r"git clone of https://\S+ failed: fix the URL"):
        fake_colab.run_cell(_setup_cell(NOTEBOOKS[0]))
    half = fake_colab.content / "ood-notebooks"
    half.mkdir()  # a clone that stopped half way
    with pytest.raises(RuntimeError, match="holds no clone"):
        colab.setup(str(half))
    assert fake_colab.pip_calls == []


def test_the_repository_address_is_held_in_one_place():
    """pyproject.toml holds it; the launch buttons read it; every Colab cell carries the same."""
    url = colab.repository_url(ROOT)
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    for notebook in NOTEBOOKS:
        found = re.findall(r'REPOSITORY = "([^"]+)"', _setup_cell(notebook))
        assert found == [url], f"{notebook.name}: its Colab cell clones {found}, pyproject.toml says {url}"
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import ood_book
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    assert ood_book.repository_url(ROOT / "docs") == url
    config = (ROOT / "docs" / "_config.yml").read_text()
    assert "pyproject.toml" in config and "ood_book" in config
    assert "github.com/" not in config, "docs/_config.yml must not hold a second copy of the address"


def test_set_repository_rewrites_every_copy_and_only_that(tmp_path):
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "notebooks").mkdir()
    for notebook in NOTEBOOKS[:2]:
        shutil.copy2(notebook, tmp_path / "notebooks" / notebook.name)
    before = {p.name: p.read_text() for p in (tmp_path / "notebooks").iterdir()}
    changed = colab.set_repository("https://github.com/someone/ood-notebooks", tmp_path)
    assert len(changed) == 3 and colab.repository_url(tmp_path) == "https://github.com/someone/ood-notebooks"
    for notebook in (tmp_path / "notebooks").iterdir():
        old, new = before[notebook.name], notebook.read_text()
        assert new == old.replace(colab.repository_url(ROOT), "https://github.com/someone/ood-notebooks")
        assert json.loads(new)["cells"][2:] == json.loads(old)["cells"][2:]  # outputs untouched
    with pytest.raises(ValueError, match="github.com"):
        colab.set_repository("git@github.com:someone/ood-notebooks.git", tmp_path)
    assert colab.main(["set-repository"]) == 2
