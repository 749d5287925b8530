"""The book's staging step (docs/build_site.py), without building: one results page per folder of
results/, each from the committed Markdown, and a package reference that lists every module."""
from __future__ import annotations

import importlib.util
import pkgutil
from pathlib import Path

import ood_helpers

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_site", ROOT / "docs" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)


def test_one_results_page_per_folder_rendered_from_the_committed_markdown(tmp_path):
    entries = build_site.stage_results(tmp_path)
    folders = sorted(p.name for p in (ROOT / "results").iterdir() if p.is_dir() and any(p.rglob("*.md")))
    loose = sorted(p.stem for p in (ROOT / "results").glob("*.md"))
    pages = [entry["file"] for entry in entries]
    assert len(pages) == len(folders) + len(loose)
    for folder in folders:
        assert sum(page.startswith(f"results/{folder}/") for page in pages) == 1, folder
    for entry in entries:
        page = tmp_path / f"{entry['file']}.md"
        assert page.read_text().startswith("# "), f"{page} has no title"
        for section in entry.get("sections", []):
            committed = ROOT / f"{section['file']}.md"
            staged = (tmp_path / f"{section['file']}.md").read_text()
            assert staged.endswith(committed.read_text()), "a report is shown as committed"
    index = (tmp_path / "results" / "index.md").read_text()
    assert all(f"[{folder}]" in index for folder in folders)


def test_the_package_reference_lists_every_module():
    page = build_site.package_reference()
    modules = [info.name for info in pkgutil.walk_packages(ood_helpers.__path__, "ood_helpers.")
               if not info.name.endswith("__main__")]
    assert "ood_helpers.colab" in modules
    for name in modules:
        assert f".. automodule:: {name}\n" in page, name
    assert ".. autodata:: ood_helpers.variants.VARIANTS" in page
