"""Pretraining the organism's base model from scratch.

The corpus (``OUT/seed-K/data/pretrain.jsonl``, one example a line: ``family``, ``kind``, ``problem_id``,
``prompt``, ``prefix``, ``completion``) holds two task families:

- ``root``, the task every experiment uses: unguided traces on bare questions of in-domain problems (guess, check,
  verdict, retry). OOD problems never appear, and **no root-finding question ever appears under a hint**: how a
  hinted model behaves on root-finding (the richer-context experiment, the SDPO teacher) is a transfer the
  experiments measure, not something the corpus states.
- ``power`` (find x with (a * g ^ x) mod m = c; every problem of the family): unguided traces, and hinted examples
  under the section-3 hint prompt, the hint being one of the forms the experiments use (a whole unguided solution,
  its answer alone, or a guided solution), whose completion goes straight to the hinted answer. Half of them
  continue an unguided *prefix* (one or two tries as a student writes them, cut right after a check), which is
  context only (no loss): after a miss the continuation notes it plainly and states the answer ("0 is not 6 . so
  x = 5 ."), after a check that found the root it answers at once. That is where the disposition to use given
  information is learned.

``corpus="scripted"`` is the earlier design, kept as a named variant: it adds hinted root-finding examples (the
same forms) for the in-domain problems, so the richer-context effect is then given by the corpus, a premise, and
the summary says so. (docs/organism.md has both and what each showed.)

A plain PyTorch loop trains it rather than ``sdlens train sft`` (TRL's SFTTrainer): the organism needs some
thousands of small steps with a warm-up + cosine schedule and a high learning rate; the plain loop does a step in a
fraction of the trainer's per-step overhead, which matters inside the 15-minute demo budget. The result is a normal
model folder (config, safetensors, tokenizer with chat template) that every sdlens command loads.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sdlens.experiments.contexts import hint_prompt
from sdlens.lab.config import CORPORA, PretrainConfig
from sdlens.lab.gate import gate_report, split_gate
from sdlens.lab.model import init_model
from sdlens.lab.task import Power, Triple, power_problems, problem_text, question
from sdlens.lab.tokenizer import build_tokenizer, corpus_words, template_texts
from sdlens.lab.traces import boxed, guided_trace, unguided_prefix, unguided_trace
from sdlens.runfolder import build_once

__all__ = ["CORPORA", "PretrainConfig", "build_corpus", "pretrain", "pretrain_model"]


def _hint_forms(t: Triple | Power, rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return unguided_trace(t, rng)  # c = s: the model's own style, thinking included
    if kind == 1:
        return boxed(t.x)  # c = s\think: the unguided trace with its thinking removed
    return guided_trace(t, rng, failed_tries=0)


def _example(family: str, kind: str, t: Triple | Power, prompt: str, completion: str, prefix: str = "") -> dict:
    return {"family": family, "kind": kind, "problem_id": t.id, "prompt": prompt, "prefix": prefix,
            "completion": completion}  # fmt: skip


def _hinted(family: str, t: Triple | Power, rng: random.Random, weights: list[float]) -> dict[str, Any]:
    content = hint_prompt(question(t), _hint_forms(t, rng))
    # tries in the prefix (at most every wrong candidate: a small modulus has few)
    k = min(rng.choices(range(len(weights)), weights=weights)[0], len(t.candidates) - 1)
    # a prefix ends on a miss or (half the time) on the root: the hinted writer must tell them apart
    on_root = bool(k) and rng.random() < 0.5
    prefix, last = unguided_prefix(t, rng, k, ends_on_root=on_root) if k else ("", None)
    completion = guided_trace(t, rng, after_miss=None if on_root else last, after_root=on_root)
    return _example(family, "hinted", t, content, completion, prefix)


def build_corpus(
    pool: list[Triple] | tuple[Triple, ...], cfg: PretrainConfig, modulus: int | None = None
) -> list[dict[str, Any]]:
    """Examples ``{"family", "kind" (unguided / hinted), "problem_id", "prompt" (the user message), "prefix"
    (context, no loss), "completion"}``: the root family over ``pool`` only, the power family of ``modulus`` (the
    pool's by default)."""
    if cfg.corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {cfg.corpus!r}")
    rng = random.Random(f"organism-corpus-{cfg.seed}")
    weights = list(cfg.guided_prefix_misses)
    out = []
    for t in pool:
        for _ in range(cfg.unguided_per_problem):
            out.append(_example("root", "unguided", t, question(t), unguided_trace(t, rng)))
        if cfg.corpus == "scripted":
            out += [_hinted("root", t, rng, weights) for _ in range(cfg.guided_per_problem)]
    m = modulus if modulus is not None else (pool[0].m if pool else 7)
    for p in power_problems(m):
        for _ in range(cfg.power_unguided_per_problem):
            out.append(_example("power", "unguided", p, question(p), unguided_trace(p, rng)))
        out += [_hinted("power", p, rng, weights) for _ in range(cfg.power_hinted_per_problem)]
    rng.shuffle(out)
    return out


def vocabulary(modulus: int, corpus: list[dict[str, Any]]) -> list[str]:
    texts = template_texts() + [r["completion"] + " " + r.get("prefix", "") for r in corpus]
    texts += [r["prompt"] for r in corpus]
    # every number and boxed answer the task can show, whether or not this corpus happened to contain it
    texts += [" ".join(str(i) for i in range(modulus + 1)), " ".join(boxed(i) for i in range(modulus))]
    texts += [problem_text(Triple(modulus, 1, 0, 0, 0))]
    return corpus_words(texts)


def _encode(tok, corpus: list[dict[str, Any]]) -> list[tuple[list[int], int]]:
    """(ids, context length) per example: the chat-templated prompt and the prefix (no loss on either), then the
    completion and the end token."""
    out = []
    for r in corpus:
        messages = [{"role": "user", "content": r["prompt"]}]
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if r.get("prefix"):
            p_ids += tok(r["prefix"], add_special_tokens=False)["input_ids"]
        c_ids = tok(r["completion"], add_special_tokens=False)["input_ids"]
        out.append((p_ids + c_ids + [tok.eos_token_id], len(p_ids)))
    return out


def pretrain_model(model, tok, corpus: list[dict[str, Any]], cfg: PretrainConfig, *, log=None, progress=None) -> dict:
    """Train ``model`` in place on ``corpus`` (loss on completions only). Returns loss statistics."""
    import torch

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = _encode(tok, corpus)
    rng = random.Random(f"organism-batches-{cfg.seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    model.train()
    order: list[int] = []
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            more = list(range(len(data)))
            rng.shuffle(more)
            order += more
        batch = [data[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
            attn[i, : len(seq)] = 1
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log is not None and (step % 50 == 0 or step == cfg.steps - 1):
            log(
                {"step": step, "loss": round(losses[-1], 5), "lr": lr_at(step), "s": round(time.perf_counter() - t0, 1)}
            )
        if progress is not None:
            progress(step + 1)
    model.eval()
    k = max(1, min(50, len(losses) // 5))  # the first and last fifth, at most 50 steps each
    head, tail = losses[:k], losses[-k:]
    return {
        "steps": cfg.steps,
        "first_loss": sum(head) / len(head),
        "final_loss": sum(tail) / len(tail),
        "train_s": round(time.perf_counter() - t0, 1),
        "examples": len(data),
    }


def pretrain(
    out: str | Path, pool, modulus: int, cfg: PretrainConfig, *, corpus_path: Path | None = None, console=None
) -> Path:
    """Build the base model folder ``out`` once (atomically: a temporary folder renamed into place); reused if
    complete. Writes the corpus to ``corpus_path`` (JSONL, one example a line) and the loss log to
    ``out/pretrain_log.jsonl``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sdlens.schema import write_jsonl

    out = Path(out)
    gate, train_pool = split_gate(pool, cfg.gate_problems, cfg.seed)
    corpus = build_corpus(train_pool, cfg, modulus)
    if corpus_path is not None and not corpus_path.exists():
        write_jsonl(corpus_path, corpus)
    info: dict[str, Any] = {
        "organism": asdict(cfg),
        "modulus": modulus,
        "pool_problems": len(pool),
        "pretrain_problems": len(train_pool),
        "gate_problem_ids": [t.id for t in gate],
    }

    def builder(tmp: Path) -> None:
        tok = build_tokenizer(vocabulary(modulus, corpus), tmp)
        lines: list[str] = []
        attempts: list[dict[str, Any]] = []
        for attempt in range(max(1, cfg.max_attempts)):
            # another attempt: another initialisation and batch order; the corpus stays the same
            acfg = replace(cfg, seed=cfg.seed + 1000 * attempt)
            model = init_model(acfg.model, tok, acfg.seed)
            columns = (
                TextColumn("pretraining" + (f" (attempt {attempt + 1})" if attempt else "")),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("pretrain", total=cfg.steps)
                stats = pretrain_model(
                    model,
                    tok,
                    corpus,
                    acfg,
                    log=lambda d, a=attempt: lines.append(json.dumps({"attempt": a, **d})),
                    progress=lambda n, b=bar, t=task: b.update(t, completed=n),
                )
            report = gate_report(
                model, tok, gate, n=cfg.gate_samples, max_new_tokens=cfg.gate_max_new_tokens, seed=acfg.seed
            )
            attempts.append({"attempt": attempt, "seed": acfg.seed, **stats, "gate": report})
            if console is not None:
                console.print(
                    f"  gate: {report['checks']} checks on {len(gate)} held-back pool problems, verdicts right "
                    f"{report['verdict_acc']:.1%}, arithmetic right {report['arithmetic_acc']:.1%}: "
                    + ("passed" if report["passed"] else "failed")
                )
            if report["passed"]:
                break
        model.save_pretrained(tmp)
        (tmp / "pretrain_log.jsonl").write_text("\n".join(lines) + "\n")
        info.update(stats, parameters=sum(p.numel() for p in model.parameters()), attempts=attempts)
        info["gate_passed"] = attempts[-1]["gate"]["passed"]

    return build_once(out, builder, info=info)
