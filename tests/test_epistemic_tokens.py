"""Token-level hedges: id sets per tokenizer and position masks checked against the tokenizers' own offsets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sdlens.epistemic.count import count_texts  # noqa: E402
from sdlens.epistemic.lexicon import load_lexicon  # noqa: E402
from sdlens.epistemic.tokens import hedge_id_mask, hedge_position_mask, hedge_token_ids, token_pieces  # noqa: E402
from sdlens.models import make_tiny_tokenizer  # noqa: E402

SMOL = Path.home() / ".cache" / "sdlens" / "models" / "smollm2-135m-instruct"
FILLER = ["so", "the", "x", "=", "3", ",", ".", "await", "unlikely", "checking", "Hmmm", "\n", "é", "🙂", "2wait"]
HEDGES = ["wait", "Wait", "WAIT", "hmm", "hmmmm", "maybe", "Maybe", "perhaps", "Alternatively", "check", "likely"]


def _wordlevel(vocab_words: list[str], *, metaspace: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", *vocab_words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def _random_texts(seed: int, n: int = 20) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(HEDGES) if rng.random() < 0.3 else rng.choice(FILLER) for _ in range(rng.randint(1, 30))]
        out.append(" ".join(words))
    return out


def _mask_from_offsets(tokenizer, text: str, lexicon) -> tuple[list[int], list[bool]]:
    """The expected mask from the tokenizer's own character offsets (an independent source of positions)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [m.span() for p in lexicon.patterns for m in p.finditer(text)]
    mask = [any(s < e2 and s2 < e and e > s for s2, e2 in spans) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_position_mask_matches_tokenizer_offsets(which):
    if which == "smollm2":
        if not (SMOL / "tokenizer.json").exists():
            pytest.skip("the converted smollm2-135m tokenizer is not in the cache")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(SMOL)
    else:
        tok = make_tiny_tokenizer()
    lex = load_lexicon("words")
    texts = _random_texts(1)
    n_marked_words = 0
    for text in texts:
        ids, expected = _mask_from_offsets(tok, text, lex)
        got = hedge_position_mask(torch.tensor([ids]), tok)
        assert got.shape == (1, len(ids))
        assert got[0].tolist() == expected, text
        n_marked_words += sum(1 for _ in (m for p in lex.patterns for m in p.finditer(text)))
    # the texts really hold hedges, the counter agrees on how many
    assert n_marked_words == int(count_texts(texts, lex).totals.sum()) > 10
    if which == "smollm2":  # whole-word tokens exist in this vocabulary, look-alikes are not in the set
        names = set(tok.convert_ids_to_tokens(sorted(hedge_token_ids(tok))))
        assert {"\u0120Wait", "\u0120maybe", "Alternatively", "\u0120Hmm"} <= names
        assert not names & {"\u0120await", "\u0120unlikely", "\u0120checking"}


def _only(text: str, keep: list[str]) -> str:
    """``text`` with every character outside the first occurrence of each kept word replaced by ``_``."""
    out = ["_"] * len(text)
    for word in keep:
        i = text.index(word)
        out[i : i + len(word)] = word
    return "".join(out)


def test_split_words_are_marked_on_every_piece():
    tok = make_tiny_tokenizer()  # one token per byte: every word is split
    text = "Hmm, so x = 3. Wait, unlikely; waaait! maybe"
    ids = tok.encode(text, add_special_tokens=False)
    mask = hedge_position_mask(ids, tok)
    marked = "".join(ch if m else "_" for ch, m in zip(text, mask.tolist(), strict=True))
    assert marked == _only(text, ["Hmm", "Wait", "waaait", "maybe"])
    # the paper's substring rule marks "likely" inside "unlikely" too
    marked = "".join(
        ch if m else "_" for ch, m in zip(text, hedge_position_mask(ids, tok, "paper").tolist(), strict=True)
    )
    assert marked == _only(text, ["Hmm", "Wait", "likely", "maybe"])
    assert hedge_token_ids(tok) == frozenset()  # no byte is a word: the fast set is empty here


def test_token_id_set_spellings_bytelevel():
    words = ["wait", "\u0120wait", "\u0120Wait", "Wait", "WAIT", "\u0120hmmm", "\u0120await", "\u0120unlikely"]
    words += ["\u0120waIT", "\u0120maybe", "\u0120so", "a", "\u0120checking", "\u010aWait"]
    tok = _wordlevel(words, metaspace=False)
    ids = hedge_token_ids(tok)
    names = {tok.convert_ids_to_tokens(i) for i in ids}
    assert names == {"wait", "\u0120wait", "\u0120Wait", "Wait", "WAIT", "\u0120hmmm", "\u0120maybe", "\u010aWait"}
    paper = {tok.convert_ids_to_tokens(i) for i in hedge_token_ids(tok, "paper")}
    assert "\u0120hmmm" not in paper and "\u0120wait" in paper  # substring mode: the token must be the word
    batch = torch.tensor([tok.encode(" so wait await maybe", add_special_tokens=False)])
    assert hedge_id_mask(batch, tok).tolist() == [[False, True, False, True]]


def test_sentencepiece_leading_space_kept():
    tok = _wordlevel(
        ["\u2581so", "\u2581wait", "\u2581Maybe", "\u2581unlikely", "\u2581a", "wait", "\u2581I"], metaspace=True
    )
    text = "I so wait unlikely Maybe"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids)[0] == "\u2581I"
    pieces = token_pieces(tok, ids)
    assert pieces[2] == " wait"  # the marker becomes a space, so words do not run together
    assert hedge_position_mask(ids, tok).tolist() == [False, False, True, False, True]
    names = {tok.convert_ids_to_tokens(i) for i in hedge_token_ids(tok)}
    assert names == {"\u2581wait", "\u2581Maybe", "wait"}


def test_ragged_rows_and_special_tokens():
    tok = make_tiny_tokenizer()
    a = tok.encode("wait", add_special_tokens=False)
    b = [*tok.encode("so maybe", add_special_tokens=False), tok.eos_token_id]
    out = hedge_position_mask([a, b], tok)
    assert isinstance(out, list) and out[0] == [True] * 4 and out[1] == [False] * 3 + [True] * 5 + [False]


def test_case_folding_that_changes_length_keeps_offsets():
    # "İ" lower-cases to two characters: the paper's lower() must not shift where later words are found
    tok = _wordlevel(["\u2581\u0130\u0130\u0130", "\u2581so", "\u2581wait", "\u2581x", "\u2581maybe"], metaspace=True)
    ids = tok.encode("\u0130\u0130\u0130 so x wait x maybe", add_special_tokens=False)
    assert hedge_position_mask(ids, tok, "paper").tolist() == [False, False, False, True, False, True]
