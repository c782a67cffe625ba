"""The paper counter's quirks, the boundary lexicons, and the batch counter against a from-spec reference."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sysconfig

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdlens.epistemic import count_texts, load_lexicon
from sdlens.epistemic.count import count_text
from sdlens.epistemic.lexicon import Lexicon

PAPER = load_lexicon("paper")
WORDS = load_lexicon("words")
COMPANION = load_lexicon("companion")


def paper_total(text: str) -> int:
    return sum(count_text(text, PAPER)[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am checking; it's unlikely.", 2),  # check + (un)likely
        ("A mighty awaiting hmmmm", 3),  # might, wait, hmm
        ("double-check recheck Checkpoint", 3),
        ("waitwait", 2),
        ("Waiting... await", 2),
        ("It seems seemsly", 2),
        ("\\check{x}", 1),
        ("hmmmmmm", 1),  # non-overlapping: hmm + "mmmm" has no second "hmm"
        ("hmmhmm", 2),
        ("WAIT, Wait, wait", 3),
        ("", 0),
    ],
)
def test_paper_counter_quirks(text: str, expected: int) -> None:
    assert paper_total(text) == expected


def test_paper_counter_uses_python_unicode_lowercasing() -> None:
    kelvin = "CHEC\u212a"  # KELVIN SIGN lower-cases to ASCII "k"
    assert kelvin.lower() == "check"
    assert paper_total(kelvin) == 1
    dotted = "L\u0130KELY"  # I WITH DOT ABOVE lower-cases to "i" + combining dot: no match
    assert paper_total(dotted) == 0
    assert paper_total("ſeems") == 0  # long s is already lower case and is not "s"
    assert paper_total("ΣWAIT") == 1


def test_word_lexicon_boundaries_and_elongation() -> None:
    counts, *_ = count_text("Hmmm, waaait. waiting await double-check checks Maybe", WORDS)
    got = dict(zip(WORDS.words, counts, strict=True))
    assert got["hmm"] == 1 and got["wait"] == 1 and got["check"] == 1 and got["maybe"] == 1
    assert sum(counts) == 4
    # a digit joins a word, an underscore does not: "likely_" and "likely" count, "unlikely" and "likely2" do not
    assert sum(count_text("unlikely likely2 likely_ likely", WORDS)[0]) == 2


def test_companion_letter_boundaries() -> None:
    counts, *_ = count_text("double-check \\check{x} checking Sure, correct incorrect guess", COMPANION)
    got = dict(zip(COMPANION.words, counts, strict=True))
    assert got["check"] == 2 and got["sure"] == 1 and got["correct"] == 1 and got["guess"] == 1


def test_scopes_count_only_their_part() -> None:
    text = "<think>wait, maybe</think>The answer, perhaps, is 3."
    assert sum(count_text(text, PAPER, "thinking")[0]) == 2
    assert sum(count_text(text, PAPER, "answer")[0]) == 1
    assert sum(count_text(text, PAPER, "full")[0]) == 3


def test_position_profile_and_lengths() -> None:
    text = "wait " + "x " * 40 + "hmm"
    _counts, n_chars, n_words, bins = count_text(text, PAPER)
    assert n_chars == len(text) and n_words == 42
    assert bins[0] == 1 and bins[9] == 1 and sum(bins) == 2


def _spec_counts(text: str, words: tuple[str, ...]) -> list[int]:
    low = text.lower()
    return [low.count(w) for w in words]


SPECIAL = ["\u212a", "\u0130", "\u0131", "\u017f", "é", "中", "\u00a0", "\u3000", "ß", "🙂"]  # K İ ı ſ ...
ALPHABET = st.sampled_from(
    [*"waithmperhpsybcuvlkgnoWAITHMKC -,.\n\t", "wait", "Hmm", "check", "<think>", "</think>", "likely", *SPECIAL]
)
TEXTS = st.lists(ALPHABET, max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=8))
def test_batch_counter_matches_spec_on_random_text(texts: list[str]) -> None:
    arrays = count_texts(texts, PAPER)
    for i, t in enumerate(texts):
        assert arrays.counts[i].tolist() == _spec_counts(t, PAPER.words)
        assert arrays.n_words[i] == len(t.split())


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6), st.sampled_from(["full", "thinking", "answer"]))
def test_all_backends_agree_with_reference(texts: list[str], scope: str) -> None:
    for lex in (PAPER, WORDS, COMPANION):
        ref = count_texts(texts, lex, scope, backend="reference")
        got = count_texts(texts, lex, scope)
        assert got.counts.tolist() == ref.counts.tolist()
        assert got.n_chars.tolist() == ref.n_chars.tolist()
        assert got.n_words.tolist() == ref.n_words.tolist()
        assert got.bins.tolist() == ref.bins.tolist()


@settings(max_examples=100, deadline=None)
@given(TEXTS)
def test_companion_mode_equals_its_regex(text: str) -> None:
    for word, c in zip(COMPANION.words, count_text(text, COMPANION)[0], strict=True):
        assert c == len(re.findall(rf"(?i)(?<![A-Za-z]){word}(?![A-Za-z])", text))


def test_user_lexicon_file(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nmode = "word"\nwords = ["let me check", "hmm"]\n')
    lex = load_lexicon(path)
    assert isinstance(lex, Lexicon) and lex.name == "mine" and lex.mode == "word"
    assert count_text("Let me check. Hmmmm. let me checking", lex)[0] == [1, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("words = []\n", "words"),
        ('words = ["a"]\nmode = "fuzzy"\n', "mode"),
        ("words = [\n", "not a valid TOML"),
        ('words = ["a", "a"]\n', "duplicate"),
    ],
)
def test_bad_lexicon_files(tmp_path, content: str, message: str) -> None:
    from sdlens.errors import InputError

    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_lexicon(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _c_compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def test_kernel_is_built_where_a_compiler_exists() -> None:
    """A failed optional build would silently turn the kernel tests into skips and the parity tests into a
    comparison of the reference with itself: where a C compiler exists, the extension must be there."""
    if _c_compiler() is None:
        pytest.skip("no C compiler: the pure-Python counter is the one in use")
    assert importlib.util.find_spec("sdlens.epistemic._fastcount") is not None, "rebuild: pip install -e ."


PARITY_TEXTS = [
    "Wait, hmm... maybe. Perhaps it SEEMS likely; let me check.",
    "<think>wait wait</think> the answer is maybe 3",
    "İstanbul is likely; the Kelvin sign K and ſ are odd, hmmmm, unlikely",
    "",
    "no hedges at all",
]


@pytest.mark.parametrize("pure_python", [False, True], ids=["auto", "pure-python"])
def test_pure_python_switch(monkeypatch, pure_python: bool) -> None:
    """SDLENS_PURE_PYTHON=1 turns the kernel off; the batch counter gives the spec's numbers either way."""
    monkeypatch.setenv("SDLENS_PURE_PYTHON", "1" if pure_python else "0")
    from sdlens.epistemic.kernel import compiled_kernel

    if pure_python:
        assert compiled_kernel() is None
        with pytest.raises(RuntimeError, match="SDLENS_PURE_PYTHON"):
            count_texts(PARITY_TEXTS, PAPER, backend="kernel")
    elif _c_compiler() is not None:
        assert compiled_kernel() is not None
    for lex in (PAPER, WORDS, COMPANION):
        for scope in ("full", "thinking", "answer"):
            got = count_texts(PARITY_TEXTS, lex, scope)
            ref = count_texts(PARITY_TEXTS, lex, scope, backend="reference")
            assert got.counts.tolist() == ref.counts.tolist()
            assert got.bins.tolist() == ref.bins.tolist()
    assert count_texts(PARITY_TEXTS, PAPER).counts.sum(axis=1).tolist() == [
        sum(t.lower().count(w) for w in PAPER.words) for t in PARITY_TEXTS
    ]
