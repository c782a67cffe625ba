"""Which input fields hold what (light: the CLI reads these fields' help at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from sdlens.fields import documented

__all__ = ["KeyMap"]


@dataclass(frozen=True)
class KeyMap:
    """Which input fields hold what, for formats that need telling (all optional)."""

    text_key: str | None = documented(
        None, "Field holding the response text, or a list of responses (default: the format's own; generic: response)."
    )
    id_key: str | None = documented(
        None, "Field identifying the problem; samples sharing it form one problem (default problem_id or id)."
    )
    group_key: str | None = documented(
        None, "Field copied into each sample's context, so --by context compares its values."
    )
    correct_key: str | None = documented(None, "Field giving correctness (a bool, or a number >= 0.5 meaning correct).")
