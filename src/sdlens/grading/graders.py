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

    def _run_tasks(
        self,
        verdicts: list[Verdict | None],
        keyed: dict[tuple, list[int]],
        extracted: list[str | None],
        make_task,
        progress: ProgressFn | None,
    ) -> list[Verdict]:
        if progress is not None:
            done = sum(v is not None for v in verdicts)
            if done:
                progress(done)
        if keyed:
            keys = list(keyed)
            tasks = [make_task(k) for k in keys]

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

    def grade(
        self, items: Sequence[GradeItem | tuple[str, str | None]], progress: ProgressFn | None = None
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        extracted: list[str | None] = [None] * len(items)
        keyed: dict[tuple, list[int]] = {}
        for i, (response, gold) in enumerate(items):
            ext = extract_answer(response or "", self.extract, think_aware=self.think_aware)
            extracted[i] = ext
            if gold is None:
                verdicts[i] = Verdict(ext, False, "no gold answer")
                continue
            if not ext:  # None: nothing extracted; "": an empty box
                verdicts[i] = Verdict(ext, False, None)
                continue
            g = gold_answer_text(str(gold))
            p = normalize_answer_text(ext)
            if not g:
                verdicts[i] = Verdict(ext, False, "empty gold answer")
            elif p == g:
                verdicts[i] = Verdict(ext, True, None)
            elif (same := same_value(g, p)) is not None:
                verdicts[i] = Verdict(ext, same, None)
            elif len(p) > self.max_answer_chars:
                verdicts[i] = Verdict(
                    ext, False, f"answer too long to grade ({len(p)} > {self.max_answer_chars} chars)"
                )
            elif not p:
                verdicts[i] = Verdict(ext, False, None)
            else:
                if not keyed:
                    self._start_workers()
                keyed.setdefault((g, p), []).append(i)

        def make_task(key: tuple) -> Task:
            g, p = key
            return Task("mv", (g, p, self.timeout), self.hard_timeout)

        return self._run_tasks(verdicts, keyed, extracted, make_task, progress)


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

    def grade(
        self, items: Sequence[GradeItem | tuple[str, str | None]], progress: ProgressFn | None = None
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        extracted: list[str | None] = [None] * len(items)
        keyed: dict[tuple, list[int]] = {}
        for i, (response, gold) in enumerate(items):
            pred = paper_last_boxed((response or "")[-self.TAIL_CHARS :])
            extracted[i] = pred
            if gold is None:
                verdicts[i] = Verdict(pred, False, "no gold answer")
            elif pred == gold:
                verdicts[i] = Verdict(pred, True, None)
            elif not pred:
                verdicts[i] = Verdict(pred, False, None)
            else:
                if not keyed:
                    self._start_workers()
                keyed.setdefault((str(gold), pred), []).append(i)

        def make_task(key: tuple) -> Task:
            return Task("paper", key, self.hard_timeout)

        return self._run_tasks(verdicts, keyed, extracted, make_task, progress)


register_grader(MathVerifyGrader.name, MathVerifyGrader)
register_grader(PaperRewardGrader.name, PaperRewardGrader)
