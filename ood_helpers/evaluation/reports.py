"""Results as text: the package's one Markdown-table writer and readers of committed results.

Command-line reports, ``results.md`` files and notebook tables all go through
:func:`markdown_table`, so numbers are formatted one way everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..validation import InputError

RESULTS_ROOTS = ("../results", "results")  # seen from notebooks/ and from the repository root


def format_value(value, digits: int = 4) -> str:
    """One table cell: floats with ``digits`` decimals, None as an em dash, text with pipes escaped."""
    if value is None:
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows, digits: int = 4) -> str:
    """A Markdown table as a string.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of sequences
        One sequence per row, as long as ``header``; cells are formatted by :func:`format_value`.
    digits : int
        Decimals for floats.

    Returns
    -------
    str
        The table, one line per row, ending in a newline. In a notebook, show it with
        ``IPython.display.Markdown(markdown_table(...))``.

    Raises
    ------
    InputError
        When a row's length differs from the header's.
    """
    header = list(header)
    lines = ["| " + " | ".join(format_value(h) for h in header) + " |", "|" + " --- |" * len(header)]
    for index, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise InputError(f"rows: row {index} has {len(row)} cells, expected {len(header)} (one per header).")
        lines.append("| " + " | ".join(format_value(cell, digits) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def find_results(setting: str, name: str = "results.md", roots=RESULTS_ROOTS) -> Path | None:
    """The committed ``results/<setting>/<name>`` seen from a notebook (cwd ``notebooks/``) or the
    repository root; None when it does not exist."""
    for root in roots:
        path = Path(root) / setting / name
        if path.is_file():
            return path
    return None


def committed_aurocs(setting: str, roots=RESULTS_ROOTS) -> dict | None:
    """Mean AUROC per row group and detector key from the committed ``results/<setting>/results.json``:
    ``{"clean": {"ours": 0.99, ...}, "gaussian noise 0.1": {...}}``; None when the file is missing."""
    path = find_results(setting, "results.json", roots)
    if path is None:
        return None
    groups = json.loads(path.read_text())["groups"]
    return {group["name"]: {row["key"]: row["auroc_mean"] for row in group["rows"]} for group in groups}


__all__ = ["format_value", "markdown_table", "find_results", "committed_aurocs"]
