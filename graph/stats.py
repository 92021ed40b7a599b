"""Counts of what the graph holds, for `opsgraph stats` and the demo's summary."""

from __future__ import annotations

from dataclasses import dataclass

from . import queries
from .store import Store


@dataclass(frozen=True)
class GraphStats:
    nodes: dict[str, int]
    relationships: dict[str, int]
    unresolved: dict[str, int]  # nodes only other records name (no master record, no alias)

    @property
    def total_nodes(self) -> int:
        return sum(self.nodes.values())

    @property
    def total_relationships(self) -> int:
        return sum(self.relationships.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "relationships": self.relationships,
            "unresolved": self.unresolved,
            "total_nodes": self.total_nodes,
            "total_relationships": self.total_relationships,
        }


def deviation_summary(store: Store) -> dict[str, dict[str, int]]:
    """Deviation counts by type and severity: the first thing to look at after a load."""
    summary: dict[str, dict[str, int]] = {}
    for row in store.read(queries.DEVIATIONS_BY_TYPE):
        summary.setdefault(row["type"], {})[row["severity"]] = row["count"]
    return dict(sorted(summary.items()))


def graph_stats(store: Store) -> GraphStats:
    """Node counts by label (and how many of them are unresolved stubs) and relationship
    counts by type, sorted by name."""
    nodes = {r["label"]: r["count"] for r in store.read(queries.COUNT_NODES_BY_LABEL)}
    rels = {r["type"]: r["count"] for r in store.read(queries.COUNT_RELATIONSHIPS_BY_TYPE)}
    stubs = {r["label"]: r["count"] for r in store.read(queries.COUNT_UNRESOLVED_BY_LABEL)}
    return GraphStats(
        dict(sorted(nodes.items())), dict(sorted(rels.items())), dict(sorted(stubs.items()))
    )
