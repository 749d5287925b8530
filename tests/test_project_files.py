"""The set-up files stay in step: environment.yml and pyproject.toml, README and CI."""
import os
import re
import shutil
import subprocess
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
    assert re.search(r"^test-unit: setup-test\n.*--ignore=tests/site", makefile, re.M)
    assert "[test,docs]" in makefile.split("$(DOCS_STAMP):")[1].split("\n\n")[0]
    config = (ROOT / "docs" / "_config.yml").read_text()
    assert re.search(r'execute_notebooks: "off"', config) and "nitpicky: true" in config
    workflow = (ROOT / ".github" / "workflows" / "site.yml").read_text()
    assert "make site" in workflow and "_build/html" in workflow


# -- issue 24, items 8 and 9: a short README whose links work, and the two commands for a student ------
README_LIMIT = 10_240


def _relative_links(markdown: str) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:|#", link)]


def test_readme_is_short_and_every_relative_link_resolves():
    readme = ROOT / "README.md"
    size = len(readme.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"
    links = _relative_links(readme.read_text())
    assert links, "the README links the notebooks and the docs pages"
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_says_how_to_start_the_lab_and_run_commands_in_the_environment():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"OOD_PRETRAINED_DIR=\S+ make lab", readme), "how to start the lab on a pretrained folder"
    assert "make pretrain" in readme
    assert ".venv/bin/python -m ood_helpers" in readme and "source .venv/bin/activate" in readme
    assert ".venv\\Scripts\\activate" in readme
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "TORCH_INDEX=" in readme
    # no bare `python -m ood_helpers` command outside a sentence that names the environment
    for line in readme.splitlines():
        if line.lstrip().startswith(("python -m", "$ python -m")):
            raise AssertionError(f"a command outside the project's environment: {line}")


def test_the_book_lists_every_docs_page():
    toc = (ROOT / "docs" / "_toc.yml").read_text()
    listed = set(re.findall(r"(?:file|root): (\S+)", toc))
    pages = {p.relative_to(ROOT / "docs").with_suffix("").as_posix()
             for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts}
    assert pages - {"reference/package"} <= listed, sorted(pages - listed)
    assert {"usage", "trust", "findings", "gpu", "instructors", "plans"} <= listed
    readme = (ROOT / "README.md").read_text()
    for page in ("usage", "trust", "findings", "gpu", "instructors", "plans"):
        assert f"(docs/{page}.md" in readme, f"the README links docs/{page}.md"


def test_make_lab_installs_the_runtime_only_and_make_test_the_test_extra():
    makefile = (ROOT / "Makefile").read_text()
    runtime = makefile.split("$(STAMP): pyproject.toml")[1].split("\n\n")[0]
    assert re.search(r"-e \.$", runtime, re.M) and "[test" not in runtime, runtime
    tests = makefile.split("$(TEST_STAMP): pyproject.toml $(STAMP)")[1].split("\n\n")[0]
    assert "-e '.[test]'" in tests
    for target in ("test-unit", "test-notebooks", "test-browser"):
        assert re.search(rf"^{target}: setup-test$", makefile, re.M), target
    assert re.search(r"^lab: setup$", makefile, re.M)
    # TORCH_INDEX changes nothing unless set (CI installs from its own index)
    assert re.search(r"^TORCH_INDEX \?=\s*$", makefile, re.M)
    assert "$(if $(TORCH_INDEX)," in runtime


def _fake_checkout(tmp_path: Path) -> Path:
    """The Makefile beside a .venv whose jupyter only prints how it was called (nothing installed)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in (("python", "exit 0"),
                       ("jupyter", 'echo "ARGS $*"; echo "PRETRAINED=$OOD_PRETRAINED_DIR"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    stamp = tmp_path / ".venv" / ".installed-stamp"
    stamp.touch()
    later = (tmp_path / "pyproject.toml").stat().st_mtime + 60
    os.utime(stamp, (later, later))
    return tmp_path


def test_make_lab_allows_root_only_as_root_and_reads_a_relative_pretrained_folder(tmp_path):
    if shutil.which("make") is None:
        import pytest
        pytest.skip("no make on this machine")
    checkout = _fake_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("OOD_PRETRAINED_DIR", "OOD_DATA_DIR", "MAKEFLAGS")}
    done = subprocess.run(["make", "lab"], cwd=checkout, capture_output=True, text=True, timeout=60,
                          env={**env, "OOD_PRETRAINED_DIR": "runs/pretrained"})
    assert done.returncode == 0, done.stderr
    args = next(line for line in done.stdout.splitlines() if line.startswith("ARGS "))
    assert args.split()[1:] == ["lab"] + (["--allow-root"] if os.getuid() == 0 else []) + ["notebooks/"], args
    assert f"PRETRAINED={checkout / 'runs' / 'pretrained'}" in done.stdout
    # nothing installed: the runtime stamp was newer than pyproject.toml, and no test stamp was needed
    assert "pip install" not in done.stdout and not (checkout / ".venv" / ".test-installed-stamp").exists()
    # the dry run of a fresh clone: the runtime only; `make test` adds the test extra
    lab = subprocess.run(["make", "-n", "-B", "lab"], cwd=checkout, capture_output=True, text=True, env=env).stdout
    assert "pip install" in lab and "[test" not in lab and "--index-url" not in lab
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=checkout, capture_output=True, text=True, env=env).stdout
    assert "-e '.[test]'" in test
    cpu = subprocess.run(["make", "-n", "-B", "lab", "TORCH_INDEX=https://download.pytorch.org/whl/cpu"],
                         cwd=checkout, capture_output=True, text=True, env=env).stdout
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu


def _first_table_column(markdown: str, column: int) -> list[str]:
    """The cells of one column of the first Markdown table after the first '###' heading."""
    lines = markdown[markdown.index("\n### "):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]][column])
    return rows


def test_readme_results_are_the_committed_ones():
    """The README's table and its claims about it come from results/ (a rerun that changes them fails here)."""
    import json

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| detector | Fashion-MNIST in / MNIST out"):]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines()[2:]
            if line.startswith("| ")][:6]
    assert len(rows) == 6
    for column, setting in ((1, "fmnist-mnist"), (2, "mnist-fmnist")):
        committed = _first_table_column((ROOT / "results" / setting / "results.md").read_text(), 1)
        for row in rows:
            assert row[column] in committed, f"README's {row[0]} on {setting}: {row[column]} not in results/{setting}"
    mean = {row[0]: [float(row[c].split(" ± ")[0]) for c in (1, 2)] for row in rows}
    ours = mean["ours: the paper's method + two latent distances"]
    others = [values for name, values in mean.items() if not name.startswith("ours")]
    assert all(ours[0] - values[0] >= 0.03 for values in others)            # "leads every detector by 0.03 or more"
    difference = mean["autoencoder difference"][1]
    assert 0 < difference - ours[1] < 0.001 and ours[1] > mean["the paper's method (our reimplementation)"][1]
    cost = json.loads((ROOT / "results" / "linear-path-cost" / "results.json").read_text())["values"]
    resized = {label.split(" | ")[0]: sum(v) / len(v) for label, v in cost.items()
               if label.endswith("AUROC, ours: Fashion-MNIST, resized")}
    with_path, without = resized.values()
    assert round(with_path, 2) == 0.68 and "only 0.68" in readme
    assert round(without - with_path, 2) == 0.18 and "costs about 0.18" in readme


def test_findings_on_the_linear_path_are_the_committed_ones():
    """docs/findings.md's CIFAR-10 / Fashion-MNIST rows and linear-path bullet come from results/."""
    import json

    findings = " ".join((ROOT / "docs" / "findings.md").read_text().split())   # line breaks as spaces
    fashion = (ROOT / "results" / "cifar10-fashion" / "results.md").read_text()
    for variant, geometry in (("ours", "padded"), ("ours", "resized")):
        row = next(line for line in fashion.splitlines() if line.startswith(f"| {variant} | {geometry} |"))
        ours, paper = row.split("|")[3].strip(), next(
            line for line in fashion.splitlines() if line.startswith(f"| paper | {geometry} |")).split("|")[3].strip()
        assert f"| {ours} | {paper} |" in findings, (geometry, ours, paper)
    values = json.loads((ROOT / "results" / "linear-path-cost" / "results.json").read_text())["values"]

    def mean(label, measure, digits=2):
        return f"{sum(values[f'{label} | {measure}']) / len(values[f'{label} | {measure}']):.{digits}f}"

    with_path = "with the linear path (classroom preset)"
    without = "without it (classroom preset, ae_linear_path=False)"
    for measure, digits in (("AUROC, ours: Fashion-MNIST, resized", 2),
                            ("AUROC, classifier logit: Fashion-MNIST, resized", 2),
                            ("AUROC, ours: Fashion-MNIST, padded", 2), ("AUROC, ours: MNIST (the paper's pair)", 4)):
        assert f"{mean(with_path, measure, digits)} → {mean(without, measure, digits)}" in findings, measure
    psnr = "PSNR of CIFAR-10 test images, dB"
    assert f"{mean(with_path, psnr, 1)} dB instead of {mean(without, psnr, 1)} dB" in findings
    colour = "AUROC, ours: far-OOD: constant colour"
    assert f"constant colour at {mean(with_path, colour)} instead of {mean(without, colour)}" in findings
    resized = "AUROC, classifier logit: Fashion-MNIST, resized"
    assert all(b > a for a, b in zip(values[f"{with_path} | {resized}"], values[f"{without} | {resized}"]))
    padded = "AUROC, ours: Fashion-MNIST, padded"
    # "one seed goes down"
    assert any(b < a for a, b in zip(values[f"{with_path} | {padded}"], values[f"{without} | {padded}"]))


def test_findings_on_the_four_part_rerun_are_the_committed_ones():
    import json

    findings = " ".join((ROOT / "docs" / "findings.md").read_text().split())
    rule = json.loads((ROOT / "results" / "fashion-parts" / "rule-up-to-four-parts" / "rule" / "results.json")
                      .read_text())["rule"]
    assert rule[0][0] == "classifier + latent two-sided + z 1-NN"   # today's ours, chosen again
    assert f"pick today's ours again ({rule[0][1]:.3f} over the six runs)" in findings
    four = next(i for i, row in enumerate(rule, 1) if row[0].count("+") == 3)
    assert rule[four - 1][0] == "classifier + latent two-sided + z 1-NN + z 10-NN" and four == 4
    assert f"comes 4th ({rule[3][1]:.3f})" in findings
    with_difference = next(i for i, row in enumerate(rule, 1) if "difference" in row[0])
    assert with_difference == 7 and f"7th ({rule[6][1]:.3f})" in findings and len(rule) == 43


def test_findings_on_why_the_linear_path_costs_are_the_committed_ones():
    import json

    findings = " ".join((ROOT / "docs" / "findings.md").read_text().split())
    values = json.loads((ROOT / "results" / "linear-path-cost" / "results.json").read_text())["values"]
    labels = ("with the linear path (classroom preset)", "without it (classroom preset, ae_linear_path=False)")

    def means(measure):
        return [sum(values[f"{label} | {measure}"]) / 3 for label in labels]

    resized, padded = (means(f"AUROC, mean difference image: Fashion-MNIST, {g}") for g in ("resized", "padded"))
    assert resized[0] > resized[1] and padded[0] > padded[1]   # better *with* the path
    assert f"(resized {resized[0]:.2f} against {resized[1]:.2f}, padded {padded[0]:.2f} against {padded[1]:.2f})" \
        in findings
    gray = means("AUROC, classifier logit: the grayscale outlier family of validation CIFAR-10 images")
    assert all(0.5 < value < 0.7 for value in gray)   # "barely above chance either way"
    assert f"({gray[0]:.2f} with the path, {gray[1]:.2f} without)" in findings
