"""A mapping -> a frozen dataclass, every value checked against its field's type.

The one validator behind params.yaml sections (golf/params.py) and the model config an artifact's
header carries (golf/artifact/model/load.py): unknown and missing keys, wrong types and the
dataclass's own `__post_init__` checks all fail as one GolfError naming the key, value and source.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Mapping, TypeVar

from golf.errors import GolfError

C = TypeVar("C")


def build_section(values: Mapping[str, Any], section: str, cls: type[C],
                  overrides: Mapping[str, Any] | None = None, source: str = "params") -> C:
    """Validate a section's raw values against `cls` and construct it."""
    values = {**values, **(overrides or {})}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(values.keys() - fields.keys()):
        raise GolfError(f"{source}: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                        f"known: {', '.join(sorted(fields))}")
    if missing := sorted(fields.keys() - values.keys()):
        raise GolfError(f"{source}: missing key(s) {', '.join(f'{section}.{k}' for k in missing)}")
    hints = typing.get_type_hints(cls)
    over = overrides or {}
    typed = {k: coerce(f"{section}.{k}", v, hints[k], "command line" if k in over else source)
             for k, v in values.items()}
    try:
        return cls(**typed)
    except (ValueError, TypeError) as e:
        raise GolfError(f"{source}: {e}") from None


def coerce(key: str, value: Any, hint: Any, source: str = "params") -> Any:
    """Check one value against its field type; widen int to float, list to tuple."""
    def bad(expected: str) -> GolfError:
        return GolfError(f"{source}: {key} must be {expected}, got {value!r}")

    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise bad("one of " + ", ".join(map(repr, choices)))
        return value
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list of {item.__name__}")
        return tuple(coerce(f"{key}[{i}]", v, item, source) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise TypeError(f"{key}: unsupported field type {hint!r}")
