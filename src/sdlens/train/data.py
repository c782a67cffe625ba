r"""Training data -> TRL datasets.

RL (SDPO, GRPO): every row becomes ``{"prompt": [chat messages], "answer": str, "problem_id": str, "data_source":
str, "row": int}``. Rows are never merged: a problem that appears 8 times (``seen_8x8``) is 8 rows, hence 8
independent groups of rollouts, as in the paper (each duplicated row gets its own uid there).

SFT: every row becomes ``{"prompt": [chat messages], "completion": [{"role": "assistant", ...}]}`` (TRL's
conversational prompt-completion format, so the loss covers the response only).

Sources (``spec``):

- a verl parquet (``data_source``, ``prompt`` messages, ``reward_model.ground_truth``, ...), e.g. the paper's
  section-6.2 subsets, which ship with sdlens and are named directly (``seen_8x8``; ``sdlens benchmarks list``),
  read with :func:`sdlens.io.iter_problems`;
- a JSONL / JSON / Parquet file of sdlens Problems or of generic records: the prompt from ``prompt_key`` or the first
  of ``prompt``, ``messages``, ``question``, ``problem``, ``instruction`` (alpaca ``instruction`` + ``input``, with
  its ``system``), the answer from ``answer_key`` or ``reward_model.ground_truth``, ``answer``, ``ground_truth``,
  ``gold``, ``final_answer``, ``solution``; a plain-text question gets the paper's instruction appended
  (``question_suffix``);
- anything else is a Hugging Face dataset id (``hf:`` prefix optional), loaded with ``datasets.load_dataset(spec,
  config, split=split)`` and converted the same way.

``prompt_format="paper-dapo"`` rewrites raw DAPO-Math-17k prompts as the paper does (docs/paper.md 8.1): drop DAPO's
leading "Solve the following math problem step by step. The last line ..." paragraph and the trailing "Remember to
put your answer on its own line after \"Answer:\"." line, strip, and append the paper's instruction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sdlens.errors import InputError
from sdlens.io import iter_records
from sdlens.prompts import PAPER_SUFFIX
from sdlens.train.teacher import tokenize_prompts

__all__ = [
    "PROMPT_FORMATS",
    "filter_overlong_prompts",
    "load_rl_rows",
    "load_sft_rows",
    "read_records",
    "rewrite_dapo_prompt",
    "to_dataset",
]

PROMPT_FORMATS = ("as-is", "paper-dapo")
PROMPT_KEYS = ("prompt", "messages", "question", "problem", "instruction", "query")
ANSWER_KEYS = ("answer", "ground_truth", "gold", "final_answer", "solution", "target")
COMPLETION_KEYS = ("completion", "output", "response", "solution")

_DAPO_HEAD = re.compile(r"^\s*Solve the following math problem step by step\..*?\n\s*\n", re.DOTALL)
_DAPO_TAIL = re.compile(r"\s*Remember to put your answer on its own line after \"Answer:\"\.?\s*$")


def rewrite_dapo_prompt(content: str) -> str:
    """A raw DAPO-Math-17k user message -> the paper's format (docs/paper.md 8.1)."""
    content = _DAPO_HEAD.sub("", content, count=1)
    content = _DAPO_TAIL.sub("", content, count=1)
    return content.strip() + PAPER_SUFFIX


# ---------------------------------------------------------------- reading


def _is_local(spec: str) -> bool:
    return Path(spec).expanduser().exists()


def read_records(spec: str, *, split: str = "train", config: str | None = None) -> list[dict[str, Any]]:
    """Raw records of a local JSONL / JSON / Parquet file, a shipped data set by name (``seen_8x8``, ``math500``:
    ``sdlens benchmarks list``) or a Hugging Face dataset."""
    if spec.startswith("hf:"):
        return _read_hub(spec[3:], split, config)
    path = Path(spec).expanduser()
    if not path.exists():
        if spec.startswith((".", "/", "~")) or path.suffix in (".jsonl", ".json", ".parquet"):
            raise InputError(path, "no such file")
        from sdlens.benchmarks import shipped_path

        if (shipped := shipped_path(spec)) is None:
            return _read_hub(spec, split, config)
        path = shipped
    if path.is_dir():
        raise InputError(path, "a folder; give a .parquet, .jsonl or .json file, or a hub dataset id")
    return [rec for _, rec in iter_records(path)]


def _read_hub(name: str, split: str, config: str | None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - the train extra has it
        raise InputError(None, f"{name!r} is no local file, and reading hub datasets needs `datasets`") from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:
        raise InputError(
            None, f"cannot load the dataset {name!r} (split {split!r}): {str(e).splitlines()[0]}"
        ) from None
    return [dict(r) for r in ds]


# ---------------------------------------------------------------- converting


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _messages(value: Any) -> list[dict[str, Any]] | None:
    value = _maybe_json(value)
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role") or "user"), "content": _content(m["content"])} for m in value]
    return None


def _content(content: Any) -> str:
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return "" if content is None else str(content)


def _first_key(rec: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if rec.get(k) not in (None, ""):
            return k
    return None


def _prompt_of(rec: dict[str, Any], key: str | None, suffix: str, where: tuple[Any, int]) -> list[dict[str, Any]]:
    path, row = where
    k = key or _first_key(rec, PROMPT_KEYS)
    if k is None or k not in rec:
        raise InputError(path, f"no prompt (looked for {', '.join((key,) if key else PROMPT_KEYS)})", line=row)
    msgs = _messages(rec[k])
    if msgs is not None:
        while msgs and msgs[-1]["role"] == "assistant":  # a full conversation: prompt = up to the last user turn
            msgs = msgs[:-1]
        if not msgs or msgs[-1]["role"] != "user":
            raise InputError(path, "the prompt messages do not end with a user message", line=row, field=k)
        return msgs
    text = _content(rec[k])
    if k == "instruction" and rec.get("input"):
        text = f"{text}\n{rec['input']}"
    out = []
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        out.append({"role": "system", "content": rec["system"]})
    out.append({"role": "user", "content": text + suffix})
    return out


def _answer_of(rec: dict[str, Any], key: str | None) -> str | None:
    if key:
        value = rec.get(key)
        if isinstance(value, dict):
            value = value.get("ground_truth")
        return None if value is None else str(value)
    rm = _maybe_json(rec.get("reward_model"))
    if isinstance(rm, dict) and rm.get("ground_truth") is not None:
        return str(rm["ground_truth"])
    k = _first_key(rec, ANSWER_KEYS)
    return None if k is None else str(rec[k])


def _looks_verl(rec: dict[str, Any]) -> bool:
    return "reward_model" in rec and _messages(rec.get("prompt")) is not None


def load_rl_rows(
    spec: str,
    *,
    split: str = "train",
    config: str | None = None,
    prompt_key: str | None = None,
    answer_key: str | None = None,
    prompt_format: str = "as-is",
    question_suffix: str = PAPER_SUFFIX,
    max_rows: int | None = None,
) -> list[dict[str, Any]]:
    """Rows for SDPO / GRPO (see the module doc). Raises :class:`InputError` for unusable data."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    rows: list[dict[str, Any]] = []
    local = Path(spec).expanduser() if _is_local(spec) else None
    records = read_records(spec, split=split, config=config)
    if local is not None and records and _looks_verl(records[0]) and not (prompt_key or answer_key):
        from sdlens.io import iter_problems

        for i, p in enumerate(iter_problems(local)):
            rows.append(
                {
                    "prompt": p.messages,
                    "answer": p.answer,
                    "problem_id": str(p.meta.get("problem_id", p.id)),
                    "data_source": p.source or "",
                    "row": i,
                }
            )
    else:
        for i, rec in enumerate(records):
            where = (local or spec, i + 1)
            msgs = _prompt_of(rec, prompt_key, question_suffix, where)
            pid = rec.get("problem_id", rec.get("id", rec.get("unique_id", i)))
            rows.append(
                {
                    "prompt": msgs,
                    "answer": _answer_of(rec, answer_key),
                    "problem_id": str(pid),
                    "data_source": str(rec.get("data_source") or rec.get("source") or ""),
                    "row": i,
                }
            )
    if prompt_format == "paper-dapo":
        for r in rows:
            last = r["prompt"][-1]
            r["prompt"] = [*r["prompt"][:-1], {"role": last["role"], "content": rewrite_dapo_prompt(last["content"])}]
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise InputError(local or spec, "no rows")
    missing = sum(r["answer"] is None for r in rows)
    if missing == len(rows):
        raise InputError(local or spec, "no row has a ground-truth answer (use --set answer_key=FIELD)")
    return rows


def load_sft_rows(
    spec: str,
    *,
    split: str = "train",
    config: str | None = None,
    prompt_key: str | None = None,
    completion_key: str | None = None,
    question_suffix: str = "",
    max_rows: int | None = None,
) -> list[dict[str, Any]]:
    """Rows for SFT: alpaca (``instruction``/``input``/``output``/``system``, as the paper's LLaMA-Factory files),
    ``prompt`` + ``completion`` (text or messages), or ``messages`` (the last assistant turn is the completion)."""
    local = Path(spec).expanduser() if _is_local(spec) else None
    rows = []
    for i, rec in enumerate(read_records(spec, split=split, config=config)):
        where = (local or spec, i + 1)
        if completion_key is None and "messages" in rec and not _first_key(rec, COMPLETION_KEYS):
            msgs = _messages(rec["messages"])
            if not msgs or msgs[-1]["role"] != "assistant" or len(msgs) < 2:
                raise InputError(where[0], "messages must end with an assistant turn", line=where[1], field="messages")
            rows.append({"prompt": msgs[:-1], "completion": [msgs[-1]]})
            continue
        ck = completion_key or _first_key(rec, COMPLETION_KEYS)
        if ck is None or rec.get(ck) is None:
            raise InputError(
                where[0], f"no completion (looked for {', '.join((ck,) if ck else COMPLETION_KEYS)})", line=where[1]
            )
        comp = _messages(rec[ck])
        completion = comp if comp is not None else [{"role": "assistant", "content": _content(rec[ck])}]
        rows.append({"prompt": _prompt_of(rec, prompt_key, question_suffix, where), "completion": completion})
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise InputError(local or spec, "no rows")
    return rows


def filter_overlong_prompts(
    rows: list[dict[str, Any]], tokenizer, max_tokens: int | None, chat_template_kwargs: dict | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Drop rows whose templated prompt has more than ``max_tokens`` tokens (verl's ``filter_overlong_prompts``)."""
    if max_tokens is None:
        return rows, 0

    keys = [json.dumps(r["prompt"], sort_keys=True) for r in rows]
    unique = list(dict.fromkeys(keys))  # DAPO-Math-17k repeats each prompt ~100 times: tokenize each once
    by_key = dict.fromkeys(unique, 0)
    for start in range(0, len(unique), 1024):
        chunk = unique[start : start + 1024]
        ids = tokenize_prompts(tokenizer, [json.loads(k) for k in chunk], chat_template_kwargs)
        by_key.update({k: len(x) for k, x in zip(chunk, ids, strict=True)})
    kept = [r for r, k in zip(rows, keys, strict=True) if by_key[k] <= max_tokens]
    return kept, len(rows) - len(kept)


def to_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` of the rows."""
    import datasets

    return datasets.Dataset.from_list(rows)
