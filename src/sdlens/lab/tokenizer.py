r"""The organism's word-level tokenizer: a Hugging Face fast tokenizer with a ChatML chat template.

One token per word, number or punctuation mark; whitespace (newlines included) only separates tokens, so the
section-3 hint (``\n\nCorrect solution: s``) and the SDPO teacher template (``\nCorrect solution:\n\n s``) give the
same tokens. ``\boxed{6}`` must come back from decoding as ``\boxed{6}`` for the graders: the normalizer writes
``{6}`` as ``{ 6 ##}``, so the answer inside the box is the same ``6`` token as everywhere else (a model copies a
hinted answer as it is), and the decoder joins tokens with spaces, glues ``##`` pieces to the previous token and
removes the space after ``{``. ``<think>`` / ``</think>`` are ordinary (not special) added tokens, so
they survive ``skip_special_tokens``. The chat template is sdlens' ChatML (Qwen3's ``enable_thinking``
convention), the same one ``sdlens models tiny`` uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sdlens.models import TINY_CHAT_TEMPLATE
from sdlens.prompts import (
    PAPER_FEEDBACK_TEMPLATE,
    PAPER_REPROMPT_TEMPLATE,
    PAPER_SOLUTION_TEMPLATE,
    PAPER_SUFFIX,
)

__all__ = ["SPECIAL", "THINK", "build_tokenizer", "corpus_words"]

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK = ("<think>", "</think>")
# A word, a number, the box opener or closer, or one other non-space character.
PIECE = r"\\boxed\{|##\}|[A-Za-z]+|\d+|[^\sA-Za-z\d]"


def _backend(vocab: dict[str, int]):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.Replace("{", "{ "), normalizers.Replace("}", " ##}")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(PIECE), behavior="isolated")]
    )
    tok.decoder = decoders.Sequence(
        [decoders.WordPiece(prefix="##", cleanup=False), decoders.Fuse(), decoders.Replace("{ ", "{")]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    return tok


def corpus_words(texts: Iterable[str]) -> list[str]:
    """The pieces the tokenizer cuts ``texts`` into (special and think tags excluded), sorted."""
    probe = _backend({"<|endoftext|>": 0})
    words: set[str] = set()
    for text in texts:
        for tag in (*SPECIAL, *THINK):
            text = text.replace(tag, " ")
        words.update(p for p, _ in probe.pre_tokenizer.pre_tokenize_str(probe.normalizer.normalize_str(text)))
    return sorted(words)


def build_tokenizer(words: Iterable[str], out: str | Path | None = None):
    """A ``PreTrainedTokenizerFast`` over ``words`` (plus the chat specials and think tags), saved to ``out``.

    Unknown words map to ``<|endoftext|>``.
    """
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {t: i for i, t in enumerate(SPECIAL)}
    for w in sorted(set(words) - set(SPECIAL) - set(THINK)):
        vocab[w] = len(vocab)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_backend(vocab),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=1024,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    if out is not None:
        fast.save_pretrained(str(out))
    return fast


def template_texts() -> list[str]:
    """Fixed prompt wording the organism must know: the paper's instruction, the hint and teacher templates."""

    return [
        PAPER_SUFFIX,
        "Correct solution: Correctly solve the original question.",
        PAPER_REPROMPT_TEMPLATE,
        PAPER_SOLUTION_TEMPLATE,
        PAPER_FEEDBACK_TEMPLATE,
        "user assistant system",
    ]
