"""The pieces a report is made of, independent of the output format (HTML and Markdown render the same list)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Block", "Excerpt", "Figure", "Heading", "Pair", "Para", "Table", "fmt", "fmt_ci"]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    title: str
    png: bytes
    name: str  # file stem for the Markdown report's image
    caption: str = ""


@dataclass
class Excerpt:
    label: str
    text: str
    info: str = ""  # e.g. "correct, 1,234 tokens, E = 12"
    marks: list[tuple[int, int]] = field(default_factory=list)
    """Character spans to highlight: exactly those the counter counted (``sdlens.epistemic.tokens.counted_spans``)."""


@dataclass
class Pair:
    """Two responses to the same problem side by side (before / after), hedges highlighted."""

    title: str
    left: Excerpt
    right: Excerpt


Block = Heading | Para | Table | Figure | Pair | Excerpt


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:,.{digits}f}"
    return str(x)


def fmt_ci(est: dict[str, Any] | None, digits: int = 2) -> str:
    """``{"value", "ci"}`` -> ``0.38 [0.25, 0.50]``."""
    if not est:
        return "–"
    v = fmt(est.get("value"), digits)
    ci = est.get("ci")
    if not ci or ci[0] is None:
        return v
    return f"{v} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"
