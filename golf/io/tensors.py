"""safetensors files with a versioned JSON header: no pickle crosses a stage boundary.

The header holds {"format": "<name>", "version": N, ...}; a loader names the format and
version it accepts and refuses anything else with a message saying what it found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from golf.errors import GolfError
from golf.io.atomic import atomic_path

_KEY = "golf"


def save_tensors(path: Path, tensors: dict[str, Any], header: dict[str, Any]) -> None:
    """Write tensors (made contiguous, moved to CPU, never sharing memory) and the header."""
    from safetensors.torch import save_file

    if "format" not in header or "version" not in header:
        raise ValueError("header needs 'format' and 'version'")
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata={_KEY: json.dumps(header, sort_keys=True)})


def read_header(path: Path, fmt: str, version: int) -> dict[str, Any]:
    """The JSON header, checked against the expected format name and version."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GolfError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad file
        raise GolfError(f"{path}: not a readable safetensors file ({e})") from None
    if _KEY not in meta:
        raise GolfError(f"{path}: no golf header; expected format {fmt!r} v{version}")
    try:
        header = json.loads(meta[_KEY])
    except (ValueError, RecursionError) as e:
        raise GolfError(f"{path}: the golf header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise GolfError(f"{path}: the golf header is a JSON {type(header).__name__}, not an object")
    found = (header.get("format"), header.get("version"))
    if found != (fmt, version):
        raise GolfError(f"{path}: format {found[0]!r} v{found[1]}; this golf reads {fmt!r} v{version}")
    return header


def load_tensors(path: Path, fmt: str, version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, header) after the header check."""
    from safetensors.torch import load_file

    header = read_header(path, fmt, version)
    try:
        return load_file(str(path)), header
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise GolfError(f"{path}: unreadable tensors ({type(e).__name__}: {e})") from None
