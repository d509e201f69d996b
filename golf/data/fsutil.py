"""A whole output folder written beside its target and renamed into place: no partial output."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from golf.errors import GolfError


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `final`; on success it replaces `final`, on error it is deleted."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
