"""No import cycle among backend modules, counting imports inside functions too.

A cycle hidden in a function still makes two modules depend on each other (the layering
the README draws no longer holds, and moving the import to the top would break the
import); this test reads every module's AST, so it sees imports that never ran.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKEND = REPO / "backend"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The backend module an imported name lives in (`backend.data.load_corpus` -> `backend.data`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the backend modules it imports anywhere in its file (TYPE_CHECKING excluded)."""
    files = {_module_name(p): p for p in BACKEND.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skipped = {id(n) for node in ast.walk(tree) if _is_type_checking_block(node) for n in ast.walk(node)}
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from backend.jobs import queue` names the submodule; `from backend.data import
                # load_corpus` runs the package's __init__, which is the edge then
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                found = _resolve(target, modules)
                if found and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # backend.data.sources imports the offline generator inside load_corpus, not at the top
    assert "backend.data.offline" in graph["backend.data.sources"]
    assert "backend.errors" in graph["backend.data.sources"]


def test_find_cycles_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_backend_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles among backend modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def unexplained_lazy_imports(source: str) -> list[int]:
    """Lines of imports inside a function that carry no `# lazy: <reason>` comment.

    An import hidden in a function is a dependency nobody sees at the top of the file; it is
    worth it only for a stated reason (torch kept out of the CLI and the light pages, an
    optional extra, a cycle), and the comment says which, so the next reader need not guess.
    """
    tree = ast.parse(source)
    reasons = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
               if tok.type == tokenize.COMMENT and tok.string.removeprefix("#").strip().startswith("lazy:")
               and tok.string.split("lazy:", 1)[1].strip()}
    lines = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not reasons & set(
                    range(node.lineno, (node.end_lineno or node.lineno) + 1)):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_unexplained_lazy_imports_finds_them():
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    import torch  # lazy: torch, keeps the CLI light\n"
        "    import yaml  # lazy:\n"
        "    from a import (  # lazy: a cycle a -> b\n"
        "        b,\n"
        "    )\n"
        "    def g():\n"
        "        from c import d  # imported here\n"
    )
    assert unexplained_lazy_imports(source) == [3, 5, 10]


def test_every_function_level_import_says_why():
    missing = [f"{path.relative_to(REPO)}:{line}"
               for path in sorted(BACKEND.rglob("*.py"))
               for line in unexplained_lazy_imports(path.read_text(encoding="utf-8"))]
    assert not missing, ("imports inside functions without a `# lazy: <reason>` comment (move them to the "
                         "top of the module, or say why they cannot be there): " + ", ".join(missing))
