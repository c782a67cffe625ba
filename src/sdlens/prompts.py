"""The paper's prompt texts, in a module that imports nothing: config defaults use them, and ``sdlens --help``
reads those configs."""

from __future__ import annotations

__all__ = ["PAPER_SUFFIX"]

# The instruction the paper appends to every plain-text question (its verl data already ends with it).
PAPER_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
