"""The package's shape, read from its source: every declared dependency is used, the import graph has no cycles
and runs one way (from the CLI down to the records), and imports sit inside functions only to keep an optional
heavy dependency off the import path."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sdlens"

# Distribution name -> import name, where they differ.
IMPORT_NAME = {"math-verify": "math_verify", "pyyaml": "yaml"}
# Declared for tooling, or imported by another dependency on sdlens' behalf (transformers reads the embedded
# model's GGUF file with gguf), not by the library itself.
NOT_IMPORTED = {"pytest", "hypothesis", "ruff", "gguf"}
# Third-party modules whose import cost or optionality justifies importing them (or a sdlens module that imports
# them at top level) inside a function.
HEAVY = {
    "accelerate", "datasets", "deepspeed", "gguf", "huggingface_hub", "jinja2", "math_verify", "matplotlib", "numpy",
    "orjson", "pyarrow", "safetensors", "tokenizers", "torch", "transformers", "trl", "vllm", "yaml",
}  # fmt: skip
# Imports inside functions of modules that are not heavy, and why they stay there.
LAZY_ON_PURPOSE = {
    # a registry that loads only the backend asked for (importing each at the package's top would be a cycle:
    # every backend imports sdlens.generation.base through the package)
    ("sdlens.generation", "sdlens.generation.hf"),
    ("sdlens.generation", "sdlens.generation.vllm_backend"),
    ("sdlens.generation", "sdlens.generation.openai_backend"),
    # sdlens.grading's __init__ imports audit, and base through the package: at audit's top a partial package
    ("sdlens.grading.audit", "sdlens.grading.base"),
    # the runner is light at its top (torch / TRL inside its functions) only as long as nobody adds a heavy import
    # there; `sdlens train --help` and the experiments' imports must not depend on that
    ("sdlens.cli.train", "sdlens.train.runner"),
    ("sdlens.experiments.guided_sft", "sdlens.train.runner"),
    # `sdlens analyze FILE` starts counting before the command's own imports (sdlens.cli._early_scan): the CLI's
    # entry point imports the help table, the argparse path and the config only when the arguments ask for them
    ("sdlens.cli", "sdlens.cli.commands"),
    ("sdlens.cli", "sdlens.cli.fastpath"),
    ("sdlens.cli", "sdlens.epistemic.config"),
}
# Layers, bottom first: a module may import from its own layer or below, never above. The package root is the
# public facade (it re-exports lazily) and counts as the top.
LAYERS = [
    {"errors", "imports", "fields", "prompts", "runfolder", "schema", "data"},
    {"io", "stats", "epistemic", "grading", "grading_config", "metrics", "benchmarks", "models"},
    {"generation", "eval_config", "evaluate", "losses", "train", "mitigations", "monitor"},
    {"experiments", "lab", "report", "behaviour", "examples", "demo"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    for f in PACKAGE.rglob("*.c"):  # compiled extensions are modules too
        mods[".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)] = f
    return mods


def _top_level_nodes(tree: ast.Module, runtime: bool = False) -> set[int]:
    """Statements that run at import time: the module body, the bodies of its top-level ``if`` / ``try``, and a
    package's ``__getattr__`` (PEP 562: ``from package import name`` runs it, so what it imports is imported).
    ``runtime``: without the bodies of ``if TYPE_CHECKING:``, which only a type checker runs."""
    out: set[int] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            out.add(id(node))
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                visit(node.body)
            if runtime and isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                continue
            if isinstance(node, ast.If | ast.Try):
                for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                    visit(block)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return out


def _lazy_tables(mods: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Each lazily exporting package's table (name -> module, :func:`sdlens.imports.lazy_attributes`): ``from
    package import name`` imports that module, which the package's source does not show."""
    tables = {}
    for mod, path in mods.items():
        if path.name == "__init__.py" and "lazy_attributes(" in path.read_text(encoding="utf-8"):
            tables[mod] = dict(importlib.import_module(mod)._LAZY)
    return tables


def _imports(mods: dict[str, Path], runtime: bool = False):
    """``(importer, imported, nested, line)`` for every sdlens import, and each module's top-level third-party
    imports. ``runtime``: without the imports under ``if TYPE_CHECKING:``, which never run."""
    edges, external = [], defaultdict(set)
    lazy = _lazy_tables(mods)
    for mod, path in mods.items():
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = _top_level_nodes(tree, runtime)
        type_only = _top_level_nodes(tree) - top
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = mod.split(".")
                    if path.name != "__init__.py":
                        parts = parts[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                targets = [
                    lazy.get(base, {}).get(a.name) or (f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
                    for a in node.names
                ]
            else:
                continue
            nested = id(node) not in top
            if runtime and nested and id(node) in type_only:
                continue
            for target in targets:
                if target.split(".")[0] != "sdlens":
                    if not nested:
                        external[mod].add(target.split(".")[0])
                    continue
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != mod:
                    edges.append((mod, target, nested, node.lineno))
    return edges, external


def _all_third_party_imports() -> set[str]:
    names = set()
    for f in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_imported() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [d for d in extra if not d.startswith("sdlens[")]
    names = {re.split(r"[<>=!\[; ]", d, maxsplit=1)[0].lower() for d in declared}
    imported = _all_third_party_imports()
    unused = sorted(n for n in names - NOT_IMPORTED if IMPORT_NAME.get(n, n.replace("-", "_")) not in imported)
    assert unused == [], f"declared but never imported in src/: {unused}"


def test_no_import_cycles() -> None:
    mods = _modules()
    edges, _ = _imports(mods)
    graph = defaultdict(set)
    for a, b, _, _ in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(mods):
        if v not in index:
            strongconnect(v)
    assert cycles == []


def _layer(mod: str) -> int:
    top = mod.split(".")[1] if "." in mod else "cli"
    top = "cli" if top.startswith("cli") else top
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_imports_run_down_the_layers() -> None:
    mods = _modules()
    edges, _ = _imports(mods)
    upward = sorted({f"{a}:{line} -> {b}" for a, b, _, line in edges if _layer(b) > _layer(a)})
    assert upward == []


def test_imports_inside_functions_only_for_heavy_dependencies() -> None:
    """An import inside a function hides the graph; it is there only to keep a heavy or optional dependency (or a
    sdlens module that imports one at its top) off the import path."""
    mods = _modules()
    edges, external = _imports(mods, runtime=True)
    top_graph = defaultdict(set)
    for a, b, nested, _ in edges:
        if not nested:
            top_graph[a].add(b)

    def heavy(mod: str) -> bool:
        """Whether importing ``mod`` imports a heavy module: what it imports at its top, transitively, including the
        ``__init__`` of every package above each module on the way (importing a.b.c runs a and a.b's)."""
        seen, todo = set(), [mod]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            if mods[m].suffix == ".c" or external[m] & HEAVY:  # a compiled extension is optional: it may not be built
                return True
            parts = m.split(".")
            todo += [*top_graph[m], *({".".join(parts[:i]) for i in range(2, len(parts))} & set(mods))]
        return False

    lazy = [(a, b, line) for a, b, nested, line in edges if nested and not heavy(b)]
    light = sorted({f"{a}:{line} -> {b}" for a, b, line in lazy if (a, b) not in LAZY_ON_PURPOSE})
    assert light == []
