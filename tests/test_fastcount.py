"""The compiled counter (``sdlens.epistemic._fastcount``) against the pure-Python reference ``count_text``."""

from __future__ import annotations

import json
import mmap
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlens.epistemic.count import N_BINS, count_text, count_texts_reference, kernel_count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope

fc = pytest.importorskip("sdlens.epistemic._fastcount")

LEXICONS = {name: load_lexicon(name) for name in ("paper", "words", "companion")}
SCOPES = [s.value for s in Scope]
KEY = "generated_responses"

# the four code points that case-fold to / match ASCII letters (the kernel counts them itself, no fallback)
SPECIAL = "\u0130\u0131\u017f\u212a"


def user_lexicon(mode: str) -> Lexicon:
    words = ["let me check", "Hmm", "double-check", "i", "x-ray", "o'clock", "aa", "2nd", "re  do", "Wait", "bOok"]
    if mode == "substring":
        words = [w.lower() for w in words]
    return Lexicon(name=f"user-{mode}", mode=mode, words=tuple(words), source="test")


ALL_LEXICONS = [*LEXICONS.values(), *(user_lexicon(m) for m in ("substring", "word", "letter"))]
LEX_IDS = [f"{lx.name}" for lx in ALL_LEXICONS]


def _available_levels() -> list[str]:
    prev, levels = fc._simd(), []
    for level in ("scalar", "sse2", "avx2", "avx512"):
        try:
            fc._simd(level)
        except ValueError:
            continue
        levels.append(level)
    fc._simd(prev)
    return levels


SIMD_LEVELS = _available_levels()  # every code path of the kernel that this machine can run


@contextmanager
def simd(level: str):
    prev = fc._simd(level)
    try:
        yield
    finally:
        fc._simd(prev)


def reference_rows(texts: list[str], lexicon: Lexicon, scope: str) -> np.ndarray:
    w = len(lexicon.words)
    rows = np.zeros((len(texts), w + 2 + N_BINS), dtype=np.int64)
    for i, t in enumerate(texts):
        c, nc, nw, b = count_text(t, lexicon, scope)
        rows[i, :w] = c
        rows[i, w] = nc
        rows[i, w + 1] = nw
        rows[i, w + 2 :] = b
    return rows


def check_kernel(texts: list[str], lexicon: Lexicon, scope: str, threads: int = 1) -> None:
    """Raw kernel rows equal the reference, special characters included (nothing falls back); glue agrees."""
    w = len(lexicon.words)
    ref = reference_rows(texts, lexicon, scope)
    for level in SIMD_LEVELS:
        with simd(level):
            out = fc.count_strings(texts, lexicon.words, lexicon.mode, scope, threads)
        stats = np.frombuffer(out["stats"], dtype=np.int64).reshape(len(texts), w + 2 + N_BINS)
        assert out["fallback"] == [], level
        np.testing.assert_array_equal(stats, ref, err_msg=level)
    got = kernel_count_texts(fc, texts, lexicon, Scope(scope))
    want = count_texts_reference(texts, lexicon, scope)
    for field in ("counts", "n_chars", "n_words", "bins"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)


GOLDEN = [
    "I am checking; it's unlikely.",
    "A mighty awaiting hmmmm",
    "double-check recheck Checkpoint",
    "waitwait",
    "Waiting... await",
    "It seems seemsly",
    "\\check{x}",
    "hmmmmmm",
    "hmmhmm",
    "WAIT, Wait, wait",
    "",
    "Hmmm, waaait. waiting await double-check checks Maybe",
    "unlikely likely2 likely_ likely",
    "HhMm hMMMm wwwaaaiiittt w4it 2wait wait2 _wait_",
    "Let me check. let  me check; LET ME CHECKING letme check",
    "x-ray X-RAY x-rays o'clock O'CLOCK 2nd 22nd 2ndly aa aaa a re  do re do",
    "i I i. I'm Wait!",
    "book BOOK bok boook bOoK b00k",  # "bOok": the runs O and o merge into o{2,} in word mode
]
THINK = [
    "<think>Hmm, wait. Maybe check.</think>Actually the answer is likely 4.",
    "pre-opened: hmm wait maybe</think>So perhaps it seems 5.",
    "<think>truncated: wait, hmm, alternatively perhaps",
    "no tags at all, wait, hmm",
    "before <think>inside wait</think>after check <think>again wait</think> maybe",
    "wait<think>hmm</think>check",
    "checkwait</think>seems<think>might",
    "</think>",
    "<think>",
    "<think></think>",
    "<Think>wait</Think> hmm",
    "hmm</thinking>wait",
    "hm<think>m wai</think>t",
    "wa</think>it",
    "<thinkwait> <think >hmm",
]
UNICODE = [
    "CHEC\u212a chec\u212a \u212aelvin",
    "L\u0130KELY l\u0130kely \u0130",
    "\u0131 \u0131tem maybe",
    "\u017feems \u017f wait",
    "ΣWAIT σwait ωwait wait",
    "中文wait中文 check检查 hmm。",
    "emoji 😀wait😀 😀 hmm 👍🏽 maybe",
    "nbsp\u00a0wait\u00a0hmm ideographic\u3000space\u3000check",
    "\u2028line\u2029para\u202fnarrow\u205fmath\u1680ogham\u0085nel\x1cfs\x1d\x1e\x1f wait",
    "zero\u200bwidth\u200bwait",  # U+200B is not whitespace
    "<think>\u212a hmm</think> answer wait",  # the special character only in the thinking part
    "<think>hmm</think> answer \u0130 wait",  # only in the answer part
    "café wait naïve check Ünïcödé",
    # the special characters as Python sees them: lower() makes U+0130 two code points (positions shift), U+212A
    # "k"; under re.IGNORECASE U+0130/U+0131 are "i", U+017F "s", U+212A "k", in the boundary classes too
    "\u0130\u0130\u0130\u0130\u0130\u0130\u0130\u0130 wait \u0130\u0130 hmm \u0130",
    "l\u0131kely \u017feem\u017f \u017fseems seems\u017f \u0131wait wait\u0131 \u212await chec\u212a\u212a",
    "<thin\u212a>wait</thin\u212a> hmm </think> check",  # a Kelvin sign does not make a tag
    "\u0130\u0130 <think>\u017f\u0131 maybe</think> \u0130\u212a might",
    "wai\u0130 wai\u0131 \u0130t CHEC\u212a\u0130 L\u0130\u212aELY",
    "\x00wait\x00 \x7fhmm\x7f",
]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("lexicon", ALL_LEXICONS, ids=LEX_IDS)
def test_golden_think_unicode(lexicon: Lexicon, scope: str) -> None:
    check_kernel(GOLDEN + THINK + UNICODE, lexicon, scope)


def test_paper_quirks_through_kernel() -> None:
    paper = LEXICONS["paper"]
    cases = {
        "I am checking; it's unlikely.": 2,
        "A mighty awaiting hmmmm": 3,
        "double-check recheck Checkpoint": 3,
        "waitwait": 2,
        "Waiting... await": 2,
        "It seems seemsly": 2,
        "\\check{x}": 1,
        "hmmmmmm": 1,
    }
    texts = list(cases)
    out = fc.count_strings(texts, paper.words, paper.mode, "full")
    assert out["fallback"] == []
    stats = np.frombuffer(out["stats"], dtype=np.int64).reshape(len(texts), -1)
    assert stats[:, : len(paper.words)].sum(axis=1).tolist() == list(cases.values())


def test_threads_and_long_texts() -> None:
    rng = np.random.default_rng(0)
    vocab = ["wait", "Hmm", "the", "answer", "check", "maybe,", "x", "<think>", "</think>", "\n", "é", "中", "😀"]
    vocab += ["ü", "\u00a0", "\u3000", "\u2009", *SPECIAL, "1", "-", "'", "likely", "HMMM", "WaIt", "seem\u017f"]
    seps = ["", " ", "  ", "\n"]
    texts = []
    for _ in range(60):
        n = int(rng.integers(0, 3000))
        texts.append("".join(str(rng.choice(vocab)) + str(rng.choice(seps, p=[0.2, 0.6, 0.1, 0.1])) for _ in range(n)))
    for lexicon in ALL_LEXICONS:
        for scope in SCOPES:
            check_kernel(texts, lexicon, scope, threads=3)


def test_unsupported_lexicon_falls_back_everywhere() -> None:
    texts = ["café wait", "line\nbreak", "plain"]
    for words, mode in [(("café",), "substring"), (("line\nbreak", "wait"), "word"), (("tab\there",), "letter")]:
        lexicon = Lexicon(name="odd", mode=mode, words=words, source="test")
        out = fc.count_strings(texts, lexicon.words, lexicon.mode, "full")
        assert out["fallback"] == [0, 1, 2]
        got = kernel_count_texts(fc, texts, lexicon, Scope.full)
        want = count_texts_reference(texts, lexicon, "full")
        np.testing.assert_array_equal(got.counts, want.counts)
        res = fc.scan_jsonl(json.dumps({KEY: texts}).encode(), KEY, lexicon.words, lexicon.mode, "full")
        assert np.frombuffer(res["status"], dtype=np.int64).tolist() == [1]


def test_lone_surrogate_and_bad_arguments() -> None:
    paper = LEXICONS["paper"]
    out = fc.count_strings(["ok wait", "bad \ud800 wait"], paper.words, paper.mode, "full")
    assert out["fallback"] == [1]
    with pytest.raises(ValueError):
        fc.count_strings(["x"], paper.words, "regex", "full")
    with pytest.raises(ValueError):
        fc.count_strings(["x"], paper.words, "substring", "middle")
    with pytest.raises(TypeError):
        fc.count_strings([b"x"], paper.words, "substring", "full")
    with pytest.raises(ValueError):
        fc.count_strings(["x"], ("",), "substring", "full")


# --- hypothesis: random text biased to the lexicon letters, tags, whitespace and the special characters ---

WORDS_PIECES = ["wait", "Wait", "hmm", "Hmmm", "check", "likely", "seems", "maybe", "perhaps", "actually"]
PIECES = [
    *"waitWAIThmHMperhapsmaybeactuallyalternativelyseemsmightlikelycheckCHECKxyz",
    *WORDS_PIECES,
    *["x-ray", "o'clock", "2nd", "aa", "think", "book", "bok", "o"],
    *["let me check", "let  me", "re  do", "<think>", "</think>", "<", ">", "/"],
    *" \n\t\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\u200b",  # (non-)spaces
    "  ",
    *"\u0130\u0131\u017f\u212a",  # the four special characters
    *"0123456789-'_.,;!?\\\"{}\x00\x7f",
    *"Σσéß中文😀\ufeff",
    "👍🏽",
]
texts_st = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=30), st.lists(st.sampled_from(PIECES), max_size=300)
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(texts_st, min_size=1, max_size=8),
    lex_i=st.integers(0, len(ALL_LEXICONS) - 1),
    scope=st.sampled_from(SCOPES),
)
def test_random_text_matches_reference(texts: list[str], lex_i: int, scope: str) -> None:
    check_kernel(texts, ALL_LEXICONS[lex_i], scope)


# --- scan_jsonl ---


def scan(data: bytes, lexicon: Lexicon, scope: str, threads: int = 2, key: str = KEY) -> dict:
    res = fc.scan_jsonl(data, key, lexicon.words, lexicon.mode, scope, threads)
    out = {k: np.frombuffer(v, dtype=np.int64) for k, v in res.items()}
    out["stats"] = out["stats"].reshape(-1, len(lexicon.words) + 2 + N_BINS)
    return out


def check_scan(
    lines: list[bytes],
    lexicon: Lexicon,
    scope: str,
    expected_status: dict[int, int] | None = None,
    threads: int = 2,
    trailing_newline: bool = True,
) -> dict:
    """Statuses as expected (1-based line number -> status) and counted lines equal to the reference."""
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    results = []
    for level in SIMD_LEVELS:
        with simd(level):
            results.append(scan(data, lexicon, scope, threads))
    res = results[-1]
    for other in results[:-1]:
        for k in res:
            np.testing.assert_array_equal(res[k], other[k], err_msg=k)
    nonblank = [i + 1 for i, line in enumerate(lines) if line.strip(b" \t\r")]
    assert res["line_no"].tolist() == nonblank
    starts = np.cumsum([0] + [len(line) + 1 for line in lines])
    assert res["line_start"].tolist() == [int(starts[n - 1]) for n in nonblank]
    assert res["line_end"].tolist() == [int(starts[n - 1]) + len(lines[n - 1]) for n in nonblank]
    row = 0
    for line_no, status, n_strings in zip(res["line_no"], res["status"], res["n_strings"], strict=True):
        line = lines[line_no - 1]
        if expected_status is not None and line_no in expected_status:
            assert status == expected_status[line_no], (line_no, line)
        if status == 1:
            assert n_strings == 0
            continue
        value = json.loads(line)[KEY]
        texts = [value] if isinstance(value, str) else value
        assert n_strings == len(texts)
        np.testing.assert_array_equal(res["stats"][row : row + n_strings], reference_rows(texts, lexicon, scope))
        row += n_strings
    assert row == len(res["stats"])
    return res


RESP = [
    "<think>Hmm, wait. Let me check: maybe 2+2=4? Actually, perhaps.\nAlternatively...</think>\n\nThe answer is $4$.",
    'Wait, it seems "quoted" and \\check{x} with\ttabs and ü, 中文, 😀, \u00a0nbsp \u2028 sep',
    "",
]


def paper_record(responses: list[str], **extra) -> dict:
    return {
        "problem": "What is 2+2? wait",
        "gold_answer": "4",
        "nested": {KEY: ["not me, hmm wait"], "deeper": [[{"a": [1, 2.5e-3, -0.0, True, False, None]}]]},
        KEY: responses,
        "answer_responses": ["The answer is 4. wait"],
        "thinking_contents": ["hmm check"],
        "scores": [1, 0, -3.25e2],
        **extra,
    }


def scan_fixture_lines() -> tuple[list[bytes], dict[int, int]]:
    lines: list[bytes] = []
    status: dict[int, int] = {}

    def add(line: str | bytes, st_: int | None) -> None:
        lines.append(line.encode() if isinstance(line, str) else line)
        if st_ is not None:
            status[len(lines)] = st_

    add(json.dumps(paper_record(RESP), ensure_ascii=True), 0)
    add(json.dumps(paper_record(RESP), ensure_ascii=False), 0)
    add("", None)
    add("  \t\r", None)
    add(json.dumps({KEY: RESP[0]}), 0)  # a single string is one response
    add(json.dumps({KEY: []}), 0)
    add('{"generated_responses": ["wait"', 1)  # truncated
    add('["wait", "hmm"]', 1)  # not an object
    add(json.dumps({"other": ["wait"], "nested": {KEY: ["wait"]}}), 1)  # key only nested
    add(b'{"generated_responses": ["wait \xff hmm"]}', 1)  # not UTF-8
    add(b'{"generated_responses": ["wait \xed\xa0\x80 hmm"]}', 1)  # UTF-8-encoded surrogate
    add(b'{"generated_responses": ["wait \xc0\xaf"]}', 1)  # overlong
    add(b'{"x": "\xff", "generated_responses": ["wait"]}', 1)  # invalid UTF-8 in another field
    add(json.dumps({KEY: 3}), 1)
    add(json.dumps({KEY: ["wait", 3]}), 1)
    add(json.dumps({KEY: None}), 1)
    add('{"generated_responses": ["wait"], "generated_responses": ["hmm"]}', 1)  # duplicate key
    add('{"generated_responses": ["wait"], "x": NaN}', 1)
    add('{"generated_responses": ["wait"], "x": 01}', 1)
    add('{"generated_responses": ["wait"], "x": [1,]}', 1)
    add('{"generated_responses": ["wait"],}', 1)
    add("{'generated_responses': ['wait']}", 1)
    add('{"generated_responses": ["wait \\x hmm"]}', 1)  # invalid escape
    add('{"generated_responses": ["wait \\u12G4"]}', 1)
    add('{"generated_responses": ["wait\ttab"]}', 1)  # raw control character
    add('{"x": "\\u12G4", "generated_responses": ["wait"]}', 1)  # the same errors outside the target
    add('{"x": "\\u12", "generated_responses": ["wait"]}', 1)
    add('{"x": "\\q", "generated_responses": ["wait"]}', 1)
    add('{"x": "tab\there", "generated_responses": ["wait"]}', 1)
    add('{"x": ["ok", "\x01"], "generated_responses": ["wait"]}', 1)
    add('{"generated_responses": ["wait"], "x": "unterminated}', 1)
    add('{"generated_responses": ["wait"], "x": "' + "long " * 20 + "\\", 1)
    add('{"generated_responses": ["wait"]} x', 1)  # trailing garbage
    add('{"generated_responses": ["wait"]} {}', 1)
    add('{"generated_responses": ["wait"]}  \t\r', 0)  # trailing whitespace
    add('  {"generated_responses" : [ "wait" , "hmm" ] }', 0)
    add('{"generated\\u005fresponses": ["wait hmm"]}', 0)  # escaped key
    add('{"x": "\\ud800", "generated_responses": ["wait"]}', 0)  # lone surrogate outside the target
    add('{"generated_responses": ["wait \\ud800 hmm"]}', 1)  # lone surrogate in a response
    add('{"generated_responses": ["wait \\udc00"]}', 1)
    add('{"generated_responses": ["\\udbff\\udfffwait \\udbff"]}', 1)
    add('{"generated_responses": ["\\ud800\\u0041 wait"]}', 1)
    add('{"generated_responses": ["\\udc00\\ud800 wait"]}', 1)
    add('{"generated_responses": ["\\udbff\\udfffwait \\ud800\\udc00"]}', 0)  # U+10FFFF, U+10000
    add('{"generated_responses": ["\\ud83d\\ude00wait\\ud83d\\ude00 \\u00e9 \\u4e2d"]}', 0)  # pairs
    add('{"generated_responses": ["\\u0057AIT \\u0063heck w\\u0061it hmm\\u006d"]}', 0)  # escaped letters
    add('{"generated_responses": ["\\u003cthink\\u003ehmm<\\/think>wait"]}', 0)  # escaped tags
    add('{"generated_responses": ["a\\\\check\\\\nmaybe \\nmaybe\\tperhaps\\rcheck\\bwait\\fhmm"]}', 0)
    add('{"generated_responses": ["\\u00a0wait\\u3000hmm\\u2028x\\u0085y\\u001cz\\u000bw"]}', 0)
    add('{"generated_responses": ["\\u0000wait\\u007f"]}', 0)
    add('{"a": {"b": [{"c": {}}, [], [[]]]}, "t": true, "f": false, "n": null, "generated_responses": ["hmm"]}', 0)
    add("[" * 600 + "]" * 600, 1)
    add('{"x": ' + "[" * 600 + "]" * 600 + ', "generated_responses": ["hmm"]}', 1)  # too deep for the kernel
    add('{"x": ' + "[" * 100 + "]" * 100 + ', "generated_responses": ["hmm"]}', 0)
    add('{"x": [-0, 1E+2, 1e-2, 0.5, -12.5E-3, 10], "generated_responses": ["hmm"], "y": ""}', 0)
    add('{"x": -, "generated_responses": ["hmm"]}', 1)
    add('{"x": 1., "generated_responses": ["hmm"]}', 1)
    add('{"x": .5, "generated_responses": ["hmm"]}', 1)
    add('{"x": 1e, "generated_responses": ["hmm"]}', 1)
    add('{"x": tru, "generated_responses": ["hmm"]}', 1)
    add("{}", 1)
    add("null", 1)
    add('"wait"', 1)
    add("{", 1)
    add('{"generated_responses": ["wait"]}\r', 0)  # CRLF
    return lines, status


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("lexicon", ALL_LEXICONS, ids=LEX_IDS)
def test_scan_jsonl_lines(lexicon: Lexicon, scope: str) -> None:
    lines, status = scan_fixture_lines()
    check_scan(lines, lexicon, scope, status)
    check_scan(lines, lexicon, scope, status, trailing_newline=False)


def test_scan_jsonl_counts_special_characters() -> None:
    texts = ["<think>hmm \u212a</think> wait", "wait \u0131 \u017f", "L\u0130KELY", "\u017feems chec\u212a"]
    lines = [json.dumps({KEY: [t]}, ensure_ascii=a).encode() for t in texts for a in (True, False)]
    for lexicon in ALL_LEXICONS:
        for scope in SCOPES:
            res = check_scan(lines, lexicon, scope)
            assert res["status"].tolist() == [0] * len(lines)  # counted by the kernel, none left to Python


def test_scan_jsonl_mmap_threads_and_key(tmp_path) -> None:
    rng = np.random.default_rng(1)
    vocab = ["wait", "Hmm", "the", "check", "maybe,", "<think>", "</think>", "\n", "é", "中", '"', "\\", "\t"]
    lines = []
    for i in range(400):
        resp = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 800)))) for _ in range(4)]
        rec = paper_record(resp, idx=i)
        lines.append(json.dumps(rec, ensure_ascii=bool(i % 2)).encode())
        if i % 50 == 7:
            lines.append(b"")
        if i % 97 == 3:
            lines.append(b'{"broken": ')
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert path.stat().st_size > 2 << 20  # large enough to be split across threads
    lexicon = LEXICONS["paper"]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        results = [scan(mm, lexicon, "full", threads=t) for t in (1, 2, 5)]
    for other in results[1:]:
        for k in results[0]:
            np.testing.assert_array_equal(results[0][k], other[k], err_msg=k)
    check_scan(lines, lexicon, "thinking", threads=3)
    # another key: the answers
    res = scan(path.read_bytes(), lexicon, "full", key="answer_responses")
    assert res["status"].sum() == sum(1 for line in lines if line.startswith(b'{"broken'))
    assert res["stats"][:, : len(lexicon.words)].sum() == 400  # one "wait" per record


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    responses=st.lists(st.lists(texts_st, max_size=4), min_size=1, max_size=5),
    ensure_ascii=st.booleans(),
    lex_i=st.integers(0, len(ALL_LEXICONS) - 1),
    scope=st.sampled_from(SCOPES),
)
def test_scan_jsonl_random(responses: list[list[str]], ensure_ascii: bool, lex_i: int, scope: str) -> None:
    lexicon = ALL_LEXICONS[lex_i]
    lines = [json.dumps(paper_record(r), ensure_ascii=ensure_ascii).encode() for r in responses]
    status = dict.fromkeys(range(1, len(responses) + 1), 0)
    check_scan(lines, lexicon, scope, status)


# --- scan_jsonl: the vectorized JSON passes at every alignment against json.loads ---


def python_status(line: bytes, lexicon: Lexicon, scope: str) -> int:
    """0 when the kernel must count the line itself (strict JSON object, key holding str or list of str, no lone
    surrogate in a response), 1 when it must leave it to Python."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 1
    if not isinstance(obj, dict) or KEY not in obj:
        return 1
    value = obj[KEY]
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return 1
    return 1 if any(0xD800 <= ord(c) < 0xE000 for t in texts for c in t) else 0


def check_lines(lines: list[bytes], lexicon: Lexicon | None = None, scope: str = "full") -> None:
    lexicon = lexicon or LEXICONS["paper"]
    status = {i + 1: python_status(line, lexicon, scope) for i, line in enumerate(lines)}
    assert set(status.values()) == {0, 1} or len(lines) < 8  # the fixtures exercise both outcomes
    check_scan(lines, lexicon, scope, status)


def in_target(body: bytes, pad: int) -> bytes:
    """`body` inside a response, starting `pad` bytes into the string, with enough text after it that the
    vector loops go on past the block where it ends."""
    return b'{"generated_responses": ["' + b"w" * pad + body + b" wait hmm" + b"x" * 150 + b'"]}'


def in_skipped(body: bytes, pad: int) -> bytes:
    tail = b'"], "generated_responses": ["hmm"]}'
    return b'{"thinking_contents": ["' + b"w" * pad + body + b" wait" + b"x" * 150 + tail


PADS = [*range(0, 8), *range(24, 40), *range(56, 72), 120, 127, 128]  # around 16/32/64-byte block boundaries


def test_scan_jsonl_every_escape_at_block_boundaries() -> None:
    for wrap in (in_target, in_skipped):
        escaped = [c for c in range(256) if c != 0x0A]  # a newline would end the line
        lines = [wrap(b"a\\" + bytes([c]) + b"b", pad) for c in escaped for pad in (0, 29, 30, 31, 62, 63, 64)]
        check_lines(lines)


def test_scan_jsonl_unicode_escape_digits() -> None:
    digits = sorted(set(range(0x20, 0x80)) | {0x00, 0x1F, 0x80, 0xC3})
    for wrap in (in_target, in_skipped):
        lines = []
        for k in range(4):
            for c in digits:
                hexpart = bytearray(b"00e9")
                hexpart[k] = c
                for pad in (0, 58, 59, 60, 61, 62, 63):
                    lines.append(wrap(b"\\u" + bytes(hexpart), pad))
        lines += [wrap(b"\\u00", pad) for pad in PADS]  # cut short by the closing quote
        lines += [wrap(b"\\ud83d\\ude00\\u00E9\\uD800x", pad) for pad in PADS]
        check_lines(lines)


def test_scan_jsonl_backslash_runs() -> None:
    for wrap in (in_target, in_skipped):
        lines = []
        for n in range(1, 7):
            for tail in (b'"', b"n", b'"x', b"u0041", b"\\u0041"):
                for pad in PADS:
                    lines.append(wrap(b"\\" * n + tail, pad))
        check_lines(lines)
    # whole lines that end inside a string, an escape or a \u at every length around a block boundary
    for n in range(40, 140):
        for cut in (b"\\", b"\\u", b"\\u00", b'\\"', b"\\\\"):
            line = b'{"x": ["' + b"a" * n + cut
            check_lines([line, in_target(b"ok", 0)])


UTF8_CASES = [
    "é".encode(),
    "中".encode(),
    "😀".encode(),
    "\u0085\u00a0\u2028\u3000".encode(),
    b"\xc2",  # truncated sequences
    b"\xe4\xb8",
    b"\xf0\x9f\x98",
    b"\x80",  # stray continuation
    b"\xbf\xbf",
    b"\xc0\xaf",  # overlong
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",
    b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80",  # surrogates
    b"\xed\xbf\xbf",
    b"\xed\x9f\xbf",  # U+D7FF, valid
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF, valid
    b"\xf4\x90\x80\x80",  # too large
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xfe",
    b"\xe4\xb8\xad\xad",  # an extra continuation
    b"\xc3\xa9\xa9",
    b"\xf0\x9f\x98\x80\x80",
]


def test_scan_jsonl_utf8_at_block_boundaries() -> None:
    for wrap in (in_target, in_skipped):
        lines = [wrap(case, pad) for case in UTF8_CASES for pad in PADS]
        check_lines(lines)
    # a sequence cut by the line end (invalid), at every line length around a block boundary
    lines = []
    for n in range(100, 200):
        line = in_target(b"x", 0) + b" " * n
        lines += [line, line + b"\xc3", line + b"\xe4\xb8", line + "中".encode()]
    check_lines(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.one_of(
            st.sampled_from([b"\\", b'"', b"\\u", b"\\\\", b'\\"', b"\\n", b"\t", b"wait", b"hmm", b" ", b"\xc3\xa9"]),
            st.sampled_from(UTF8_CASES),
            st.binary(max_size=3),
            st.integers(1, 70).map(lambda n: b"a" * n),
        ),
        max_size=40,
    ),
    skipped=st.booleans(),
)
def test_scan_jsonl_random_bytes(chunks: list[bytes], skipped: bool) -> None:
    body = b"".join(chunks).replace(b"\n", b" ")
    line = (in_skipped if skipped else in_target)(body, 0)
    lexicon = LEXICONS["paper"]
    check_scan([line, in_target(b"wait", 3)], lexicon, "full", {1: python_status(line, lexicon, "full"), 2: 0})


@contextmanager
def guarded(data: bytes):
    """`data` in memory that ends right before a PROT_NONE page, as a writable ctypes array: reading past it
    faults."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = mmap.PAGESIZE
    n = -(-len(data) // page) * page
    base = libc.mmap(None, n + page, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    try:
        assert libc.mprotect(base + n, page, 0) == 0
        start = base + n - len(data)
        ctypes.memmove(start, data, len(data))
        yield (ctypes.c_char * len(data)).from_address(start)
    finally:
        libc.munmap(base, n + page)


@pytest.mark.skipif(not hasattr(mmap, "MAP_ANONYMOUS"), reason="needs POSIX mmap")
def test_scan_jsonl_reads_nothing_past_the_buffer() -> None:
    """A last line without newline that ends right before an unreadable page: the vector loops must not read
    past it (that would crash the test process). One escape at every offset of a block and every distance from
    the end of the line, in a decoded and in a skipped string."""
    lexicon = LEXICONS["paper"]
    for field in (KEY, "thinking_contents"):
        tail = '"]' + (', "generated_responses": ["hmm"]}' if field != KEY else "}")
        lines = [
            (f'{{"{field}": ["' + "w" * shift + esc + "w" * after + " wait" + tail).encode()
            for shift in range(64)
            for after in range(0, 72)
            for esc in ("\\n", "\\u00e9")
        ]
        with guarded(b"\n".join(lines)) as buf:  # only the last line touches the guard page
            for level in SIMD_LEVELS:
                with simd(level):
                    res = scan(buf, lexicon, "full", threads=1)
                assert res["status"].tolist() == [0] * len(lines), level
        for line in lines[-300:]:  # each of the last few as the buffer's only line
            with guarded(line) as buf:
                for level in SIMD_LEVELS:
                    with simd(level):
                        res = scan(buf, lexicon, "full", threads=1)
                    assert res["status"].tolist() == [0], level
