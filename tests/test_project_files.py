"""The set-up files stay in step: environment.yml and pyproject.toml, README and CI."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_every_runtime_and_test_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(line.strip()[2:]) for line in env.splitlines() if line.strip().startswith("- ")}
    missing = [n for n in wanted if CONDA_NAMES.get(n, n) not in listed]
    assert not missing, f"environment.yml lacks {missing}"
    assert "conda-forge" in env and "pytorch\n" not in env.split("channels:")[1].split("dependencies:")[0]
    assert "- -e ." in env


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
