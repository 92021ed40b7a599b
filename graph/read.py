"""Plain read services over the model, shared by the GraphQL API and scripts: nodes by key,
neighbours along a declared relationship (batched for DataLoaders) and keyset pages.

The reads the API's resolvers make are data (``query_*`` builders returning a ``Read``):
its Cypher, parameters and the shaping of the records, so one definition runs on the
blocking driver (``Read.run(store)``) and on the API server's event loop without a thread
(``Read.run_async`` on an ``AsyncStore``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from opsgraph.schema import NodeSpec, RelSpec, SchemaError, node_spec, node_specs, rel_specs
from opsgraph.schema.base import as_utc

from . import queries
from .store import AsyncStore, Store

HIDDEN = frozenset({"embedding"})  # too big to return; search uses it

T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    """One read query as data: run it on either driver and get the shaped result."""

    cypher: str
    params: dict[str, Any]
    shape: Callable[[list[dict[str, Any]]], T]

    def run(self, store: Store) -> T:
        return self.shape(store.read(self.cypher, **self.params))

    async def run_async(self, store: AsyncStore) -> T:
        return self.shape(await store.read(self.cypher, **self.params))


def _fields(spec: NodeSpec) -> tuple[list[str], list[str]]:
    """The properties a read returns (the model's, minus hidden ones) and which are times."""
    fields = [name for name in spec.properties if name not in HIDDEN]
    return fields, [name for name in fields if name in spec.temporal]


def query_nodes_by_key(label: str, keys: Sequence[str]) -> Read[dict[str, dict[str, Any]]]:
    """Properties of the nodes with these business keys (missing keys are absent);
    timestamps come as ISO text (``as_utc`` reads both)."""
    spec = node_spec(label)
    query = queries.nodes_by_key(spec.label, spec.key, *_fields(spec))
    return Read(query, {"keys": list(keys)}, lambda rows: {r["key"]: r["props"] for r in rows})


def nodes_by_key(store: Store, label: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    return query_nodes_by_key(label, keys).run(store)


def query_neighbours(
    spec: RelSpec, keys: Sequence[str], outgoing: bool = True
) -> Read[dict[str, list[dict[str, Any]]]]:
    """For each key on one side of ``spec``, the nodes at the other end, in key order."""
    plain = _neighbours(spec, keys, outgoing, links=False)

    def shape(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        return {key: [props for props, _ in found] for key, found in plain.shape(rows).items()}

    return Read(plain.cypher, plain.params, shape)


def query_links(
    spec: RelSpec, keys: Sequence[str], outgoing: bool = True
) -> Read[dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]]:
    """Like ``query_neighbours``, each node with the properties of the relationship that
    leads to it (a person's skill level, the quantity of a lot an operation consumed)."""
    return _neighbours(spec, keys, outgoing, links=True)


def _neighbours(
    spec: RelSpec, keys: Sequence[str], outgoing: bool, links: bool
) -> Read[dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]]:
    other = spec.end if outgoing else spec.start
    link_fields = list(spec.properties)
    query = queries.neighbours(
        spec.start.label,
        spec.start.key,
        spec.type,
        spec.end.label,
        spec.end.key,
        outgoing,
        *_fields(other),
        links=(link_fields, [n for n in link_fields if n in spec.temporal]) if links else None,
    )

    def shape(rows: list[dict[str, Any]]) -> dict[str, list[tuple[dict, dict]]]:
        found: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        for row in rows:
            found[row["key"]].append((row["props"], row.get("link") or {}))
        for pairs in found.values():
            pairs.sort(key=lambda pair: str(pair[0].get(other.key)))
        return found

    return Read(query, {"keys": list(keys)}, shape)


def query_page(
    label: str,
    first: int,
    after: str | None = None,
    equals: Mapping[str, Any] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Read[tuple[list[dict[str, Any]], bool]]:
    """A page of nodes ordered by business key after ``after``; True if more follow."""
    spec: NodeSpec = node_spec(label)
    equals = {k: v for k, v in (equals or {}).items() if v is not None}
    unknown = set(equals) - set(spec.properties)
    if unknown:
        raise SchemaError(f"{spec.label} has no properties {sorted(unknown)} to filter on")
    time_property = _time_property(spec) if since or until else None
    query = queries.page(spec.label, spec.key, sorted(equals), time_property, *_fields(spec))
    params = {
        "after": after,
        "limit": first + 1,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        **{f"f_{name}": value for name, value in equals.items()},
    }
    return Read(query, params, lambda rows: ([r["props"] for r in rows[:first]], len(rows) > first))


def deviations_since(store: Store, since: datetime) -> list[tuple[dict[str, Any], datetime]]:
    """Deviations first written after ``since`` (oldest first), with when they were written."""
    query = queries.deviations_since(*_fields(node_spec("Deviation")))
    rows = store.read(query, since=since.isoformat())
    return [(r["props"], as_utc(r["at"])) for r in rows]


# Labels a stored cause may have: the ends of the Deviation's inferred-cause relationships.
CAUSE_LABELS = sorted(
    {rel.end.label for rel in rel_specs() if rel.type in ("CAUSED_BY", "CONTRIBUTED_TO")}
)
_STORED_CAUSES = queries.stored_causes(
    {label: (node_spec(label).key, *_fields(node_spec(label))) for label in CAUSE_LABELS}
)


def query_stored_causes(keys: Sequence[str]) -> Read[dict[str, list[dict[str, Any]]]]:
    """For each deviation, the causes its last analysis stored (``opsgraph rca``, the
    ``runRootCauseAnalysis`` mutation), best first: rank, score, explanation and evidence
    paths, and the cause node's properties (``props``), read back without analysing again.
    A deviation never analysed has none."""

    def shape(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            cause = dict(row)
            cause["evidence"] = json.loads(row["evidence"]) if row["evidence"] else []
            found[cause.pop("key")].append(cause)
        return found

    return Read(_STORED_CAUSES, {"keys": list(keys)}, shape)


# Owners of a time window -> event kinds -> the label of those events.
WINDOWS = {
    owner: {kind: label for kind, (_, label, _) in queries.WINDOW_EVENTS.items()}
    for owner in queries.WINDOW_OWNERS
}


def query_events_during(
    owner: str, kind: str, keys: Sequence[str]
) -> Read[dict[str, list[dict[str, Any]]]]:
    """For each operation (or order), the alarms or states of its machine that overlap the
    time it ran (actual times, else planned), oldest first: "what was the machine doing
    while this order was on it", without the client knowing the window beforehand."""
    if owner not in queries.WINDOW_OWNERS or kind not in queries.WINDOW_EVENTS:
        raise SchemaError(f"no {kind} window for {owner}")
    spec = node_spec(queries.WINDOW_EVENTS[kind][1])
    time_property = _time_property(spec)

    def shape(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            found[row["key"]].append(row["props"])
        for events in found.values():
            events.sort(key=lambda p: (as_utc(p.get(time_property)), str(p.get(spec.key))))
        return found

    query = queries.events_during(owner, kind, *_fields(spec))
    return Read(query, {"keys": list(keys)}, shape)


# When an event happened, in order of preference: what really happened before what was planned.
EVENT_TIMES = (
    "actual_start",
    "start",
    "raised_at",
    "measured_at",
    "checked_at",
    "decided_at",
    "written_at",
    "started_at",
    "posted_at",
    "recorded_at",
    "created_at",
    "scheduled_at",
    "planned_start",
)
SUMMARY_FIELDS = (
    "description",
    "summary",
    "message",
    "title",
    "text",
    "state",
    "code",
    "characteristic",
    "parameter",
    "result",
    "status",
)
TIMELINE_CAP = 20_000


def timeline(
    store: Store,
    label: str,
    key: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """What happened around one entity — its states, alarms, readings, maintenance,
    changeovers, operations, deviations, decisions — in time order within [since, until]."""
    spec = node_spec(label)
    events = []
    for row in store.read(queries.timeline(spec.label, spec.key), key=key, cap=TIMELINE_CAP):
        other = node_specs().get(row["label"])
        if other is None:
            continue
        props = row["props"]
        at = next((as_utc(props[t]) for t in EVENT_TIMES if props.get(t) is not None), None)
        if at is None or (since and at < since) or (until and at > until):
            continue
        summary = next((str(props[f]) for f in SUMMARY_FIELDS if props.get(f) is not None), "")
        if row["label"] == "ProcessReading" and props.get("value") is not None:
            summary = f"{props.get('parameter')} = {props['value']:g}"
        events.append(
            {
                "at": at,
                "label": row["label"],
                "key": str(props.get(other.key)),
                "relationship": row["type"],
                "summary": summary,
            }
        )
    events.sort(key=lambda e: (e["at"], e["label"], e["key"]))
    return events[:limit]


def _time_property(spec: NodeSpec) -> str:
    """The timestamp a label is filtered by in time: its first indexed one."""
    for name in spec.properties:
        prop = spec.properties[name]
        if name in spec.temporal and getattr(prop, "index", False):
            return name
    if spec.temporal:
        return sorted(spec.temporal)[0]
    raise SchemaError(f"{spec.label} has no timestamp to filter a time range on")
