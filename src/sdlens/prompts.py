"""The paper's prompt texts and templates, in one module that imports nothing: config defaults use them, and
``sdlens --help`` reads those configs. Sources: docs/paper.md (sections 3 and 6.4)."""

from __future__ import annotations

__all__ = [
    "PAPER_FEEDBACK_TEMPLATE",
    "PAPER_HINT_TEMPLATE",
    "PAPER_REPROMPT_TEMPLATE",
    "PAPER_SOLUTION_TEMPLATE",
    "PAPER_SUFFIX",
    "PAPER_SYSTEM",
]

# The instruction the paper appends to every plain-text question (its verl data already ends with it).
PAPER_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
# The same instruction as the 'system' of the guided / unguided SFT examples (section 4).
PAPER_SYSTEM = PAPER_SUFFIX.lstrip("\n")
# Section 3's hint prompt: the question, then a solution the model is told is correct.
PAPER_HINT_TEMPLATE = "{content}\n\nCorrect solution: {solution}\n\nCorrectly solve the original question."

# The SDPO teacher's templates (actor.yaml ``|-`` blocks: no trailing newline), section 6.4.
PAPER_REPROMPT_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question."
PAPER_SOLUTION_TEMPLATE = "\nCorrect solution:\n\n{successful_previous_attempt}"
PAPER_FEEDBACK_TEMPLATE = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback_raw}"
