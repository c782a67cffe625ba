"""Presentation: rich tables for the terminal (:mod:`~sdlens.report.tables`) and the HTML / Markdown run reports
(:func:`build_report`)."""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":  # imported lazily: matplotlib is not needed by `sdlens analyze`
        from sdlens.report.build import build_report

        return build_report
    raise AttributeError(name)
