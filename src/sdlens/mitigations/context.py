r"""The context-richness ladder for the SDPO teacher (issue 10, part 1).

The paper's teacher reads a successful sibling's whole response (``c = s``); docs/paper.md 12.1 (iii) reports that a
poorer context (``c = s\think``) suppresses hedging less. The ladder makes the richness one option,
``teacher_richness``, with four rungs; each renders the teacher's user message as ``{prompt}{context}\n\nCorrectly
solve the original question.`` (the paper's reprompt template):

``answer-only``  ``\nThe correct final answer is {answer}.`` (the row's ground truth), for the same rollouts the
                 paper gives a teacher (a successful *other* rollout exists), so only the content changes.
``s-nothink``    the paper's ``c = s\think``: the successful sibling with its thinking removed.
``s``            the paper's ``c = s``: the successful sibling, whole.
``peer``         ``\nAnother attempt at this question (it may be wrong):\n\n{attempt}``: the first other rollout of
                 the group whatever its reward, so every rollout of a group of 2+ gets a teacher and the context
                 says nothing about correctness.

``sdlens train sdpo --set teacher_richness=RUNG --dry-run`` prints the rendered teacher message of a rung.
"""

from __future__ import annotations

from typing import Any

from sdlens.mitigations.options import RICHNESS
from sdlens.train.teacher import PaperTeacherContextBuilder, build_teacher_messages

__all__ = [
    "ANSWER_ONLY_TEMPLATE",
    "PEER_SOLUTION_TEMPLATE",
    "LadderTeacherContextBuilder",
    "ladder_teacher_messages",
    "peer_demonstrations",
]

ANSWER_ONLY_TEMPLATE = "\nThe correct final answer is {answer}."
PEER_SOLUTION_TEMPLATE = "\nAnother attempt at this question (it may be wrong):\n\n{successful_previous_attempt}"


def ladder_teacher_messages(
    rung: str,
    prompt: str | list[dict[str, Any]],
    demonstration: str | None,
    answer: str | None,
    args: Any,
    feedback: str | None = None,
) -> str | list[dict[str, Any]]:
    """The teacher prompt of ``rung`` for one rollout. ``args`` supplies the paper's templates
    (``reprompt_template``, ``solution_template``, ``feedback_template``: an ``SDPOConfig``)."""
    if rung not in RICHNESS:
        raise ValueError(f"teacher_richness must be one of {', '.join(RICHNESS)}, got {rung!r}")
    solution_template = args.solution_template
    if rung == "answer-only" and demonstration is not None:
        if answer is None or str(answer).strip() == "":
            raise ValueError("teacher_richness answer-only needs each row's ground-truth answer (answer_key)")
        # The answer sentence takes the demonstration's place; the template only adds the newline before it.
        demonstration = ANSWER_ONLY_TEMPLATE.format(answer=answer)[1:]
        solution_template = "\n{successful_previous_attempt}"
    elif rung == "peer":
        solution_template = PEER_SOLUTION_TEMPLATE
    return build_teacher_messages(
        prompt,
        demonstration,
        feedback,
        reprompt_template=args.reprompt_template,
        solution_template=solution_template,
        feedback_template=args.feedback_template,
        remove_thinking=rung == "s-nothink",
    )


def peer_demonstrations(n: int, group_size: int) -> list[int | None]:
    """For each rollout, the first *other* rollout of its group (consecutive blocks of ``group_size``)."""
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} rollouts do not form groups of {group_size}")
    out: list[int | None] = []
    for i in range(n):
        start = i - i % group_size
        out.append(next((j for j in range(start, start + group_size) if j != i), None))
    return out


class LadderTeacherContextBuilder(PaperTeacherContextBuilder):
    """The paper's builder (same gathering, truncation, logging) with the ladder's demonstration rule and message.

    The ground-truth answers of the local rollouts are read from ``trainer.mitigation_answers`` (set by the
    mitigation trainer before each rollout batch is built).
    """

    def __init__(self, trainer, rung: str, **kwargs: Any):
        if rung not in RICHNESS:
            raise ValueError(f"teacher_richness must be one of {', '.join(RICHNESS)}, got {rung!r}")
        super().__init__(trainer, **kwargs)
        self.rung = rung

    def select_demonstrations(self, rewards: list[float], group: int) -> list[int | None]:
        if self.rung == "peer":
            return peer_demonstrations(len(rewards), group)
        return super().select_demonstrations(rewards, group)

    def teacher_messages(self, k: int, prompt, demo: str | None, feedback: str | None):
        answers = getattr(self.trainer, "mitigation_answers", None) or []
        answer = answers[k] if k < len(answers) else None
        return ladder_teacher_messages(self.rung, prompt, demo, answer, self.trainer.args, feedback)
