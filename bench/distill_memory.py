"""Peak memory and time of the SDPO distillation loss: naive full logits vs the chunked path (issue 6).

Both variants compute the paper's loss (student top-k support, tail bucket, generalized JSD alpha = 0.5, per-sequence
token mean) from the same random inputs: student hidden states ``[1, T, H]`` (grad), the student LM head ``[V, H]``
(grad), teacher hidden states and a separate teacher LM head (constants). One forward + backward each.

- naive: what TRL 1.16's ``SDPOTrainer`` does: full logits ``h @ W^T`` for student and teacher, then
  ``trl.experimental.sdpo.loss_utils.compute_topk_self_distillation_loss`` (``--naive ref``: our full-logit reference
  ``sdlens.losses.naive_self_distillation_loss``), masked per-sequence mean.
- chunked: ``sdlens.losses.self_distillation_loss`` (chunks of ``--chunk-size`` tokens, recomputation in backward).

Each variant runs in a fresh subprocess. Peak memory on CPU: the process's peak RSS (VmHWM, reset through
/proc/self/clear_refs after the inputs exist and a small warm-up ran) minus the RSS at that point; on CUDA:
``torch.cuda.max_memory_allocated()`` minus the allocated bytes at that point. ``*_peak_mb`` is that peak minus the
gradients the call returns (``W.grad`` [V, H] and ``h.grad`` [T, H], identical in both variants and part of the
model's gradient budget, not of the loss); ``*_peak_total_mb`` includes them. ``max_abs_diff`` is the largest absolute
difference between the two variants' loss values and gradients (w.r.t. h and W).

    python bench/distill_memory.py                      # sweep T = 512, 1024, ... while the naive path fits
    python bench/distill_memory.py --T 2048 --json      # one T; last line one JSON object
    python bench/distill_memory.py --device cuda --dtype bfloat16 --T 4096 8192 16384 --repeat 3
    python bench/distill_memory.py --rows saved.txt     # re-print the tables of a saved --json run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------------------------
# worker (one variant, one T, in its own process)
# ---------------------------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_cpu_peak() -> str:
    """Reset VmHWM to the current RSS (Linux >= 4.0). Returns the method used for the peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _cpu_peak_kb(method: str) -> int:
    if method == "VmHWM":
        return _status_kb("VmHWM")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(args) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from sdlens.losses import naive_self_distillation_loss, self_distillation_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    T, H, V = args.T, args.H, args.V

    def make(seed: int, shape, scale: float):
        g = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.empty(shape, dtype=dtype, device=device)
        # fill in slices to keep the temporary small (RSS at the baseline is the inputs, not generator scratch)
        rows = max(1, (1 << 24) // shape[-1])
        flat = x.view(-1, shape[-1])
        for a in range(0, flat.shape[0], rows):
            flat[a : a + rows].copy_(torch.randn(flat[a : a + rows].shape, generator=g) * scale)
        return x

    w = make(1, (V, H), 2.0 / H**0.5).requires_grad_(True)
    wt = make(2, (V, H), 2.0 / H**0.5)
    h = make(3, (1, T, H), 1.0).requires_grad_(True)
    ht = make(4, (1, T, H), 1.0)
    ht.mul_(0.5).add_(h.detach(), alpha=0.5)  # teacher close to the student
    mask = torch.ones(1, T, device=device)
    kw = dict(topk=args.k, add_tail=not args.no_tail, alpha=args.alpha, reduction="sequence_mean")

    if args.variant == "chunked":

        def run(hh, tt, mm):
            return self_distillation_loss(hh, w, tt, wt, mask=mm, chunk_size=args.chunk_size, **kw)

    elif args.naive == "trl":
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.sdpo.loss_utils import compute_topk_self_distillation_loss

        def run(hh, tt, mm):
            logits = hh @ w.T
            with torch.no_grad():
                teacher_logits = tt @ wt.T
            per_token = compute_topk_self_distillation_loss(
                logits,
                teacher_logits,
                distillation_topk=args.k,
                distillation_alpha=args.alpha,
                distillation_add_tail=not args.no_tail,
            )
            return ((per_token * mm).sum(-1) / mm.sum(-1).clamp(min=1.0)).mean()

    else:

        def run(hh, tt, mm):
            return naive_self_distillation_loss(hh, w, tt, wt, mask=mm, **kw)

    # warm-up on a few tokens (kernels, thread pools), then drop its gradients
    run(h[:, :8], ht[:, :8], mask[:, :8]).backward()
    h.grad = None
    w.grad = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        import gc

        gc.collect()
        method = _reset_cpu_peak()
        base = _status_kb("VmRSS") * 1024

    times = []
    for i in range(args.repeat):
        if i:
            h.grad = None
            w.grad = None
        t0 = time.perf_counter()
        loss = run(h, ht, mask)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
        method = "cuda.max_memory_allocated"
    else:
        peak = _cpu_peak_kb(method) * 1024 - base
    grad_bytes = w.grad.numel() * w.grad.element_size() + h.grad.numel() * h.grad.element_size()
    result = {
        "variant": args.variant,
        "T": T,
        "peak_total_mb": peak / MB,
        "peak_mb": (peak - grad_bytes) / MB,
        "grad_mb": grad_bytes / MB,
        "seconds": seconds,
        "loss": loss.item(),
        "times": times,
        "method": method,
    }
    if args.save:
        torch.save({"loss": loss.detach().cpu(), "h": h.grad.cpu(), "w": w.grad.cpu()}, args.save)
    if args.compare:
        other = torch.load(args.compare)
        diffs = [
            (loss.detach().cpu().float() - other["loss"].float()).abs().max(),
            (h.grad.cpu().float() - other["h"].float()).abs().max(),
            (w.grad.cpu().float() - other["w"].float()).abs().max(),
        ]
        result["max_abs_diff"] = max(float(d) for d in diffs)
        result["max_abs_diff_parts"] = {"loss": float(diffs[0]), "grad_h": float(diffs[1]), "grad_w": float(diffs[2])}
    return result


# ---------------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------------


def _spawn(args, variant: str, T: int, save: str | None = None, compare: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--_worker", variant, "--T", str(T)]
    for name in ("H", "V", "k", "alpha", "chunk_size", "device", "dtype", "naive", "threads", "repeat"):
        value = getattr(args, name)
        if value is not None:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    if args.no_tail:
        cmd.append("--no-tail")
    if save:
        cmd += ["--save", save]
    if compare:
        cmd += ["--compare", compare]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "T": T, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def measure(args, T: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "chunked.pt")
        chunked = _spawn(args, "chunked", T, save=path)
        naive = _spawn(args, "naive", T, compare=path)
    row = {"T": T, "V": args.V, "H": args.H, "k": args.k, "device": args.device, "dtype": args.dtype}
    if "error" in chunked or "error" in naive:
        row["error"] = {"chunked": chunked.get("error"), "naive": naive.get("error")}
        return row
    row.update(
        naive_peak_mb=round(naive["peak_mb"], 1),
        chunked_peak_mb=round(chunked["peak_mb"], 1),
        naive_peak_total_mb=round(naive["peak_total_mb"], 1),
        chunked_peak_total_mb=round(chunked["peak_total_mb"], 1),
        grad_mb=round(naive["grad_mb"], 1),
        naive_s=round(naive["seconds"], 3),
        chunked_s=round(chunked["seconds"], 3),
        max_abs_diff=naive["max_abs_diff"],
        max_abs_diff_parts=naive["max_abs_diff_parts"],
        loss=chunked["loss"],
        memory_ratio=round(naive["peak_mb"] / max(chunked["peak_mb"], 1e-9), 2),
        time_ratio=round(chunked["seconds"] / naive["seconds"], 3),
        chunk_size=chunked_chunk(args),
        naive_impl=args.naive,
        memory_method=naive["method"],
    )
    return row


def chunked_chunk(args) -> int:
    if args.chunk_size:
        return args.chunk_size
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from sdlens.losses import auto_chunk_size

    return auto_chunk_size(args.V)


def extrapolate(rows: list[dict], targets=(8192, 16384, 20480)) -> list[dict]:
    """Predict peak memory and time at ``targets`` from the measured rows.

    naive peak and both times: least-squares line ``a + b*T`` over the rows with ``T >= 4 * chunk_size`` (all rows if
    fewer than two such). chunked peak: the last measured value plus the per-token state it keeps for backward,
    ``(16 * k + 4)`` bytes per extra token (top-k indices int64, student and teacher top-k log-probs float32, the
    log-normaliser); its chunk buffers do not grow with T.
    """
    ok = [r for r in rows if "error" not in r]
    if len(ok) < 2:
        return []
    big = [r for r in ok if r["T"] >= 4 * r.get("chunk_size", 0)]
    fit_rows = big if len(big) >= 2 else ok

    def fit(key):
        xs = [r["T"] for r in fit_rows]
        ys = [r[key] for r in fit_rows]
        n = len(xs)
        mx, my = sum(xs) / n, sum(ys) / n
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        return my - b * mx, b

    fits = {key: fit(key) for key in ("naive_peak_mb", "naive_s", "chunked_s")}
    last = ok[-1]
    out = []
    for T in targets:
        pred = {key: a + b * T for key, (a, b) in fits.items()}
        chunked_mb = last["chunked_peak_mb"] + (T - last["T"]) * (16 * last["k"] + 4) / MB
        out.append(
            {
                "T": T,
                "naive_peak_mb": round(pred["naive_peak_mb"]),
                "chunked_peak_mb": round(chunked_mb),
                "memory_ratio": round(pred["naive_peak_mb"] / chunked_mb, 1),
                "naive_s": round(pred["naive_s"], 1),
                "chunked_s": round(pred["chunked_s"], 1),
            }
        )
    return out


def print_tables(rows: list[dict]) -> None:
    head = rows[0]
    print(
        f"V={head['V']} H={head['H']} k={head['k']} device={head['device']} dtype={head['dtype']} "
        f"naive={head.get('naive_impl')} chunk_size={head.get('chunk_size')}"
    )
    print("| T | naive peak MB | chunked peak MB | ratio | naive s | chunked s | time ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['T']} | error: {r['error']} |")
            continue
        print(
            f"| {r['T']} | {r['naive_peak_mb']:,.0f} ({r['naive_peak_total_mb']:,.0f}) | "
            f"{r['chunked_peak_mb']:,.0f} ({r['chunked_peak_total_mb']:,.0f}) | {r['memory_ratio']:.1f}x | "
            f"{r['naive_s']:.2f} | {r['chunked_s']:.2f} | {r['time_ratio']:.2f}x | {r['max_abs_diff']:.2e} |"
        )
    print("(peak MB excludes the returned gradients W.grad and h.grad; in parentheses: including them)")
    ext = extrapolate(rows)
    if ext:
        print("\nextrapolation (naive and times: linear fit; chunked: last measured + per-token state):")
        print("| T | naive peak MB | chunked peak MB | ratio | naive s | chunked s |")
        print("|---|---|---|---|---|---|")
        for r in ext:
            print(
                f"| {r['T']:,} | {r['naive_peak_mb']:,} | {r['chunked_peak_mb']:,} | {r['memory_ratio']}x | "
                f"{r['naive_s']} | {r['chunked_s']} |"
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, nargs="*", help="sequence lengths (default: 512, 1024, ... while naive fits)")
    p.add_argument("--H", type=int, default=1024)
    p.add_argument("--V", type=int, default=151_936)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--no-tail", action="store_true")
    p.add_argument("--chunk-size", type=int, default=None, help="tokens per chunk (default: auto, ~2**26 logits)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--naive", default="trl", choices=["trl", "ref"], help="naive path: TRL's function or ours")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=1, help="timed forward+backward runs per variant (time = fastest)")
    p.add_argument("--max-T", type=int, default=65536, help="sweep limit")
    p.add_argument("--rows", default=None, help="re-print the tables from a saved --json output (no measuring)")
    p.add_argument("--json", action="store_true", help="print one JSON object (one T) / a JSON list as last line")
    p.add_argument("--_worker", dest="variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--save", default=None, help=argparse.SUPPRESS)
    p.add_argument("--compare", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.variant:
        args.T = args.T[0]
        print(json.dumps(worker(args)))
        return 0

    if args.rows:
        with open(args.rows) as f:
            saved = json.loads(f.read().strip().splitlines()[-1])
        print_tables(saved if isinstance(saved, list) else [saved])
        return 0

    rows: list[dict] = []
    if args.T:
        for T in args.T:
            rows.append(measure(args, T))
    else:
        T = 512
        while args.max_T - T >= 0:
            # naive holds ~3 float32 [T, V] buffers plus the gradient; stop before it cannot fit
            need_mb = 3.5 * T * args.V * 4 / MB + 3 * args.V * args.H * 4 / MB
            if args.device == "cpu" and need_mb > 0.8 * _available_mb():
                print(f"stop: T={T} needs ~{need_mb:,.0f} MB, {_available_mb():,.0f} MB available", file=sys.stderr)
                break
            row = measure(args, T)
            rows.append(row)
            if "error" in row:
                break
            T *= 2

    if not args.json or len(rows) > 1 or not args.T:
        print_tables(rows)
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
