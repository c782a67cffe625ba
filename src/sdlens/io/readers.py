"""Format adapters: each turns one foreign layout into ``Sample`` (or ``Problem``) records."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import orjson

from sdlens.errors import InputError
from sdlens.io.containers import is_json_array, is_saved_dataset, iter_json_array, iter_saved_dataset
from sdlens.io.detect import FORMATS, detect_format
from sdlens.io.jsonl import EMPTY_FILE, BadLines, _kind, iter_json_lines, require, require_str_list
from sdlens.io.keys import KeyMap
from sdlens.schema import Problem, Sample, from_dict

Rows = Iterator[tuple[int, dict[str, Any]]]
T = TypeVar("T")


def iter_records(path: str | Path, bad: BadLines | None = None, *, allow_empty: bool = False) -> Rows:
    """``(line or row number, record)`` from a JSONL or Parquet file, a JSON array or a saved ``datasets`` folder:
    the one row reader. Bad input raises :class:`InputError` naming the file and line (``bad.skip``: skipped and
    counted instead); a file without records is an error unless ``allow_empty`` (a log not yet written to)."""
    rows = _rows(Path(path), bad or BadLines())
    return _empty_is_fine(rows) if allow_empty else rows


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily: a file's records a batch at a time."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_parquet(path: str | Path) -> bool:
    """A Parquet file, by its name (``.parquet`` or ``.pq``)."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def open_parquet(path: str | Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile``; a missing or unreadable file is a one-line :class:`InputError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(path, "cannot open: No such file or directory") from None
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None


def _empty_is_fine(rows: Rows) -> Rows:
    try:
        yield from rows
    except InputError as e:
        if e.reason != EMPTY_FILE:  # raised only after the last record: nothing was cut short
            raise


def _rows(path: Path, bad: BadLines) -> Rows:
    """``(line or row number, record)`` from a JSONL or Parquet file, a JSON array or a saved ``datasets`` folder."""
    if is_saved_dataset(path):
        yield from iter_saved_dataset(path)
        return
    if is_parquet(path):
        pf = open_parquet(path)
        row = 0
        for batch in pf.iter_batches(batch_size=2048):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
        if row == 0:
            raise InputError(path, EMPTY_FILE)
        return
    if is_json_array(path):
        yield from iter_json_array(path)
        return
    yield from iter_json_lines(path, bad)


def _as_bool(value: Any, path: Path, line: int, key: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) >= 0.5
    raise InputError(path, f"expected a boolean or a number, got {_kind(value)}", line=line, field=key)


def _optional_list(obj: dict[str, Any], key: str, n: int, path: Path, line: int) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(path, f"expected an array, got {_kind(value)}", line=line, field=key)
    if len(value) != n:
        raise InputError(path, f"has {len(value)} items but there are {n} responses", line=line, field=key)
    return value


def _int_or_none(value: Any, path: Path, line: int, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InputError(path, f"expected an integer, got {value!r}", line=line, field=key)
    return int(value)


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# ---------------------------------------------------------------- paper eval JSONL


def _sample_counters() -> defaultdict[tuple[int | None, str], Iterator[int]]:
    """Per ``(step, problem)``, the indices of its samples in reading order (rollout logs number none)."""
    return defaultdict(count)


def _rollout_problem_id(rec: dict[str, Any], keys: KeyMap, prompt: str) -> str:
    """A rollout log row's problem: its ``id_key`` field, else a hash of its prompt."""
    return str(rec[keys.id_key]) if keys.id_key and keys.id_key in rec else _text_hash(prompt)


def _each_record(
    path: Path, bad: BadLines, samples_of: Callable[[dict[str, Any], int], list[Sample]]
) -> Iterator[Sample]:
    """The samples of every record (``samples_of(record, line)``); a bad record goes to ``bad``: an error, or skipped
    and counted under ``--skip-bad``."""
    for line, rec in _rows(path, bad):
        try:
            samples = samples_of(rec, line)
        except InputError as e:
            bad.handle(e)
            continue
        yield from samples


def read_paper_eval(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    yield from _each_record(path, bad, lambda obj, line: paper_eval_samples(obj, path, line, keys, bad))


def paper_eval_samples(obj: dict[str, Any], path: Path, line: int, keys: KeyMap, bad: BadLines) -> list[Sample]:
    """The Samples of one line of the paper's eval JSONL (one line per problem). A line without the responses field
    is a problem with no responses, as the paper's script reads it (``record.get(key, [])``), counted in ``bad``."""
    text_key = keys.text_key or "generated_responses"
    correct_key = keys.correct_key or "answers_correctness"
    if text_key not in obj:
        bad.without_responses += 1
        return []
    responses = require_str_list(obj, text_key, path, line)
    n = len(responses)
    correct = _optional_list(obj, correct_key, n, path, line)
    lengths = _optional_list(obj, "response_token_lengths", n, path, line)
    thinking = _optional_list(obj, "thinking_contents", n, path, line)
    answers = _optional_list(obj, "answer_responses", n, path, line)
    extracted = _optional_list(obj, "generated_answers", n, path, line)
    pid = obj.get(keys.id_key or "idx", obj.get("id", line))
    gold = obj.get("gold_answer", obj.get("answer"))
    context = _group(obj, keys, path, line)
    return [
        Sample(
            problem_id=str(pid),
            index=j,
            response=resp,
            thinking=thinking[j] if thinking else None,
            answer_text=answers[j] if answers else None,
            n_tokens=_int_or_none(lengths[j], path, line, "response_token_lengths") if lengths else None,
            correct=_as_bool(correct[j], path, line, correct_key) if correct else None,
            extracted=None if not extracted or extracted[j] is None else str(extracted[j]),
            answer=None if gold is None else str(gold),
            source=obj.get("data_source"),
            context=context,
            meta={"line": line, "question": obj["question"]}
            if isinstance(obj.get("question"), str)
            else {"line": line},
        )
        for j, resp in enumerate(responses)
    ]


def _group(obj: dict[str, Any], keys: KeyMap, path: Path, line: int) -> str | None:
    if not keys.group_key:
        return None
    if keys.group_key not in obj:
        raise InputError(path, "missing key", line=line, field=keys.group_key)
    return str(obj[keys.group_key])


# ---------------------------------------------------------------- paper section-3 outputs

_ROUND = re.compile(r"^round(\d+)_responses$")


def read_paper_hint(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    yield from _each_record(path, bad, lambda obj, line: list(_hint_samples(obj, path, line)))


def _hint_samples(obj: dict[str, Any], path: Path, line: int) -> Iterator[Sample]:
    pid = str(obj.get("original_index", obj.get("idx", line)))
    common = {"answer": None if obj.get("gold_answer") is None else str(obj["gold_answer"])}
    common["source"] = obj.get("data_source") or None
    blocks: list[tuple[str, str, str | None]] = []  # (context, responses key, correctness key)
    for key in sorted(obj, key=lambda k: (len(k), k)):
        m = _ROUND.match(key)
        if m:
            r = m.group(1)
            blocks.append((f"round{r}", key, f"round{r}_is_correct"))
    if "responses" in obj:
        blocks.append(("round", "responses", "is_correct"))
    if "correct_solutions" in obj:
        blocks.append(("unguided-correct", "correct_solutions", None))
    if not blocks:
        raise InputError(path, "no round{r}_responses, responses or correct_solutions key", line=line)
    for context, rkey, ckey in blocks:
        responses = require_str_list(obj, rkey, path, line)
        flags = _optional_list(obj, ckey, len(responses), path, line) if ckey else None
        for j, resp in enumerate(responses):
            correct = True if ckey is None else (_as_bool(flags[j], path, line, ckey) if flags else None)
            yield Sample(
                problem_id=pid,
                index=j,
                response=resp,
                correct=correct,
                context=context,
                meta={"line": line},
                **common,
            )


# ---------------------------------------------------------------- verl


def _verl_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]

    def order(p: Path) -> tuple[int, str]:
        return (int(p.stem), p.name) if p.stem.isdigit() else (1 << 62, p.name)

    files = sorted(path.glob("*.jsonl"), key=order)
    if not files:
        raise InputError(path, "folder has no *.jsonl dumps")
    return files


def read_verl_dump(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    for file in _verl_files(path):
        counters = _sample_counters()
        for line, obj in _rows(file, bad):
            try:
                prompt = require(obj, "input", str, file, line)
                text = require(obj, keys.text_key or "output", str, file, line)
                step = _int_or_none(obj.get("step"), file, line, "step")
                if keys.correct_key:
                    correct = _as_bool(obj.get(keys.correct_key), file, line, keys.correct_key)
                elif "acc" in obj:
                    correct = _as_bool(obj["acc"], file, line, "acc")
                elif obj.get("score") is not None:
                    score = obj["score"]
                    if isinstance(score, bool) or not isinstance(score, int | float):
                        raise InputError(file, f"expected a number, got {_kind(score)}", line=line, field="score")
                    correct = score > 0
                else:
                    correct = None
                pid = _rollout_problem_id(obj, keys, prompt)
                gts = obj.get("gts")
                sample = Sample(
                    problem_id=pid,
                    index=next(counters[(step, pid)]),
                    response=text,
                    step=step,
                    correct=correct,
                    answer=None if gts is None else str(gts),
                    source=obj["data_source"] if isinstance(obj.get("data_source"), str) else None,
                    context=_group(obj, keys, file, line),
                    meta={k: v for k, v in obj.items() if k not in ("input", "output", "gts", "step")}
                    | {"prompt": prompt, "file": file.name, "line": line},
                )
            except InputError as e:
                bad.handle(e)
                continue
            yield sample


def read_verl_generation(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    for row, rec in _rows(path, bad):
        try:
            responses = _listish(rec.get(keys.text_key or "responses"), path, row, keys.text_key or "responses")
            problem = _problem_from_verl(rec, path, row)
        except InputError as e:
            bad.handle(e)
            continue
        for j, resp in enumerate(responses):
            yield Sample(
                problem_id=problem.id,
                index=j,
                response=resp,
                answer=problem.answer,
                source=problem.source,
                meta={"row": row},
            )


def _listish(value: Any, path: Path, row: int, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"expected a string or a list of strings, got {_kind(value)}", line=row, field=key)
    return value


def _problem_from_verl(rec: dict[str, Any], path: Path, row: int) -> Problem:
    prompt = rec.get("prompt")
    if isinstance(prompt, str):  # some shipped parquets store the chat as JSON text
        try:
            prompt = orjson.loads(prompt)
        except orjson.JSONDecodeError:
            raise InputError(path, "a string that is not JSON chat messages", line=row, field="prompt") from None
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
        raise InputError(path, f"expected a list of chat messages, got {_kind(prompt)}", line=row, field="prompt")
    rm = rec.get("reward_model") or {}
    if isinstance(rm, str):
        try:
            rm = orjson.loads(rm)
        except orjson.JSONDecodeError:
            rm = {}
    answer = rm.get("ground_truth") if isinstance(rm, dict) else None
    extra = rec.get("extra_info") or {}
    if isinstance(extra, str):
        try:
            extra = orjson.loads(extra)
        except orjson.JSONDecodeError:
            extra = {"raw": extra}
    pid = rec.get("problem_id")
    if pid is None and isinstance(extra, dict):
        pid = extra.get("index", extra.get("idx"))
    if pid is None:
        pid = row - 1
    meta = {"extra_info": extra, "ability": rec.get("ability")}
    if rec.get("problem_id") is not None:
        meta["problem_id"] = rec["problem_id"]
    return Problem(
        id=str(pid),
        messages=[{"role": m.get("role", "user"), "content": m["content"]} for m in prompt],
        answer=None if answer is None else str(answer),
        source=rec.get("data_source"),
        split=extra.get("split") if isinstance(extra, dict) else None,
        meta=meta,
    )


def iter_problems(path: str | Path) -> Iterator[Problem]:
    """Problems from a verl dataset parquet (``data_source``, ``prompt``, ``reward_model``, ``extra_info``) or
    from a JSONL/Parquet of sdlens Problems."""
    path = Path(path)
    bad = BadLines()
    for row, rec in _rows(path, bad):
        if "reward_model" in rec or ("prompt" in rec and "id" not in rec):
            yield _problem_from_verl(rec, path, row)
        else:
            yield from_dict(Problem, rec, path=path, line=row)


# ---------------------------------------------------------------- TRL


def _trl_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("completions_*.parquet")) or sorted(path.glob("completions/completions_*.parquet"))
    if not files:
        raise InputError(path, "folder has no completions_*.parquet")
    return files


def _message_text(value: Any, path: Path, row: int, key: str) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        parts = []
        for m in value:
            content = m.get("content")
            if isinstance(content, list):  # multimodal content blocks
                content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
            if m.get("role", "assistant") == "assistant" or key == "prompt":
                parts.append(content if isinstance(content, str) else "")
        return "".join(parts) if key != "prompt" else "\n".join(parts)
    raise InputError(path, f"expected text or chat messages, got {_kind(value)}", line=row, field=key)


_TRL_FIXED = {"step", "prompt", "completion", "advantage", "image"}


def read_trl(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    for file in _trl_files(path):
        counters = _sample_counters()
        for row, rec in _rows(file, bad):
            try:
                prompt = _message_text(require(rec, "prompt", (str, list), file, row), file, row, "prompt")
                text = _message_text(
                    require(rec, keys.text_key or "completion", (str, list), file, row),
                    file,
                    row,
                    keys.text_key or "completion",
                )
                step = _int_or_none(rec.get("step"), file, row, "step")
                rewards = {k: v for k, v in rec.items() if k not in _TRL_FIXED}
                correct = _as_bool(rec.get(keys.correct_key), file, row, keys.correct_key) if keys.correct_key else None
            except InputError as e:
                bad.handle(e)
                continue
            pid = _rollout_problem_id(rec, keys, prompt)
            yield Sample(
                problem_id=pid,
                index=next(counters[(step, pid)]),
                response=text,
                step=step,
                correct=correct,
                meta={"prompt": prompt, "advantage": rec.get("advantage"), "file": file.name} | rewards,
            )


# ---------------------------------------------------------------- sdlens + generic


def read_sdlens(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    for line, rec in _rows(path, bad):
        if path.suffix == ".parquet":
            for name in ("meta", "sampling"):
                if isinstance(rec.get(name), str):
                    rec[name] = orjson.loads(rec[name])
            rec = {k: v for k, v in rec.items() if v is not None}
        try:
            yield from_dict(Sample, rec, path=path, line=line)
        except InputError as e:
            bad.handle(e)


def read_generic(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    text_key = keys.text_key or "response"
    for line, rec in _rows(path, bad):
        try:
            if text_key not in rec:
                raise InputError(path, "missing key (choose the text field with --text-key)", line=line, field=text_key)
            texts = _listish(rec[text_key], path, line, text_key)
            id_key = keys.id_key or next((k for k in ("problem_id", "id", "idx") if k in rec), None)
            if id_key is not None and id_key not in rec:
                raise InputError(path, "missing key", line=line, field=id_key)
            pid = str(rec[id_key]) if id_key else str(line)
            correct = _as_bool(rec.get(keys.correct_key or "correct"), path, line, keys.correct_key or "correct")
            step = _int_or_none(rec.get("step"), path, line, "step")
            context = _group(rec, keys, path, line)
        except InputError as e:
            bad.handle(e)
            continue
        meta = {k: v for k, v in rec.items() if k not in (text_key,)} | {"line": line}
        for j, text in enumerate(texts):
            yield Sample(
                problem_id=pid,
                index=j if len(texts) > 1 else int(rec.get("index", 0) or 0),
                response=text,
                correct=correct,
                step=step,
                context=context,
                model=rec.get("model") if isinstance(rec.get("model"), str) else None,
                source=rec.get("source") if isinstance(rec.get("source"), str) else None,
                meta=meta,
            )


# ---------------------------------------------------------------- OpenAI Batch API output


def read_openai_batch(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    """OpenAI Batch API output JSONL: ``{custom_id, response: {status_code, body}, error}`` per request; the body
    is a chat completion (``choices``) or a Responses API object (``output``). ``custom_id`` is the problem id."""
    yield from _each_record(path, bad, lambda rec, line: _batch_samples(rec, path, line))


def _batch_samples(rec: dict[str, Any], path: Path, line: int) -> list[Sample]:
    cid = require(rec, "custom_id", str, path, line)
    response = rec.get("response")
    if rec.get("error") or not isinstance(response, dict):
        err = rec.get("error")
        reason = err.get("message") if isinstance(err, dict) else err
        raise InputError(path, f"request failed: {reason or 'no response'}", line=line, field="error")
    status = response.get("status_code")
    if status is not None and status != 200:
        raise InputError(path, f"request failed with HTTP status {status}", line=line, field="response.status_code")
    body = response.get("body")
    if not isinstance(body, dict):
        raise InputError(path, f"expected an object, got {_kind(body)}", line=line, field="response.body")
    outputs: list[tuple[str, str | None]] = []  # (text with any reasoning as <think>, finish reason)
    if isinstance(body.get("choices"), list):
        for c in sorted(body["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
            msg = c.get("message") if isinstance(c, dict) else None
            content = msg.get("content") if isinstance(msg, dict) else (c.get("text") if isinstance(c, dict) else None)
            if not isinstance(content, str):
                raise InputError(path, "a choice without text content", line=line, field="response.body.choices")
            reasoning = (msg.get("reasoning_content") or msg.get("reasoning")) if isinstance(msg, dict) else None
            text = f"<think>{reasoning}</think>{content}" if isinstance(reasoning, str) and reasoning else content
            outputs.append((text, c.get("finish_reason")))
    elif isinstance(body.get("output"), list):
        content, reasoning = [], []
        for item in body["output"]:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                content += [p.get("text", "") for p in item.get("content") or [] if p.get("type") == "output_text"]
            elif item.get("type") == "reasoning":
                reasoning += [p.get("text", "") for p in item.get("summary") or [] if isinstance(p, dict)]
        text = "".join(content)
        outputs.append((f"<think>{''.join(reasoning)}</think>{text}" if reasoning else text, body.get("status")))
    else:
        raise InputError(
            path, "expected 'choices' (chat completions) or 'output' (Responses API)", line=line, field="response.body"
        )
    usage = body.get("usage") or {}
    n_tokens = usage.get("completion_tokens", usage.get("output_tokens")) if len(outputs) == 1 else None
    return [
        Sample(
            problem_id=cid,
            index=j,
            response=text,
            finish_reason=finish if isinstance(finish, str) else None,
            n_tokens=n_tokens if isinstance(n_tokens, int) and not isinstance(n_tokens, bool) else None,
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            meta={"line": line, "batch_request_id": response.get("request_id")},
        )
        for j, (text, finish) in enumerate(outputs)
    ]


# ---------------------------------------------------------------- lighteval details


def read_lighteval(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    """lighteval ``--save-details`` parquet (``details_{task}_{date}.parquet``): one row per problem. Current
    versions store ``doc`` / ``model_response`` (``text`` = the samples) / ``metric``; older ones ``full_prompt`` /
    ``predictions`` / ``gold`` / ``metrics``. Correctness is the ``--correct-key`` metric, else the first metric whose
    name holds ``match``, ``pass`` or ``acc``."""
    yield from _each_record(path, bad, lambda rec, row: _lighteval_samples(rec, path, row, keys))


def _lighteval_samples(rec: dict[str, Any], path: Path, row: int, keys: KeyMap) -> list[Sample]:
    if "model_response" in rec:
        response = rec.get("model_response")
        if not isinstance(response, dict):
            raise InputError(path, f"expected an object, got {_kind(response)}", line=row, field="model_response")
        texts = _listish(response.get("text"), path, row, "model_response.text")
        doc = rec.get("doc") if isinstance(rec.get("doc"), dict) else {}
        prompt = doc.get("query")
        gold = _lighteval_gold(doc.get("choices"), doc.get("gold_index"))
        metrics = rec.get("metric")
    else:
        texts = _listish(rec.get("predictions"), path, row, "predictions")
        prompt = rec.get("full_prompt")
        golds = rec.get("gold")
        gold = golds[0] if isinstance(golds, list) and golds and isinstance(golds[0], str) else None
        metrics = rec.get("metrics")
    if isinstance(metrics, str):  # lighteval falls back to str() columns for nested values it cannot store
        try:
            metrics = orjson.loads(metrics.replace("'", '"'))
        except orjson.JSONDecodeError:
            metrics = None
    correct = None
    if isinstance(metrics, dict):
        name = keys.correct_key or next(
            (k for k in metrics if any(s in k for s in ("match", "pass", "acc")) and metrics[k] is not None), None
        )
        if name is not None:
            if name not in metrics:
                raise InputError(path, "no such metric in this row", line=row, field=keys.correct_key)
            correct = _as_bool(metrics[name], path, row, name)
    pid = str(rec[keys.id_key]) if keys.id_key and keys.id_key in rec else str(row - 1)
    return [
        Sample(
            problem_id=pid,
            index=j,
            response=text,
            correct=correct if len(texts) == 1 else None,
            answer=gold,
            meta={"row": row, "prompt": prompt, "metrics": metrics if isinstance(metrics, dict) else None},
        )
        for j, text in enumerate(texts)
    ]


def _lighteval_gold(choices: Any, gold_index: Any) -> str | None:
    if hasattr(choices, "tolist"):
        choices = choices.tolist()
    if isinstance(gold_index, list):
        gold_index = gold_index[0] if gold_index else None
    if isinstance(choices, list) and isinstance(gold_index, int) and 0 <= gold_index < len(choices):
        return str(choices[gold_index])
    return None


# ---------------------------------------------------------------- trace data sets (OpenR1-Math, OpenThoughts)


def read_trace_dataset(path: Path, keys: KeyMap, bad: BadLines) -> Iterator[Sample]:
    """Trace data sets: a ``generations`` list per problem (OpenR1-Math style, with ``correctness_math_verify``)
    or a chat in ``messages`` (``role`` / ``content``) or ``conversations`` (``from`` / ``value``, OpenThoughts
    style) whose assistant turns are the responses."""
    yield from _each_record(path, bad, lambda rec, row: _trace_samples(rec, path, row, keys))


_CORRECT_LISTS = ("correctness_math_verify", "correctness_llama", "correctness")


def _trace_samples(rec: dict[str, Any], path: Path, row: int, keys: KeyMap) -> list[Sample]:
    key = keys.text_key or ("generations" if "generations" in rec else None)
    correct: list[bool | None]
    if key is not None:
        if key not in rec:
            raise InputError(path, "missing key", line=row, field=key)
        texts = _listish(rec[key], path, row, key)
        flags_key = keys.correct_key or next((k for k in _CORRECT_LISTS if rec.get(k) is not None), None)
        flags = _optional_list(rec, flags_key, len(texts), path, row) if flags_key else None
        correct = [_as_bool(f, path, row, flags_key) for f in flags] if flags else [None] * len(texts)
        prompt = rec.get("problem", rec.get("question"))
    else:
        chat_key = "messages" if "messages" in rec else "conversations"
        chat = rec.get(chat_key)
        if not isinstance(chat, list) or not all(isinstance(m, dict) for m in chat):
            raise InputError(path, f"expected a list of chat messages, got {_kind(chat)}", line=row, field=chat_key)
        role = [m.get("role", m.get("from")) for m in chat]
        text = [m.get("content", m.get("value")) for m in chat]
        texts = [t for r, t in zip(role, text, strict=True) if r in ("assistant", "gpt") and isinstance(t, str)]
        if not texts:
            raise InputError(path, "no assistant message (is this a problem file?)", line=row, field=chat_key)
        prompt = next((t for r, t in zip(role, text, strict=True) if r in ("user", "human")), None)
        correct = [
            _as_bool(rec.get(keys.correct_key), path, row, keys.correct_key) if keys.correct_key else None
        ] * len(texts)
    id_key = keys.id_key or next((k for k in ("problem_id", "uuid", "id", "idx") if k in rec), None)
    pid = str(rec[id_key]) if id_key and rec.get(id_key) is not None else (_text_hash(prompt) if prompt else str(row))
    gold = rec.get("answer")
    source = rec.get("source", rec.get("data_source"))
    finish = rec.get("finish_reasons")
    return [
        Sample(
            problem_id=pid,
            index=j,
            response=t,
            correct=correct[j],
            answer=None if gold is None else str(gold),
            source=source if isinstance(source, str) else None,
            finish_reason=finish[j] if isinstance(finish, list) and len(finish) == len(texts) else None,
            context=_group(rec, keys, path, row),
            meta={"row": row, "prompt": prompt},
        )
        for j, t in enumerate(texts)
    ]


_READERS: dict[str, Callable[[Path, KeyMap, BadLines], Iterator[Sample]]] = {
    "sdlens": read_sdlens,
    "paper-eval": read_paper_eval,
    "paper-hint": read_paper_hint,
    "verl-dump": read_verl_dump,
    "verl-generation": read_verl_generation,
    "trl-completions": read_trl,
    "openai-batch": read_openai_batch,
    "lighteval": read_lighteval,
    "trace-dataset": read_trace_dataset,
    "generic": read_generic,
}


def iter_samples(
    path: str | Path, fmt: str | None = None, *, keys: KeyMap | None = None, bad: BadLines | None = None
) -> Iterator[Sample]:
    """Samples from any supported trace file (see the module docstring); ``fmt`` overrides auto-detection."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(path, f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if fmt == "verl-dataset":
        raise InputError(
            path,
            "a verl dataset holds problems, not responses: nothing to analyse "
            "(generate responses first, or pass --format to read it differently)",
        )
    yield from _READERS[fmt](path, keys or KeyMap(), bad or BadLines())
