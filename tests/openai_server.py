"""A small OpenAI-compatible server over the transformers backend: ``python tests/openai_server.py``.

What it is: a real HTTP server (``http.server``, one thread per connection) that generates with
:class:`~sdlens.generation.hf.TransformersBackend`. Requests that arrive together are batched: a worker thread
takes whatever is queued (up to ``--batch-size`` rows, grouped by identical sampling settings) and runs one batch.
It serves ``GET /v1/models``, ``GET /health`` and ``POST /v1/chat/completions`` with ``n``, ``seed``,
``temperature``, ``top_p``, ``top_k``, ``max_tokens`` / ``max_completion_tokens``, ``logprobs`` (chosen-token
log-probs only; ``top_logprobs`` lists are empty) and vLLM's ``chat_template_kwargs``. No streaming, no tools, no
auth. With the same ``seed`` and ``n=1`` a choice equals the transformers backend's sample for that seed (up to
batch-composition float effects).

What it is for: testing the ``openai`` backend end to end without vLLM, and serving a small model on a laptop.
It is not a production server: use vLLM (``python -m vllm.entrypoints.openai.api_server``) or SGLang for that.

    python tests/openai_server.py --model smollm2-135m --port 8000     # prints the URL when ready
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sdlens.errors import InputError
from sdlens.generation.base import SamplingConfig, sample_seed


@dataclass
class _Job:
    prompts: list[list[int]]
    seeds: list[int]
    sampling: SamplingConfig
    logprobs: bool
    future: Future


class Batcher:
    """Runs queued jobs on one worker thread, merging jobs with the same sampling settings into one batch."""

    def __init__(self, backend: Any, batch_size: int, wait_s: float = 0.005):
        self.backend = backend
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.q: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="sdlens-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> Future:
        self.q.put(job)
        return job.future

    def stop(self) -> None:
        self.q.put(None)

    def _loop(self) -> None:
        pending: list[_Job] = []
        while True:
            if not pending:
                job = self.q.get()
                if job is None:
                    return
                pending.append(job)
            time.sleep(self.wait_s)  # let requests sent together arrive together
            while True:
                try:
                    job = self.q.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    return
                pending.append(job)
            head = pending[0]
            key = (head.sampling, head.logprobs)
            batch, rest, rows = [], [], 0
            for j in pending:
                if (j.sampling, j.logprobs) == key and (not batch or rows + len(j.prompts) <= self.batch_size):
                    batch.append(j)
                    rows += len(j.prompts)
                else:
                    rest.append(j)
            pending = rest
            try:
                results = self.backend.generate_ids(
                    [p for j in batch for p in j.prompts],
                    [s for j in batch for s in j.seeds],
                    head.sampling,
                    logprobs=head.logprobs,
                )
            except BaseException as e:  # hand the error to every waiting request
                for j in batch:
                    j.future.set_exception(e)
                continue
            k = 0
            for j in batch:
                j.future.set_result(results[k : k + len(j.prompts)])
                k += len(j.prompts)


def _sampling(body: dict[str, Any]) -> tuple[SamplingConfig, int, bool]:
    def num(key: str, default: float | None, kind: type) -> Any:
        v = body.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(None, f"expected a number, got {type(v).__name__}", field=key)
        return kind(v)

    n = num("n", 1, int)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InputError(None, "expected an object", field="chat_template_kwargs")
    top_k = num("top_k", None, int)
    sampling = SamplingConfig(
        temperature=num("temperature", 1.0, float),
        top_p=num("top_p", 1.0, float),
        top_k=None if top_k in (None, 0, -1) else top_k,
        max_tokens=int(max_tokens) if max_tokens is not None else 1024,
        n=n,
        seed=0,
        enable_thinking=kwargs.get("enable_thinking"),
    )
    return sampling, n, bool(body.get("logprobs"))


def make_handler(backend: Any, batcher: Batcher, model_name: str):
    tok_lock = threading.Lock()  # a fast tokenizer used from several threads at once can fail ("Already borrowed")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sdlens-openai/0.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: one line per request would flood tests
            pass

        def _send(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "sdlens"}],
                    },
                )
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise InputError(None, "expected a JSON object", field="body")
                if body.get("stream"):
                    raise InputError(None, "streaming is not supported", field="stream")
                if body.get("model") not in (None, model_name):
                    self._error(
                        404,
                        f"model {body.get('model')!r} is not served here; this server serves {model_name!r}",
                        "not_found_error",
                    )
                    return
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    raise InputError(None, "expected a non-empty list of chat messages", field="messages")
                sampling, n, logprobs = _sampling(body)
                with tok_lock:
                    prompt = backend.render(messages, sampling)
                seed = body.get("seed")
                base = int(seed) if isinstance(seed, int) else secrets.randbits(31)
                seeds = [base if i == 0 else sample_seed(base, "choice", i) for i in range(n)]
            except (InputError, ValueError, TypeError) as e:
                self._error(400, str(e))
                return
            try:
                results = batcher.submit(_Job([prompt] * n, seeds, sampling, logprobs, Future())).result()
            except InputError as e:
                self._error(400, str(e))
                return
            except Exception as e:
                self._error(500, f"{type(e).__name__}: {e}", "server_error")
                return
            choices = []
            for i, r in enumerate(results):
                lp = None
                if logprobs:
                    with tok_lock:
                        toks = backend.tokenizer.convert_ids_to_tokens(r.token_ids or [])
                    lp = {
                        "content": [
                            {"token": t, "logprob": v, "bytes": None, "top_logprobs": []}
                            for t, v in zip(toks, r.logprobs or [], strict=True)
                        ]
                    }
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": r.text},
                        "finish_reason": r.finish_reason,
                        "logprobs": lp,
                    }
                )
            completion = sum(r.n_generated or 0 for r in results)
            self._send(
                200,
                {
                    "id": f"chatcmpl-{secrets.token_hex(8)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model_name,
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": len(prompt),
                        "completion_tokens": completion,
                        "total_tokens": len(prompt) + completion,
                    },
                },
            )

    return Handler


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    served_name: str | None = None,
    ready: Any = None,
    threads: int | None = None,
) -> None:
    """Load the model and serve until SIGTERM / SIGINT. ``ready(url)`` is called once the socket listens."""
    from sdlens.generation.hf import TransformersBackend

    backend = TransformersBackend(model, device=device, dtype=dtype, batch_size=batch_size, threads=threads)
    batcher = Batcher(backend, batch_size)
    name = served_name or model
    httpd = ThreadingHTTPServer((host, port), make_handler(backend, batcher, name))
    httpd.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = f"http://{httpd.server_address[0]}:{httpd.server_address[1]}/v1"
    (ready or (lambda u: print(f"sdlens server: {name} at {u}", flush=True)))(url)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        batcher.stop()
        httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tests/openai_server.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny-random, a local folder or a hub id")
    ap.add_argument("--served-model-name", default=None, help="the id in /v1/models (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on start)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads sleep: the machine runs other tests
    try:
        serve(
            args.model,
            host=args.host,
            port=args.port,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            served_name=args.served_model_name,
            threads=args.threads,
        )
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
