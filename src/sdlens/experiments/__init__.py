"""The paper's controlled experiments as library calls (each a thin layer over eval, grading, analysis, training).

- :mod:`~sdlens.experiments.contexts`: the four section-3 contexts and the hint prompt.
- :mod:`~sdlens.experiments.richer_context`: section 3, Table 1.
- :mod:`~sdlens.experiments.guided_sft`: section 4, Table 2.
- :mod:`~sdlens.experiments.coverage`: sections 5-6, curves per method and coverage.

Every run writes a folder with ``manifest.json`` and ``summary.json`` (``kind`` names the experiment) that
:func:`sdlens.report.build_report` turns into ``report.html`` / ``report.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdlens.experiments.config import CONTEXTS
from sdlens.imports import lazy_attributes

if TYPE_CHECKING:
    from sdlens.experiments.contexts import hint_prompt, with_hint

__all__ = ["CONTEXTS", "hint_prompt", "with_hint"]

# loaded on first use (PEP 562): the CLI reads sdlens.experiments.config for its help without the records module
_LAZY = {"hint_prompt": "sdlens.experiments.contexts", "with_hint": "sdlens.experiments.contexts"}


__getattr__ = lazy_attributes(__name__, _LAZY)
