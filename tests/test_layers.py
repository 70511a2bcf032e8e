"""The package map holds: no import circles between modules, no import that points up a layer.

Imports are read from the source (module-level, lazy and type-only imports alike), so an upward
import hidden inside a function or behind `TYPE_CHECKING` fails here too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

from convssl.layers import LAYERS, layer_of, may_import

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convssl"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every convssl module name an import statement in `path` mentions (relative ones resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m == "convssl" or m.startswith("convssl.")}


def import_graph(package: Path = PACKAGE) -> nx.DiGraph:
    """Module -> module edges, each import resolved to the longest existing module name.

    A package's `__init__` that only re-exports is not a node of its own: an import of
    `convssl.models` counts as an import of the modules that `__init__` pulls in."""
    modules = {module_name(p, package.parent): p for p in package.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for imported in imported_names(path, package.parent):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                graph.add_edge(name, imported)
    return graph


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def test_no_module_imports_another_in_a_circle():
    graph = import_graph()
    # A package's __init__ may re-export its own modules; the circle would be a name, not code.
    for node in [n for n in graph if (PACKAGE / Path(*n.split(".")[1:]) / "__init__.py").exists()]:
        graph.remove_edges_from([(node, m) for m in list(graph.successors(node)) if m.startswith(node + ".")])
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def upward_imports(graph: nx.DiGraph) -> list[str]:
    return sorted(
        f"{a} -> {b} (layer {layer_of(part(a))} imports layer {layer_of(part(b))})"
        for a, b in graph.edges
        if part(a) != "__init__" and part(b) != "__init__" and not may_import(part(a), part(b))
    )


def test_no_part_imports_a_part_above_it():
    upward = upward_imports(import_graph())
    assert not upward, "imports against the map in convssl/layers.py:\n" + "\n".join(upward)


def test_every_part_of_the_package_is_on_the_map():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    for name in parts:
        layer_of(name)  # raises, naming the part, when it is missing


def test_docs_show_the_same_map():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer, parts, _ in LAYERS:
        row = re.search(rf"^\| {layer} \| ([^|]+) \|", text, flags=re.M)
        assert row, f"docs/architecture.md has no row for layer {layer}"
        assert set(re.findall(r"`([\w_]+)`", row.group(1))) == set(parts), f"layer {layer} differs in the docs"


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    """The walker itself: an import inside a function, relative or absolute, is still an edge."""
    package = tmp_path / "convssl"
    for folder in ("data", "serve"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("", encoding="utf-8")
    (package / "serve" / "bot.py").write_text("from ..data import rows\n", encoding="utf-8")
    (package / "data" / "rows.py").write_text("def f():\n    from convssl.serve.bot import Brain\n", encoding="utf-8")
    graph = import_graph(package)
    assert {("convssl.data.rows", "convssl.serve.bot"), ("convssl.serve.bot", "convssl.data.rows")} <= set(graph.edges)
    assert upward_imports(graph) == ["convssl.data.rows -> convssl.serve.bot (layer 2 imports layer 7)"]
