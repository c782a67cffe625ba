"""Typer options built from config dataclass fields: a field's ``help`` metadata is its option's help, so the
documentation lives in one place (the config) and the CLI restates none of it (the way back, a command's option
values into its config by field name, is :func:`sdlens.fields.config_from`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import typer

from sdlens.fields import field_help

__all__ = ["add_options", "keyword", "option"]


def option(cls: type, name: str, *param_decls: str, **kwargs: Any) -> Any:
    """``typer.Option(*param_decls, help=<the help of cls's field name>, **kwargs)``."""
    return typer.Option(*param_decls, help=field_help(cls, name), **kwargs)


def keyword(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """A keyword-only command parameter (``annotation`` is usually ``Annotated[type, option(...)]``)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def add_options(
    head: Sequence[inspect.Parameter], tail: Sequence[inspect.Parameter], *, into: str, before: Sequence[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add options declared once to a typer command: ``head`` first, ``tail`` before the first of the command's
    own parameters named in ``before`` (else last). The command receives their values as one dict, its keyword
    argument ``into``."""
    names = [p.name for p in (*head, *tail)]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name != into]
        at = next((i for i, p in enumerate(own) if p.name in before), len(own))
        params = [*head, *own[:at], *tail, *own[at:]]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            shared = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, **{into: shared})

        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate
