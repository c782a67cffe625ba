"""The compiled scanner over a paper-format JSONL's bytes: windows of whole lines, each scanned a step ahead.

The scanner (``sdlens.epistemic._fastcount.scan_jsonl``) runs without the GIL, so each window's scan runs in a
thread that starts before the previous window is consumed: the analyzer sums window k while the scanner reads
window k + 1. ``sdlens analyze`` starts the first file's scan before it imports numpy and the analyzer, which then
load on the other core while the scanner counts (docs/benchmarks.md, "Counting while importing"); for that, this
module imports no numpy.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sdlens.epistemic.config import AnalyzeConfig
from sdlens.epistemic.kernel import compiled_kernel
from sdlens.epistemic.lexicon import Lexicon, load_lexicon
from sdlens.epistemic.segment import Scope
from sdlens.errors import InputError
from sdlens.io import detect_format
from sdlens.io.containers import is_json_array

__all__ = ["PaperScan", "ScanSettings", "scannable", "start_first_scan"]


@dataclass(frozen=True)
class ScanSettings:
    """What the scanner counts, from an ``AnalyzeConfig`` and its lexicon."""

    text_key: str
    words: tuple[str, ...]
    mode: str
    scope: str
    threads: int
    chunk_bytes: int

    @classmethod
    def of(cls, config: AnalyzeConfig, lexicon: Lexicon) -> ScanSettings:
        return cls(
            config.keys.text_key or "generated_responses",
            tuple(lexicon.words),
            lexicon.mode,
            Scope(config.scope).value,
            config.threads,
            config.chunk_bytes,
        )


def _counts_alone(config: AnalyzeConfig) -> bool:
    """Whether ``config`` asks for hedge counts alone: nothing that needs whole records (measures, a tokenizer,
    grouping by a field), and the compiled path not turned off."""
    return (
        config.fast
        and not config.measures
        and not config.tokenizer
        and config.by in (None, "file")
        and not config.keys.group_key
    )


def scannable(path: Path, fmt: str, config: AnalyzeConfig) -> bool:
    """Whether ``path`` can be counted from its bytes: the paper's format in a JSONL file, and nothing asked for that
    needs whole records (measures, a tokenizer, grouping by a field)."""
    if not (
        _counts_alone(config)
        and fmt == "paper-eval"
        and path.suffix != ".parquet"
        and path.is_file()
        and not is_json_array(path)
    ):
        return False
    kernel = compiled_kernel()
    return kernel is not None and hasattr(kernel, "scan_jsonl")


class _WindowScan(threading.Thread):
    """One window's scan, in a thread (the scanner releases the GIL)."""

    def __init__(self, kernel: ModuleType, data: memoryview, settings: ScanSettings):
        super().__init__(name="sdlens-scan", daemon=True)
        self.kernel, self.data, self.settings = kernel, data, settings
        self.out: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        s = self.settings
        try:
            self.out = self.kernel.scan_jsonl(self.data, s.text_key, list(s.words), s.mode, s.scope, s.threads)
        except BaseException as e:  # handed to the reader's thread
            self.error = e

    def result(self) -> dict[str, Any]:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.out is not None
        return self.out


class PaperScan:
    """The scanned windows of one file, in order, as ``(window bytes, scanner output)``; the first window's scan
    starts at construction. Close it (or use it as a context manager) to wait for a scan in flight and unmap the
    file; a window's bytes are valid until the next one is taken."""

    def __init__(self, path: Path, settings: ScanSettings):
        self.path, self.settings = path, settings
        kernel = compiled_kernel()
        if kernel is None:
            raise RuntimeError("the compiled scanner is not built or is turned off (SDLENS_PURE_PYTHON)")
        self._kernel = kernel
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise InputError(path, f"cannot open: {e.strerror}") from None
        self.size = os.fstat(self._fh.fileno()).st_size
        if self.size == 0:
            self._fh.close()
            raise InputError(path, "file is empty (no records)")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._taken: memoryview | None = None  # the window the reader holds
        self._next: _WindowScan | None = self._scan_from(0)

    def _scan_from(self, start: int) -> _WindowScan | None:
        if start >= self.size:
            return None
        stop = min(self.size, start + self.settings.chunk_bytes)
        if stop < self.size:
            nl = self._mm.rfind(b"\n", start, stop)
            stop = nl + 1 if nl >= 0 else (self._mm.find(b"\n", stop) + 1 or self.size)
        return _WindowScan(self._kernel, memoryview(self._mm)[start:stop], self.settings)

    def __iter__(self) -> Iterator[tuple[memoryview, dict[str, Any]]]:
        start = 0
        while self._next is not None:
            job = self._next
            out = job.result()
            start += len(job.data)
            self._release_taken()
            self._taken = job.data
            self._next = self._scan_from(start)
            yield job.data, out
        self._release_taken()

    def _release_taken(self) -> None:
        if self._taken is not None:
            self._taken.release()
            self._taken = None

    def close(self) -> None:
        if self._next is not None:
            self._next.join()
            self._next.data.release()
            self._next = None
        self._release_taken()
        if not self._mm.closed:
            self._mm.close()
            self._fh.close()

    def __enter__(self) -> PaperScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_first_scan(paths: list[Path], config: AnalyzeConfig, started: PaperScan | None = None) -> PaperScan | None:
    """Start scanning the first file now, where the analyzer would scan it (checked in the order it checks, so a
    bad lexicon or file fails with the same error); ``None`` where it would not. ``started``: a scan begun before
    ``config`` was known (``sdlens analyze FILE`` starts one with the default settings before it imports the rest,
    ``sdlens.cli.main``): it is returned where it scans what this call would start, and closed otherwise."""
    try:
        wanted = _first_scan(paths, config)
    except BaseException:
        if started is not None:
            started.close()
        raise
    if started is not None:
        if wanted == (started.path, started.settings):
            return started
        started.close()
    return PaperScan(*wanted) if wanted else None


def _first_scan(paths: list[Path], config: AnalyzeConfig) -> tuple[Path, ScanSettings] | None:
    if not paths or not _counts_alone(config):
        return None
    lexicon = load_lexicon(config.lexicon)
    path = Path(paths[0])
    if not scannable(path, config.fmt or detect_format(path), config):
        return None
    return path, ScanSettings.of(config, lexicon)
