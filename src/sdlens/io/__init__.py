"""Readers that adapt foreign trace formats into sdlens records.

``iter_records(path)`` reads the rows of any record file (JSONL, Parquet, a JSON array, a saved ``datasets``
folder) as ``(line, dict)``; every other reader in sdlens builds on it. ``iter_samples(path)`` auto-detects the
format (``detect_format``); ``fmt=`` overrides it. Formats:

==================  =====================================================================================
``sdlens``          Samples written by sdlens (JSONL or Parquet)
``paper-eval``      the paper's eval JSONL: one line per problem, ``generated_responses`` [+ ``answer_responses``,
                    ``thinking_contents``, ``answers_correctness``, ``response_token_lengths``, ``gold_answer``]
``paper-hint``      the paper's section-3 outputs: ``round{r}_responses`` / ``round{r}_is_correct`` (combined),
                    per-round files (``responses``, ``is_correct``) and collected files (``correct_solutions``)
``verl-dump``       verl ``rollout_data_dir`` / ``validation_data_dir`` dumps: a folder of ``{step}.jsonl`` or one
                    file, lines with ``input``, ``output``, ``score``, ``step``
``verl-generation`` verl ``main_generation`` parquet (dataset columns plus ``responses``)
``trl-completions`` TRL's ``OUTPUT/completions/completions_{step}.parquet`` (``log_completions=True``)
``openai-batch``    OpenAI Batch API output JSONL (``custom_id``, ``response.body`` = a chat completion or a
                    Responses API object)
``lighteval``       lighteval ``--save-details`` parquet (``doc`` / ``model_response`` / ``metric``, or the older
                    ``full_prompt`` / ``predictions`` / ``metrics``)
``trace-dataset``   trace data sets: ``generations`` lists (OpenR1-Math) or chats in ``messages`` / ``conversations``
                    (OpenThoughts), assistant turns = responses
``generic``         any JSONL / Parquet: ``--text-key`` (default ``response``), ``--id-key``, ``--group-key``
==================  =====================================================================================

Any of these may also come as one JSON array of records (a ``.json`` file) or as a folder written by ``datasets``'
``save_to_disk`` (``Dataset`` or ``DatasetDict``); the records inside are classified like the others.

verl *datasets* (``prompt``, ``reward_model``...) hold problems, not responses: ``iter_problems`` reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdlens.imports import lazy_attributes
from sdlens.io.keys import KeyMap

if TYPE_CHECKING:
    from sdlens.io.detect import FORMATS, detect_format
    from sdlens.io.jsonl import BadLines
    from sdlens.io.readers import batched, is_parquet, iter_problems, iter_records, iter_samples, open_parquet
    from sdlens.io.stored import read_records

__all__ = [
    "FORMATS",
    "BadLines",
    "KeyMap",
    "batched",
    "detect_format",
    "is_parquet",
    "iter_problems",
    "iter_records",
    "iter_samples",
    "open_parquet",
    "read_records",
]

# loaded on first use (PEP 562): the CLI reads KeyMap's field help at start-up without the readers (orjson, records)
_LAZY = {
    "FORMATS": "sdlens.io.detect",
    "detect_format": "sdlens.io.detect",
    "BadLines": "sdlens.io.jsonl",
    "batched": "sdlens.io.readers",
    "is_parquet": "sdlens.io.readers",
    "iter_problems": "sdlens.io.readers",
    "iter_records": "sdlens.io.readers",
    "iter_samples": "sdlens.io.readers",
    "open_parquet": "sdlens.io.readers",
    "read_records": "sdlens.io.stored",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
