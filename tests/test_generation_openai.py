"""The openai backend against real server processes on 127.0.0.1, started and stopped by the tests.

Default (fast): sdlens's own OpenAI-compatible server (``tests/openai_server.py``: a real HTTP server
process generating with transformers) on the tiny random model. Slow: vLLM CPU's
``python -m vllm.entrypoints.openai.api_server`` from ``.venv-vllm`` (``make setup-vllm``) on SmolLM2; skipped with
the reason when that venv is absent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from sdlens.benchmarks import load_benchmark
from sdlens.errors import InputError
from sdlens.generation import GenRequest, SamplingConfig, make_backend, sample_seed
from sdlens.generation.openai_backend import OpenAIBackend

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
SERVER = ROOT / "tests" / "openai_server.py"  # the test suite's own OpenAI-compatible server
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
SAMPLING = SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=48, n=2, enable_thinking=True)


def start_sdlens_server(model: str = "tiny-random", timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "openai_server.py"),
            "--model",
            model,
            "--port",
            "0",
            "--batch-size",
            "16",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if " at http://" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, line.split(" at ", 1)[1].strip()
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(lines))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server():
    proc, url = start_sdlens_server()
    yield url
    stop(proc)
    assert proc.returncode is not None


def test_server_lists_its_model_and_backend_picks_it(server):
    be = make_backend("openai", "tiny-random", base_url=server.removesuffix("/v1"))  # /v1 is added
    assert be.served == ["tiny-random"] and be.model_name == "tiny-random"
    assert be.tokenizer is not None  # tiny-random also resolves here: tokens are counted locally
    be.close()
    # a server with one model: any --model name gets it; with several, the name must match
    assert OpenAIBackend(server, "some-alias").model_name == "tiny-random"
    be = OpenAIBackend(server, "tiny-random")
    be.served = ["tiny-random", "b"]
    with pytest.raises(InputError, match="serves tiny-random, b; pick one with --model"):
        be._pick_model("other-model", ())


def test_samples_equal_the_transformers_backend(server):
    """Same seeds through HTTP (server-side batching) and in-process: the same samples."""
    problems = load_benchmark("math500", limit=4).problems
    reqs = [GenRequest(p.messages, seed=sample_seed(0, p.id, i)) for p in problems for i in range(2)]
    remote = make_backend("openai", "tiny-random", base_url=server, concurrency=4)
    local = make_backend("transformers", "tiny-random")
    got = remote.generate(reqs, SAMPLING, logprobs=True)
    want = local.generate(reqs, SAMPLING, logprobs=True)
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in want]
    assert [r.n_generated for r in got] == [r.n_generated for r in want]
    assert got[0].logprobs == pytest.approx(want[0].logprobs, abs=1e-4)
    remote.close()


def test_group_n_sends_one_request_with_n(server):
    be = make_backend("openai", "tiny-random", base_url=server, group_n=True)
    msgs = [{"role": "user", "content": "What is 2+3?"}]
    res = be.generate([GenRequest(msgs, seed=7), GenRequest(msgs, seed=8), GenRequest(msgs, seed=9)], SAMPLING)
    assert len(res) == 3 and len({r.text for r in res}) == 3
    be.close()


def test_bad_request_is_one_line(server):
    be = make_backend("openai", "tiny-random", base_url=server, max_retries=0)
    bad = SamplingConfig(temperature=0.5, top_p=0.9, max_tokens=8, n=1)
    req = GenRequest([{"role": "user", "content": "hi"}])
    body = be._body(req, bad, 1, False)
    body["temperature"] = "hot"
    with pytest.raises(InputError, match=r"HTTP 400 .*temperature") as e:
        be._with_retries("POST", "/chat/completions", body)
    assert "\n" not in str(e.value)
    be.close()


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first two completions, then a valid one: exercises retry with backoff."""

    calls = 0

    def log_message(self, *a):
        pass

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"data": [{"id": "m"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        if type(self).calls <= 2:
            self._send(503, {"error": {"message": "overloaded"}})
        else:
            self._send(
                200,
                {
                    "choices": [{"index": 0, "message": {"content": "\\boxed{5}"}, "finish_reason": "stop"}],
                    "usage": {"completion_tokens": 4},
                },
            )


def test_retries_with_backoff_then_succeeds():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        be = OpenAIBackend(url, "m", backoff=0.01, max_retries=3)
        [r] = be.generate([GenRequest([{"role": "user", "content": "2+3?"}])], SAMPLING)
        assert (r.text, r.finish_reason, r.n_generated, be.retries) == ("\\boxed{5}", "stop", 4, 2)
        _Flaky.calls = 0
        be2 = OpenAIBackend(url, "m", backoff=0.01, max_retries=1)
        with pytest.raises(InputError, match=r"HTTP 503 .*overloaded.*gave up after 2 tries"):
            be2.generate([GenRequest([{"role": "user", "content": "2+3?"}])], SAMPLING)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_vllm_cpu_openai_server(tmp_path):
    """`sdlens eval --backend openai` against vLLM CPU's OpenAI server serving SmolLM2 (start-up 40-110 s)."""
    if not VLLM_PY.exists():
        pytest.skip(".venv-vllm is absent: run `make setup-vllm` to test against vLLM CPU's OpenAI server")
    from sdlens.models import resolve_model

    path = resolve_model("smollm2-135m").path
    port = _free_port()
    env = {**ENV, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_USE_AOT_COMPILE": "0"}
    log = open(tmp_path / "vllm.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(VLLM_PY),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            path,
            "--served-model-name",
            "smollm2-135m",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            "4096",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 400
        while True:
            try:
                OpenAIBackend(url, "smollm2-135m").close()
                break
            except InputError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("vLLM server did not start:\n" + (tmp_path / "vllm.log").read_text()[-3000:])
                time.sleep(2)
        out = tmp_path / "run"
        cmd = [
            sys.executable,
            "-m",
            "sdlens.cli",
            "eval",
            "--model",
            "smollm2-135m",
            "--benchmark",
            "math500",
            "--limit",
            "3",
            "--n",
            "2",
            "--max-tokens",
            "96",
            "--few-shot",
            "1",
            "--backend",
            "openai",
            "--base-url",
            url,
            "--out",
            str(out),
            "--no-progress",
            "--json",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        assert p.returncode == 0, p.stderr
        metrics = json.loads(p.stdout)
        assert metrics["samples"] == 6
        rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
        assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
        assert all(len(r["response"].split()) > 5 for r in rows)  # real text
        assert all(r["n_tokens"] > 0 and r["model"] == "smollm2-135m" for r in rows)
        # seeded: the same request twice gives the same text
        be = OpenAIBackend(url, "smollm2-135m")
        req = GenRequest([{"role": "user", "content": "What is 2+3?"}], seed=11)
        s = SamplingConfig(temperature=1.0, top_p=1.0, max_tokens=32, n=1, enable_thinking=None)
        assert be.generate([req], s)[0].text == be.generate([req], s)[0].text
        be.close()
    finally:
        stop(proc)
        log.close()
