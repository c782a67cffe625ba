"""The two built-in graders: ``math-verify`` (the default) and ``paper-reward`` (the paper's training reward).

Both do extraction and the cheap checks in the calling thread and send only the symbolic comparisons to the
worker pool (:mod:`sdlens.grading.pool`), once per distinct ``(gold, answer)`` pair. The pool's workers are
started as soon as the first such pair is found, so their start-up overlaps the rest of the extraction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdlens.grading.base import GradeItem, ProgressFn, Verdict, register_grader
from sdlens.grading.exact import same_value
from sdlens.grading.extract import (
    ExtractMode,
    extract_answer,
    gold_answer_text,
    normalize_answer_text,
    paper_last_boxed,
)
from sdlens.grading.pool import Task, get_pool

__all__ = ["MathVerifyGrader", "PaperRewardGrader"]


def _check_common(workers: int | None, hard_timeout: float | None) -> None:
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if hard_timeout is not None and hard_timeout <= 0:
        raise ValueError(f"hard_timeout must be > 0, got {hard_timeout}")


class _PooledGrader:
    name = "?"

    def __init__(self, workers: int | None, memory_limit_mb: int | None):
        self.workers = workers
        self.memory_limit_mb = memory_limit_mb

    def _start_workers(self) -> None:
        get_pool(self.workers, memory_limit_mb=self.memory_limit_mb).start()

    def _check(self, response: str | None, gold: str | None) -> tuple[str | None, Verdict | tuple]:
        """The extracted answer and either the verdict decided here or the key of the worker's comparison."""
        raise NotImplementedError

    def _task(self, key: tuple) -> Task:
        raise NotImplementedError

    def grade(
        self, items: Sequence[GradeItem | tuple[str, str | None]], progress: ProgressFn | None = None
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        extracted: list[str | None] = [None] * len(items)
        keyed: dict[tuple, list[int]] = {}
        for i, (response, gold) in enumerate(items):
            extracted[i], outcome = self._check(response, gold)
            if isinstance(outcome, Verdict):
                verdicts[i] = outcome
                continue
            if not keyed:
                self._start_workers()
            keyed.setdefault(outcome, []).append(i)
        if progress is not None:
            done = sum(v is not None for v in verdicts)
            if done:
                progress(done)
        if keyed:
            keys = list(keyed)
            tasks = [self._task(k) for k in keys]

            def on_result(t: int, res: tuple[bool, str | None]) -> None:
                correct, error = res
                for i in keyed[keys[t]]:
                    verdicts[i] = Verdict(extracted[i], correct, error)
                if progress is not None:
                    progress(len(keyed[keys[t]]))

            pool = get_pool(self.workers, memory_limit_mb=self.memory_limit_mb)
            pool.run(tasks, on_result)
        return [v for v in verdicts if v is not None]


class MathVerifyGrader(_PooledGrader):
    r"""The default grader: think-aware extraction, then math-verify on ``\boxed{gold}`` vs ``\boxed{answer}``.

    Answers written exactly like the gold answer, and pairs of plain integers, fractions and integer multiples of
    square roots (:mod:`sdlens.grading.exact`, which gives math-verify's verdict exactly), are decided here
    without a worker.

    ``timeout``: math-verify's own (signal) time limit in whole seconds for each parse / verify call, inside the
    worker. ``hard_timeout``: wall-clock seconds after which the parent kills a worker stuck on one answer
    (default ``3 * timeout + 5``). Answers longer than ``max_answer_chars`` are not sent to math-verify.
    """

    name = "math-verify"

    def __init__(
        self,
        *,
        extract: ExtractMode | str = ExtractMode.boxed,
        think_aware: bool = True,
        timeout: int = 5,
        hard_timeout: float | None = None,
        workers: int | None = None,
        max_answer_chars: int = 2000,
        memory_limit_mb: int | None = 4096,
    ):
        _check_common(workers, hard_timeout)
        if int(timeout) != timeout or timeout < 1:
            raise ValueError(
                f"timeout must be a whole number of seconds >= 1 (math-verify uses alarm()), got {timeout}"
            )
        super().__init__(workers, memory_limit_mb)
        self.extract = ExtractMode(extract)
        self.think_aware = think_aware
        self.timeout = int(timeout)
        self.hard_timeout = float(hard_timeout) if hard_timeout is not None else 3.0 * self.timeout + 5.0
        self.max_answer_chars = max_answer_chars

    def _check(self, response: str | None, gold: str | None) -> tuple[str | None, Verdict | tuple]:
        ext = extract_answer(response or "", self.extract, think_aware=self.think_aware)
        if gold is None:
            return ext, Verdict(ext, False, "no gold answer")
        if not ext:  # None: nothing extracted; "": an empty box
            return ext, Verdict(ext, False, None)
        g = gold_answer_text(str(gold))
        p = normalize_answer_text(ext)
        if not g:
            return ext, Verdict(ext, False, "empty gold answer")
        if p == g:
            return ext, Verdict(ext, True, None)
        if (same := same_value(g, p)) is not None:
            return ext, Verdict(ext, same, None)
        if len(p) > self.max_answer_chars:
            return ext, Verdict(ext, False, f"answer too long to grade ({len(p)} > {self.max_answer_chars} chars)")
        if not p:
            return ext, Verdict(ext, False, None)
        return ext, (g, p)

    def _task(self, key: tuple) -> Task:
        g, p = key
        return Task("mv", (g, p, self.timeout), self.hard_timeout)


class PaperRewardGrader(_PooledGrader):
    r"""The paper's training reward exactly (docs/paper.md 8.4), for comparison with the default grader.

    Only the last 100 characters of the response (thinking not removed); the last ``\boxed{`` there, braces
    matched naively; correct if that string equals the ground truth exactly; otherwise, when it is non-empty,
    ``math_verify.verify(parse(gold), parse(answer))`` with the library's defaults inside a 5 s SIGALRM, any
    exception meaning 0. Runs in the same worker pool (``hard_timeout`` default 20 s).
    """

    name = "paper-reward"
    TAIL_CHARS = 100

    def __init__(
        self,
        *,
        workers: int | None = None,
        hard_timeout: float | None = None,
        memory_limit_mb: int | None = 4096,
    ):
        _check_common(workers, hard_timeout)
        super().__init__(workers, memory_limit_mb)
        self.hard_timeout = float(hard_timeout) if hard_timeout is not None else 20.0

    def _check(self, response: str | None, gold: str | None) -> tuple[str | None, Verdict | tuple]:
        pred = paper_last_boxed((response or "")[-self.TAIL_CHARS :])
        if gold is None:
            return pred, Verdict(pred, False, "no gold answer")
        if pred == gold:
            return pred, Verdict(pred, True, None)
        if not pred:
            return pred, Verdict(pred, False, None)
        return pred, (str(gold), pred)

    def _task(self, key: tuple) -> Task:
        return Task("paper", key, self.hard_timeout)


register_grader(MathVerifyGrader.name, MathVerifyGrader)
register_grader(PaperRewardGrader.name, PaperRewardGrader)
