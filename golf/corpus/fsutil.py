"""External download tools (pip, apt-get, npm) run with a deadline; failures become GolfError."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from golf.errors import GolfError


def run_tool(cmd: Sequence[str], timeout_s: int, cwd: Path | None = None, what: str = "") -> str:
    """Run an external command (pip, apt-get, npm) with a timeout; any failure is one GolfError line."""
    name = what or cmd[0]
    try:
        r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GolfError(f"{name}: command {cmd[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise GolfError(f"{name}: `{' '.join(cmd)}` took longer than {timeout_s} s (no network?)") from None
    if r.returncode != 0:
        tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-1:]) or "no output"
        raise GolfError(f"{name}: `{' '.join(cmd)}` failed (exit {r.returncode}): {tail}")
    return r.stdout
