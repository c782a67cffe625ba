"""sdlens: measure, evaluate and train around epistemic verbalization in self-distilled reasoning LLMs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sdlens.errors import InputError
from sdlens.imports import lazy_attributes

if TYPE_CHECKING:
    from sdlens.io import read_records
    from sdlens.schema import Problem, Sample, write_jsonl, write_parquet


class _DropDeepSpeedCpuNotice(logging.Filter):
    """DeepSpeed (the ``deepspeed`` extra, for ZeRO-3) logs "Setting accelerator to CPU ..." to *stdout* whenever
    transformers imports it on a machine without a GPU, and sdlens' stdout carries results (JSON lines, paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Setting accelerator to CPU")


logging.getLogger("DeepSpeed").addFilter(_DropDeepSpeedCpuNotice())

__version__ = "0.1.0"

__all__ = ["InputError", "Problem", "Sample", "__version__", "read_records", "write_jsonl", "write_parquet"]

# loaded on first use (PEP 562): `import sdlens.cli` must not pay for the records module (CLI start-up)
_LAZY = {name: "sdlens.schema" for name in ("Problem", "Sample", "write_jsonl", "write_parquet")} | {
    "read_records": "sdlens.io"
}


__getattr__ = lazy_attributes(__name__, _LAZY)
