"""Memory-lean self-distillation loss (SDPO) from final hidden states and the LM head weight.

The SDPO distillation term compares, at every response position, the student's next-token distribution with the
teacher's (docs/paper.md 6.3). TRL's ``compute_topk_self_distillation_loss`` takes full ``[B, T, V]`` logits of both
models; at V = 151,936 and T = 20,480 that is ~12 GB per sequence per model in float32, before any gradient.

Here the loss is computed from the final hidden states ``h`` (``[B, T, H]``) and the LM head weight ``W``
(``[V, H]``) in chunks of tokens: a chunk's logits ``h_c W^T / temperature`` exist only while that chunk is processed.
The forward keeps, per token, the student's top-k indices, the student and teacher log-probs on that support and the
student's log-normaliser (O(T x k)); the backward recomputes the chunk's student logits once and forms the gradient
w.r.t. the logits in closed form,

    dL/dz = scatter(idx, g) - (sum_j g_j) * softmax(z),     g = dL/d(student top-k log-probs),

where ``g`` comes from autograd on the small ``[chunk, k]`` divergence, then ``dL/dh = dL/dz W / temperature`` and
``dL/dW += (dL/dz)^T h / temperature``. Peak memory is O(chunk x V + T x k + T x H) plus the ``[V, H]`` weight
gradient, instead of several ``[T, V]`` buffers. The full-vocabulary variant recomputes both models' chunk logits in
backward and differentiates the chunk with autograd.

Semantics match TRL 1.16 (``trl.experimental.sdpo.loss_utils``) exactly: the student's top-k support, teacher
log-probs gathered at the student's indices, both normalised over the full vocabulary, then either a tail bucket
``log(1 - sum p_topk)`` appended (k + 1 categories) or a renormalisation over the k; the generalized JSD with
``alpha`` (``alpha == 0`` -> KL(p_T || p_S), ``alpha == 1`` -> KL(p_S || p_T), else
``(1 - alpha) KL(p_S || M) + alpha KL(p_T || M)`` with ``M = (1 - alpha) p_S + alpha p_T``). The only deliberate
difference: chunk logits are upcast to float32 before the softmax, where TRL computes in the model's dtype.

See docs/distill_loss.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = [
    "DistillOutput",
    "Reduction",
    "add_tail_bucket",
    "auto_chunk_size",
    "generalized_jsd",
    "is_clip_weights",
    "logps_entropy_from_logits",
    "naive_self_distillation_loss",
    "reduce_per_token",
    "self_distillation_loss",
    "self_distillation_per_token",
    "support_log_probs",
    "token_logprobs",
]

Reduction = Literal["none", "sum", "token_mean", "sequence_mean"]
REDUCTIONS = ("none", "sum", "token_mean", "sequence_mean")

# Default chunk: about 2**26 logits (256 MiB in float32) per chunk.
CHUNK_ELEMENTS = 1 << 26


def auto_chunk_size(vocab_size: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Tokens per chunk so that one chunk of float32 logits holds about ``elements`` values (at least 16 tokens)."""
    return max(16, elements // max(1, vocab_size))


# ---------------------------------------------------------------------------------------------------------------------
# Small pieces (operate on [..., k] or [..., V] log-probs; shared by the chunked and the naive path)
# ---------------------------------------------------------------------------------------------------------------------


def generalized_jsd(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence over the last dimension, TRL/verl convention.

    ``alpha == 0``: ``KL(p_T || p_S)``; ``alpha == 1``: ``KL(p_S || p_T)``; otherwise
    ``(1 - alpha) KL(p_S || M) + alpha KL(p_T || M)`` with ``M = (1 - alpha) p_S + alpha p_T``. Each KL term is
    ``exp(a) * (a - b)`` summed, as ``F.kl_div(b, a, log_target=True)`` computes it.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    s, t = student_log_probs, teacher_log_probs
    if alpha == 0.0:
        kl = t.exp() * (t - s)
    elif alpha == 1.0:
        kl = s.exp() * (s - t)
    else:
        mixture = torch.logaddexp(s + math.log(1.0 - alpha), t + math.log(alpha))
        kl_student = s.exp() * (s - mixture)
        kl_teacher = t.exp() * (t - mixture)
        kl = torch.lerp(kl_student, kl_teacher, alpha)
    return kl.sum(-1)


def add_tail_bucket(log_probs: torch.Tensor) -> torch.Tensor:
    """Append ``log(1 - sum(exp(log_probs)))`` as one more category (the captured mass is clamped below 1)."""
    log_mass = torch.logsumexp(log_probs, dim=-1, keepdim=True).clamp(max=-1e-7)
    return torch.cat([log_probs, torch.log(-torch.expm1(log_mass))], dim=-1)


def support_log_probs(log_probs: torch.Tensor, add_tail: bool) -> torch.Tensor:
    """Top-k log-probs (normalised over the full vocabulary) -> a distribution: tail bucket or renormalisation."""
    if add_tail:
        return add_tail_bucket(log_probs)
    return log_probs - torch.logsumexp(log_probs, dim=-1, keepdim=True)


def _topk_divergence(s: torch.Tensor, t: torch.Tensor, add_tail: bool, alpha: float) -> torch.Tensor:
    return generalized_jsd(support_log_probs(s, add_tail), support_log_probs(t, add_tail), alpha)


def is_clip_weights(student_logps: torch.Tensor, old_logps: torch.Tensor, clip: float) -> torch.Tensor:
    """Detached per-token importance weights ``min(exp(clamp(logp - logp_old, -20, 20)), clip)`` (docs/paper.md 6.3)."""
    log_ratio = (student_logps.detach() - old_logps.detach()).clamp(min=-20.0, max=20.0)
    return log_ratio.exp().clamp(max=clip)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """``hidden @ weight.T`` in the weight's dtype, returned as a fresh float32 tensor divided by ``temperature``."""
    z = (hidden if hidden.dtype == weight.dtype else hidden.to(weight.dtype)) @ weight.T
    z = z.float() if z.dtype != torch.float32 else z
    if temperature != 1.0:
        z.div_(temperature)
    return z


# ---------------------------------------------------------------------------------------------------------------------
# Chunked autograd functions. Inputs are flattened active tokens: hs/ht [N, H], W/Wt [V, H], target [N] (or empty).
# Outputs: per-token loss [N] (float32, differentiable) and the student's log-prob of target [N] (not differentiable).
# ---------------------------------------------------------------------------------------------------------------------


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _live_chunks(grad_loss: torch.Tensor, size: int) -> list[bool]:
    """Per chunk, whether any of its tokens receives a gradient; one host sync for all chunks (not one per chunk)."""
    n = grad_loss.shape[0]
    pad = (-n) % size
    flags = torch.nn.functional.pad(grad_loss.ne(0), (0, pad)).reshape(-1, size).any(dim=1)
    return flags.tolist()


def _cast(weight: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The weight used in the chunk matmuls: itself, or a detached copy in ``dtype`` (what autocast would use)."""
    return weight if dtype is None or weight.dtype == dtype else weight.detach().to(dtype)


def _no_autocast(device: torch.device):
    """The matmul dtype is explicit (``matmul_dtype``); an enclosing autocast region must not change it."""
    return torch.autocast(device_type=device.type, enabled=False)


class _ChunkedTopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, weight, ht, teacher_weight, target, k, add_tail, alpha, temperature, chunk, mm_dtype):
        n = hs.shape[0]
        device = hs.device
        s_all = torch.empty(n, k, dtype=torch.float32, device=device)
        t_all = torch.empty(n, k, dtype=torch.float32, device=device)
        idx_all = torch.empty(n, k, dtype=torch.long, device=device)
        lse_all = torch.empty(n, dtype=torch.float32, device=device)
        loss = torch.empty(n, dtype=torch.float32, device=device)
        has_target = target.numel() > 0
        target_logps = torch.zeros(n, dtype=torch.float32, device=device)
        with _no_autocast(device):
            w_mm, wt_mm = _cast(weight, mm_dtype), _cast(teacher_weight, mm_dtype)
            for a, b in _chunks(n, chunk):
                z = _logits(hs[a:b], w_mm, temperature)
                lse = torch.logsumexp(z, dim=-1)
                vals, idx = torch.topk(z, k, dim=-1)
                if has_target:
                    target_logps[a:b] = z.gather(1, target[a:b, None]).squeeze(1) - lse
                del z
                s = vals - lse[:, None]
                zt = _logits(ht[a:b], wt_mm, temperature)
                t = zt.gather(1, idx) - torch.logsumexp(zt, dim=-1, keepdim=True)
                del zt
                loss[a:b] = _topk_divergence(s, t, add_tail, alpha)
                s_all[a:b], t_all[a:b], idx_all[a:b], lse_all[a:b] = s, t, idx, lse
        ctx.save_for_backward(hs, weight, s_all, t_all, idx_all, lse_all)
        ctx.cfg = (add_tail, alpha, temperature, chunk, mm_dtype)
        ctx.mark_non_differentiable(target_logps)
        return loss, target_logps

    @staticmethod
    def backward(ctx, grad_loss, _grad_target):
        hs, weight, s_all, t_all, idx_all, lse_all = ctx.saved_tensors
        add_tail, alpha, temperature, chunk, mm_dtype = ctx.cfg
        grads = _LinearGrads(ctx, hs, weight)
        with _no_autocast(hs.device):
            w_mm = _cast(weight, mm_dtype)
            for a, b, g_out in grads.live_chunks(grad_loss, chunk):
                with torch.enable_grad():
                    s = s_all[a:b].detach().requires_grad_(True)
                    (g_s,) = torch.autograd.grad(_topk_divergence(s, t_all[a:b], add_tail, alpha), s, g_out)
                # dL/dz = scatter(idx, g_s) - sum(g_s) * softmax(z); softmax from the saved log-normaliser.
                g_z = _logits(hs[a:b], w_mm, temperature)
                g_z.sub_(lse_all[a:b, None]).exp_().mul_(-g_s.sum(-1, keepdim=True))
                g_z.scatter_add_(1, idx_all[a:b], g_s)
                grads.add(g_z, hs[a:b], w_mm, temperature, a, b)
        return *grads.result(), None, None, None, None, None, None, None, None, None


class _ChunkedFull(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs, weight, teacher_weight, target, alpha, temperature, chunk, mm_dtype, teacher_log_probs, *hts):
        n = hs.shape[0]
        loss = torch.empty(n, dtype=torch.float32, device=hs.device)
        has_target = target.numel() > 0
        target_logps = torch.zeros(n, dtype=torch.float32, device=hs.device)
        with _no_autocast(hs.device):
            w_mm, wt_mm = _cast(weight, mm_dtype), _cast(teacher_weight, mm_dtype)
            for a, b in _chunks(n, chunk):
                s = torch.log_softmax(_logits(hs[a:b], w_mm, temperature), dim=-1)
                if has_target:
                    target_logps[a:b] = s.gather(1, target[a:b, None]).squeeze(1)
                t = teacher_log_probs(*(_logits(ht[a:b], wt_mm, temperature) for ht in hts))
                loss[a:b] = generalized_jsd(s, t, alpha)
                del s, t
        ctx.save_for_backward(hs, weight, teacher_weight, *hts)
        ctx.cfg = (alpha, temperature, chunk, mm_dtype, teacher_log_probs)
        ctx.mark_non_differentiable(target_logps)
        return loss, target_logps

    @staticmethod
    def backward(ctx, grad_loss, _grad_target):
        hs, weight, teacher_weight, *hts = ctx.saved_tensors
        alpha, temperature, chunk, mm_dtype, teacher_log_probs = ctx.cfg
        grads = _LinearGrads(ctx, hs, weight)
        with _no_autocast(hs.device):
            w_mm, wt_mm = _cast(weight, mm_dtype), _cast(teacher_weight, mm_dtype)
            for a, b, g_out in grads.live_chunks(grad_loss, chunk):
                t = teacher_log_probs(*(_logits(ht[a:b], wt_mm, temperature) for ht in hts))
                with torch.enable_grad():
                    z = _logits(hs[a:b], w_mm, temperature).requires_grad_(True)
                    (g_z,) = torch.autograd.grad(generalized_jsd(torch.log_softmax(z, dim=-1), t, alpha), z, g_out)
                del t, z
                grads.add(g_z, hs[a:b], w_mm, temperature, a, b)
        return *grads.result(), None, None, None, None, None, None, None, *(None for _ in hts)


class _LinearGrads:
    """The gradients of ``logits = hs @ W^T / temperature`` w.r.t. ``hs`` and ``W``, filled chunk by chunk from the
    gradient w.r.t. each chunk's logits: ``grad_h`` ``[N, H]`` and ``grad_w`` (a float32 ``[V, H]`` accumulator)."""

    def __init__(self, ctx, hs: torch.Tensor, weight: torch.Tensor):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        self.grad_h = torch.empty_like(hs) if need_h else None
        self.grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        self.weight_dtype = weight.dtype

    def live_chunks(self, grad_loss: torch.Tensor, chunk: int):
        """``(a, b, grad of the chunk's loss)`` per chunk that receives a gradient; the others' ``grad_h`` is zero
        (e.g. tokens weighted by zero: nothing flows back)."""
        live = _live_chunks(grad_loss, chunk)
        for i, (a, b) in enumerate(_chunks(grad_loss.shape[0], chunk)):
            if live[i]:
                yield a, b, grad_loss[a:b].float()
            elif self.grad_h is not None:
                self.grad_h[a:b].zero_()

    def add(self, g_z: torch.Tensor, h_chunk: torch.Tensor, w_mm: torch.Tensor, temperature: float, a: int, b: int):
        """grad_h[a:b] = g_z @ W / temperature; grad_w += g_z^T @ h / temperature. Matmuls in ``w_mm``'s dtype."""
        if temperature != 1.0:
            g_z.div_(temperature)
        g = g_z if g_z.dtype == w_mm.dtype else g_z.to(w_mm.dtype)
        if self.grad_h is not None:
            if self.grad_h.dtype == w_mm.dtype:
                torch.mm(g, w_mm, out=self.grad_h[a:b])
            else:
                self.grad_h[a:b].copy_(g @ w_mm)
        if self.grad_w is not None:
            h = h_chunk if h_chunk.dtype == w_mm.dtype else h_chunk.to(w_mm.dtype)
            if w_mm.dtype == torch.float32:
                self.grad_w.addmm_(g.T, h)
            else:
                self.grad_w.add_(g.T @ h)

    def result(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.grad_h, None if self.grad_w is None else self.grad_w.to(self.weight_dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class DistillOutput:
    """Per-token results, shaped like the mask (``[B, T]`` or ``[T]``).

    ``per_token_loss`` is differentiable and already multiplied by the token weights (IS clip, rollout IS) and by the
    mask (zero where the mask is zero). ``student_token_logps`` is the student's detached log-prob of ``target_ids``
    (``None`` without targets; zero where the mask is zero: masked tokens are never computed); ``is_weights`` the
    detached IS-clip weights (``None`` without ``old_logps``).
    """

    per_token_loss: torch.Tensor
    student_token_logps: torch.Tensor | None
    is_weights: torch.Tensor | None


def _validate(hidden, weight, teacher_hiddens, teacher_weight, topk, alpha, temperature, teacher_target):
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden states must be [T, H] or [B, T, H], got shape {tuple(hidden.shape)}")
    for teacher_hidden in teacher_hiddens:
        if teacher_hidden.shape != hidden.shape:
            raise ValueError(f"teacher hidden {tuple(teacher_hidden.shape)} != student hidden {tuple(hidden.shape)}")
    if (teacher_target is not None or len(teacher_hiddens) != 1) and topk is not None:
        raise ValueError("a teacher_target (or several teacher passes) needs topk=None: the full vocabulary")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [V, H={hidden.shape[-1]}], got {tuple(weight.shape)}")
    if teacher_weight.shape != weight.shape:
        raise ValueError(f"teacher weight {tuple(teacher_weight.shape)} != student weight {tuple(weight.shape)}")
    if topk is not None and not 1 <= topk <= weight.shape[0]:
        raise ValueError(f"topk must be in [1, V={weight.shape[0]}] or None, got {topk}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def self_distillation_per_token(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor | tuple[torch.Tensor, ...],
    teacher_weight: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
    topk: int | None = 100,
    add_tail: bool = True,
    alpha: float = 0.5,
    temperature: float = 1.0,
    token_weights: torch.Tensor | None = None,
    target_ids: torch.Tensor | None = None,
    old_logps: torch.Tensor | None = None,
    is_clip: float | None = None,
    chunk_size: int | None = None,
    matmul_dtype: torch.dtype | None = None,
    chunked: bool = True,
    teacher_target: Callable[..., torch.Tensor] | None = None,
) -> DistillOutput:
    """Per-token SDPO self-distillation loss from final hidden states and LM head weights, computed in chunks of
    tokens, before any reduction: ``DistillOutput(per_token_loss, student_token_logps, is_weights)``.

    Args:
        student_hidden: ``[B, T, H]`` or ``[T, H]`` final hidden states of the student at the positions that predict
            the response tokens (after the final norm; what the LM head consumes). Gradients flow into it.
        student_weight: LM head weight ``[V, H]`` (gradients flow into it when it requires grad).
        teacher_hidden: teacher hidden states, same shape; treated as constants. A tuple: several teacher passes
            (e.g. other prompts), each read by ``teacher_weight`` and combined by ``teacher_target``.
        teacher_weight: teacher LM head ``[V, H]`` (constant); default: the student's weight, detached.
        mask: ``[B, T]`` response / self-distillation mask; zero positions are skipped entirely and contribute zero.
        topk: size of the student's top-k support (paper: 100); ``None`` for the full-vocabulary divergence.
        add_tail: with ``topk``, append the tail bucket (k + 1 categories) instead of renormalising over the k.
        alpha: generalized JSD coefficient in [0, 1] (0: KL(p_T||p_S), 1: KL(p_S||p_T); paper: 0.5).
        temperature: logits are ``h W^T / temperature`` (TRL's ``_forward_logits``).
        token_weights: detached per-token weights multiplied into the loss (e.g. rollout IS weights).
        target_ids: ``[B, T]`` sampled response tokens; needed for the IS clip.
        old_logps: ``[B, T]`` log-probs of ``target_ids`` under the rollout policy; with ``is_clip`` the loss is
            multiplied by ``min(exp(clamp(logp - old_logps, -20, 20)), is_clip)`` (detached, TRL/paper).
        is_clip: IS clip coefficient (paper: 2.0); ``None`` turns the IS clip off.
        chunk_size: tokens per chunk; default ``auto_chunk_size(V)`` (~256 MiB of float32 logits per chunk).
        matmul_dtype: dtype of the ``h W^T`` matmuls (e.g. ``torch.bfloat16`` for fp32 weights under bf16 mixed
            precision, as autocast would run the LM head); default: the enclosing autocast dtype, else the weight's.
            The softmax / divergence math is always float32.
        chunked: ``False`` computes the same thing from full logits (the reference,
            :func:`naive_self_distillation_loss`).
        teacher_target: the target distribution from the teacher passes' logits (one float32 ``[chunk, V]``
            tensor each, temperature applied; no grad): log-probs over the vocabulary. Default: the one pass's
            ``log_softmax``. Needs ``topk=None`` (e.g. Purified OPSD's PMI target, :mod:`sdlens.mitigations.purified`).
    """
    teacher_weight = student_weight if teacher_weight is None else teacher_weight
    teachers = tuple(teacher_hidden) if isinstance(teacher_hidden, tuple | list) else (teacher_hidden,)
    _validate(student_hidden, student_weight, teachers, teacher_weight, topk, alpha, temperature, teacher_target)
    target_log_probs = teacher_target or _own_log_probs
    if (old_logps is not None or is_clip is not None) and target_ids is None:
        raise ValueError("the IS clip (old_logps / is_clip) needs target_ids")
    mm = _matmul_dtype(matmul_dtype, student_hidden.device)
    if not chunked:
        log_probs = _full_log_probs(
            student_hidden, student_weight, teachers, teacher_weight, temperature, mm, target_log_probs
        )
        per_token = _divergence(*log_probs, topk, add_tail, alpha)
        logps = None
        if target_ids is not None:
            logps = log_probs[0].detach().gather(-1, target_ids.long().unsqueeze(-1)).squeeze(-1)
        return _apply_weights(per_token, logps, mask, token_weights, old_logps, is_clip)
    shape = student_hidden.shape[:-1]
    h_dim = student_hidden.shape[-1]
    device = student_hidden.device
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(student_weight.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    hs_flat = student_hidden.reshape(-1, h_dim)
    hts = [t.detach().reshape(-1, h_dim) for t in teachers]
    n_total = hs_flat.shape[0]
    active = None
    if mask is not None:
        if mask.shape != shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != hidden shape without H {tuple(shape)}")
        active = mask.reshape(-1).ne(0).nonzero().squeeze(1)
        if active.numel() == n_total:
            active = None
    hs = hs_flat
    if active is not None:
        hs, hts = hs_flat.index_select(0, active), [t.index_select(0, active) for t in hts]
    target = torch.empty(0, dtype=torch.long, device=device)
    if target_ids is not None:
        if target_ids.shape != shape:
            raise ValueError(f"target_ids shape {tuple(target_ids.shape)} != {tuple(shape)}")
        target = target_ids.reshape(-1).long()
        target = target.index_select(0, active) if active is not None else target

    if hs.shape[0] == 0:
        # Nothing to distill: zeros that stay attached to the graph (zero gradients, not a stopped backward).
        zero = (student_hidden.sum() + student_weight.sum()).float() * 0.0
        per_token = torch.zeros(shape, dtype=torch.float32, device=device) + zero
        logps = torch.zeros(shape, dtype=torch.float32, device=device) if target_ids is not None else None
        return DistillOutput(per_token, logps, None)

    tw = teacher_weight.detach()
    if topk is None:
        loss, logps = _ChunkedFull.apply(
            hs, student_weight, tw, target, alpha, temperature, chunk, mm, target_log_probs, *hts
        )
    else:
        loss, logps = _ChunkedTopK.apply(
            hs, student_weight, hts[0], tw, target, topk, add_tail, alpha, temperature, chunk, mm
        )

    if active is not None:
        loss = torch.zeros(n_total, dtype=torch.float32, device=device).index_copy(0, active, loss)
        logps = torch.zeros(n_total, dtype=torch.float32, device=device).index_copy(0, active, logps)
    per_token = loss.reshape(shape)
    student_logps = logps.reshape(shape) if target_ids is not None else None
    return _apply_weights(per_token, student_logps, mask, token_weights, old_logps, is_clip)


def _matmul_dtype(matmul_dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """Explicit ``matmul_dtype``, else the enclosing autocast dtype for the device, else ``None`` (the weight's)."""
    if matmul_dtype is not None:
        return matmul_dtype
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def _apply_weights(per_token, student_logps, mask, token_weights, old_logps, is_clip):
    weights = None
    if old_logps is not None and is_clip is not None:
        weights = is_clip_weights(student_logps, old_logps, is_clip)
        per_token = per_token * weights
    if token_weights is not None:
        per_token = per_token * token_weights.detach()
    if mask is not None:
        per_token = per_token * mask
    return DistillOutput(per_token, student_logps, weights)


def reduce_per_token(per_token: torch.Tensor, mask: torch.Tensor | None, reduction: Reduction) -> torch.Tensor:
    """Reduce a (masked, weighted) per-token loss.

    ``none``: as is; ``sum``: total; ``token_mean``: ``sum / max(sum(mask), 1)`` over the whole batch;
    ``sequence_mean``: each sequence's ``sum_t / max(sum_t mask, 1)``, then the mean over sequences (TRL's SDPO and
    the paper's micro-batch-of-one token-mean).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    m = torch.ones_like(per_token) if mask is None else mask.to(per_token.dtype)
    if reduction == "token_mean":
        return per_token.sum() / m.sum().clamp(min=1.0)
    if per_token.dim() == 1:
        per_token, m = per_token[None], m[None]
    return (per_token.sum(-1) / m.sum(-1).clamp(min=1.0)).mean()


def self_distillation_loss(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor | tuple[torch.Tensor, ...],
    teacher_weight: torch.Tensor | None = None,
    *,
    reduction: Reduction = "sequence_mean",
    **options: Any,
) -> torch.Tensor:
    """SDPO self-distillation loss from final hidden states and LM head weights: :func:`self_distillation_per_token`
    (whose keyword ``options`` it takes) reduced by ``reduction``: ``sequence_mean`` (TRL / paper), ``token_mean``,
    ``sum`` or ``none`` (``[B, T]``)."""
    out = self_distillation_per_token(student_hidden, student_weight, teacher_hidden, teacher_weight, **options)
    return reduce_per_token(out.per_token_loss, options.get("mask"), reduction)


# ---------------------------------------------------------------------------------------------------------------------
# Naive reference: full [B, T, V] logits, plain autograd. For tests, benchmarks and the trainer's off switch.
# ---------------------------------------------------------------------------------------------------------------------


def _own_log_probs(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The default teacher target: the one teacher pass's own distribution."""
    return torch.log_softmax(teacher_logits, dim=-1)


def _full_log_probs(student_hidden, student_weight, teachers, teacher_weight, temperature, mm, target_log_probs):
    """Student and teacher-target float32 log-probs over the whole vocabulary (the target's without grad)."""
    with _no_autocast(student_hidden.device):
        w = student_weight if mm is None else student_weight.to(mm)
        student_log_probs = torch.log_softmax(_logits(student_hidden, w, temperature), dim=-1)
        with torch.no_grad():
            wt = teacher_weight.detach() if mm is None else teacher_weight.detach().to(mm)
            teacher_log_probs = target_log_probs(*(_logits(t.detach(), wt, temperature) for t in teachers))
    return student_log_probs, teacher_log_probs


def _divergence(student_log_probs, teacher_log_probs, topk, add_tail, alpha):
    if topk is None:
        return generalized_jsd(student_log_probs, teacher_log_probs, alpha)
    s, idx = torch.topk(student_log_probs, topk, dim=-1)
    return _topk_divergence(s, teacher_log_probs.gather(-1, idx), add_tail, alpha)


def naive_self_distillation_loss(*tensors: torch.Tensor | None, **options: Any) -> torch.Tensor:
    """Reference implementation of :func:`self_distillation_loss` from full float32 logits (O(T x V) memory): the
    same call with ``chunked=False`` (``chunk_size`` is ignored)."""
    return self_distillation_loss(*tensors, **options, chunked=False)


def logps_entropy_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``ids`` and entropy of each position's distribution, from (already temperature-scaled) logits."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    token = logp.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return token, entropy


def _token_logps(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor]:
    return (logits.gather(1, ids[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1),)


@torch.no_grad()
def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    matmul_dtype: torch.dtype | None = None,
    entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``token_ids`` (``[B, T]``) under ``hidden @ weight.T / temperature``, chunked, without grad;
    with ``entropy``, also each position's entropy (:func:`logps_entropy_from_logits` without a ``[B, T, V]`` tensor).

    Same values as ``selective_log_softmax(logits, token_ids)`` on full logits, in O(chunk x V) memory (float32).
    """
    shape = hidden.shape[:-1]
    if token_ids.shape != shape:
        raise ValueError(f"token_ids shape {tuple(token_ids.shape)} != {tuple(shape)}")
    per_chunk, n_out = (logps_entropy_from_logits, 2) if entropy else (_token_logps, 1)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(weight.shape[0])
    h = hidden.reshape(-1, hidden.shape[-1])
    ids = token_ids.reshape(-1).long()
    outs = [torch.empty(h.shape[0], dtype=torch.float32, device=hidden.device) for _ in range(n_out)]
    with _no_autocast(hidden.device):
        w = _cast(weight, _matmul_dtype(matmul_dtype, hidden.device))
        for a, b in _chunks(h.shape[0], chunk):
            for out, values in zip(outs, per_chunk(_logits(h[a:b], w, temperature), ids[a:b]), strict=True):
                out[a:b] = values
    if entropy:
        return outs[0].reshape(shape), outs[1].reshape(shape)
    return outs[0].reshape(shape)
