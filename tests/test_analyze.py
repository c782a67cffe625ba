"""`sdlens analyze` / `sdlens compare` end to end through the CLI, against the paper's script."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import EPISTEMIC_WORDS, paper_script_numbers, write_lines
from sdlens.cli import app
from sdlens.epistemic.analyze import AnalyzeConfig, analyze
from sdlens.epistemic.compare import compare
from sdlens.errors import InputError
from sdlens.examples import write_example_run, write_example_runs

runner = CliRunner()

PIECES = [
    "wait",
    "Wait,",
    "hmm",
    "HMMM",
    "unlikely",
    "checking",
    "await",
    "mighty",
    "perhaps",
    "the",
    "x = 2",
    "\n",
    "\\check{x}",
    "<think>",
    "</think>",
    "é",
    "中文",
    "\u212a",
    "\u0130",
    "CHEC\u212a",
    "ſeems",
    " ",
    "🙂",
    "Alternatively",
    "\\boxed{4}",
    '"quoted"',
    "\\\\",
    "\t",
]


def random_paper_file(path, seed: int, n: int = 25, ensure_ascii: bool = True):
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        responses = [
            "".join(rng.choice(PIECES) + rng.choice(["", " "]) for _ in range(rng.randint(0, 80)))
            for _ in range(rng.randint(0, 6))
        ]
        rec = {
            "idx": i,
            "gold_answer": "4",
            "generated_responses": responses,
            "answers_correctness": [rng.random() < 0.5 for _ in responses],
            "nested": {"generated_responses": 1},
        }
        lines.append(json.dumps(rec, ensure_ascii=ensure_ascii))
        if rng.random() < 0.1:
            lines.append("   ")
    return write_lines(path, lines)


def cli_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("pure_python", [False, True], ids=["auto", "pure-python"])
@pytest.mark.parametrize("seed", range(6))
def test_analyze_paper_lexicon_reproduces_the_paper_script(tmp_path, monkeypatch, seed: int, pure_python: bool) -> None:
    monkeypatch.setenv("SDLENS_PURE_PYTHON", "1" if pure_python else "0")
    path = random_paper_file(tmp_path / "run.jsonl", seed, ensure_ascii=seed % 2 == 0)
    ref = paper_script_numbers(path)
    got = cli_json("analyze", str(path))
    assert got["n_problems"] == ref["problems"]
    assert got["n_responses"] == ref["responses"]
    assert got["total"] == ref["total"]
    assert {w: d["total"] for w, d in got["per_word"].items()} == ref["totals"]
    assert got["mean_per_response"] == pytest.approx(ref["avg_per_resp"], rel=1e-12)
    for w in EPISTEMIC_WORDS:
        assert got["per_word"][w]["mean_per_response"] == pytest.approx(ref["totals"][w] / ref["responses"])
    # the slow (record-by-record) path gives the same numbers as the compiled scanner
    slow = analyze([path], AnalyzeConfig(fmt="paper-eval", fast=False))
    assert {k: slow[k] for k in ("n_problems", "n_responses", "total", "per_word", "position_profile")} == {
        k: got[k] for k in ("n_problems", "n_responses", "total", "per_word", "position_profile")
    }


def test_analyze_statistics_by_correct(tmp_path) -> None:
    lines = [
        json.dumps(
            {"idx": 0, "generated_responses": ["wait wait", "x", "hmm y"], "answers_correctness": [True, False, False]}
        ),
        json.dumps({"idx": 1, "generated_responses": ["maybe", "z z z z"], "answers_correctness": [True, True]}),
    ]
    path = write_lines(tmp_path / "r.jsonl", lines)
    got = cli_json("analyze", str(path), "--by", "correct")
    assert got["n_responses"] == 5 and got["total"] == 4
    assert got["share_with_any"] == pytest.approx(3 / 5)
    assert got["median_per_response"] == 1.0
    assert got["per_1k_tokens"] == pytest.approx(1000 * 4 / 10)  # 10 whitespace words in all
    assert got["length_unit"] == "whitespace words"
    assert got["mean_per_response_macro"] == pytest.approx((3 / 3 + 1 / 2) / 2)
    g = got["groups"]
    assert set(g) == {"true", "false"}
    assert g["true"]["n_responses"] == 3 and g["true"]["total"] == 3 and g["true"]["n_problems"] == 2
    assert g["false"]["n_responses"] == 2 and g["false"]["total"] == 1 and g["false"]["n_problems"] == 1


def test_scope_thinking_and_answer_partition_the_counts(tmp_path) -> None:
    path = write_example_run(tmp_path / "ex.jsonl", hedging=0.8, accuracy=0.7, n_problems=10)
    full, think, ans = (cli_json("analyze", str(path), "--scope", s)["total"] for s in ("full", "thinking", "answer"))
    assert think > 0 and think + ans == full


def test_tokenizer_units(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "wait": 1, "x": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    path = write_lines(tmp_path / "r.jsonl", [json.dumps({"idx": 0, "generated_responses": ["wait, x x", "x"]})])
    got = cli_json("analyze", str(path), "--tokenizer", str(tmp_path / "tok"))
    assert got["length_unit"] == f"tokens ({tmp_path / 'tok'})"
    # "wait , x x" -> 4 tokens (the comma is its own token), "x" -> 1
    assert got["mean_length"] == pytest.approx(2.5) and got["per_1k_tokens"] == pytest.approx(1000 * 1 / 5)


def test_tokenizer_by_embedded_name(tmp_path) -> None:
    """`--tokenizer smollm2-135m` takes the embedded model's name, as `sdlens eval` does (one loader in models)."""
    from transformers import AutoTokenizer

    from sdlens.models import resolve_model

    texts = ["Wait, 12 * 7 = 84. Hmm, maybe recheck.", "The answer is 84."]
    path = write_lines(tmp_path / "r.jsonl", [json.dumps({"idx": 0, "generated_responses": texts})])
    got = cli_json("analyze", str(path), "--tokenizer", "smollm2-135m")
    assert got["length_unit"] == "tokens (smollm2-135m)"
    reference = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    n_tokens = [len(reference(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert got["mean_length"] == pytest.approx(sum(n_tokens) / 2)
    assert got["mean_length"] != pytest.approx(sum(len(t.split()) for t in texts) / 2)  # not whitespace words
    result = runner.invoke(app, ["analyze", str(path), "--tokenizer", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "cannot load tokenizer" in result.stderr


def test_analyze_table_and_errors(tmp_path) -> None:
    base, _ = write_example_runs(tmp_path)
    result = runner.invoke(app, ["analyze", str(base), "--by", "correct"])
    assert (
        result.exit_code == 0 and "E = hedges per response (paper)" in result.stdout and "By correct" in result.stdout
    )
    bad = write_lines(tmp_path / "bad.jsonl", ['{"idx": 0, "generated_responses": ["a"]}', '{"idx": 1,'])
    result = runner.invoke(app, ["analyze", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {bad}:2: malformed JSON") and result.stderr.count("\n") == 1
    ok = cli_json("analyze", str(bad), "--skip-bad")
    assert ok["skipped_records"] == 1 and ok["n_responses"] == 1
    result = runner.invoke(app, ["analyze", str(base), "--lexicon", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "no such lexicon file" in result.stderr


def test_compare_reports_cis_and_verdict(tmp_path) -> None:
    base, confident = write_example_runs(tmp_path)
    res = cli_json("compare", str(base), str(confident))
    e = res["metrics"]["mean_per_response"]
    assert res["paired"] is True
    assert e["a_ci"][0] <= e["a"] <= e["a_ci"][1] and e["b_ci"][0] <= e["b"] <= e["b_ci"][1]
    assert e["ratio"] == pytest.approx(e["b"] / e["a"])
    assert res["hedging_fell"] is True and res["verdict"].startswith("Hedging fell significantly")
    same = cli_json("compare", str(base), str(base))
    assert same["hedging_fell"] is False and same["verdict"].startswith("No significant change")
    assert same["metrics"]["mean_per_response"]["ratio_ci"] == [1.0, 1.0]  # paired resampling of identical runs


def test_compare_ci_matches_a_direct_bootstrap(tmp_path) -> None:
    base, confident = write_example_runs(tmp_path)
    res = compare([base], [confident], n_boot=500, seed=3)

    # restate the paired bootstrap of E over problems directly from the files
    def per_problem(path):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return np.array(
            [
                [
                    sum(r.lower().count(w) for w in EPISTEMIC_WORDS for r in [resp])
                    for resp in row["generated_responses"]
                ]
                for row in rows
            ]
        )

    a, b = per_problem(base), per_problem(confident)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(a), size=(500, len(a)))
    ratios = b[idx].sum(axis=(1, 2)) / a[idx].sum(axis=(1, 2))
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    assert res["metrics"]["mean_per_response"]["ratio_ci"] == pytest.approx([lo, hi])


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_scanner_windows_keep_line_numbers_and_results(tmp_path, chunk: int) -> None:
    path = random_paper_file(tmp_path / "run.jsonl", 11, n=30)
    with open(path, "ab") as f:
        f.write(b"\n{broken\n\n")
        f.write(json.dumps({"idx": 99, "generated_responses": ["wait"]}).encode())  # no final newline
    n_lines = path.read_bytes().count(b"\n") + 1
    fast = analyze([path], AnalyzeConfig(skip_bad=True, chunk_bytes=chunk))
    slow = analyze([path], AnalyzeConfig(skip_bad=True, fast=False))
    keys = (
        "n_problems",
        "n_responses",
        "total",
        "per_word",
        "position_profile",
        "mean_length",
        "skipped_records",
        "skipped_examples",
        "median_per_response",
    )
    assert {k: fast[k] for k in keys} == {k: slow[k] for k in keys}
    assert fast["skipped_examples"][0].startswith(f"{path}:{n_lines - 2}: malformed JSON")


def test_several_files_by_file_and_verl_steps(tmp_path) -> None:
    base, confident = write_example_runs(tmp_path)
    got = cli_json("analyze", str(base), str(confident), "--by", "file")
    assert set(got["groups"]) == {"base.jsonl", "confident.jsonl"}
    assert got["n_problems"] == 80  # the same 40 problems in two files stay two sets of problems
    assert got["groups"]["base.jsonl"]["total"] == paper_script_numbers(base)["total"]
    dump = tmp_path / "rollouts"
    dump.mkdir()
    for step, text in ((1, "Wait, hmm. maybe"), (2, "so 4")):
        write_lines(dump / f"{step}.jsonl", [json.dumps({"input": "p", "output": text, "score": 1.0, "step": step})])
    got = cli_json("analyze", str(dump), "--by", "step")
    assert {k: v["total"] for k, v in got["groups"].items()} == {"1": 3, "2": 0}


ODD_LINE = st.sampled_from(["", " ", "\x0b", "\x0c", "\t\x0b ", " \x0c\x0b"])
RESPONSE = st.lists(st.sampled_from([*PIECES, "\ud800", "\udfff"]), max_size=30).map(" ".join)


@st.composite
def odd_record(draw) -> str:
    """A paper-format line of one of the kinds on which orjson and Python's json (or the two paths) could differ."""
    kind = draw(st.sampled_from(["plain", "nan", "infinity", "no-responses"]))
    responses = draw(st.lists(RESPONSE, max_size=4))
    rec: dict = {"idx": draw(st.integers(0, 5)), "generated_responses": responses}
    if kind == "nan":
        rec["score"] = float("nan")
    elif kind == "infinity":
        rec["scores"] = [float("-inf"), float("inf")]
    elif kind == "no-responses":
        del rec["generated_responses"]
        rec["other"] = responses
    # json.dumps writes NaN / Infinity by default, and lone surrogates as escapes (they have no UTF-8 form)
    surrogates = any("\ud800" in r or "\udfff" in r for r in responses)
    return json.dumps(rec, ensure_ascii=surrogates or draw(st.booleans()))


def _only_python_parses(line: str) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        json.loads(line)
        return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(odd_record(), ODD_LINE), min_size=1, max_size=12).filter(lambda ls: any(ls)))
def test_both_analyzer_paths_agree_with_the_paper_on_odd_lines(lines: list[str]) -> None:
    without = sum('"other"' in x for x in lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(Path(tmp) / "run.jsonl", lines)
        ref = paper_script_numbers(path)
        if not ref["problems"]:
            return  # blank lines only: both paths say the file is empty (tested elsewhere)
        if not ref["responses"] and without:
            for fast in (True, False):
                with pytest.raises(InputError, match="field 'generated_responses': no record has this field"):
                    analyze([path], AnalyzeConfig(fmt="paper-eval", fast=fast))
            return
        fast = analyze([path], AnalyzeConfig(fmt="paper-eval", chunk_bytes=64))  # lines cross window edges
        slow = analyze([path], AnalyzeConfig(fmt="paper-eval", fast=False))
    keys = ("n_problems", "n_responses", "total", "per_word", "position_profile")
    keys += ("python_json_records", "records_without_responses")
    assert {k: fast[k] for k in keys} == {k: slow[k] for k in keys}
    assert (fast["n_problems"], fast["n_responses"], fast["total"]) == (ref["problems"], ref["responses"], ref["total"])
    assert {w: d["total"] for w, d in fast["per_word"].items()} == ref["totals"]
    if ref["responses"]:
        assert fast["mean_per_response"] == pytest.approx(ref["avg_per_resp"], rel=1e-12)
    assert fast["python_json_records"] == sum(_only_python_parses(x) for x in lines if x.strip())
    assert fast["records_without_responses"] == without


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=300))
def test_median_and_p90_equal_numpys_to_the_bit(counts: list[int]) -> None:
    """The summary's median and p90 are written out (numpy's quantiles import numpy.ma, a CLI start-up cost): they
    must be numpy's own numbers, bit for bit, for any integer counts (odd and even sizes, ties, one element)."""
    from sdlens.epistemic.stats import median_and_p90

    arr = np.asarray(counts, dtype=np.int64)
    median, p90 = median_and_p90(arr)
    assert (median, p90) == (float(np.median(arr)), float(np.percentile(arr, 90)))
    assert np.float64(median).tobytes() == np.float64(np.median(arr)).tobytes()
    assert np.float64(p90).tobytes() == np.float64(np.percentile(arr, 90)).tobytes()


def test_analyze_json_imports_no_numpy_ma(tmp_path: Path) -> None:
    """The counting CLI path stays clear of numpy.ma (its import is ~6% of the process on a 150 MB file)."""
    import subprocess
    import sys

    path = tmp_path / "eval.jsonl"
    record = {"generated_responses": ["Wait, maybe 2.", "So 3."], "answers_correctness": [True, False]}
    write_lines(path, [json.dumps(record)])
    code = (
        "import sys\n"
        "import sdlens.cli.fastpath as f\n"
        "assert f.try_run(['analyze', sys.argv[1], '--json'])\n"
        "print('numpy.ma' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["total"] == 2
    assert done.stderr.split() == ["False", "True"]


def test_a_scan_started_early_gives_the_same_analysis(tmp_path: Path) -> None:
    """`sdlens analyze` starts the first file's scan before numpy loads (sdlens.epistemic.scan): the analysis is the
    one the analyzer gives on its own, over several windows and files; a scan started for another file or other
    settings is refused; a scan left half-read closes cleanly."""
    from sdlens.epistemic.analyze import run_analysis
    from sdlens.epistemic.lexicon import load_lexicon
    from sdlens.epistemic.scan import PaperScan, ScanSettings, start_first_scan

    first = random_paper_file(tmp_path / "a.jsonl", 3, n=20)
    second = random_paper_file(tmp_path / "b.jsonl", 4, n=15)
    config = AnalyzeConfig(chunk_bytes=2048, by="file")
    scan = start_first_scan([first, second], config)
    assert scan is not None
    early = run_analysis([first, second], config, first_scan=scan).result()
    assert early == analyze([first, second], config)
    assert early["n_problems"] == 35

    for paths, other in (([second, first], config), ([first], AnalyzeConfig(chunk_bytes=4096))):
        scan = start_first_scan([first], config)
        with pytest.raises(ValueError, match="another file or other settings"):
            run_analysis(paths, other, first_scan=scan)
        assert scan._mm.closed  # closed even so

    assert start_first_scan([first], AnalyzeConfig(fast=False)) is None
    assert start_first_scan([first], AnalyzeConfig(measures=("reflection",))) is None
    with PaperScan(first, ScanSettings.of(config, load_lexicon("paper"))) as scan:
        window, out = next(iter(scan))  # one window taken, the next one in flight
        assert len(window) <= 2048 and bytes(window).endswith(b"\n") and out["status"]
    assert scan._mm.closed


def test_a_scan_started_before_the_options_are_read_is_taken_over_only_when_it_fits(tmp_path: Path) -> None:
    """``start_first_scan(..., started=)``: a scan begun with the default settings (``sdlens analyze FILE`` starts
    one before it reads its options) is returned where it scans what the call would start, and closed otherwise:
    other settings, another file, nothing to scan, or an error on the way."""
    from sdlens.epistemic.analyze import run_analysis
    from sdlens.epistemic.scan import start_first_scan

    first = random_paper_file(tmp_path / "a.jsonl", 5, n=12)
    second = random_paper_file(tmp_path / "b.jsonl", 6, n=9)
    default = AnalyzeConfig()

    early = start_first_scan([first], default)
    assert early is not None and start_first_scan([first, second], default, started=early) is early
    assert run_analysis([first, second], default, first_scan=early).result() == analyze([first, second], default)

    for paths, config in (
        ([first], AnalyzeConfig(scope="thinking")),
        ([first], AnalyzeConfig(lexicon="words")),
        ([second], default),
    ):
        early = start_first_scan([first], default)
        fresh = start_first_scan(paths, config, started=early)
        assert fresh is not None and fresh is not early and early._mm.closed
        assert run_analysis(paths, config, first_scan=fresh).result() == analyze(paths, config)

    for config in (AnalyzeConfig(fast=False), AnalyzeConfig(measures=("reflection",))):
        early = start_first_scan([first], default)
        assert start_first_scan([first], config, started=early) is None and early._mm.closed

    early = start_first_scan([first], default)
    with pytest.raises(InputError, match="no such file"):
        start_first_scan([tmp_path / "missing.jsonl"], default, started=early)
    assert early._mm.closed
