"""The code bytes: a self-contained, self-extracting `train_gpt.py`.

The listed golf modules are flattened into one script in dependency order: intra-golf imports are
removed (the names they bind are already defined earlier in the same file; `import ... as x` and
module imports become small aliases), docstrings go (ast), comments go (ast.unparse), and the
result is LZMA-compressed, base85-encoded and wrapped in a one-line exec stub, as the records
ship it. `len(build_script())` is what counts against the 16,000,000-byte cap.

BUNDLE_MODULES is the list the lead finalises: an entry is a module, or "module:a,b" to keep only
those top-level definitions (e.g. qmodel's dequantize without the quantizer and its imports).
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import lzma
from pathlib import Path

from golf.errors import GolfError

BUNDLE_MODULES: tuple[str, ...] = (
    "golf.errors",
    "golf.compress.codecs",
    "golf.compress.shuffle",
    "golf.compress.layout",
    "golf.compress.container:MAGIC,VERSION,FLAG_TRANSPOSED,_ENTRY,Section,read_table,decode",
    "golf.quant.gptq:FP16_TINY,clip_range,dequantize_rows",
    "golf.quant.lqer:unpack",
    "golf.quant.qmodel:LQER_KEYS,_dtype,dequantize",
    "golf.model.config",
    "golf.model.attention",
    "golf.model.layers",
    "golf.model.gpt",
    "golf.data.shards:MAGIC,VERSION,HEADER_INTS,read_header,read_shard,list_shards,load_split",
    "golf.eval.accounting",
    "golf.eval.sliding",
    "golf.compress.runner",
)
ENTRY = "\nif __name__ == '__main__':\n    run_artifact()\n"
STUB = "import lzma,base64;exec(lzma.decompress(base64.b85decode({payload!r})))\n"


def module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise GolfError(f"bundle: module {module} not found (is it written yet?)")
    return Path(spec.origin).read_text(encoding="utf-8")


def _is_golf(node: ast.ImportFrom | ast.Import) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "golf"
    return any(a.name.split(".")[0] == "golf" for a in node.names)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class _StripGolf(ast.NodeTransformer):
    """Intra-golf imports -> aliases: `from golf.x import a as b` -> `b = a`; a module binding
    (`from golf.quant import gptq`) -> a namespace of the script's globals at that point, so
    `gptq.dequantize_rows` finds the flattened function. `import golf.x` is refused."""

    def __init__(self, module: str) -> None:
        self.module = module

    def _replace(self, node):
        if isinstance(node, ast.Import) and _is_golf(node):
            raise GolfError(f"bundle: {self.module} uses `import {node.names[0].name}`; "
                            "write `from golf.x import name` so the flattened script can bind it")
        if isinstance(node, ast.ImportFrom) and _is_golf(node):
            out = []
            for a in node.names:
                bound = a.asname or a.name
                if node.level == 0 and _is_module(f"{node.module}.{a.name}"):
                    out.append(ast.parse(f"{bound} = __import__('types').SimpleNamespace(**globals())").body[0])
                elif bound != a.name:
                    out.append(ast.parse(f"{bound} = {a.name}").body[0])
            return out or ast.Pass()
        return self.generic_visit(node)

    visit_Import = _replace
    visit_ImportFrom = _replace


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.ClassDef):  # the field docstrings of config dataclasses
            node.body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                        and isinstance(s.value.value, str))] or [ast.Pass()]


def _defined(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    names = set()
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.add(n.id)
    return names


def flatten(entry: str) -> tuple[list[str], str]:
    """(__future__ lines, the module's code without golf imports or docstrings)."""
    module, _, keep = entry.partition(":")
    tree = ast.parse(module_source(module))
    wanted = set(filter(None, keep.split(",")))
    body, future = [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            future.append(ast.unparse(stmt))
            continue
        if wanted and not isinstance(stmt, (ast.Import, ast.ImportFrom)) and not (_defined(stmt) & wanted):
            continue
        body.append(stmt)
    if wanted and (missing := wanted - set().union(*(_defined(s) for s in body))):
        raise GolfError(f"bundle: {module} defines no {', '.join(sorted(missing))}")
    tree.body = body
    tree = _StripGolf(module).visit(tree)
    _strip_docstrings(tree)
    ast.fix_missing_locations(tree)
    return future, ast.unparse(tree)


def build_source(modules: tuple[str, ...] = BUNDLE_MODULES) -> str:
    """The flattened, readable-but-minified script (before compression)."""
    from golf.compress import runner  # noqa: F401  every bundled module must import cleanly first
    futures: list[str] = []
    parts = []
    for entry in modules:
        future, code = flatten(entry)
        futures += [f for f in future if f not in futures]
        parts.append(code)
    entry = ENTRY if any(m.startswith("golf.compress.runner") for m in modules) else "\n"
    return "\n".join(futures + parts) + entry


def wrap(source: str) -> str:
    """The self-extracting one-liner."""
    packed = lzma.compress(source.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    return STUB.format(payload=base64.b85encode(packed).decode("ascii"))


def build_script(modules: tuple[str, ...] = BUNDLE_MODULES) -> str:
    """The self-contained train_gpt.py; its UTF-8 length is the counted code bytes."""
    return wrap(build_source(modules))


def code_bytes(script: str) -> int:
    return len(script.encode("utf-8"))
