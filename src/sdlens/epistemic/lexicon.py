"""Lexicons of epistemic words and how each is matched.

Modes:
- ``substring``: the paper's rule, ``text.lower().count(word)`` (non-overlapping, Python's full Unicode
  lower-casing).
- ``word``: ASCII case-insensitive, not touching an ASCII letter or digit on either side; every letter of the
  word may be repeated (elongation: "hmmm", "waaait") and the whole elongated word counts once.
- ``letter``: the companion paper's rule, ``(?i)(?<![A-Za-z])WORD(?![A-Za-z])``.

A user lexicon is a TOML file with ``words = [...]`` and ``mode = "substring" | "word" | "letter"`` (and an
optional ``name`` and ``description``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sdlens.errors import InputError

BUILTIN = ("paper", "words", "companion", "reflection", "reflection-qwen", "reflection-deepseek", "reflection-llama")
MODES = ("substring", "word", "letter")


@dataclass(frozen=True)
class Lexicon:
    name: str
    mode: str
    words: tuple[str, ...]
    description: str = ""
    source: str = field(default="builtin", compare=False)

    @cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...] | None:
        """Compiled regexes for the boundary modes (None for ``substring``)."""
        if self.mode == "substring":
            return None
        return tuple(_compile(w, self.mode) for w in self.words)


def _compile(word: str, mode: str) -> re.Pattern[str]:
    if mode == "letter":
        # the companion code's exact expression: Unicode case-insensitive, ASCII letter boundaries
        return re.compile(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", re.IGNORECASE)
    body = []
    for run in re.finditer(r"(.)\1*", word):
        ch, n = run.group(1), len(run.group(0))
        body.append(f"{re.escape(ch)}{{{n},}}" if ch.isascii() and ch.isalpha() else re.escape(run.group(0)))
    return re.compile(rf"(?<![A-Za-z0-9]){''.join(body)}(?![A-Za-z0-9])", re.IGNORECASE | re.ASCII)


def load_lexicon(spec: str | Path) -> Lexicon:
    """A built-in lexicon by name (``paper``, ``words``, ``companion``) or a user TOML file by path."""
    if isinstance(spec, str) and spec in BUILTIN:
        # read beside this module rather than through importlib.resources, whose readers import zipfile (~3 ms of
        # every `sdlens analyze`); sdlens is installed as files (its compiled kernel cannot load from a zip)
        text = (Path(__file__).parent / "lexicons" / f"{spec}.toml").read_text("utf-8")
        return _parse(tomllib.loads(text), source="builtin", default_name=spec, path=None)
    path = Path(spec)
    if not path.exists():
        raise InputError(path, f"no such lexicon file (built-in lexicons: {', '.join(BUILTIN)})")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a valid TOML lexicon ({e})") from None
    return _parse(data, source=str(path), default_name=path.stem, path=path)


def _parse(data: dict, *, source: str, default_name: str, path: Path | None) -> Lexicon:
    words = data.get("words")
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise InputError(path, "expected a non-empty list of non-empty strings", field="words")
    if len(set(words)) != len(words):
        raise InputError(path, "duplicate entries", field="words")
    mode = data.get("mode", "substring")
    if mode not in MODES:
        raise InputError(path, f"unknown mode {mode!r} (choose {', '.join(MODES)})", field="mode")
    if mode == "substring":
        words = [w.lower() for w in words]
    return Lexicon(
        name=str(data.get("name", default_name)),
        mode=mode,
        words=tuple(words),
        description=str(data.get("description", "")),
        source=source,
    )
