"""sdlens: measure, evaluate and train around epistemic verbalization in self-distilled reasoning LLMs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from sdlens.errors import InputError
from sdlens.imports import lazy_attributes

if TYPE_CHECKING:
    from sdlens.io import read_records
    from sdlens.schema import Problem, Sample, write_jsonl, write_parquet


class _QuietDeepSpeedOnImport:
    """DeepSpeed (the ``deepspeed`` extra, for ZeRO-3) logs "Setting accelerator to CPU ..." to *stdout* whenever it
    is imported on a machine without a GPU (transformers and accelerate import it), and sdlens' stdout carries
    results (JSON lines, paths). This finder, first on ``sys.meta_path``, drops that notice through a filter on
    DeepSpeed's logger the first time anything looks for deepspeed, and finds nothing itself. Importing logging here
    for it would cost every CLI command ~4 ms of start-up (docs/benchmarks.md)."""

    installed = False

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            cls.installed = True
            import logging

            logging.getLogger("DeepSpeed").addFilter(
                lambda record: not record.getMessage().startswith("Setting accelerator to CPU")
            )

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> None:
        # it stays on sys.meta_path: removing itself while the import system walks that list would skip a finder
        if name == "deepspeed":
            cls.install()
        return None  # the import itself is left to the other finders


if "deepspeed" in sys.modules:
    _QuietDeepSpeedOnImport.install()
elif _QuietDeepSpeedOnImport not in sys.meta_path:
    sys.meta_path.insert(0, _QuietDeepSpeedOnImport)

__version__ = "0.1.0"

__all__ = ["InputError", "Problem", "Sample", "__version__", "read_records", "write_jsonl", "write_parquet"]

# loaded on first use (PEP 562): `import sdlens.cli` must not pay for the records module (CLI start-up)
_LAZY = {name: "sdlens.schema" for name in ("Problem", "Sample", "write_jsonl", "write_parquet")} | {
    "read_records": "sdlens.io"
}


__getattr__ = lazy_attributes(__name__, _LAZY)
