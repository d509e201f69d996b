"""Each stage's source deps in dvc.yaml: exactly the files its command runs, found by import.

A stage depends on the golf and stages modules that `stages/<stage>.py` reaches by import (lazy
imports inside functions included: golf.compress.bundle.closure), and compress also on the files
its train_gpt.py carries, since their bytes are its output. stages/cli.py, which imports every
stage module to dispatch, is left out: only the chosen command's code runs. So editing a module
reruns exactly the stages that run it (tests/test_dvc_wiring.py requires equality).

    python -m golf.wiring          # rewrite the source deps of every stage in ./dvc.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from golf.compress.bundle import closure

ROOTS = ("golf", "stages")


def stage_sources(stage: str, root: Path) -> list[str]:
    """The repo-relative source files stage `stage` runs, sorted."""
    modules = closure(f"stages.{stage}", roots=ROOTS)
    if "golf.compress.bundle" in modules:
        modules |= closure()
    return sorted(p.resolve().relative_to(root.resolve()).as_posix() for p in modules.values())


def is_source(dep: str) -> bool:
    return dep.split("/")[0] in ROOTS


def rewrite(dvc_yaml: Path, stages: list[str], root: Path | None = None) -> list[str]:
    """Replace each stage's source deps in place (other deps, order and comments kept); the changed stages.
    `root` is the repo whose golf/ and stages/ are imported (default: the file's folder)."""
    root = root or dvc_yaml.parent
    lines = dvc_yaml.read_text(encoding="utf-8").splitlines(keepends=True)
    out, stage, in_deps, changed = [], None, False, []
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and stripped[:-1] in stages:
            stage, in_deps = stripped[:-1], False
        elif stage and indent == 4 and stripped == "deps:":
            in_deps = True
            out.append(line)
            old = [ln for ln in _deps_block(lines, len(out)) if is_source(ln)]
            new = stage_sources(stage, root)
            if old != new:
                changed.append(stage)
            continue
        elif in_deps and not (indent == 6 and stripped.startswith("- ")):
            in_deps = False
            out += [f"      - {d}\n" for d in stage_sources(stage, root)]
        if in_deps and is_source(stripped[2:]):
            continue
        out.append(line)
    dvc_yaml.write_text("".join(out), encoding="utf-8")
    return changed


def _deps_block(lines: list[str], start: int) -> list[str]:
    deps = []
    for line in lines[start:]:
        s = line.strip()
        if not (len(line) - len(line.lstrip()) == 6 and s.startswith("- ")):
            break
        deps.append(s[2:])
    return deps


def main() -> None:
    from stages.cli import STAGES

    changed = rewrite(Path("dvc.yaml"), STAGES)
    print(f"dvc.yaml: source deps rewritten for {', '.join(changed) or 'no stage (already exact)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
