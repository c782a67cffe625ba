"""The grader interface, the verdict record and the registry of graders by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "GradeItem",
    "Grader",
    "Verdict",
    "available_graders",
    "get_grader",
    "register_grader",
]


class GradeItem(NamedTuple):
    """What a grader needs: the full response and the ground-truth answer (``None`` when missing)."""

    response: str
    gold: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A grader's decision on one response.

    ``extracted``: the final answer taken from the response (``None``: nothing extracted; ``""``: empty box).
    ``correct``: the verdict; anything that stopped the grader from deciding is ``False``.
    ``error``: ``None``, or why the verdict is not a plain comparison (a timeout, a crashed worker, an answer
    math-verify cannot parse, ...).
    """

    extracted: str | None
    correct: bool
    error: str | None = None


ProgressFn = Callable[[int], None]


@runtime_checkable
class Grader(Protocol):
    """Grades responses against gold answers. Implementations must be usable from any thread."""

    name: str

    def grade(
        self, items: Sequence[GradeItem | tuple[str, str | None]], progress: ProgressFn | None = None
    ) -> list[Verdict]:
        """One verdict per item, in order. ``progress(k)`` is called as ``k`` more items are done."""
        ...


_REGISTRY: dict[str, Callable[..., Grader]] = {}


def register_grader(name: str, factory: Callable[..., Grader], *, replace: bool = False) -> None:
    """Make ``factory(**options)`` available as grader ``name`` (CLI ``--grader name``, audits)."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"a grader named {name!r} is already registered")
    _REGISTRY[name] = factory


def available_graders() -> list[str]:
    return list(_REGISTRY)


def get_grader(name: str, **options: Any) -> Grader:
    """A grader by registered name; ``options`` go to its constructor (unknown ones are an error)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown grader {name!r}; available: {', '.join(_REGISTRY)}") from None
    return factory(**options)
