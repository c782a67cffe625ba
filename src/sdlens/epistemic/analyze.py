"""`sdlens analyze`: epistemic statistics of one or more trace files, overall and grouped by any key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sdlens.epistemic.config import AnalyzeConfig
from sdlens.epistemic.count import N_BINS, CountArrays, count_texts
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.measures import Measure, build_measures, measure_columns
from sdlens.epistemic.scan import PaperScan, ScanSettings, scannable
from sdlens.epistemic.segment import Scope, scope_text
from sdlens.epistemic.stats import Accumulator
from sdlens.errors import InputError
from sdlens.io import BadLines, batched, detect_format, iter_records, iter_samples
from sdlens.io.jsonl import is_blank, parse_json_line
from sdlens.io.readers import paper_eval_samples
from sdlens.models import load_tokenizer
from sdlens.schema import SAMPLE_FIELDS, Sample


def group_value(sample: Sample, key: str, file_label: str) -> str:
    if key == "file":
        return file_label
    value = getattr(sample, key) if key in SAMPLE_FIELDS else sample.meta.get(key)
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    return str(value)


class _Units:
    """Length units behind per-1k rates: a real tokenizer, else whitespace-separated words."""

    def __init__(self, tokenizer: str | None):
        self.tok = None
        self.label = "whitespace words"
        if tokenizer:
            self.tok = load_tokenizer(tokenizer)
            self.label = f"tokens ({tokenizer})"

    def __call__(self, texts: list[str], scope: Scope, arrays: CountArrays) -> np.ndarray:
        if self.tok is None:
            return arrays.n_words
        scoped = [scope_text(t, scope) for t in texts]
        ids = self.tok(scoped, add_special_tokens=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


@dataclass
class AnalysisRun:
    """The accumulators of one analysis; ``result()`` gives the JSON-ready summary."""

    lexicon: Lexicon
    scope: Scope
    units: str
    overall: Accumulator
    groups: dict[str, Accumulator]
    by: str | None
    files: list[str]
    skipped: BadLines
    measures: list[Measure] = field(default_factory=list)

    def new_accumulator(self) -> Accumulator:
        return Accumulator(self.lexicon.words, measures=tuple(m.spec for m in self.measures))

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "files": self.files,
            "lexicon": self.lexicon.name,
            "lexicon_mode": self.lexicon.mode,
            "scope": self.scope.value,
            "length_unit": self.units,
            **self.overall.summary(),
        }
        if self.by:
            out["by"] = self.by
            out["groups"] = {k: self.groups[k].summary() for k in _sorted_keys(self.groups)}
        out["skipped_records"] = self.skipped.count
        out["python_json_records"] = self.skipped.python_json
        out["records_without_responses"] = self.skipped.without_responses
        if self.skipped.examples:
            out["skipped_examples"] = self.skipped.examples
        return out


def _sorted_keys(groups: dict[str, Any]) -> list[str]:
    def key(k: str) -> tuple[int, float, str]:
        try:
            return (0, float(k), k)
        except ValueError:
            return (1, 0.0, k)

    return sorted(groups, key=key)


def analyze(
    paths: Iterable[str | Path],
    config: AnalyzeConfig | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Epistemic statistics over all responses in ``paths`` (see ``AnalyzeConfig``); a JSON-ready dict."""
    return run_analysis(paths, config, progress=progress).result()


def run_analysis(
    paths: Iterable[str | Path],
    config: AnalyzeConfig | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    first_scan: PaperScan | None = None,
) -> AnalysisRun:
    """The accumulators over ``paths``. ``first_scan``: the first file's scan, already started with this config
    (``sdlens.epistemic.scan.start_first_scan``); it is closed here."""
    try:
        return _run_analysis(paths, config, progress, first_scan)
    finally:
        if first_scan is not None:
            first_scan.close()


def _run_analysis(paths, config: AnalyzeConfig | None, progress, first_scan: PaperScan | None) -> AnalysisRun:
    config = config or AnalyzeConfig()
    lexicon = load_lexicon(config.lexicon)
    scope = Scope(config.scope)
    units = _Units(config.tokenizer)
    bad = BadLines(skip=config.skip_bad)
    paths = [Path(p) for p in paths]
    measures = build_measures(config.measures, config.measure_options)
    specs = tuple(m.spec for m in measures)
    run = AnalysisRun(
        lexicon, scope, units.label, Accumulator(lexicon.words, measures=specs), {}, config.by, [], bad, measures
    )
    settings = ScanSettings.of(config, lexicon)
    if first_scan is not None and (not paths or first_scan.path != paths[0] or first_scan.settings != settings):
        raise ValueError("first_scan was started for another file or other settings")
    for file_no, path in enumerate(paths):
        run.files.append(str(path))
        label = path.name if sum(p.name == path.name for p in paths) == 1 else str(path)
        prefix = f"{file_no}:"
        if file_no == 0 and first_scan is not None:
            _scan_paper_file(first_scan, prefix, label, config, lexicon, scope, run, progress)
            continue
        fmt = config.fmt or detect_format(path)
        if scannable(path, fmt, config):
            with PaperScan(path, settings) as scan:
                _scan_paper_file(scan, prefix, label, config, lexicon, scope, run, progress)
            continue
        # one problem per line in the paper's format, whatever its ids say, as its own script counts them
        by_line = fmt == "paper-eval"
        samples = (
            _paper_samples(path, config, run, prefix) if by_line else iter_samples(path, fmt, keys=config.keys, bad=bad)
        )
        for batch in batched(samples, config.batch_size):
            keys = [prefix + (str(s.meta["line"]) if by_line else s.problem_id) for s in batch]
            _add_samples(batch, keys, label, config, lexicon, scope, units, run)
            if progress:
                progress(len(batch))
    for measure in run.measures:
        measure.finish(run.overall.measure_table())
    if run.skipped.without_responses and not len(run.overall.response_totals()):
        text_key = config.keys.text_key or "generated_responses"
        where = paths[0] if len(paths) == 1 else None
        raise InputError(where, "no record has this field (pass --text-key to name the responses)", field=text_key)
    return run


def _paper_samples(path: Path, config: AnalyzeConfig, run: AnalysisRun, prefix: str) -> Iterator[Sample]:
    for line, obj in iter_records(path, run.skipped):
        yield from _paper_record(obj, path, line, prefix, config, run)


def _paper_record(obj: dict[str, Any], path: Path, line: int, prefix: str, config, run: AnalysisRun) -> list[Sample]:
    """One problem of the paper's format (one line each, whatever its ids say, as its own script counts them): the
    one reading shared by the record-by-record path and the compiled scanner's fallback."""
    try:
        samples = paper_eval_samples(obj, path, line, config.keys, run.skipped)
    except InputError as e:
        run.skipped.handle(e)
        return []
    run.overall.touch([f"{prefix}{line}"])
    return samples


def _add_samples(batch, keys, label, config, lexicon, scope, units, run: AnalysisRun) -> None:
    texts = [s.response for s in batch]
    arrays = count_texts(texts, lexicon, scope)
    n_units = units(texts, scope, arrays)
    extra = measure_columns(run.measures, batch, arrays.totals, scope) if run.measures else None
    run.overall.add(keys, arrays, n_units, extra)
    if config.by:
        values = [group_value(s, config.by, label) for s in batch]
        for value in dict.fromkeys(values):
            sel = np.fromiter((v == value for v in values), dtype=bool, count=len(values))
            acc = run.groups.get(value)
            if acc is None:
                acc = run.groups[value] = run.new_accumulator()
            acc.add(
                [k for k, m in zip(keys, sel, strict=True) if m],
                _select(arrays, sel),
                n_units[sel],
                None if extra is None else extra[sel],
            )


def _select(arrays: CountArrays, sel: np.ndarray) -> CountArrays:
    return CountArrays(arrays.counts[sel], arrays.n_chars[sel], arrays.n_words[sel], arrays.bins[sel])


# ---------------------------------------------------------------- compiled fast path


def _scan_paper_file(scan: PaperScan, prefix, label, config, lexicon, scope, run: AnalysisRun, progress) -> None:
    """Count a paper-format JSONL straight from its bytes, a window of whole lines at a time (bounded memory);
    lines the scanner cannot vouch for go the exact record-by-record way."""
    seen_lines = 0
    non_blank = 0
    for window, out in scan:
        lines, counted = _scan_window(window, out, scan.path, seen_lines, prefix, label, config, lexicon, scope, run)
        seen_lines += lines
        non_blank += counted
        if progress:
            progress(counted)
    if non_blank == 0:
        raise InputError(scan.path, "file is empty (no records)")


def _scan_window(
    window, out, path, first_line, prefix, label, config, lexicon, scope, run: AnalysisRun
) -> tuple[int, int]:
    """Sum one scanned window of whole lines; returns (lines in the window, non-blank lines)."""
    width = len(lexicon.words) + 2 + N_BINS
    line_no = np.frombuffer(out["line_no"], dtype=np.int64) + first_line
    starts = np.frombuffer(out["line_start"], dtype=np.int64)
    ends = np.frombuffer(out["line_end"], dtype=np.int64)
    status = np.frombuffer(out["status"], dtype=np.int64)
    n_strings = np.frombuffer(out["n_strings"], dtype=np.int64)
    stats = np.frombuffer(out["stats"], dtype=np.int64).reshape(-1, width)
    if len(line_no):
        lines = int(line_no[-1]) - first_line - 1 + bytes(window[int(ends[-1]) :]).count(b"\n")
        if not bytes(window[int(ends[-1]) :]).endswith(b"\n"):
            lines += 1  # the file's last line has no newline
    else:
        lines = bytes(window).count(b"\n")
    ok = status == 0
    w = len(lexicon.words)
    arrays = CountArrays(counts=stats[:, :w], n_chars=stats[:, w], n_words=stats[:, w + 1], bins=stats[:, w + 2 :])
    # problems are registered in file order so the slow and fast paths list them identically
    run.overall.touch(f"{prefix}{n}" for n in line_no[ok].tolist())
    owners = ok & (n_strings > 0)  # a key per line with responses, not per response: 16x fewer keys to look up
    keys = [f"{prefix}{n}" for n in line_no[owners].tolist()]
    _add_arrays(run, keys, arrays, arrays.n_words, label, config, repeats=n_strings[owners])
    non_blank = int(ok.sum())
    for i in np.flatnonzero(~ok):
        non_blank += _slow_line(
            bytes(window[starts[i] : ends[i]]), path, int(line_no[i]), prefix, label, config, lexicon, scope, run
        )
    return lines, non_blank


def _add_arrays(run: AnalysisRun, keys, arrays: CountArrays, n_units, label, config, repeats=None) -> None:
    run.overall.add(keys, arrays, n_units, repeats=repeats)
    if config.by == "file":
        acc = run.groups.setdefault(label, Accumulator(run.lexicon.words))
        acc.add(keys, arrays, n_units, repeats=repeats)


def _slow_line(raw: bytes, path, line, prefix, label, config, lexicon, scope, run: AnalysisRun) -> bool:
    """A line the scanner could not vouch for, read the exact way; ``False`` for a blank line."""
    if is_blank(raw):
        return False
    try:
        obj = parse_json_line(raw, path, line, run.skipped)
    except InputError as e:
        run.skipped.handle(e)
        return True
    samples = _paper_record(obj, path, line, prefix, config, run)
    texts = [s.response for s in samples]
    arrays = count_texts(texts, lexicon, scope)
    _add_arrays(run, [f"{prefix}{line}"] * len(texts), arrays, arrays.n_words, label, config)
    return True
