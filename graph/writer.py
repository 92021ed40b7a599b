"""Bulk upserts driven by the schema classes: UNWIND batches keyed by business key.

Ingest bypasses neomodel's per-object ``save()`` (about ten times slower) but not the
classes: labels, keys, property names and types all come from them, and each value is
converted by its property's own ``deflate``. Bad rows come back as rejections naming the
record and the reason; the rest of the batch still loads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from neo4j import ManagedTransaction
from neomodel import (
    ArrayProperty,
    BooleanProperty,
    FloatProperty,
    IntegerProperty,
    JSONProperty,
    StringProperty,
)

from opsgraph.schema import MANAGED_PROPERTIES, NodeSpec, RelSpec, node_spec
from opsgraph.schema.base import (
    PROVENANCE_PROPERTIES,
    WRITER_FLAGS,
    UtcDateTimeProperty,
    as_utc,
)

from . import queries
from .store import Rows, Store

DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class Rejection:
    """A record that was not written, with where it came from and why."""

    target: str
    position: int
    reason: str
    record: Any


@dataclass
class UpsertReport:
    """What one upsert call did; reports add up across calls and batches."""

    target: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    batches: int = 0
    seconds: float = 0.0
    rejected: list[Rejection] = field(default_factory=list)
    created_keys: set[str] = field(default_factory=set, repr=False)
    stubbed: int = 0  # nodes created from references only, flagged unresolved

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
            "stubbed": self.stubbed,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
        }


class _Reject(ValueError):
    pass


class _FastPathMiss(Exception):
    """Relationships assumed new could not all be created: redo the batch the careful way."""


def _deflate(target: str, properties: Mapping[str, Any], name: str, value: Any) -> Any:
    if name in MANAGED_PROPERTIES or name in WRITER_FLAGS:
        raise _Reject(f"property {name!r} is set by the writer, not by input")
    prop = properties.get(name)
    if prop is None:
        raise _Reject(f"unknown property {name!r} for {target}")
    if isinstance(value, Mapping | list | tuple | set) and not isinstance(
        prop, ArrayProperty | JSONProperty
    ):
        raise _Reject(f"property {name!r} expects a single value, got {type(value).__name__}")
    try:
        if isinstance(prop, UtcDateTimeProperty):
            return prop.utc(value)  # sent as ISO text, see queries._times
        return prop.deflate(value, rethrow=False)
    except (ValueError, TypeError, OverflowError) as error:
        raise _Reject(f"property {name!r}: {error}") from None


# Values that already have the type a plain property stores pass as they are: running them
# through neomodel's deflate (a validating wrapper) was a fifth of the ingest's Python time.
_NATIVE = {StringProperty: str, FloatProperty: float, IntegerProperty: int, BooleanProperty: bool}
_native_types: dict[str, dict[str, type]] = {}


def _natives(target: str, properties: Mapping[str, Any]) -> dict[str, type]:
    """Per property of a label or relationship type, the value type its deflate would return
    unchanged (plain properties only: no choices, lengths or patterns to check)."""
    found = _native_types.get(target)
    if found is None:
        found = {
            name: _NATIVE[type(prop)]
            for name, prop in properties.items()
            if type(prop) in _NATIVE
            and name not in MANAGED_PROPERTIES
            and name not in WRITER_FLAGS
            and getattr(prop, "choices", None) is None
            and getattr(prop, "max_length", None) is None
        }
        _native_types[target] = found
    return found


def _props(
    target: str, properties: Mapping[str, Any], row: Mapping[str, Any], skip: set[str]
) -> dict:
    natives = _natives(target, properties)
    return {
        name: value
        if type(value) is natives.get(name)
        else _deflate(target, properties, name, value)
        for name, value in row.items()
        if name not in skip and value is not None
    }


def _params(
    entries: list[dict[str, Any]], temporal: frozenset[str], created: bool = False
) -> tuple[Rows, list[str], list[str]]:
    """Query rows with timestamps moved to ``times`` as ISO text, and the names of the plain
    and of the timestamp properties. Rows to be ``created`` carry their origin among their
    properties (a reference row has nothing else)."""
    names: set[str] = set()
    plain: set[str] = set()
    rows = Rows()
    for entry in entries:
        props, times = {}, {}
        given = {**entry["origin"], **entry["props"]} if created else entry["props"]
        if created and not entry["props"] and "start" not in entry:
            given["unresolved"] = True  # a node (relationship rows carry their ends)
        for name, value in given.items():
            if name in temporal:
                times[name] = value.isoformat()
                names.add(name)
            else:
                props[name] = value
                plain.add(name)
        row = {**entry, "props": props, "times": times}
        if created:
            del row["origin"]  # already among the props
        rows.append(row)
    return rows, sorted(plain), sorted(names)


class _Queue:
    """The rows of one upsert call, merged per key before they reach the store.

    Rows for the same key add up: later rows may add properties (an alarm's ``cleared_at``
    after its ``raised_at``) but may not contradict earlier ones. A row that gives only the
    key is a reference ("this order's product is X"): it makes sure X exists, with the
    referring record as its origin, and never overwrites what X's own record says.
    """

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, dict[str, Any]]] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # entries of the batch not yet flushed

    def add(self, key: str, props: dict[str, Any], position: int) -> dict[str, Any] | None:
        """The batch entry to append, or None if the row merged into a queued one or adds
        nothing; rejects a row that contradicts an earlier one."""
        facts = {k: v for k, v in props.items() if k not in PROVENANCE_PROPERTIES}
        origin = {k: v for k, v in props.items() if k in PROVENANCE_PROPERTIES}
        first = self.known.get(key)
        if first is None:
            self.known[key] = (position, dict(facts))
            entry = {"key": key, "props": props if facts else {}, "origin": {} if facts else origin}
            self.pending[key] = entry
            return entry
        first_position, known = first
        clash = sorted(k for k, v in facts.items() if k in known and known[k] != v)
        if clash:
            raise _Reject(
                f"key {key!r} repeats record {first_position} with a different {', '.join(clash)}"
            )
        new = {k: v for k, v in facts.items() if k not in known}
        if not new:
            return None
        known.update(new)
        entry = self.pending.get(key)
        if entry is not None:
            # the latest record that added facts is the origin, as when the two rows land in
            # different batches: what is stored must not depend on where a batch ended
            entry["props"].update({**origin, **new})
            return None
        entry = {"key": key, "props": {**origin, **new}, "origin": {}}
        self.pending[key] = entry
        return entry

    def flushed(self) -> None:
        self.pending = {}


def _names(batch: list[dict]) -> list[str]:
    """Every property name set by some row of the batch (all come from the schema)."""
    return sorted({name for row in batch for name in row["props"]})


def _holds(
    names: list[str], stored: list[Any], props: Mapping[str, Any], temporal: frozenset[str]
) -> bool:
    """True if the stored values (listed in ``names`` order, timestamps as ISO text) already
    equal every prop.

    Provenance alone never makes a row "changed": the same fact seen again in another
    record (or another run) keeps the origin it was first written with.
    """
    values = dict(zip(names, stored, strict=True))
    return all(
        (as_utc(values[name]) if name in temporal else values[name]) == value
        for name, value in props.items()
        if name not in PROVENANCE_PROPERTIES
    )


def _key(spec: NodeSpec, value: Any, what: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Reject(f"missing {what} {spec.label}.{spec.key}")
    if not isinstance(value, str | int):
        raise _Reject(f"{what} {spec.label}.{spec.key} must be text, got {type(value).__name__}")
    return str(value)


class BulkWriter:
    """Writes schema-shaped rows to the store in batches, one transaction per batch.

    Idempotent: the same rows twice leave the same graph (provenance is only stamped when a
    value really changes). A key repeated within one call with different values is rejected
    rather than letting the last one silently win.
    """

    def __init__(
        self,
        store: Store,
        batch_size: int = DEFAULT_BATCH_SIZE,
        run_id: str | None = None,
        on_batch: Callable[[UpsertReport], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.batch_size = batch_size
        self.run_id = run_id or f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        self.on_batch = on_batch

    # -- nodes ---------------------------------------------------------------------------------

    def upsert_nodes(
        self, label: str | type | NodeSpec, rows: Iterable[Mapping[str, Any]]
    ) -> UpsertReport:
        """Create or update nodes of one label, keyed by its business key."""
        spec = node_spec(label)
        report = UpsertReport(spec.label)
        queue = _Queue()
        batch: list[dict[str, Any]] = []
        started = time.perf_counter()
        for position, row in enumerate(rows):
            report.rows += 1
            try:
                if not isinstance(row, Mapping):
                    raise _Reject(f"expected a record of properties, got {type(row).__name__}")
                key = _key(spec, row.get(spec.key), "business key")
                entry = queue.add(
                    key, _props(spec.label, spec.properties, row, {spec.key}), position
                )
            except _Reject as reject:
                report.rejected.append(Rejection(spec.label, position, str(reject), row))
                continue
            if entry is None:
                report.unchanged += 1
                continue
            batch.append(entry)
            if len(batch) >= self.batch_size:
                self._flush_nodes(spec, batch, report, started)
                batch = []
                queue.flushed()
        if batch:
            self._flush_nodes(spec, batch, report, started)
        report.seconds = time.perf_counter() - started
        return report

    def _flush_nodes(
        self, spec: NodeSpec, batch: list[dict], report: UpsertReport, started: float
    ) -> None:
        def work(tx: ManagedTransaction) -> tuple[int, int]:
            keys = Rows(row["key"] for row in batch)
            names = _names(batch)
            query = queries.existing_nodes(spec.label, spec.key)
            found = tx.run(query, keys=keys, names=names, times=sorted(spec.temporal))
            stored = {r["key"]: r["stored"] for r in found}
            new = [row for row in batch if row["key"] not in stored]
            changed = [
                row
                for row in batch
                if row["key"] in stored
                and not _holds(names, stored[row["key"]], row["props"], spec.temporal)
            ]
            stamps = {"now": datetime.now(UTC).isoformat(), "run": self.run_id}
            if new:
                rows, plain, times = _params(new, spec.temporal, created=True)
                query = queries.create_nodes(spec.label, spec.key, plain, times)
                tx.run(query, rows=rows, **stamps).consume()
            if changed:
                rows, _, times = _params(changed, spec.temporal)
                query = queries.update_nodes(spec.label, spec.key, times)
                tx.run(query, rows=rows, **stamps).consume()
            return [row["key"] for row in new], len(changed), sum(not r["props"] for r in new)

        new_keys, updated, stubbed = self.store.transaction(work, merge_batch=True)
        report.created_keys.update(new_keys)
        report.stubbed += stubbed
        self._account(report, len(batch), len(new_keys), updated, started)

    # -- relationships -------------------------------------------------------------------------

    def upsert_relationships(
        self,
        spec: RelSpec,
        rows: Iterable[Mapping[str, Any]],
        fresh_start: Collection[str] = (),
        fresh_end: Collection[str] = (),
    ) -> UpsertReport:
        """Create or update relationships between existing nodes; rows carry ``start``/``end``.

        A row whose endpoint does not exist is rejected with the missing key named, never
        dropped silently and never creating an empty placeholder node. ``fresh_start`` /
        ``fresh_end`` name nodes the caller has just created (``created_keys`` of a node
        upsert): their relationships cannot exist yet, so they are created without looking.
        """
        report = UpsertReport(spec.name)
        queue = _Queue()
        batch: list[dict[str, Any]] = []
        raw: dict[int, Any] = {}
        started = time.perf_counter()
        for position, row in enumerate(rows):
            report.rows += 1
            try:
                if not isinstance(row, Mapping):
                    raise _Reject(f"expected a start/end record, not {type(row).__name__}")
                start = _key(spec.start, row.get("start"), "start key")
                end = _key(spec.end, row.get("end"), "end key")
                props = _props(spec.name, spec.properties, row, {"start", "end"})
                entry = queue.add(f"{start} -> {end}", props, position)
            except _Reject as reject:
                report.rejected.append(Rejection(spec.name, position, str(reject), row))
                continue
            if entry is None:
                report.unchanged += 1
                continue
            entry.update(position=position, start=start, end=end)
            batch.append(entry)
            raw[position] = row
            if len(batch) >= self.batch_size:
                self._flush_rels(spec, batch, raw, report, started, (fresh_start, fresh_end))
                batch, raw = [], {}
                queue.flushed()
        if batch:
            self._flush_rels(spec, batch, raw, report, started, (fresh_start, fresh_end))
        report.seconds = time.perf_counter() - started
        return report

    def _flush_rels(
        self,
        spec: RelSpec,
        batch: list[dict],
        raw: dict[int, Any],
        report: UpsertReport,
        started: float,
        fresh: tuple[Collection[str], Collection[str]],
    ) -> None:
        shape = (spec.start.label, spec.start.key, spec.type, spec.end.label, spec.end.key)
        props = _names(batch)
        known_new = [r for r in batch if r["start"] in fresh[0] or r["end"] in fresh[1]]
        others = [r for r in batch if not (r["start"] in fresh[0] or r["end"] in fresh[1])]

        def work(tx: ManagedTransaction, fast: list[dict], checked: list[dict]) -> tuple:
            stamps = {"now": datetime.now(UTC).isoformat(), "run": self.run_id}
            if fast:
                rows, plain, times = _params(fast, spec.temporal, created=True)
                query = queries.create_relationships(*shape, plain, times)
                if tx.run(query, rows=rows, **stamps).single()["created"] != len(fast):
                    raise _FastPathMiss  # an endpoint is missing after all: roll back, look
            missing: list[dict] = []
            new, changed = [], []
            if checked:
                keys = Rows({k: row[k] for k in ("position", "start", "end")} for row in checked)
                query = queries.relationship_state(*shape)
                result = tx.run(query, rows=keys, names=props, times=sorted(spec.temporal))
                state = {r["position"]: r for r in result}
                missing = [s for s in state.values() if s["start_missing"] or s["end_missing"]]
                absent = {m["position"] for m in missing}
                for row in checked:
                    if row["position"] in absent:
                        continue
                    found = state[row["position"]]
                    if not found["exists"]:
                        new.append(row)
                    elif not _holds(props, found["stored"], row["props"], spec.temporal):
                        changed.append(row)
                if new or changed:
                    rows, _, times = _params(new + changed, spec.temporal)
                    query = queries.merge_relationships(*shape, times)
                    tx.run(query, rows=rows, **stamps).consume()
            return missing, len(fast) + len(new), len(changed)

        try:
            missing, created, updated = self.store.transaction(
                lambda tx: work(tx, known_new, others), merge_batch=True
            )
        except _FastPathMiss:
            missing, created, updated = self.store.transaction(
                lambda tx: work(tx, [], batch), merge_batch=True
            )
        for m in missing:
            row = next(r for r in batch if r["position"] == m["position"])
            absent = []
            if m["start_missing"]:
                absent.append(f"{spec.start.label} {spec.start.key}={row['start']!r}")
            if m["end_missing"]:
                absent.append(f"{spec.end.label} {spec.end.key}={row['end']!r}")
            reason = f"unknown {' and '.join(absent)}"
            report.rejected.append(Rejection(spec.name, m["position"], reason, raw[m["position"]]))
        self._account(report, len(batch) - len(missing), created, updated, started)

    # -- intervals -----------------------------------------------------------------------------

    def chain_states(self, machines: Collection[str], since: datetime) -> tuple[set[str], int]:
        """Close the machines' state intervals from the states now stored, in time order.

        A source only says when a machine entered a state; it leaves it when the next state
        begins, and that state may come from the next day's file, a later run or a live
        message, in any order. States whose source gave an end are left as they are. Returns
        the states whose end changed (for the deviation rules) and how many repeated states
        were folded into the interval they repeat.
        """
        if not machines:
            return set(), 0
        rows = self.store.read(
            queries.STATE_TIMELINES, machines=Rows(sorted(machines)), since=since.isoformat()
        )
        timelines: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            row["start"], row["end"] = as_utc(row["start"]), as_utc(row["end"])
            if row["start"] is not None:
                timelines.setdefault(row["machine"], []).append(row)
        closed: list[dict[str, Any]] = []
        repeated: list[str] = []
        for states in timelines.values():
            states.sort(key=lambda s: (s["start"], s["id"]))
            current = None  # the open-ended interval being followed
            for state in states:
                if current is not None:
                    if (state["state"], state["reason"]) == (current["state"], current["reason"]):
                        repeated.append(state["id"])
                        continue
                    end = state["start"]
                    if current["end"] != end or not current["inferred"]:
                        seconds = (end - current["start"]).total_seconds()
                        closed.append(
                            {"id": current["id"], "end": end.isoformat(), "seconds": seconds}
                        )
                own_end = state["end"] is not None and not state["inferred"]
                current = None if own_end else state
        if closed:
            self.store.write(queries.CLOSE_STATES, rows=Rows(closed))
        if repeated:
            self.store.write(queries.MERGE_REPEATED_STATES, ids=Rows(repeated))
        return {c["id"] for c in closed}, len(repeated)

    def chain_alarms(self, machines: Collection[str], since: datetime) -> set[str]:
        """Clear the machines' open alarms where their data item next returned to Normal,
        from the alarms now stored: a condition raised at the end of one day's file returns
        to Normal in the next, and the files may load in any order. A return to Normal is an
        alarm's own ``cleared_at`` or a kept Normal. Alarms their own stream cleared stay as
        they are. Returns the alarms whose clearing time changed."""
        if not machines:
            return set()
        rows = self.store.read(
            queries.ALARM_TIMELINES, machines=Rows(sorted(machines)), since=since.isoformat()
        )
        items: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            row["raised"], row["cleared"] = as_utc(row["raised"]), as_utc(row["cleared"])
            if row["raised"] is not None:
                items.setdefault((row["machine"], row["item"]), []).append(row)
        cleared = []
        for alarms in items.values():
            normals = sorted(
                a["cleared"] for a in alarms if a["cleared"] is not None and not a["inferred"]
            )
            for alarm in alarms:
                if alarm["level"] == "Normal" or (alarm["cleared"] and not alarm["inferred"]):
                    continue
                at = next((t for t in normals if t >= alarm["raised"]), None)
                if at is not None and at != alarm["cleared"]:
                    cleared.append({"id": alarm["id"], "at": at.isoformat()})
        if cleared:
            self.store.write(queries.CLEAR_ALARMS, rows=Rows(cleared))
        return {c["id"] for c in cleared}

    # -- shared bookkeeping --------------------------------------------------------------------

    def _account(
        self, report: UpsertReport, accepted: int, created: int, updated: int, started: float
    ) -> None:
        report.batches += 1
        report.created += created
        report.updated += updated
        report.unchanged += accepted - created - updated
        report.seconds = time.perf_counter() - started
        if self.on_batch is not None:
            self.on_batch(report)
