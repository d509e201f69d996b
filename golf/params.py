"""params.yaml: one section per stage, each read into one frozen dataclass.

params.yaml is the one source of truth for every value. A section's dataclass (owned by the
subpackage it configures) declares each field's type and, in a docstring under the field,
its meaning and unit, but no default: `load_section` fills it from the YAML file, applies
overrides (the stage's named flags), and rejects unknown keys, wrong types and impossible
combinations (the dataclass's `__post_init__`) with a message naming key, value and file.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from golf.errors import GolfError

C = TypeVar("C")


def read_params(path: Path) -> dict[str, Any]:
    """The whole params file as a dict; a clear error if it is missing or not a mapping."""
    if not path.is_file():
        raise GolfError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise GolfError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise GolfError(f"{path}: expected a mapping of sections, found {type(data).__name__}")
    return data


def load_section(path: Path, section: str, cls: type[C], overrides: Mapping[str, Any] | None = None) -> C:
    """Build `cls` from `path[section]`, with `overrides` (field -> value) applied on top."""
    values = read_params(path).get(section)
    if not isinstance(values, dict):
        raise GolfError(f"{path}: section {section!r} is missing or not a mapping")
    return build_section(values, section, cls, overrides, source=str(path))


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
        if isinstance(value, str):  # a flag value such as "3,4,5"
            value = [yaml.safe_load(v) for v in value.replace(",", " ").split()]
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


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field (the help text and params reference)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def section_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples become lists), for artifact headers."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def is_flag(hint: Any) -> bool:
    return hint is bool


def choices_text(hint: Any) -> str:
    """' [one of: a|b]' for a Literal field, else ''."""
    if typing.get_origin(hint) is Literal:
        return " [one of: " + "|".join(map(str, typing.get_args(hint))) + "]"
    return ""


def option_type(hint: Any) -> Any:
    """The type Typer parses a field's flag as (values are checked later by `coerce`)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return str
    if origin is tuple:
        return str  # "3,4,5"
    if isinstance(hint, types.UnionType):
        raise TypeError(f"optional fields are not supported: {hint!r}")
    return hint
