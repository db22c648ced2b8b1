"""Type-checking a config dataclass against its annotations, with messages that name the field."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["check_types", "conforms"]


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the annotated type (``bool`` is not a number; an int is a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(args) == len(value) and all(conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_types(obj: Any, fail: Callable[[str], None], *, skip: Sequence[str] = (), where: str = "") -> None:
    """Call ``fail(message)`` for the first field of the dataclass ``obj`` (nested dataclasses
    included, top-level names in ``skip`` excluded) whose value does not match its annotation."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), f"{where}{f.name}"
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_types(value, fail, where=f"{name}.")
            continue
        if not conforms(value, hints[f.name]):
            hint = ""
            if isinstance(value, str):
                try:
                    float(value)
                    hint = (
                        f" (YAML reads {value} as text: write it with a decimal point, e.g. 3.0e-3, or without quotes)"
                    )
                except ValueError:
                    pass
            fail(f"{name} must be {_type_name(hints[f.name])}, got {value!r} ({type(value).__name__}){hint}")
