"""Hedge words at the token level: which token ids are hedges, and which positions of a sequence hold one.

Two tools, for two needs:

- :func:`hedge_token_ids` -> the set of ids whose token, decoded and stripped of surrounding whitespace, *is* a
  lexicon word in one of its spellings (bare, after a leading space / ``Ġ`` / ``▁``, lower, Capitalised, UPPER; in
  ``word`` mode elongations such as ``hmmm`` too). Use it when you need speed and a per-vocabulary answer: a
  ``torch.isin`` over ``[B, T]`` ids costs nothing, and it is what "the model's probability of hedge tokens" means
  for the next-token distribution (e.g. a logit bias, or summing the softmax over the set). It misses words the
  tokenizer splits into several pieces (``h`` + ``mm``, ``wa`` + ``a`` + ``ait``), which with byte-level or small
  vocabularies is most of them.
- :func:`hedge_position_mask` -> True at every position whose token overlaps a lexicon match in the decoded text,
  found with the same rule as the text counter (:mod:`sdlens.epistemic.count`) on character offsets, so split and
  elongated words are caught on all their pieces. Use it for per-position statistics on sampled sequences (the
  teacher-student gap at hedge positions, weighting a loss). It decodes each distinct id once per tokenizer
  (cached) and runs the lexicon's regexes per row: milliseconds for a batch of a few thousand tokens.

How a sequence is decoded for offsets: each token's text is what it adds after a fixed plain anchor token
(``decode([anchor, id])`` minus ``decode([anchor])``), so SentencePiece's leading-space marker is kept and no
clean-up of spaces shifts the offsets; special tokens read as a space. A byte that is part of a multi-byte UTF-8
character reads as U+FFFD, which is neither an ASCII letter nor a digit, so the word boundaries of the (ASCII)
lexicons are the same as in the true text.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope, split_bounds

__all__ = [
    "counted_spans",
    "hedge_id_mask",
    "hedge_position_mask",
    "hedge_position_words",
    "hedge_token_ids",
    "match_spans",
    "token_pieces",
]

_STRIP = " \t\n\r\u0120\u2581\u010a\u0109"  # whitespace and its byte-level / SentencePiece markers (Ġ ▁ Ċ ĉ)

# per-tokenizer caches, dropped with the tokenizer: id(tokenizer) -> (weak ref, {key: value})
_CACHES: dict[int, tuple[weakref.ref, dict[Any, Any]]] = {}


def _cache(tokenizer: Any) -> dict[Any, Any]:
    key = id(tokenizer)
    entry = _CACHES.get(key)
    if entry is not None and entry[0]() is tokenizer:
        return entry[1]
    try:
        ref = weakref.ref(tokenizer, lambda _r, k=key: _CACHES.pop(k, None))
    except TypeError:  # not weak-referenceable: no cache, recompute each call
        return {}
    store: dict[Any, Any] = {}
    _CACHES[key] = (ref, store)
    return store


def _lexicon(lexicon: str | Path | Lexicon) -> Lexicon:
    return lexicon if isinstance(lexicon, Lexicon) else load_lexicon(lexicon)


def _is_word_token(text: str, lexicon: Lexicon) -> bool:
    word = text.strip(_STRIP)
    if not word or word not in (word.lower(), word.capitalize(), word.upper()):
        return False
    if lexicon.mode == "substring":
        return word.lower() in lexicon.words
    return any(p.fullmatch(word) for p in lexicon.patterns or ())


def hedge_token_ids(tokenizer: Any, lexicon: str | Path | Lexicon = "words") -> frozenset[int]:
    """Ids whose token, decoded, is a lexicon word (any spelling listed in the module doc). Cached per tokenizer."""
    lex = _lexicon(lexicon)
    store = _cache(tokenizer)
    key = ("ids", lex.name, lex.mode, lex.words)
    if key not in store:
        # one decode per id: a plain loop is several times faster than batch_decode here (0.2 s for 49k ids)
        texts = [tokenizer.decode([i], skip_special_tokens=False) for i in range(len(tokenizer))]
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        store[key] = frozenset(i for i, t in enumerate(texts) if i not in special and _is_word_token(t, lex))
    return store[key]


def _anchor(tokenizer: Any) -> tuple[list[int], str]:
    ids = tokenizer.encode("a", add_special_tokens=False)
    return ids, tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds to a decoded sequence (see the module doc); cached per id and tokenizer."""
    store = _cache(tokenizer)
    pieces: dict[int, str] = store.setdefault("pieces", {})
    missing = sorted({int(i) for i in ids} - pieces.keys())
    if missing:
        if "anchor" not in store:
            store["anchor"] = _anchor(tokenizer)
        anchor_ids, anchor_text = store["anchor"]
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        texts = tokenizer.batch_decode(
            [[*anchor_ids, i] for i in missing], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        for i, text in zip(missing, texts, strict=True):
            if i in special:
                pieces[i] = " "
            elif text.startswith(anchor_text):
                pieces[i] = text[len(anchor_text) :]
            else:  # a tokenizer that rewrites the anchor: fall back to the token alone
                pieces[i] = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [pieces[int(i)] for i in ids]


def _lower_same_offsets(text: str) -> str:
    """``text.lower()``, except that the rare characters whose lower case is longer (``İ``) stay as they are, so
    character offsets still point into ``text``."""
    low = text.lower()
    if len(low) == len(text):  # lower-casing never shortens: equal length means every character maps to one
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def counted_spans(text: str, lexicon: Lexicon, scope: Scope | str = Scope.full) -> list[tuple[int, int]]:
    """Character spans of ``text`` the counter counts as hedges under ``lexicon`` and ``scope`` (what a report
    highlights: exactly what is counted)."""
    (ts, te), (as_, ae) = split_bounds(text)
    start, end = {Scope.full: (0, len(text)), Scope.thinking: (ts, te), Scope.answer: (as_, ae)}[Scope(scope)]
    return sorted((s + start, e + start) for s, e, _ in match_spans(text[start:end], lexicon))


def match_spans(text: str, lexicon: Lexicon) -> list[tuple[int, int, str]]:
    """``(start, end, lexicon word)`` of every match of the lexicon's own rule (the counter's)."""
    if lexicon.mode == "substring":
        # the paper's rule: non-overlapping occurrences in the lower-cased text (ASCII words keep offsets)
        hay, spans = _lower_same_offsets(text), []
        for word in lexicon.words:
            pos = hay.find(word)
            while pos >= 0:
                spans.append((pos, pos + len(word), word))
                pos = hay.find(word, pos + len(word))
        return spans
    return [
        (*m.span(), w) for w, p in zip(lexicon.words, lexicon.patterns or (), strict=True) for m in p.finditer(text)
    ]


def _row_words(row: Sequence[int], tokenizer: Any, lexicon: Lexicon) -> list[str | None]:
    pieces = token_pieces(tokenizer, row)
    ends, pos = [], 0
    for piece in pieces:
        pos += len(piece)
        ends.append(pos)
    text = "".join(pieces)
    words: list[str | None] = [None] * len(pieces)
    if not text:
        return words
    for start, end, word in match_spans(text, lexicon):
        # the first token ending after `start` holds the match's first character; mark through the last one
        k = bisect.bisect_right(ends, start)
        while k < len(pieces) and ends[k] - len(pieces[k]) < end:
            if pieces[k]:
                words[k] = word
            k += 1
    return words


def _row_mask(row: Sequence[int], tokenizer: Any, lexicon: Lexicon) -> list[bool]:
    return [w is not None for w in _row_words(row, tokenizer, lexicon)]


def hedge_position_words(
    token_ids: Sequence[int], tokenizer: Any, lexicon: str | Path | Lexicon = "words"
) -> list[str | None]:
    """For one row of ids, the lexicon word each position holds (part of), else None: the positions of
    :func:`hedge_position_mask`, labelled."""
    return _row_words([int(i) for i in token_ids], tokenizer, _lexicon(lexicon))


def hedge_position_mask(token_ids: Any, tokenizer: Any, lexicon: str | Path | Lexicon = "words"):
    """Bool mask of the positions that hold (part of) a lexicon word, same shape as ``token_ids``.

    ``token_ids``: a ``[B, T]`` or ``[T]`` tensor, or a list of ints / list of lists (rows may differ in length;
    the result is then a list of bool lists). Padding is decoded like any token: AND the result with your loss or
    attention mask.
    """
    import torch

    lex = _lexicon(lexicon)
    if isinstance(token_ids, torch.Tensor):
        flat = token_ids.dim() == 1
        rows = token_ids.reshape(1, -1) if flat else token_ids
        mask = torch.tensor(
            [_row_mask(r, tokenizer, lex) for r in rows.tolist()], dtype=torch.bool, device=token_ids.device
        )
        return mask.reshape(token_ids.shape)
    if len(token_ids) and not isinstance(token_ids[0], (list, tuple)) and not hasattr(token_ids[0], "__len__"):
        return torch.tensor(_row_mask(list(token_ids), tokenizer, lex), dtype=torch.bool)
    masks = [_row_mask(list(r), tokenizer, lex) for r in token_ids]
    if len({len(m) for m in masks}) <= 1:
        return torch.tensor(masks, dtype=torch.bool).reshape(len(masks), -1)
    return masks


def hedge_id_mask(token_ids: Any, tokenizer: Any, lexicon: str | Path | Lexicon = "words"):
    """The fast mask: ``torch.isin(token_ids, hedge_token_ids(...))`` (single-token hedges only)."""
    import torch

    ids = torch.as_tensor(token_ids)
    table = torch.tensor(sorted(hedge_token_ids(tokenizer, lexicon)), dtype=ids.dtype, device=ids.device)
    return torch.isin(ids, table)
