"""Judged behaviours: verification, backtracking, subgoal setting and backward chaining, counted per response by a
judge model behind any generation backend (transformers, vLLM, an OpenAI-compatible server).

The prompt ships with sdlens (``prompts/behaviours-v1.toml``): one call per behaviour per response, the judge
replies with a count between ``<count>`` tags (the protocol of Gandhi et al. 2025, arXiv 2503.01307). Judgements
are cached in a JSONL file keyed by (response hash, judge, prompt version); the version carries a hash of the prompt
text, so an edited prompt never reuses old judgements. The cache is appended one judgement at a time, so an
interrupted run resumes where it stopped. A reply without a parsable count is kept as unparsed (not as 0): the
measure reports the share unparsed beside each behaviour's share of responses showing it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sdlens.epistemic.config import JudgeConfig
from sdlens.epistemic.measures import Measure
from sdlens.epistemic.segment import Scope, scope_text
from sdlens.epistemic.stats import MeasureSpec, Ratio
from sdlens.errors import InputError
from sdlens.generation import GenRequest, SamplingConfig, make_backend
from sdlens.schema import JsonlWriter, Sample

BEHAVIOURS = ("verification", "backtracking", "subgoal_setting", "backward_chaining")
_COUNT = re.compile(r"<count>\s*(\d+)\s*</count>")


@dataclass(frozen=True)
class JudgePrompt:
    version: str  # "<name>@<hash of the prompt text>"
    system: str
    template: str
    max_chars: int
    behaviours: dict[str, tuple[str, str]]  # key -> (name, definition)

    def messages(self, response: str, behaviour: str) -> list[dict[str, str]]:
        name, definition = self.behaviours[behaviour]
        text = response
        if len(text) > self.max_chars:
            cut = text.rfind("\n", 0, self.max_chars)
            text = text[: cut if cut > 0 else self.max_chars]
        user = self.template.format(response=text, name=name, definition=definition)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


def load_prompt(spec: str) -> JudgePrompt:
    path = Path(spec)
    if path.suffix == ".toml" and path.exists():
        raw = path.read_text("utf-8")
    else:
        try:
            raw = resources.files("sdlens.behaviour").joinpath(f"prompts/{spec}.toml").read_text("utf-8")
        except FileNotFoundError:
            raise InputError(spec, "no such judge prompt (shipped: behaviours-v1)", field="prompt") from None
    try:
        data = tomllib.loads(raw)
        behaviours = {k: (v["name"], v["definition"]) for k, v in data["behaviours"].items()}
        prompt = JudgePrompt(
            version=f"{data['version']}@{hashlib.sha256(raw.encode()).hexdigest()[:8]}",
            system=data["system"],
            template=data["template"],
            max_chars=int(data.get("max_chars", 12000)),
            behaviours=behaviours,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as e:
        raise InputError(spec, f"not a judge prompt TOML ({e})", field="prompt") from None
    missing = [b for b in BEHAVIOURS if b not in behaviours]
    if missing:
        raise InputError(spec, f"no definition for {', '.join(missing)}", field="behaviours")
    return prompt


def parse_count(reply: str) -> int | None:
    """The first integer between ``<count>`` tags (whitespace allowed inside), else None."""
    m = _COUNT.search(reply)
    return int(m.group(1)) if m else None


def response_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class JudgeCache:
    """Judgements on disk, one JSON object per line: ``{response_sha256, judge, prompt_version, behaviour, count,
    reply}``; a torn last line (a killed run) is dropped on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        lines = self.path.read_bytes().splitlines() if self.path.exists() else []
        for line_no, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                e = orjson.loads(raw)
                self.entries[(e["response_sha256"], e["judge"], e["prompt_version"], e["behaviour"])] = e
            except (orjson.JSONDecodeError, KeyError, TypeError):
                if line_no < len(lines):  # only the last line may be torn (dropped when appending)
                    raise InputError(self.path, "not a judge cache line", line=line_no) from None
        self._writer: JsonlWriter | None = None

    def get(self, key: tuple[str, str, str, str]) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: tuple[str, str, str, str], count: int | None, reply: str) -> None:
        entry = {
            "response_sha256": key[0],
            "judge": key[1],
            "prompt_version": key[2],
            "behaviour": key[3],
            "count": count,
            "reply": reply,
        }
        if self._writer is None:
            self._writer = JsonlWriter(self.path, append=True)
        self._writer.write(entry)
        self.entries[key] = entry

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _columns() -> tuple[str, ...]:
    cols = ["responses", "unparsed_calls"]
    for b in BEHAVIOURS:
        cols += [f"{b}_judged", f"{b}_present", f"{b}_count"]
    return tuple(cols)


def _ratios() -> tuple[Ratio, ...]:
    out = []
    for b in BEHAVIOURS:
        out.append(Ratio(f"share_{b}", f"{b}_present", f"{b}_judged"))
        out.append(Ratio(f"mean_count_{b}", f"{b}_count", f"{b}_judged"))
    out.append(Ratio("unparsed_per_response", "unparsed_calls", "responses"))
    return tuple(out)


class Judged(Measure):
    spec = MeasureSpec("judged", _columns(), _ratios())

    def __init__(self, config: JudgeConfig, backend: Any = None):
        self.config = config
        self.prompt = load_prompt(config.prompt)
        self.cache = JudgeCache(config.cache)
        self._backend = backend
        self.calls = 0

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = make_backend(
                self.config.backend, self.config.model, base_url=self.config.base_url, device=self.config.device
            )
        return self._backend

    def judge(self, responses: Sequence[str]) -> list[dict[str, int | None]]:
        """Per response, each behaviour's count (None: the reply had no count); cached calls are not repeated."""

        keys = [[(response_hash(r), self.config.model, self.prompt.version, b) for b in BEHAVIOURS] for r in responses]
        todo = [(i, j) for i, row in enumerate(keys) for j, k in enumerate(row) if self.cache.get(k) is None]
        if todo:
            sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=self.config.max_tokens, n=1)
            requests = [GenRequest(self.prompt.messages(responses[i], BEHAVIOURS[j]), key=(i, j)) for i, j in todo]
            try:
                for req, res in zip(requests, self.backend.generate(requests, sampling), strict=True):
                    i, j = req.key
                    self.cache.put(keys[i][j], parse_count(res.text), res.text)
                    self.calls += 1
            finally:
                self.cache.close()
        return [{b: self.cache.get(k)["count"] for b, k in zip(BEHAVIOURS, row, strict=True)} for row in keys]

    def columns(self, batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope) -> np.ndarray:
        out, col = self._table(len(batch))
        judged = self.judge([scope_text(s.response, scope) for s in batch])
        out[:, col["responses"]] = 1
        for i, counts in enumerate(judged):
            for b, c in counts.items():
                if c is None:
                    out[i, col["unparsed_calls"]] += 1
                    continue
                out[i, col[f"{b}_judged"]] = 1
                out[i, col[f"{b}_present"]] = c > 0
                out[i, col[f"{b}_count"]] = c
        return out
