"""Sphinx extension of the ood-notebooks book (loaded from docs/_config.yml).

- The launch buttons' repository address comes from pyproject.toml ``[project.urls] repository``,
  the one place that holds it (the notebooks' Colab cells are checked against it by
  tests/test_colab_setup.py; ``make repository URL=...`` changes all of them at once).
- MathJax is served from the site itself (sphinx-mathjax-offline), never from a CDN.
- The docstrings' short cross-references (``OODDetector``, ``ood_helpers.OODDetector``,
  ``artifacts.get_detector``) resolve to where the object is documented: the package re-exports
  its main names, and its docstrings name them as a user imports them.
"""
from __future__ import annotations

import html
import importlib
import inspect
import json
import re
from pathlib import Path

from ood_helpers import colab

BOOK = Path(__file__).resolve().parents[1]
PACKAGE = "ood_helpers"

# Types of other projects: resolving them needs their intersphinx inventories, which are fetched
# from the internet, and the book builds offline. They stay plain text.
THIRD_PARTY = r"(torch|numpy|np|sklearn|scipy|pyod|matplotlib|ipywidgets|PIL)(\..*)?"


def repository_url(start: Path = BOOK) -> str:
    """``[project.urls] repository`` of the nearest pyproject.toml at or above ``start``."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            return colab.repository_url(folder)
    raise FileNotFoundError(f"no pyproject.toml at or above {start}")


def _set_repository(app, config):
    options = dict(config.html_theme_options or {})
    options["repository_url"] = repository_url(Path(app.srcdir))
    config.html_theme_options = options
    # pydata-sphinx-theme logs "Got invalid theme mode" as a console error without one
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}


def _lookup(dotted: str):
    """The object a dotted name imports as, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _canonical(obj) -> str | None:
    obj = inspect.unwrap(obj) if callable(obj) else obj
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def _resolve(app, env, node, contnode):
    """A py reference that Sphinx could not resolve: try it relative to the current module,
    class and the package, and follow re-exports to where the object is documented."""
    if node.get("refdomain") != "py":
        return None
    target, module, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates += [f"{module}.{cls}.{target}" if cls else None, f"{module}.{target}"]
    candidates += [f"{PACKAGE}.{target}"]
    domain = env.get_domain("py")
    for candidate in filter(None, candidates):
        if not candidate.startswith(PACKAGE):
            continue
        obj = _lookup(candidate)
        if obj is None:
            continue
        names = [_canonical(obj), candidate]
        last = "." + candidate.rsplit(".", 1)[-1]  # a re-exported constant: where the same object is documented
        names += [name for name in domain.objects if name.endswith(last) and _lookup(name) is obj]
        for name in names:
            if name and name in domain.objects:
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, node, contnode)
    return None


def _skip(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing setters (set_fit_request, ...) that BaseEstimator adds to
    # every estimator class: not ours, and their docstrings point into scikit-learn's own docs
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _no_builtin_docstrings(app, what, name, obj, options, lines):
    # a module constant without a ``#:`` comment would show the docstring of dict, tuple, ...
    if what == "data" and lines and type(obj).__module__ == "builtins":
        doc = inspect.getdoc(type(obj)) or ""
        if doc.splitlines() and lines[0].strip() == doc.splitlines()[0].strip():
            lines[:] = []


def _unique_scripts(app, pagename, templatename, context, doctree):
    # sphinx-thebe (always loaded by Jupyter Book 1) adds its inline config script twice, and
    # the second `const THEBE_JS_URL` is a script error on every page: keep one of each
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"][:] = scripts


WIDGET_VIEW = re.compile(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', re.S)


def _widget_parts(state: dict, model_id: str) -> tuple[list[str], list[str]]:
    """The HTML texts and PNG pictures a saved widget (and its children) showed."""
    texts, pictures, todo, seen = [], [], [model_id], set()
    while todo:
        current = todo.pop(0)
        if current in seen or current not in state:
            continue
        seen.add(current)
        model = state[current]
        fields = model.get("state", {})
        if model.get("model_name") == "HTMLModel" and fields.get("value"):
            texts.append(fields["value"])
        for output in fields.get("outputs", []) or []:
            png = output.get("data", {}).get("image/png")
            if png:
                pictures.append("".join(png) if isinstance(png, list) else png)
        todo += [child.removeprefix("IPY_MODEL_") for child in fields.get("children", []) or []]
    return texts, pictures


def _widget_fallback(app, doctree, docname):
    """A static book cannot run the noise explorer: show it as it was saved when the notebook ran
    (its text and picture, from the notebook's saved widget state), with a note on how to run it."""
    from docutils import nodes

    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return
    saved = json.loads(path.read_text()).get("metadata", {}).get("widgets", {})
    state = saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for node in list(doctree.findall(nodes.raw)):
        found = WIDGET_VIEW.search(node.astext())
        if not found:
            continue
        texts, pictures = _widget_parts(state, json.loads(found.group(1))["model_id"])
        if not texts and not pictures:  # a progress bar or other widget that saved nothing to show
            node.replace_self(nodes.raw("", "", format="html"))
            continue
        parts = ['<div class="ood-widget-fallback"><p><strong>Interactive in a running notebook</strong> '
                 "(the rocket button at the top of the page). Here, as it was when the notebook ran:</p>"]
        parts += [f"<p>{text}</p>" for text in texts]
        parts += [f'<img alt="{html.escape(re.sub("<[^>]+>", "", texts[0]) if texts else "widget")}" '
                  f'src="data:image/png;base64,{picture.strip()}">' for picture in pictures]
        node.replace_self(nodes.raw("", "".join(parts) + "</div>", format="html"))


def setup(app):
    app.setup_extension("sphinx-mathjax-offline")
    app.connect("config-inited", _set_repository)
    app.connect("missing-reference", _resolve)
    app.connect("autodoc-skip-member", _skip)
    app.connect("autodoc-process-docstring", _no_builtin_docstrings)
    app.connect("html-page-context", _unique_scripts, priority=900)
    app.connect("doctree-resolved", _widget_fallback)
    app.config.nitpick_ignore_regex = list(app.config.nitpick_ignore_regex or []) + [
        (r"py:(class|exc|func|meth|data|obj)", THIRD_PARTY),
        # numpydoc type specs describe shapes and choices, e.g. ``torch.Tensor (N, latent_dim)``,
        # ``(8 * width,)``, ``{"fp32", "bf16"}``: Sphinx reads their words as class names. This
        # package's classes are CamelCase, so a lower-case or non-identifier "class" is such a word.
        (r"py:class", r"[a-z][a-z_]*|.*[ *{}\"].*"),
    ]
    return {"parallel_read_safe": True, "parallel_write_safe": True}
