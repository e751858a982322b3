"""Markdown tables: one builder for the evaluation report, the sweep summary and TensorBoard's text tab."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

# Characters that Markdown reads as formatting: `data._target_` would otherwise show as italics.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+!|~])")


def escape_markdown(text: Any) -> str:
    """``text`` as literal Markdown: every formatting character backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; a ``|`` inside a cell is escaped so that it cannot split the cell."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(re.sub(r"(?<!\\)\|", r"\\|", str(cell)) for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]) + "\n"
