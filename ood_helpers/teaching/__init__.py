"""Teaching aids for the notebooks: show the library's own code as code, without its docstring."""
from __future__ import annotations

import ast
import inspect
import textwrap

from ..validation import InputError


def source_without_docstrings(obj) -> str:
    """The source of a function, method or class with every docstring removed (comments stay).

    Raises InputError when ``obj`` has no Python source (a builtin, a C function, a lambda typed
    at the prompt).
    """
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (TypeError, OSError) as error:
        raise InputError(f"obj: expected a Python function, method or class with source code, got {obj!r} "
                         f"({error}); pass the function itself, e.g. show(steps.autoencoder_loss)") from None
    lines = source.splitlines(keepends=True)
    docstrings = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.append((first.lineno, first.end_lineno))
    for start, end in sorted(docstrings, reverse=True):
        del lines[start - 1:end]
    return "".join(lines)


def show(obj) -> None:
    """Print ``obj``'s code without its docstrings: what a notebook puts on screen to read."""
    print(source_without_docstrings(obj), end="")
