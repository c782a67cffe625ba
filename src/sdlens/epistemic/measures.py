"""Behaviour measures beyond the hedge counter: what else does a run stop doing?

Each measure turns a batch of Samples into per-response columns (counts and 0/1 flags). The analyzer sums them
per problem in the same ``Accumulator`` as the hedge counts, so the same grouping (``--by``), the same bootstrap
over problems and the same ``compare`` apply; every statistic is a ratio of sums (``sdlens.epistemic.stats.Ratio``).

- ``reflection``: oat-zero's reflection keywords (a shipped lexicon, or per model family) and how reflection
  relates to correctness, per response and at prompt level ("any of k samples").
- ``revisions``: candidate answers stated inside the thinking (``\\boxed{..}`` or "the answer is ..."), how many
  distinct ones, and whether the final answer differs from the first, split by whether the response hedged.
- ``forks``: high-entropy positions per 1k tokens and the share of them where the sampled token was not the most
  likely one, from per-token entropies stored with the samples (``sdlens eval --save-logprobs`` with the
  transformers backend, or ``sdlens probe --save-tokens``).
- ``judged``: verification, backtracking, subgoal setting and backward chaining as judged by a model
  (``sdlens.behaviour.judge``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from sdlens.epistemic.config import MEASURES, MeasureOptions
from sdlens.epistemic.count import count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope, split_thinking
from sdlens.epistemic.stats import MeasureSpec, Ratio
from sdlens.errors import InputError
from sdlens.schema import Sample


class Measure:
    """Base: ``spec`` names the columns; ``columns`` computes them for a batch (``[N, len(spec.columns)]``)."""

    spec: MeasureSpec

    def columns(self, batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope) -> np.ndarray:
        raise NotImplementedError

    def finish(self, table: np.ndarray) -> None:
        """Called with the per-problem sums of all measures' columns when the input is read (to refuse input the
        measure cannot use)."""

    def _table(self, n: int) -> tuple[np.ndarray, dict[str, int]]:
        return np.zeros((n, len(self.spec.columns))), {c: i for i, c in enumerate(self.spec.columns)}


def _correctness(batch: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    graded = np.fromiter((s.correct is not None for s in batch), dtype=bool, count=len(batch))
    correct = np.fromiter((s.correct is True for s in batch), dtype=bool, count=len(batch))
    return graded, correct


# ---------------------------------------------------------------- reflection

# oat-zero's first version chose the keyword set by a substring of the model name (case-sensitive "Qwen" there;
# case-insensitive here, and an unknown family gets the unified set instead of an error).
FAMILY_LEXICONS = (
    ("qwen", "reflection-qwen"),
    ("deepseek", "reflection-deepseek"),
    ("llama", "reflection-llama"),
    ("microsoft", "reflection-llama"),
)


class Reflection(Measure):
    spec = MeasureSpec(
        "reflection",
        (
            "responses",
            "reflections",
            "reflective",
            "graded",
            "correct",
            "reflective_graded",
            "reflective_correct",
            "plain_graded",
            "plain_correct",
        ),
        (
            Ratio("per_response", "reflections", "responses"),
            Ratio("share_reflective", "reflective", "responses"),
            Ratio("accuracy_reflective", "reflective_correct", "reflective_graded"),
            Ratio("accuracy_plain", "plain_correct", "plain_graded"),
            Ratio("reflection_at_k", "reflective", "responses", kind="any"),
            Ratio("pass_at_k", "correct", "graded", kind="any"),
            Ratio("precision", "correct", "reflective", kind="any"),
            Ratio("recall", "reflective", "correct", kind="any"),
        ),
    )

    def __init__(self, lexicon: str = "reflection"):
        self.by_family = lexicon == "family"
        self.lexicon = load_lexicon("reflection" if self.by_family else lexicon)
        self._family = {name: load_lexicon(name) for _, name in FAMILY_LEXICONS} if self.by_family else {}

    def lexicon_for(self, model: str | None) -> Lexicon:
        if self.by_family and model:
            low = model.lower()
            for key, name in FAMILY_LEXICONS:
                if key in low:
                    return self._family[name]
        return self.lexicon

    def columns(self, batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope) -> np.ndarray:
        out, col = self._table(len(batch))
        hits = np.zeros(len(batch))
        lexicons = [self.lexicon_for(s.model) for s in batch]
        for lex in dict.fromkeys(lexicons):
            rows = [i for i, x in enumerate(lexicons) if x is lex]
            hits[rows] = count_texts([batch[i].response for i in rows], lex, scope).totals
        graded, correct = _correctness(batch)
        reflective = hits > 0
        out[:, col["responses"]] = 1
        out[:, col["reflections"]] = hits
        out[:, col["reflective"]] = reflective
        out[:, col["graded"]] = graded
        out[:, col["correct"]] = correct
        out[:, col["reflective_graded"]] = reflective & graded
        out[:, col["reflective_correct"]] = reflective & correct
        out[:, col["plain_graded"]] = ~reflective & graded
        out[:, col["plain_correct"]] = ~reflective & correct
        return out


# ---------------------------------------------------------------- answer revisions

# "the answer is 12", "so the final answer should be x = 3": the value runs to the end of the sentence or line.
_ANSWER_IS = re.compile(
    r"(?i)(?<![A-Za-z])(?:the\s+)?(?:final\s+)?answer\s+(?:is|should\s+be|would\s+be|must\s+be)\s*:?\s*"
    r"(?P<value>[^\n]*?)(?=\.\s|\.$|[,;!?\n]|$)"
)
_LATEX_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\ |\s+")


def normalize_candidate(value: str) -> str:
    """The comparison form of a stated answer: delimiters, spacing, ``\\left``/``\\right`` and a trailing period
    dropped, ``\\dfrac``/``\\tfrac`` read as ``\\frac``, lower-cased. Equivalent forms that differ in writing
    ("0.5" and "\\frac{1}{2}") stay distinct: this is a string rule, not a grader."""
    from sdlens.grading.extract import normalize_answer_text  # see stated_answers

    v = normalize_answer_text(value).rstrip(".").strip()
    v = v.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _LATEX_NOISE.sub("", v).lower()


def stated_answers(text: str) -> list[str]:
    """Answers stated in ``text`` in order: each complete ``\\boxed{..}`` / ``\\fbox{..}`` and each "the answer is
    ..." (one that boxes its value is counted once, as the box); normalised, empty ones dropped."""
    # here, not at the top: the grading package loads its worker pool (~35 ms), which `sdlens analyze` without
    # --measures revisions must not pay (tests/test_cli_startup.py)
    from sdlens.grading.extract import _BOX, _match_brace

    found: list[tuple[int, str]] = []
    boxes: list[tuple[int, int]] = []
    pos = 0
    while (m := _BOX.search(text, pos)) is not None:
        k = m.end()
        while k < len(text) and text[k] in " \t\r\n":
            k += 1
        if k >= len(text) or text[k] != "{":
            pos = m.end()
            continue
        end = _match_brace(text, k)
        if end < 0:
            break
        found.append((m.start(), text[k + 1 : end]))
        boxes.append((m.start(), end))
        pos = end + 1
    for m in _ANSWER_IS.finditer(text):
        start = m.start("value")
        if any(b0 <= start + 1 and start <= b1 for b0, b1 in boxes) or _BOX.match(m.group("value").lstrip()):
            continue
        found.append((start, m.group("value")))
    found.sort(key=lambda x: x[0])
    return [v for v in (normalize_candidate(s) for _, s in found) if v]


class Revisions(Measure):
    spec = MeasureSpec(
        "revisions",
        (
            "responses",
            "with_candidates",
            "candidates",
            "distinct",
            "multiple",
            "comparable",
            "changed",
            "hedged_comparable",
            "hedged_changed",
            "plain_comparable",
            "plain_changed",
            "changed_graded",
            "changed_correct",
            "kept_graded",
            "kept_correct",
        ),
        (
            Ratio("candidates_per_response", "candidates", "responses"),
            Ratio("share_with_candidates", "with_candidates", "responses"),
            Ratio("distinct_per_response_with_candidates", "distinct", "with_candidates"),
            Ratio("share_multiple", "multiple", "responses"),
            Ratio("share_changed", "changed", "comparable"),
            Ratio("share_changed_when_hedged", "hedged_changed", "hedged_comparable"),
            Ratio("share_changed_when_not_hedged", "plain_changed", "plain_comparable"),
            Ratio("accuracy_changed", "changed_correct", "changed_graded"),
            Ratio("accuracy_kept", "kept_correct", "kept_graded"),
        ),
    )

    def columns(self, batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope) -> np.ndarray:
        out, col = self._table(len(batch))
        graded, correct = _correctness(batch)
        for i, s in enumerate(batch):
            first, final, candidates = revision_points(s)
            hedged = hedge_totals[i] > 0
            row = out[i]
            row[col["responses"]] = 1
            row[col["with_candidates"]] = bool(candidates)
            row[col["candidates"]] = len(candidates)
            row[col["distinct"]] = len(set(candidates))
            row[col["multiple"]] = len(set(candidates)) > 1
            if first is None or final is None:
                continue
            changed = first != final
            row[col["comparable"]] = 1
            row[col["changed"]] = changed
            row[col["hedged_comparable" if hedged else "plain_comparable"]] = 1
            row[col["hedged_changed" if hedged else "plain_changed"]] = changed
            row[col["changed_graded" if changed else "kept_graded"]] = graded[i]
            row[col["changed_correct" if changed else "kept_correct"]] = correct[i]
        return out


def revision_points(sample: Sample) -> tuple[str | None, str | None, list[str]]:
    """``(first stated answer, final answer, all answers stated while thinking)``.

    With a thinking part, the candidates are the answers stated inside it and the final answer is the grader's
    extraction (``extracted``) when the sample has one, else the last answer stated after the thinking. Without a
    thinking part the whole response is the thinking, and its last stated answer is the final one."""
    thinking, answer = split_thinking(sample.response)
    if thinking:
        candidates = stated_answers(thinking)
        if sample.extracted is not None:
            final: str | None = normalize_candidate(sample.extracted) or None
        else:
            after = stated_answers(answer)
            final = after[-1] if after else None
    else:
        candidates = stated_answers(sample.response)
        final = normalize_candidate(sample.extracted) if sample.extracted is not None else None
        final = final or (candidates[-1] if candidates else None)
    return (candidates[0] if candidates else None), final, candidates


# ---------------------------------------------------------------- forks

TOKEN_ENTROPY = "token_entropy"  # meta key: entropy (nats) of the full next-token distribution at each position
TOKEN_IS_TOP = "token_is_top"  # meta key: 1 where the sampled token was the most likely one


class Forks(Measure):
    spec = MeasureSpec(
        "forks",
        ("responses", "scored", "tokens", "entropy", "forks", "forks_not_top"),
        (
            Ratio("per_1k_tokens", "forks", "tokens", scale=1000.0),
            Ratio("share_not_top", "forks_not_top", "forks"),
            Ratio("mean_entropy", "entropy", "tokens"),
            Ratio("share_scored", "scored", "responses"),
        ),
    )

    def __init__(self, threshold: float = 1.0):
        self.threshold = threshold
        self.offset = 0  # where this measure's columns start in the table (set by build_measures)

    def finish(self, table: np.ndarray) -> None:
        scored = table[:, self.offset + self.spec.columns.index("scored")].sum() if len(table) else 0
        if len(table) and scored == 0:
            raise InputError(
                None,
                "no response carries per-token entropies (meta.token_entropy): score the traces first with "
                "`sdlens probe --model M --data FILE --context none --save-tokens SCORED.jsonl`",
                field="measures",
            )

    def columns(self, batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope) -> np.ndarray:
        out, col = self._table(len(batch))
        out[:, col["responses"]] = 1
        for i, s in enumerate(batch):
            ent = s.meta.get(TOKEN_ENTROPY)
            if not isinstance(ent, list) or not ent:
                continue
            h = np.asarray(ent, dtype=float)
            fork = h >= self.threshold
            top = s.meta.get(TOKEN_IS_TOP)
            not_top = ~np.asarray(top, dtype=bool) if isinstance(top, list) and len(top) == len(h) else None
            out[i, col["scored"]] = 1
            out[i, col["tokens"]] = len(h)
            out[i, col["entropy"]] = float(h.sum())
            out[i, col["forks"]] = int(fork.sum())
            out[i, col["forks_not_top"]] = int((fork & not_top).sum()) if not_top is not None else 0
        return out


# ---------------------------------------------------------------- building


def build_measures(names: Sequence[str], options: MeasureOptions) -> list[Measure]:
    built: list[Measure] = []
    for name in names:
        if name == "reflection":
            built.append(Reflection(options.reflection_lexicon))
        elif name == "revisions":
            built.append(Revisions())
        elif name == "forks":
            built.append(Forks(options.fork_entropy))
        elif name == "judged":
            if options.judged is None:
                raise InputError(None, "the judged measure needs a judge model (--judge-model)", field="measures")
            built.append(options.judged)
        else:
            raise InputError(None, f"unknown measure {name!r} (choose from {', '.join(MEASURES)})", field="measures")
    offset = 0
    for m in built:
        if isinstance(m, Forks):
            m.offset = offset
        offset += len(m.spec.columns)
    return built


def measure_columns(
    measures: Sequence[Measure], batch: Sequence[Sample], hedge_totals: np.ndarray, scope: Scope
) -> np.ndarray:
    """All measures' columns side by side, ``[N, total columns]``."""
    return np.concatenate([m.columns(batch, hedge_totals, scope) for m in measures], axis=1)
