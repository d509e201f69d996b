"""The code bytes: a self-contained, self-extracting `train_gpt.py`.

The script carries, as source, every golf module the artifact runner reaches by import (found
with `ast`, lazy imports included), each minified (docstrings out; `ast.unparse` drops the
comments). A ten-line in-memory importer serves them under their own names, so the modules run
exactly as they do in the library: no flattening, no name clashes between modules. The whole
is LZMA-compressed, base85-encoded and wrapped in a one-line exec stub, as the records ship it.
`len(build_script())` is what counts against the 16,000,000-byte cap.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import lzma
from pathlib import Path

from golf.errors import GolfError

ENTRY_MODULE = "golf.artifact.runner"
STUB = "import lzma,base64;exec(lzma.decompress(base64.b85decode({payload!r})))\n"
LOADER = """import sys,importlib.abc,importlib.util
S={sources!r}
P={packages!r}
class _GolfImporter(importlib.abc.MetaPathFinder,importlib.abc.Loader):
 def find_spec(self,name,path,target=None):
  return importlib.util.spec_from_loader(name,self,is_package=name in P) if name in S else None
 def create_module(self,spec):return None
 def exec_module(self,m):exec(compile(S[m.__name__],'<'+m.__name__+'>','exec'),m.__dict__)
sys.meta_path.insert(0,_GolfImporter())
if __name__=='__main__':
 from {entry} import run_artifact
 run_artifact()
"""


def _origin(module: str) -> Path | None:
    """The source file of a dotted module name, found on disk without running any module below
    the top package: find_spec("a.b.c") would import a.b (and "golf.artifact.model.moe.MoEMLP" would run
    moe.py, whose torch.compiler use imports torch._dynamo: seconds at every compress)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin)
    if not rest:
        return origin
    if origin.name != "__init__.py":
        return None  # a plain module has no submodules
    path = origin.parent.joinpath(*rest)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(tree: ast.AST, package: str, roots: tuple[str, ...]) -> set[str]:
    """Modules under `roots` named by imports anywhere in `tree` (parents too: their __init__ runs)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] not in roots:
                continue
            for i in range(1, len(parts) + 1):
                if _origin(".".join(parts[:i])) is not None:
                    found.add(".".join(parts[:i]))
    return found


def closure(entry: str = ENTRY_MODULE, roots: tuple[str, ...] = ("golf",)) -> dict[str, Path]:
    """Every module under `roots` that `entry` reaches by import, lazy imports included, with its
    source file (the bundle's contents; also what a stage runs, for the DVC wiring test)."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _origin(module)
        if path is None:
            raise GolfError(f"bundle: module {module} not found")
        seen[module] = path
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo += sorted(_imports(tree, _package_of(module, path), roots) - seen.keys())
    return dict(sorted(seen.items()))


def minify(source: str) -> str:
    """The same code without docstrings (module, class, function, dataclass fields) or comments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = [s for i, s in enumerate(node.body)
                    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                            and isinstance(s.value.value, str) and (i == 0 or isinstance(node, ast.ClassDef)))]
            node.body = body or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def build_source(entry: str = ENTRY_MODULE) -> str:
    """The script before compression: the module sources and the importer that serves them."""
    modules = closure(entry)
    sources = {m: minify(p.read_text(encoding="utf-8")) for m, p in modules.items()}
    packages = sorted(m for m, p in modules.items() if p.name == "__init__.py")
    return LOADER.format(sources=sources, packages=packages, entry=entry)


def wrap(source: str) -> str:
    """The self-extracting one-liner."""
    packed = lzma.compress(source.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    return STUB.format(payload=base64.b85encode(packed).decode("ascii"))


def build_script(entry: str = ENTRY_MODULE) -> str:
    """The self-contained train_gpt.py; its UTF-8 length is the counted code bytes."""
    return wrap(build_source(entry))


def code_bytes(script: str) -> int:
    return len(script.encode("utf-8"))
