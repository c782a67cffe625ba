r"""SSOPD-style self-supervised on-policy distillation (after arXiv 2605.17497; abstract only, sdlens' forms).

Within a GRPO group that has both correct and wrong rollouts, the teacher is the current policy (stop-gradient)
conditioned on the group's **shortest correct** rollout, and it is distilled into the **longest wrong** rollout,
at every prefix (every position of that rollout). The loss is auxiliary to GRPO, weighted per prompt by a frontier
weight that is largest where correct and wrong branches coexist evenly:

    L = L_GRPO + mu * mean_i [ f_i * (1/T_i) sum_t JSD_alpha(p_S,t || p_T,t) ]      f_i = 4 p_i (1 - p_i)

``p_i`` the group's pass rate (``f = 1`` at one half), ``mu = 1``; only the chosen rollout of each such group has a
teacher. The divergence is sdpo-paper's (JSD 0.5 over the student's top-k + tail, chunked). Shortest / longest count
response tokens; ties go to the first rollout of the group. Every one of these choices is sdlens' (the abstract
fixes only shortest-correct teaches longest-wrong, prefixes, a frontier weight and GRPO).
"""

from __future__ import annotations

__all__ = ["ssopd_pairs"]


def ssopd_pairs(
    rewards: list[float], lengths: list[int], group_size: int, *, threshold: float = 0.5
) -> tuple[list[int | None], list[float]]:
    """``(demonstrations, frontier weights)``: for each group with correct and wrong rollouts, its longest wrong
    rollout gets the shortest correct one as demonstration and weight ``4 p (1 - p)``; all others ``None`` / 0."""
    if group_size < 1 or len(rewards) % group_size or len(lengths) != len(rewards):
        raise ValueError(f"{len(rewards)} rewards / {len(lengths)} lengths do not form groups of {group_size}")
    demos: list[int | None] = [None] * len(rewards)
    weights = [0.0] * len(rewards)
    for start in range(0, len(rewards), group_size):
        idx = range(start, start + group_size)
        correct = [j for j in idx if rewards[j] >= threshold]
        wrong = [j for j in idx if rewards[j] < threshold]
        if not correct or not wrong:
            continue
        teacher = min(correct, key=lambda j: (lengths[j], j))
        student = min(wrong, key=lambda j: (-lengths[j], j))
        p = len(correct) / group_size
        demos[student] = teacher
        weights[student] = 4.0 * p * (1.0 - p)
    return demos, weights
