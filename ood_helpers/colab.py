"""Google Colab: install the series' package and work from its notebooks, on a first run and on
every re-run.

Each notebook's first code cell clones the repository into ``/content/ood-notebooks`` when it runs
on Colab and the folder is not there yet, then calls :func:`setup` from the clone. The cell has to
carry the repository's address itself (nothing is installed yet when it runs); the one place that
holds the address is ``pyproject.toml [project.urls] repository``, and
``python -m ood_helpers.colab set-repository URL`` (``make repository URL=...``) writes it there
and into every notebook's cell. tests/test_colab_setup.py checks that they agree.

After *Runtime → Restart session* the clone and the installed package are still there but the
working folder is back at ``/content``: :func:`setup` skips what is done and always changes into
``notebooks/``, so relative paths (``../results``) work again.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY_DIR = "/content/ood-notebooks"
INSTALLED_MARKER = ".colab-installed"  # written into the clone once pip has installed it


def _pip_install(repository_dir: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", repository_dir], check=True)


def _enable_widgets() -> bool:
    """Colab renders ipywidgets 8 (the noise explorer of notebook 06) through its custom widget
    manager, which is opt-in. Returns whether it could be switched on."""
    try:
        from google.colab import output
        output.enable_custom_widget_manager()
    except (ImportError, AttributeError):
        return False
    return True


def setup(repository_dir: str = REPOSITORY_DIR) -> str:
    """Make a Colab session ready to run the notebooks; does only what is not done yet.

    Installs the clone in ``repository_dir`` with pip (once: a marker file remembers it), puts it
    first on ``sys.path`` (the running kernel cannot see a fresh install), changes into its
    ``notebooks/`` folder (every time: a restarted session starts in ``/content``) and switches on
    Colab's widget manager.

    Parameters
    ----------
    repository_dir : str
        The clone of the repository.

    Returns
    -------
    str
        The notebooks folder, now the working directory.

    Raises
    ------
    RuntimeError
        When ``repository_dir`` holds no clone of the series (the clone failed, e.g. a wrong
        address, or stopped half way): delete the folder and run the cell again.
    """
    root = Path(repository_dir)
    notebooks = root / "notebooks"
    if not (root / "pyproject.toml").is_file() or not (root / "ood_helpers").is_dir() or not notebooks.is_dir():
        raise RuntimeError(f"{root} holds no clone of ood-notebooks (did `git clone` fail? check the address in "
                           f"the first cell); delete the folder (rm -rf {root}) and run the cell again.")
    marker = root / INSTALLED_MARKER
    if not marker.is_file():
        _pip_install(str(root))
        marker.write_text("pip install -e done\n")
    while str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    os.chdir(notebooks)
    if _enable_widgets():
        print("Colab: widgets on (custom widget manager). If the explorer in notebook 06 stays blank, "
              "its pictures below it show the same settings.")
    return str(notebooks)


# -- one address, written everywhere it is needed ----------------------------------------------
_ADDRESS = re.compile(r'^repository = "([^"]+)"', re.M)


def repository_url(root: Path) -> str:
    """``[project.urls] repository`` of ``root``/pyproject.toml: the repository's address.

    Returns
    -------
    str
    """
    # the line set_repository writes, read by the same pattern (tomllib is Python 3.11+; we admit 3.10)
    return _ADDRESS.search((root / "pyproject.toml").read_text()).group(1)


def set_repository(url: str, root: Path) -> list[Path]:
    """Write ``url`` as the repository's address into pyproject.toml and every notebook's first
    cell (their text only: outputs and formatting stay byte for byte). Returns the changed files.

    Returns
    -------
    list of pathlib.Path

    Raises
    ------
    ValueError
        When ``url`` is not an ``https://github.com/<owner>/<repo>`` address (the Colab and
        Binder buttons need one).
    """
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"expected https://github.com/<owner>/<repo>, got {url!r}")
    old = repository_url(root)
    pyproject = root / "pyproject.toml"
    changed = []
    text = pyproject.read_text()
    if old != url:
        pyproject.write_text(_ADDRESS.sub(f'repository = "{url}"', text, count=1))
        changed.append(pyproject)
    for notebook in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = notebook.read_text()
        line = f'REPOSITORY = \\"{old}\\"'
        if old != url and line in text:
            notebook.write_text(text.replace(line, f'REPOSITORY = \\"{url}\\"'))
            changed.append(notebook)
    return changed


def main(argv=None) -> int:
    """``python -m ood_helpers.colab set-repository URL``: see :func:`set_repository`.

    Returns
    -------
    int
        The exit status.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "set-repository":
        print("usage: python -m ood_helpers.colab set-repository https://github.com/<owner>/<repo>", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[1]
    try:
        changed = set_repository(argv[1], root)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"repository address {argv[1]}: {len(changed)} files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
