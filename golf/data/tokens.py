"""`TokenData(tokens_dir)`: what `golf tokenize` wrote, for every later stage (docs/contracts.md)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from golf.artifact.bpb import Luts, build_luts
from golf.artifact.shards import load_split
from golf.data.tokenizer import load_processor
from golf.errors import GolfError

FORMAT = "golf.tokens"
VERSION = 1


def read_manifest(tokens_dir: Path) -> dict[str, Any]:
    path = Path(tokens_dir) / "manifest.json"
    if not path.is_file():
        raise GolfError(f"{path}: not found (run `golf tokenize`)")
    manifest = json.loads(path.read_text())
    found = (manifest.get("format"), manifest.get("version"))
    if found != (FORMAT, VERSION):
        raise GolfError(f"{path}: format {found[0]!r} v{found[1]}; this golf reads {FORMAT!r} v{VERSION}")
    return manifest


class TokenData:
    """Lazy view of data/tokens: shards are memory-mapped on first use."""

    def __init__(self, tokens_dir: Path) -> None:
        self.dir = Path(tokens_dir)
        self.manifest = read_manifest(self.dir)
        self.vocab_size: int = self.manifest["vocab_size"]
        self.bos_id: int = self.manifest["bos_id"]

    @cached_property
    def train(self) -> np.ndarray:
        return load_split(self.dir, "train")

    @cached_property
    def val(self) -> np.ndarray:
        return load_split(self.dir, "val")

    @cached_property
    def val_bytes(self) -> np.ndarray:
        vb = load_split(self.dir, "val_bytes")
        if len(vb) != len(self.val):
            raise GolfError(f"{self.dir}: val_bytes has {len(vb)} entries for {len(self.val)} val tokens")
        return vb

    @property
    def tokenizer_path(self) -> Path:
        return self.dir / "tokenizer.model"

    @cached_property
    def luts(self) -> Luts:
        return build_luts(load_processor(self.tokenizer_path), self.vocab_size)
