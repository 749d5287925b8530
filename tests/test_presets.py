"""Presets a class controls: classroom unless chosen, on a GPU too; every notebook says so first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ood_helpers import InputError, get_preset
from ood_helpers.presets import default_preset_name

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


def test_the_default_is_classroom_even_with_a_gpu(monkeypatch):
    monkeypatch.delenv("OOD_PRESET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_preset_name() == "classroom" and get_preset().name == "classroom"
    monkeypatch.setenv("OOD_PRESET", "paper")
    assert get_preset().name == "paper"
    monkeypatch.setenv("OOD_PRESET", "huge")
    with pytest.raises(InputError, match="OOD_PRESET"):
        get_preset()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_sets_the_preset_visibly_and_installs_on_colab_only(path):
    cells = json.loads(path.read_text())["cells"]
    first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert 'setdefault("OOD_PRESET", "classroom")' in first and '"paper"' in first and "GPU" in first
    assert 'if "google.colab" in sys.modules' in first          # a no-op everywhere else
    rest = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "get_preset()" not in rest, "use the PRESET chosen in the first cell"


def test_the_colab_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    cells = json.loads(NOTEBOOKS[0].read_text())["cells"]
    source = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    monkeypatch.delenv("OOD_PRESET", raising=False)
    monkeypatch.chdir(tmp_path)
    namespace = {"get_ipython": lambda: pytest.fail("the Colab branch ran outside Colab")}
    exec(compile(source, "setup-cell", "exec"), namespace)
    assert namespace["PRESET"] == "classroom" and Path.cwd() == tmp_path
    monkeypatch.delenv("OOD_PRESET", raising=False)


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("ae_epochs", -1), ("width", 2.5), ("train_limit", 0),
                                          ("lr", float("nan")), ("gamma", 0.0), ("lr", "1e-3")])
def test_a_bad_preset_field_names_the_field_and_a_value_that_works(field, value):
    with pytest.raises(InputError, match=rf"^{field}: expected .*Fix: (pass )?{field}=") as error:
        get_preset("quick", **{field: value})
    fix = str(error.value).split("Fix: ")[1].removeprefix("pass ").rstrip(".")
    get_preset("quick", **{field: float(fix.split("=")[1]) if field in ("lr", "gamma") else int(fix.split("=")[1])})


def test_a_misspelt_preset_field_lists_the_fields_and_the_closest():
    with pytest.raises(InputError, match=r"ae_epoch: not a preset field.*Fix: ae_epochs="):
        get_preset("quick", ae_epoch=1)
