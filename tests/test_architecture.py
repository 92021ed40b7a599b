"""The import rules docs/architecture.md states: ingest -> graph store <- analyses <- api.

schema imports nothing of opsgraph; the store modules of graph/ import only schema and each
other; the analyses of graph/ import schema, the store and each other; ingest imports schema
and the store; api may import everything. A module added to graph/ must be placed in one of
the two groups here (and in the page's table).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"schema": "schema", "graph": "graph", "ingest": "ingest", "api": "api"}
STORE = {
    "settings", "embedded", "store", "queries", "writer", "constraints", "stats", "identity",
    "read", "analyst",
}  # fmt: skip
ANALYSES = {"rca", "risk", "memory", "decisions", "workflows"}


def _group(module: str) -> str:
    """'schema', 'store', 'analyses', 'ingest' or 'api' for a dotted opsgraph module."""
    parts = module.split(".")
    if parts[1] != "graph":
        return parts[1]
    if len(parts) == 2:
        return "store"  # the package itself holds nothing
    if parts[2] in STORE:
        return "store"
    if parts[2] in ANALYSES:
        return "analyses"
    raise AssertionError(f"{module}: place it in STORE or ANALYSES (and docs/architecture.md)")


def _imports(path: Path, package: str) -> set[str]:
    """The opsgraph modules a file imports, relative imports resolved."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("opsgraph."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("opsgraph."):
                continue
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if module == "opsgraph.graph")
    return found


ALLOWED = {
    "schema": {"schema"},
    "store": {"schema", "store"},
    "analyses": {"schema", "store", "analyses"},
    "ingest": {"schema", "store", "ingest"},
    "api": {"schema", "store", "analyses", "ingest", "api"},
}


def test_each_package_imports_only_what_the_architecture_allows() -> None:
    broken = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            module = "opsgraph." + ".".join(relative.parts)
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            if path.name == "__init__.py":
                module = package = module.removesuffix(".__init__")
            group = _group(module)
            for imported in _imports(path, package):
                if imported == "opsgraph.graph":
                    continue  # the names imported from it are checked one by one
                if _group(imported) not in ALLOWED[group]:
                    broken.append(f"{module} ({group}) imports {imported} ({_group(imported)})")
    assert not broken, "\n".join(broken)


def test_every_graph_module_is_placed() -> None:
    modules = {p.stem for p in (ROOT / "graph").glob("*.py")} - {"__init__"}
    assert modules == STORE | ANALYSES, "place new graph/ modules in STORE or ANALYSES"
