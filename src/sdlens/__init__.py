"""sdlens: measure, evaluate and train around epistemic verbalization in self-distilled reasoning LLMs."""

from sdlens.errors import InputError
from sdlens.schema import Problem, Sample, read_records, write_jsonl, write_parquet

__version__ = "0.1.0"

__all__ = ["InputError", "Problem", "Sample", "__version__", "read_records", "write_jsonl", "write_parquet"]
