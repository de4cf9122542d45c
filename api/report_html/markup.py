"""HTML building blocks of the report page: escaping, a section, a note, a table, a legend.

Every text that reaches the page passes through `esc`, in elements and in attributes. This
module must not know what a report holds: it wraps what the sections give it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

Cell = str | tuple[str, str]  # text, or (text, css class)


def esc(text: object) -> str:
    """The text escaped for an element or a quoted attribute."""
    return html.escape(str(text), quote=True)


def section(key: str, heading: str, content: str) -> str:
    """A section of the page with its heading; `key` is its id."""
    return f'<section id="{key}"><h2>{esc(heading)}</h2>{content}</section>\n'


def note(text: str) -> str:
    """A paragraph of explanation under a table or chart."""
    return f'<p class="note">{esc(text)}</p>'


def table(css: str, columns: Sequence[str], align: str, rows: Iterable[Sequence[Cell]]) -> str:
    """A table; `align` has one letter per column, `r` for numbers (right-aligned)."""
    assert len(align) == len(columns)
    head = "".join(
        f'<th class="n">{esc(c)}</th>' if a == "r" else f"<th>{esc(c)}</th>"
        for c, a in zip(columns, align, strict=True)
    )
    body = []
    for row in rows:
        cells = []
        for cell, a in zip(row, align, strict=True):
            text, extra = (cell, "") if isinstance(cell, str) else cell
            classes = " ".join(c for c in ("n" if a == "r" else "", extra) if c)
            attr = f' class="{classes}"' if classes else ""
            cells.append(f"<td{attr}>{esc(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="wide"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def legend(items: Iterable[tuple[str, str, str]]) -> str:
    """Legend entries of (swatch class, colour, label)."""
    spans = []
    for kind, colour, label in items:
        style = f"background:{colour}" if kind == "box" else f"border-top-color:{colour}"
        spans.append(f'<span><span class="{kind}" style="{style}"></span>{esc(label)}</span>')
    return f'<div class="legend">{"".join(spans)}</div>'
