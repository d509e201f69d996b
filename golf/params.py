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
from typing import Any, Literal, Mapping

import yaml

from golf.artifact.typed import C, build_section
from golf.errors import GolfError


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
    return build_section(values, section, cls, flag_values(cls, overrides or {}), source=str(path))


def flag_values(cls: type, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A list field's flag arrives as one string ("3,4,5"): split it, each item read as YAML."""
    hints = typing.get_type_hints(cls)
    return {k: [yaml.safe_load(x) for x in v.replace(",", " ").split()]
            if isinstance(v, str) and typing.get_origin(hints.get(k)) is tuple else v
            for k, v in overrides.items()}


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
