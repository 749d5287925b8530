"""Build the book into _build/html: ``make site`` runs this.

1. Stage docs/, notebooks/*.ipynb and results/ into _build/src with the repository's layout, so
   the notebooks' links to ../results/... resolve as pages and the launch buttons point at
   notebooks/<name>.ipynb.
2. Generate the results pages' index (one page per folder in results/, each rendered from the
   committed Markdown there) and the package reference (one section per module).
3. ``jupyter-book build`` with warnings as errors (-W), nitpicky (-n); the notebooks are not
   executed (docs/_config.yml: execute_notebooks off).
"""
from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SRC = BUILD / "src"
RESULT_FILES = ("*.md", "*.png", "*.json", "*.txt")


def _title(markdown: Path) -> str:
    for line in markdown.read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return markdown.stem


def stage_results(src: Path = SRC, results: Path = ROOT / "results") -> list[dict]:
    """Copy results/ into ``src``/results; return the table-of-contents entries, one per folder
    (a folder with several reports gets a generated index page listing them)."""
    for pattern in RESULT_FILES:
        for path in results.rglob(pattern):
            target = src / "results" / path.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for report in (src / "results").rglob("*.md"):  # a report without a title gets its path as one
        text = report.read_text()
        if not text.startswith("# "):
            report.write_text(f"# {report.relative_to(src / 'results').with_suffix('').as_posix()}\n\n{text}")
    entries, lines = [], ["# Results", "",
                          "Every folder in `results/` of the repository, rendered from the Markdown committed there",
                          "(each run writes its JSON and Markdown together; `make compare`, `make ablation` and the",
                          "benchmarks in `benchmarks/` write them).", ""]
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        reports = sorted(folder.rglob("*.md"))
        if not reports:
            continue
        if len(reports) == 1:
            page = reports[0].relative_to(results).with_suffix("")
            entries.append({"file": f"results/{page.as_posix()}"})
            lines.append(f"- [{folder.name}]({page.as_posix()}.md): {_title(reports[0])}")
            continue
        index = src / "results" / folder.name / "index.md"
        sub = [f"# {folder.name}", "", f"The reports committed in `results/{folder.name}/`:", ""]
        sections = []
        for report in reports:
            rel = report.relative_to(folder).with_suffix("").as_posix()
            sub.append(f"- [{_title(report)}]({rel}.md)")
            sections.append({"file": f"results/{folder.name}/{rel}"})
        index.write_text("\n".join(sub) + "\n")
        entries.append({"file": f"results/{folder.name}/index", "sections": sections})
        lines.append(f"- [{folder.name}]({folder.name}/index.md): {len(reports)} reports")
    for loose in sorted(results.glob("*.md")):  # a report kept directly in results/
        entries.append({"file": f"results/{loose.stem}"})
        lines.append(f"- [{loose.stem}]({loose.name}): {_title(loose)}")
    (src / "results" / "index.md").write_text("\n".join(lines) + "\n")
    return entries


def _constants(path: Path) -> list[str]:
    """The UPPER_CASE names a module assigns at its top level (listed, so docstrings can link them)."""
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    names = []
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_")]
    return list(dict.fromkeys(names))


def package_reference() -> str:
    """The package reference page: the package's docstring, then every module's."""
    sys.path.insert(0, str(ROOT))
    import ood_helpers

    names = sorted(info.name for info in pkgutil.walk_packages(ood_helpers.__path__, "ood_helpers.")
                   if not info.name.endswith("__main__"))
    parts = ["# The package `ood_helpers`", "",
             "Generated from the docstrings at build time (`sphinx.ext.autodoc`); the command line is",
             "on [its own page](cli.md).", "", "```{eval-rst}", ".. automodule:: ood_helpers", "```", ""]
    for name in names:
        parts += [f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "   :members:",
                  "   :ignore-module-all:",
                  "   :special-members: __call__", ""]
        for constant in _constants(ROOT / (name.replace(".", "/") + ".py")):
            parts += [f".. autodata:: {name}.{constant}", "   :no-value:", ""]
        parts += ["```", ""]
    return "\n".join(parts)


def stage() -> None:
    if SRC.exists():
        shutil.rmtree(SRC)
    shutil.copytree(ROOT / "docs", SRC, ignore=shutil.ignore_patterns("build_site.py", "__pycache__"))
    (SRC / "notebooks").mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(notebook, SRC / "notebooks" / notebook.name)
    import yaml  # with the docs extra (Jupyter Book needs it)

    entries = stage_results()
    toc = yaml.safe_load((SRC / "_toc.yml").read_text())
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            if chapter.get("file") == "results/index":
                chapter["sections"] = entries
    (SRC / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (SRC / "reference" / "package.md").write_text(package_reference())


def main() -> int:
    start = time.monotonic()
    stage()
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(SRC), "--path-output", str(ROOT),
               "-W", "-n", "--keep-going", "--quiet", "--all"]
    done = subprocess.run(command, cwd=ROOT)
    seconds = time.monotonic() - start
    if done.returncode:
        print(f"make site: FAILED after {seconds:.1f} s (warnings are errors; see above)", file=sys.stderr)
        return done.returncode
    print(f"make site: built {BUILD / 'html' / 'index.html'} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
