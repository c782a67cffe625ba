"""CLI commands for grading and sampling statistics (`sdlens grade`, `sdlens graders audit`, `sdlens metrics`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the grading commands to the main app."""
