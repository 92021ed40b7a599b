"""Installs the uniqueness constraints and indexes the schema classes declare.

Written with ``IF NOT EXISTS`` so applying twice is harmless on Neo4j and the embedded store
alike; neomodel's own ``install_all_labels`` would also pick up any StructuredNode that
happens to be imported in the process, which is not what a deploy step should do.
"""

from __future__ import annotations

from dataclasses import dataclass

from opsgraph.schema import node_specs

from . import queries
from .store import Store


@dataclass(frozen=True)
class SchemaStatement:
    kind: str
    label: str
    property: str
    cypher: str


def schema_statements() -> list[SchemaStatement]:
    """One unique constraint per business key and one index per indexed property."""
    statements = []
    for spec in node_specs().values():
        statements.append(
            SchemaStatement(
                "unique", spec.label, spec.key, queries.unique_constraint(spec.label, spec.key)
            )
        )
        for name, prop in spec.cls.defined_properties(aliases=False, rels=False).items():
            if prop.index and not prop.unique_index:
                statements.append(
                    SchemaStatement("index", spec.label, name, queries.node_index(spec.label, name))
                )
    return statements


def apply_schema(store: Store) -> list[SchemaStatement]:
    """Create every constraint and index the model declares (idempotent)."""
    statements = schema_statements()
    for statement in statements:
        store.write(statement.cypher)
    return statements
