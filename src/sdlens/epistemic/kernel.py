"""The compiled counting kernel (``sdlens.epistemic._fastcount``), where it is built and not turned off.

``SDLENS_PURE_PYTHON=1`` in the environment turns it off, as on a machine without a C compiler; every caller then
takes its Python path, which the tests hold to the same results.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["compiled_kernel"]


def compiled_kernel() -> ModuleType | None:
    """The compiled kernel module, or ``None`` when it is not built or ``SDLENS_PURE_PYTHON`` is set."""
    if os.environ.get("SDLENS_PURE_PYTHON", "").lower() in ("1", "true", "yes", "on"):
        return None
    try:
        from sdlens.epistemic import _fastcount
    except ImportError:
        return None
    return _fastcount
