"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, llama.cpp, ...).

Standard library HTTP only (no client package). Each sample is one ``POST {base_url}/chat/completions`` with
``n=1`` and the sample's own ``seed`` (servers that honour seeds, like vLLM, then reproduce a sample on its own);
``group_n=True`` sends one request with ``n`` for consecutive samples of the same prompt instead (fewer requests,
but a sample is then reproducible only with its group). Requests run on ``concurrency`` threads; connection errors,
timeouts, 408 / 409 / 429 and 5xx answers are retried with exponential backoff and jitter; other answers fail at once
with the server's message.

Extensions sent only when used: ``top_k`` (when set) and ``chat_template_kwargs`` (``enable_thinking``, when the
preset sets it; vLLM and SGLang read it, a strict OpenAI server may reject it: ``--thinking unset`` leaves it
out). A reasoning parser's separate ``reasoning_content`` / ``reasoning`` field
is folded back into the response as ``<think>...</think>`` so the response is the full text either way.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from sdlens.errors import InputError
from sdlens.generation.base import GenRequest, GenResult, SamplingConfig

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    def __init__(self, status: int | None, message: str):
        self.status = status
        super().__init__(message)


def normalize_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is kept as given (minus a trailing /)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(None, f"not an http(s) URL: {url!r}", field="base_url")
    return url if parts.path else url + "/v1"


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        group_n: bool = False,
        aliases: Sequence[str] = (),
    ):
        self.base_url = normalize_base_url(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.tokenizer = tokenizer
        if concurrency < 1:
            raise InputError(None, f"concurrency must be >= 1, got {concurrency}", field="concurrency")
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.group_n = group_n
        self.retries = 0  # retried requests so far (for the manifest)
        self._lock = threading.Lock()
        self.served = self._served_models()
        self.model_name = self._pick_model(model, aliases)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sdlens-openai")

    # ------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise ServerError(e.code, f"HTTP {e.code} from {self.base_url}{path}: {_error_text(e)}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(None, f"cannot reach {self.base_url}{path}: {reason}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ServerError(None, f"{self.base_url}{path} did not answer JSON ({e})") from None

    def _with_retries(self, method: str, path: str, body: dict[str, Any] | None = None):
        attempt = 0
        while True:
            try:
                return self._request(method, path, body)
            except ServerError as e:
                retryable = e.status is None or e.status in RETRY_STATUS
                if not retryable:
                    raise InputError(None, str(e), field="server") from None
                if attempt >= self.max_retries:
                    raise InputError(None, f"{e} (gave up after {attempt + 1} tries)", field="server") from None
                with self._lock:
                    self.retries += 1
                time.sleep(min(30.0, self.backoff * 2**attempt) * (0.5 + random.random()))
                attempt += 1

    def _served_models(self) -> list[str]:
        try:
            data = self._request("GET", "/models", timeout=min(self.timeout, 30.0))
        except ServerError as e:
            raise InputError(None, str(e), field="base_url") from None
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    def _pick_model(self, model: str | None, aliases: Sequence[str]) -> str:
        for name in (model, *aliases):
            if name and name in self.served:
                return name
        if len(self.served) == 1:
            return self.served[0]
        if model and not self.served:  # a server that does not list its models
            return model
        raise InputError(
            None,
            f"the server at {self.base_url} serves {', '.join(self.served) or 'no model'}; "
            f"pick one with --model (got {model!r})",
            field="model",
        )

    # ------------------------------------------------------------ generation

    def _body(self, req: GenRequest, sampling: SamplingConfig, n: int, logprobs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": req.messages,
            "n": n,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": req.seed,
        }
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
        if logprobs:
            body["logprobs"] = True
        kwargs = sampling.chat_template_kwargs()
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        return body

    def _call(self, req: GenRequest, sampling: SamplingConfig, n: int, logprobs: bool) -> list[GenResult]:
        data = self._with_retries("POST", "/chat/completions", self._body(req, sampling, n, logprobs))
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise InputError(None, f"the server returned {len(choices)} choices for n={n}", field="server")
        usage = data.get("usage") or {}
        out = []
        for c in choices:
            msg = c.get("message") or {}
            content = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning")
            text = f"<think>{reasoning}</think>{content}" if reasoning else content
            lp = None
            n_gen = None
            content_lp = (c.get("logprobs") or {}).get("content") if logprobs else None
            if content_lp is not None:
                lp = [float(t.get("logprob", 0.0)) for t in content_lp]
                n_gen = len(lp)
            elif n == 1 and isinstance(usage.get("completion_tokens"), int):
                n_gen = usage["completion_tokens"]
            out.append(GenResult(text=text, n_generated=n_gen, finish_reason=c.get("finish_reason"), logprobs=lp))
        return out

    def generate(
        self, requests: Sequence[GenRequest], sampling: SamplingConfig, *, logprobs: bool = False
    ) -> list[GenResult]:
        groups: list[list[int]] = []
        for i, r in enumerate(requests):
            if self.group_n and groups and requests[groups[-1][0]].messages == r.messages:
                groups[-1].append(i)
            else:
                groups.append([i])
        futures = [self._pool.submit(self._call, requests[g[0]], sampling, len(g), logprobs) for g in groups]
        results: list[GenResult | None] = [None] * len(requests)
        for g, fut in zip(groups, futures, strict=True):
            for i, res in zip(g, fut.result(), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "served_model": self.model_name,
            "concurrency": self.concurrency,
            "group_n": self.group_n,
            "retries": self.retries,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read().decode("utf-8", "replace")
    except Exception:
        return e.reason if isinstance(e.reason, str) else str(e)
    try:
        obj = json.loads(raw)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)
    except json.JSONDecodeError:
        text = raw
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")
