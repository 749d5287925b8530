"""The notebooks' code viewer: the library's code on screen without its docstrings."""
import pytest

from ood_helpers import InputError
from ood_helpers.teaching import source_without_docstrings
from ood_helpers.steps import autoencoder_loss, difference_image
from ood_helpers.networks import ResNetTrunk


def test_a_function_is_shown_without_its_docstring_and_still_parses():
    import ast
    shown = source_without_docstrings(autoencoder_loss)
    assert shown.startswith("def autoencoder_loss(") and '"""' not in shown
    assert autoencoder_loss.__doc__.strip().splitlines()[0] not in shown
    ast.parse(shown)                                    # what is left is still valid Python
    assert "return" in source_without_docstrings(difference_image)


def test_a_class_loses_the_docstrings_of_its_methods_too():
    shown = source_without_docstrings(ResNetTrunk)
    assert shown.startswith("class ResNetTrunk") and "def forward" in shown and '"""' not in shown


def test_an_object_without_source_names_the_argument_and_the_fix():
    with pytest.raises(InputError, match=r"obj: expected a Python function.*show\(steps"):
        source_without_docstrings(len)
