"""All Cypher that opsgraph runs, as named queries in one place.

Values always travel as parameters. Labels, relationship types and property names cannot be
parameters in Cypher, so they come only from the schema classes and are checked and quoted
here before they touch a query string.
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """Quote a schema identifier after checking it is a plain name (defence in depth)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"refusing to place {name!r} in a query: not a plain identifier")
    return f"`{name}`"


# Stamps provenance only when something really changed, so re-running the same input leaves
# the graph exactly as it was (idempotent ingest). A new node or relationship has no
# updated_at yet, which marks it as changed even when it carries no properties.
_STAMP_CHANGES = """
WITH x, row, [k IN keys(row.props) WHERE x[k] IS NULL OR x[k] <> row.props[k]] AS changed
SET x += row.props
WITH x, size(changed) > 0 OR x.updated_at IS NULL AS is_changed
SET x.updated_at = CASE WHEN is_changed THEN $now ELSE x.updated_at END,
    x.ingest_run = CASE WHEN is_changed THEN $run ELSE x.ingest_run END
RETURN count(CASE WHEN is_changed THEN 1 END) AS changed
"""


def upsert_nodes(label: str, key: str) -> str:
    """MERGE a batch of ``$rows`` ({key, props}) on the label's business key."""
    return (
        "UNWIND $rows AS row\n"
        f"MERGE (x:{ident(label)} {{{ident(key)}: row.key}})\n"
        "ON CREATE SET x.ingested_at = $now" + _STAMP_CHANGES
    )


def missing_endpoints(start_label: str, start_key: str, end_label: str, end_key: str) -> str:
    """Rows of ``$rows`` ({position, start, end}) whose start or end node does not exist."""
    return (
        "UNWIND $rows AS row\n"
        f"OPTIONAL MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"OPTIONAL MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        "WITH row, a, b WHERE a IS NULL OR b IS NULL\n"
        "RETURN row.position AS position, a IS NULL AS start_missing, b IS NULL AS end_missing"
    )


def upsert_relationships(
    start_label: str, start_key: str, rel_type: str, end_label: str, end_key: str
) -> str:
    """MERGE one relationship of a type per (start, end) pair for a batch of ``$rows``."""
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"MERGE (a)-[x:{ident(rel_type)}]->(b)\n"
        "ON CREATE SET x.ingested_at = $now" + _STAMP_CHANGES
    )


def unique_constraint(label: str, key: str) -> str:
    return (
        f"CREATE CONSTRAINT {ident(f'opsgraph_{label}_{key}_unique')} IF NOT EXISTS "
        f"FOR (n:{ident(label)}) REQUIRE n.{ident(key)} IS UNIQUE"
    )


def node_index(label: str, prop: str) -> str:
    return (
        f"CREATE INDEX {ident(f'opsgraph_{label}_{prop}')} IF NOT EXISTS "
        f"FOR (n:{ident(label)}) ON (n.{ident(prop)})"
    )


COUNT_NODES_BY_LABEL = "MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS count"
COUNT_RELATIONSHIPS_BY_TYPE = "MATCH ()-[r]->() RETURN type(r) AS type, count(*) AS count"
SHOW_CONSTRAINTS = "SHOW CONSTRAINTS"
PING = "RETURN 1 AS ok"
