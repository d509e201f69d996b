"""Presets as overlays: presets/<name>.yaml holds only the keys a preset sets, applied onto params.yaml.

Every overlay sets the same keys (the union of what any preset changes; tests/test_params.py checks
it), so switching between presets gives the same params.yaml whatever was applied before, and keys
no preset touches stay as the user set them. params.yaml is committed as the cpu-small preset.
The file is edited line by line, so its comments and layout survive.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from golf.errors import GolfError


def preset_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def read_overlay(path: Path, kind: str = "preset") -> dict[str, dict[str, Any]]:
    """{section: {key: value}}; a clear error for a missing file or a malformed overlay."""
    if not path.is_file():
        names = ", ".join(preset_names(path.parent)) or "none"
        raise GolfError(f"{path}: no such {kind} ({kind}s in {path.parent}: {names})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise GolfError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise GolfError(f"{path}: an overlay is a mapping of sections to {{key: value}} mappings")
    return data


def yaml_value(value: Any) -> str:
    """One value as params.yaml writes it: floats keep a dot (PyYAML reads 3e-4 as a string)."""
    if isinstance(value, float):
        text = repr(value)
        return text if ("." in text or "inf" in text or "nan" in text) else text.replace("e", ".0e")
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    return text if yaml.safe_load(text) == value else json.dumps(value)  # quote "on", "1e-3", ...


def apply_overlay(text: str, overlay: dict[str, dict[str, Any]], source: str = "overlay") -> str:
    """params.yaml's text with each overlay value put in place of the old one (comments kept)."""
    lines = text.splitlines(keepends=True)
    section, todo = None, {(s, k) for s, keys in overlay.items() for k in keys}
    for i, line in enumerate(lines):
        if m := re.match(r"^(\w+):", line):
            section = m.group(1)
        elif section in overlay and (m := re.match(r"^(  )(\w+):( *)([^#\n]*?)(\s*#.*)?$", line.rstrip("\n"))):
            key = m.group(2)
            if key in overlay[section]:
                todo.discard((section, key))
                value = overlay[section][key]
                if yaml.safe_load(m.group(4) or "null") != value:  # an unchanged value keeps its spelling
                    lines[i] = f"{m.group(1)}{key}: {yaml_value(value)}{m.group(5) or ''}\n"
    if todo:
        missing = ", ".join(f"{s}.{k}" for s, k in sorted(todo))
        raise GolfError(f"{source}: key(s) {missing} are not in params.yaml (renamed or removed?)")
    return "".join(lines)


def preset_params(name: str, root: Path, out: Path) -> Path:
    """root/params.yaml with presets/<name>.yaml applied, written to `out` (a full params file)."""
    path = root / "presets" / f"{name}.yaml"
    out.write_text(apply_overlay((root / "params.yaml").read_text(encoding="utf-8"), read_overlay(path), str(path)),
                   encoding="utf-8")
    return out


def recipe_preset(path: Path) -> str | None:
    """The preset a recipe assumes: a `# preset: NAME` line in its header comment (docs/recipes.md)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return None
        if m := re.match(r"^#\s*preset:\s*([\w-]+)\s*$", line):
            return m.group(1)
    return None


def recipe_text(text: str, recipe: Path, presets: Path) -> str:
    """params.yaml's text with the recipe's preset applied, then the recipe itself (a recipe wins)."""
    overlay = read_overlay(recipe, kind="recipe")
    if name := recipe_preset(recipe):
        text = apply_overlay(text, read_overlay(presets / f"{name}.yaml"), str(presets / f"{name}.yaml"))
    return apply_overlay(text, overlay, str(recipe))
