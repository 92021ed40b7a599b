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


# Writes are split by what the store already holds: the writer reads the batch's existing
# nodes, creates the new ones, updates only those whose values differ and leaves the rest
# untouched, so re-running the same input changes nothing (provenance stamps included) and
# costs only reads. A concurrent writer creating the same key makes CREATE fail on the
# uniqueness constraint; the writer then retries the batch, which re-reads and updates.


def existing_nodes(label: str, key: str) -> str:
    """For those ``$keys`` that exist, the stored values of the properties in ``$names``.

    Only the compared values travel back (not whole property maps with their provenance
    timestamps): decoding results is the largest cost of a re-run.
    """
    return (
        "UNWIND $keys AS key\n"
        f"MATCH (x:{ident(label)} {{{ident(key)}: key}})\n"
        "RETURN key, [name IN $names | x[name]] AS stored"
    )


def create_nodes(label: str, key: str) -> str:
    """Create a batch of ``$rows`` ({key, props, origin}) known not to exist yet."""
    return (
        "UNWIND $rows AS row\n"
        f"CREATE (x:{ident(label)} {{{ident(key)}: row.key}})\n"
        "SET x += row.origin, x += row.props, "
        "x.ingested_at = $now, x.updated_at = $now, x.ingest_run = $run"
    )


def update_nodes(label: str, key: str) -> str:
    """Set new values on existing nodes and stamp the run that changed them."""
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (x:{ident(label)} {{{ident(key)}: row.key}})\n"
        "SET x += row.props, x.updated_at = $now, x.ingest_run = $run"
    )


def relationship_state(
    start_label: str, start_key: str, rel_type: str, end_label: str, end_key: str
) -> str:
    """For each of ``$rows`` ({position, start, end}): missing endpoints, and whether the
    relationship exists with the stored values of the properties in ``$names``."""
    return (
        "UNWIND $rows AS row\n"
        f"OPTIONAL MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"OPTIONAL MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"OPTIONAL MATCH (a)-[x:{ident(rel_type)}]->(b)\n"
        "RETURN row.position AS position, a IS NULL AS start_missing, b IS NULL AS end_missing, "
        "x IS NOT NULL AS exists, [name IN $names | x[name]] AS stored"
    )


def merge_relationships(
    start_label: str, start_key: str, rel_type: str, end_label: str, end_key: str
) -> str:
    """MERGE one relationship of a type per (start, end) pair and set its new values.

    MERGE rather than CREATE: relationships have no uniqueness constraint to stop two
    concurrent writers from creating the same one twice.
    """
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"MERGE (a)-[x:{ident(rel_type)}]->(b)\n"
        "ON CREATE SET x.ingested_at = $now, x += row.origin\n"
        "SET x += row.props, x.updated_at = $now, x.ingest_run = $run"
    )


def missing_keys(label: str, key: str) -> str:
    """Those of ``$keys`` that name no node of the label."""
    return (
        "UNWIND $keys AS key\n"
        f"OPTIONAL MATCH (x:{ident(label)} {{{ident(key)}: key}})\n"
        "WITH key, x WHERE x IS NULL\n"
        "RETURN key"
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
