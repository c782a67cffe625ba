r"""`sdlens probe`: score existing traces with a model, with and without a privileged context.

For each response ``y`` to a problem ``x``, the same weights score every response token twice (teacher forcing):

    s_t = log p(y_t | x, y_<t)        t_t = log p(y_t | x, c, y_<t)        u_t = t_t - s_t

``u_t`` is the pointwise mutual information of the token and the context ``c`` (AntiSD, arXiv 2605.11609, section
3.1): negative where knowing ``c`` makes the token less likely. The paper's claim predicts ``u`` lower at hedge
tokens ("wait", "maybe") than at other tokens under a solution hint. Contexts:

- ``hint``: the paper's section-3 hint prompt (``{question}\n\nCorrect solution: {s}\n\nCorrectly solve the original
  question.``) with ``s`` = the sample's reference ``solution`` when the data has one, else the first *other*
  correct response to the same problem in the file; a response with neither is not scored.
- ``hint-nothink``: the same with the solution's thinking removed (the paper's ``s\think`` context), so the model
  cannot simply copy the solution's hedges.
- ``answer``: the same prompt with only the ground-truth answer as the solution (``\boxed{answer}``).
- ``none``: no second pass; only the student-side scores (log-prob, entropy, whether the sampled token was the
  most likely), which ``--save-tokens`` stores for ``sdlens analyze --measures forks``.

Hedge positions are found on token ids with the lexicon's own rule (:mod:`sdlens.epistemic.tokens`); the hedge vs
other means are the live monitor's mechanism sums (:func:`sdlens.monitor.mechanism.gap_sums`) over the same
positions, so offline and live numbers mean the same thing. CIs resample problems (the bootstrap of
:mod:`sdlens.epistemic.compare`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdlens.benchmarks import load_benchmark
from sdlens.epistemic.config import ProbeConfig
from sdlens.epistemic.lexicon import load_lexicon
from sdlens.epistemic.measures import TOKEN_ENTROPY, TOKEN_IS_TOP
from sdlens.epistemic.tokens import hedge_position_words
from sdlens.errors import InputError
from sdlens.experiments.contexts import context_solution, hint_prompt
from sdlens.io import BadLines, iter_problems, iter_samples
from sdlens.models import load_causal_lm, load_tokenizer, resolve_model
from sdlens.monitor.mechanism import GapAccumulator, gap_sums
from sdlens.schema import Sample, write_jsonl
from sdlens.stats import bootstrap_sums, percentile_ci

CONTEXTS = ("hint", "hint-nothink", "answer", "none")
N_POSITION_BINS = 10


def _question(sample: Sample, problems: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The student's chat for a sample: the problem's messages, else a user turn from a prompt the trace kept."""
    if sample.problem_id in problems:
        return [dict(m) for m in problems[sample.problem_id].messages]
    for key in ("prompt", "question", "problem"):
        value = sample.meta.get(key)
        if isinstance(value, str) and value:
            return [{"role": "user", "content": value}]
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            return [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in value]
    return None


def _with_context(chat: list[dict[str, Any]], solution: str) -> list[dict[str, Any]]:
    if not chat or chat[-1].get("role") != "user":
        raise ValueError("a context needs a chat that ends with a user turn")
    return [*chat[:-1], {"role": "user", "content": hint_prompt(str(chat[-1].get("content", "")), solution)}]


def _solutions(samples: list[Sample]) -> dict[str, list[tuple[int, str]]]:
    """Per problem, its correct responses as ``(position in samples, text)``."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, s in enumerate(samples):
        if s.correct:
            out[s.problem_id].append((i, s.response))
    return out


def _context_text(i: int, sample: Sample, context: str, correct: dict[str, list[tuple[int, str]]]) -> str | None:
    if context == "answer":
        return None if sample.answer is None else f"\\boxed{{{sample.answer}}}"
    ref = sample.meta.get("solution")
    if not (isinstance(ref, str) and ref.strip()):
        ref = next((text for j, text in correct.get(sample.problem_id, []) if j != i), None)
    if ref is None or context == "hint":
        return ref
    return context_solution(ref, "s-nothink")  # the paper's s\think: the solution without its thinking


@dataclass
class _Scored:
    student: np.ndarray  # s_t
    entropy: np.ndarray  # H_t of the student distribution
    is_top: np.ndarray  # sampled token == argmax (student)
    teacher: np.ndarray | None  # t_t (None for context none)
    words: list[str | None]  # lexicon word at each position


class _Scorer:
    def __init__(self, config: ProbeConfig):
        import torch

        self.torch = torch
        ref = resolve_model(config.model)
        self.tokenizer = load_tokenizer(ref)
        self.model = load_causal_lm(ref, device=config.device)
        self.device = config.device
        self.max_tokens = config.max_tokens

    def prompt_ids(self, chat: list[dict[str, Any]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(out["input_ids"])

    def response_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[: self.max_tokens]

    def logits(self, prompt: list[int], response: list[int]):
        torch = self.torch
        ids = torch.tensor([prompt + response], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, logits_to_keep=len(response) + 1)
        # position k of the kept logits predicts response token k
        return out.logits[0, : len(response)].float().log_softmax(-1)

    def score(self, student_chat, teacher_chat, response: list[int], lexicon) -> _Scored:
        torch = self.torch
        y = torch.tensor(response, device=self.device)
        logp = self.logits(self.prompt_ids(student_chat), response)
        s = logp.gather(1, y[:, None])[:, 0]
        entropy = -(logp.exp() * logp).sum(-1)
        is_top = logp.argmax(-1) == y
        t = None
        if teacher_chat is not None:
            t = self.logits(self.prompt_ids(teacher_chat), response).gather(1, y[:, None])[:, 0].cpu().double().numpy()
        return _Scored(
            student=s.cpu().double().numpy(),
            entropy=entropy.cpu().double().numpy(),
            is_top=is_top.cpu().numpy(),
            teacher=t,
            words=hedge_position_words(response, self.tokenizer, lexicon),
        )


@dataclass
class _Event:
    """What :func:`sdlens.monitor.mechanism.gap_sums` reads from a distillation pass, for one scored response."""

    completion_ids: Any
    loss_mask: Any
    student_logps: Any
    teacher_logps: Any
    per_token_loss: Any


def run_probe(config: ProbeConfig, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score the traces (see the module doc) and return the JSON-ready summary."""
    import torch

    if config.context not in CONTEXTS:
        raise InputError(None, f"unknown context {config.context!r} (choose {', '.join(CONTEXTS)})", field="context")
    lexicon = load_lexicon(config.lexicon)
    samples = list(_limited(iter_samples(config.data, config.fmt, keys=config.keys, bad=BadLines()), config.limit))
    if not samples:
        raise InputError(config.data, "no responses to score")
    problems = _load_problems(config.problems)
    correct = _solutions(samples)
    scorer = _Scorer(config)
    gap = torch.zeros(6, dtype=torch.float64)
    per_word: dict[str, list[float]] = defaultdict(list)
    by_position = np.zeros((2, N_POSITION_BINS, 2))  # [hedge/other, bin, (sum u, n)]
    per_problem: dict[str, np.ndarray] = {}  # hedge u sum, n hedge, other u sum, n other
    seq_pmi: list[float] = []
    skipped = {"no_prompt": 0, "no_context": 0, "empty": 0}
    scored_samples: list[Sample] = []
    n_tokens = 0
    for i, sample in enumerate(samples):
        chat = _question(sample, problems)
        if chat is None:
            skipped["no_prompt"] += 1
            continue
        teacher_chat = None
        if config.context != "none":
            text = _context_text(i, sample, config.context, correct)
            if text is None:
                skipped["no_context"] += 1
                continue
            teacher_chat = _with_context(chat, text)
        response = scorer.response_ids(sample.response)
        if not response:
            skipped["empty"] += 1
            continue
        sc = scorer.score(chat, teacher_chat, response, lexicon)
        n_tokens += len(response)
        meta = {
            "token_logprob": [round(float(x), 5) for x in sc.student],
            TOKEN_ENTROPY: [round(float(x), 5) for x in sc.entropy],
            TOKEN_IS_TOP: [int(x) for x in sc.is_top],
        }
        if sc.teacher is not None:
            u = sc.teacher - sc.student
            hedge = np.array([w is not None for w in sc.words])
            event = _Event(
                completion_ids=torch.tensor([response]),
                loss_mask=torch.ones(1, len(response)),
                student_logps=torch.tensor(sc.student[None]),
                teacher_logps=torch.tensor(sc.teacher[None]),
                per_token_loss=torch.zeros(1, len(response)),
            )
            sums = gap_sums(event, scorer.tokenizer, lexicon, hedge_mask=torch.tensor(hedge[None]))
            gap += sums
            row = per_problem.setdefault(sample.problem_id, np.zeros(4))
            row += sums.numpy()[:4]
            for w, x in zip(sc.words, u, strict=True):
                if w is not None:
                    per_word[w].append(float(x))
            bins = np.minimum(np.arange(len(u)) * N_POSITION_BINS // len(u), N_POSITION_BINS - 1)
            for kind, sel in ((0, hedge), (1, ~hedge)):
                np.add.at(by_position[kind, :, 0], bins[sel], u[sel])
                np.add.at(by_position[kind, :, 1], bins[sel], 1)
            seq_pmi.append(float(u.sum()))
            meta["token_pmi"] = [round(float(x), 5) for x in u]
        scored_samples.append(replace(sample, meta={**sample.meta, **meta}))
        if progress:
            progress(1)
    if config.save_tokens is not None:
        write_jsonl(config.save_tokens, scored_samples)
    return _summary(
        config, lexicon, scored_samples, n_tokens, gap, per_word, by_position, per_problem, seq_pmi, skipped
    )


def _load_problems(spec: str | Path | None) -> dict[str, Any]:
    if spec is None:
        return {}
    path = Path(spec)
    if path.is_file():
        return {p.id: p for p in iter_problems(path)}
    return {p.id: p for p in load_benchmark(str(spec)).problems}


def _limited(it: Iterator[Sample], limit: int | None) -> Iterator[Sample]:
    for n, s in enumerate(it):
        if limit is not None and n >= limit:
            return
        yield s


def _summary(config, lexicon, scored, n_tokens, gap, per_word, by_position, per_problem, seq_pmi, skipped):
    entropies = [x for s in scored for x in s.meta[TOKEN_ENTROPY]]
    out: dict[str, Any] = {
        "model": config.model,
        "data": str(config.data),
        "context": config.context,
        "lexicon": lexicon.name,
        "n_responses": len(scored),
        "n_tokens": n_tokens,
        "skipped": skipped,
        "mean_token_entropy": float(np.mean(entropies)) if entropies else None,
        "share_top": float(np.mean([x for s in scored for x in s.meta[TOKEN_IS_TOP]])) if entropies else None,
    }
    if config.context == "none":
        return out
    mech = GapAccumulator.result(gap)
    out["hedge_pmi_mean"] = mech["gap_hedge"]
    out["other_pmi_mean"] = mech["gap_other"]
    out["hedge_minus_other"] = mech["gap_difference"]
    out["n_hedge_tokens"] = mech["n_hedge_positions"]
    out["n_other_tokens"] = mech["n_positions"] - mech["n_hedge_positions"]
    out["hedge_minus_other_ci"] = _difference_ci(per_problem, config.n_boot, config.seed)
    out["per_word"] = {
        w: {"pmi_mean": float(np.mean(v)), "n": len(v), "share_negative": float(np.mean(np.array(v) < 0))}
        for w, v in sorted(per_word.items())
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        means = by_position[:, :, 0] / by_position[:, :, 1]
    out["by_position"] = {
        "hedge_pmi_mean": [None if not np.isfinite(x) else float(x) for x in means[0]],
        "other_pmi_mean": [None if not np.isfinite(x) else float(x) for x in means[1]],
        "n_hedge": [int(x) for x in by_position[0, :, 1]],
    }
    out["sequence_pmi_mean"] = float(np.mean(seq_pmi)) if seq_pmi else None
    out["n_problems"] = len(per_problem)
    return out


def _difference_ci(per_problem: dict[str, np.ndarray], n_boot: int, seed: int) -> list[float | None]:
    """95% CI of (mean u at hedges) - (mean u elsewhere), resampling problems; None when more than 5% of the
    resamples hold no hedge token (hedges in too few problems for an interval)."""
    if not per_problem:
        return [None, None]
    table = np.stack(list(per_problem.values()))
    sums = bootstrap_sums(table, n_boot=n_boot, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3]
    if np.mean(~np.isfinite(diff)) > 0.05:
        # hedges sit in so few problems that many resamples have none: no honest interval
        return [None, None]
    return percentile_ci(diff)
