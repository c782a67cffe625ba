"""Guess a file's format from its name and its first record."""

from __future__ import annotations

from pathlib import Path

from sdlens.errors import InputError
from sdlens.io.containers import is_json_array, is_saved_dataset, iter_json_array, saved_dataset_columns
from sdlens.io.jsonl import EMPTY_FILE, BadLines, is_blank, parse_json_line

FORMATS = (
    "sdlens",
    "paper-eval",
    "paper-hint",
    "verl-dump",
    "verl-generation",
    "verl-dataset",
    "trl-completions",
    "openai-batch",
    "lighteval",
    "trace-dataset",
    "generic",
)


def _first_json_keys(path: Path) -> set[str]:
    try:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not is_blank(raw):
                    try:
                        return set(parse_json_line(raw, path, line_no, BadLines()))
                    except InputError as e:
                        raise InputError(path, f"{e.reason}: cannot detect the format", line=line_no) from None
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror}") from None
    raise InputError(path, EMPTY_FILE)


def _parquet_columns(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    try:
        return set(pq.read_schema(path).names)
    except Exception as e:  # pyarrow raises several types for a non-parquet file
        raise InputError(path, f"not a readable Parquet file ({e})") from None


def _classify(keys: set[str]) -> str:
    if {"custom_id", "response"} <= keys:
        return "openai-batch"
    if {"doc", "model_response"} <= keys or {"full_prompt", "predictions", "metrics"} <= keys:
        return "lighteval"
    if "generations" in keys:
        return "trace-dataset"
    if "generated_responses" in keys:
        return "paper-eval"
    if any(k.startswith("round") and k.endswith("_responses") for k in keys) or "correct_solutions" in keys:
        return "paper-hint"
    if {"responses", "conditioning_solution"} <= keys:
        return "paper-hint"
    if {"input", "output", "step"} <= keys:
        return "verl-dump"
    if {"completion", "prompt", "step"} <= keys:
        return "trl-completions"
    if "problem_id" in keys and keys & {"response", "correct", "index"}:
        return "sdlens"
    if "responses" in keys and "prompt" in keys:
        return "verl-generation"
    if {"prompt", "reward_model"} <= keys:
        return "verl-dataset"
    if keys & {"messages", "conversations"} and not keys & {"response", "completion"}:
        return "trace-dataset"
    return "generic"


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if is_saved_dataset(path):
        return _classify(saved_dataset_columns(path))
    if path.is_dir():
        if list(path.glob("completions_*.parquet")) or list(path.glob("completions/completions_*.parquet")):
            return "trl-completions"
        if list(path.glob("*.jsonl")):
            return "verl-dump"
        raise InputError(path, "folder holds neither TRL completions nor verl dumps (*.jsonl)")
    if not path.exists():
        raise InputError(path, "no such file")
    if path.suffix == ".parquet":
        return _classify(_parquet_columns(path))
    if is_json_array(path):
        return _classify(set(next(iter_json_array(path))[1]))
    return _classify(_first_json_keys(path))
