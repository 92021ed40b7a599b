"""Rules that turn ingested facts into Deviations: anything off plan, each ``ABOUT`` the
entities involved, with a time window and a severity.

Rules run over the graph after the sources a run loaded, with deterministic IDs
(``DEV-SCRAP-<operation>``…), so re-running never duplicates a deviation and a deviation a
source reported (a failed inspection item) is linked once however often it is seen. A live
batch (webhook, MQTT) passes a ``scope``, the keys it wrote per label, and the rules look only
at those entities, so its cost does not grow with the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any

from opsgraph.graph import identity, queries
from opsgraph.graph.identity import Alias
from opsgraph.graph.store import Rows, Store
from opsgraph.schema.base import as_utc

from .records import NodeRow, Record, RelRow

SOURCE_SYSTEM = "opsgraph rules"

Scope = Mapping[str, Set[str]]  # label -> keys a batch wrote; None means the whole graph


@dataclass(frozen=True)
class Thresholds:
    """When something counts as a deviation; the defaults suit discrete machining."""

    scrap_rate: float = 0.05  # scrap / (scrap + yield) per operation
    late_minutes: float = 60.0  # finished this long after the planned end
    short_fraction: float = 0.02  # completed orders delivering less than 98 % of plan
    downtime_minutes: float = 15.0  # one unplanned stop at least this long


def _deviation(
    deviation_id: str,
    kind: str,
    severity: str,
    description: str,
    start: Any,
    end: Any,
    about: list[tuple[str, str | None]],
    rule: str,
) -> Record:
    props = {
        "deviation_id": deviation_id,
        "deviation_type": kind,
        "severity": severity,
        "detected_by": f"rule:{rule}",
        "description": description,
        "start": as_utc(start),
        "end": as_utc(end),
    }
    rows: list[NodeRow | RelRow] = [
        NodeRow("Deviation", {k: v for k, v in props.items() if v is not None})
    ]
    for label, key in about:
        if key:
            rows.append(RelRow("Deviation", "ABOUT", label, deviation_id, key))
    return Record(rule, rows, {"deviation_id": deviation_id})


def _read(
    store: Store,
    query: Callable[[bool], str],
    scope: Scope | None,
    keys: Set[str] = frozenset(),
    **params: Any,
) -> list[dict[str, Any]]:
    """The rule's rows over the whole graph, or from ``keys`` only when scoped."""
    if scope is None:
        return store.read(query(False), **params)
    if not keys:
        return []
    return store.read(query(True), keys=Rows(sorted(keys)), **params)


def _severity(value: float, high: float, critical: float) -> str:
    return "critical" if value >= critical else "high" if value >= high else "medium"


def scrap(store: Store, limits: Thresholds, scope: Scope | None = None) -> Iterator[Record]:
    operations = (scope or {}).get("Operation", set())
    for r in _read(store, queries.scrap_by_operation, scope, operations):
        rate = r["scrap"] / (r["scrap"] + r["good"])
        if rate < limits.scrap_rate:
            continue
        yield _deviation(
            deviation_id("SCRAP", r["operation"]), "scrap", _severity(rate, 0.10, 0.20),
            f"Scrap {r['scrap']:g} of {r['scrap'] + r['good']:g} ({rate:.1%}) on operation "
            f"{r['operation']}" + (f" on {r['machine']}" if r["machine"] else ""),
            r["start"], r["end"],
            [("Operation", r["operation"]), ("ProductionOrder", r["order"]),
             ("Machine", r["machine"])],
            "scrap_rate",
        )  # fmt: skip


def orders(store: Store, limits: Thresholds, scope: Scope | None = None) -> Iterator[Record]:
    keys: set[str] = set()
    if scope is not None:  # an order changes when one of its operations does
        keys = set(scope.get("ProductionOrder", ()))
        if scope.get("Operation"):
            found = store.read(queries.ORDERS_OF_OPERATIONS, keys=Rows(sorted(scope["Operation"])))
            keys |= {r["order"] for r in found}
    for r in _read(store, queries.order_completion, scope, keys):
        planned, finished = as_utc(r["planned_end"]), as_utc(r["finished"])
        if planned and finished:
            late = (finished - planned).total_seconds() / 60
            if late >= limits.late_minutes:
                yield _deviation(
                    deviation_id("LATE", r["order"]), "late_order", _severity(late / 60, 4, 24),
                    f"Order {r['order']} finished {late / 60:.1f} h after its planned end",
                    planned, finished, [("ProductionOrder", r["order"])], "late_order",
                )  # fmt: skip
        total, good = r["total"], r["yield"]
        if r["status"] in ("TECO", "CLSD", "DLV") and total and good is not None:
            missing = (total - good) / total
            if missing > limits.short_fraction:
                yield _deviation(
                    deviation_id("SHORT", r["order"]), "short_order",
                    _severity(missing, 0.10, 0.25),
                    f"Order {r['order']} delivered {good:g} of {total:g} planned "
                    f"({missing:.1%} short)",
                    r["started"], finished, [("ProductionOrder", r["order"])], "short_order",
                )  # fmt: skip


def quality(store: Store, limits: Thresholds, scope: Scope | None = None) -> Iterator[Record]:
    checks = (scope or {}).get("QualityCheck", set())
    for r in _read(store, queries.failed_quality_checks, scope, checks):
        low = "-∞" if r["lower"] is None else f"{r['lower']:g}"
        high = "∞" if r["upper"] is None else f"{r['upper']:g}"
        spec = f"[{low}, {high}]"
        yield _deviation(
            deviation_id("QC", r["check"]), "out_of_spec", "high",
            f"{r['characteristic']} = {r['value']:g}{r['unit'] or ''} outside {spec}"
            if r["value"] is not None else f"{r['characteristic']} failed",
            r["at"], r["at"],
            [("QualityCheck", r["check"]), ("Operation", r["operation"]),
             ("ProductionOrder", r["order"]), ("Machine", r["machine"]), ("MaterialLot", r["lot"])],
            "out_of_spec",
        )  # fmt: skip


def downtime(store: Store, limits: Thresholds, scope: Scope | None = None) -> Iterator[Record]:
    states = (scope or {}).get("MachineState", set())
    seconds = limits.downtime_minutes * 60
    for r in _read(store, queries.long_downtimes, scope, states, seconds=seconds):
        minutes = r["seconds"] / 60
        yield _deviation(
            deviation_id("DOWN", r["state"]), "downtime", _severity(minutes, 60, 240),
            f"{r['machine']} down {minutes:.0f} min" + (f" ({r['reason']})" if r["reason"] else ""),
            r["start"], r["end"], [("Machine", r["machine"])], "downtime",
        )  # fmt: skip


def failed_checklist_items(
    store: Store, limits: Thresholds, scope: Scope | None = None
) -> Iterator[Record]:
    items = (scope or {}).get("InspectionItem", set())
    for r in _read(store, queries.failed_inspection_items, scope, items):
        yield _deviation(
            deviation_id("INSP", r["item"]), "failed_checklist_item", "medium",
            f"Failed: {r['label']}" + (f" ({r['response']})" if r["response"] else ""),
            r["at"], r["at"], [("InspectionItem", r["item"]), ("Machine", r["machine"])],
            "failed_checklist_item",
        )  # fmt: skip


RULES = (scrap, orders, quality, downtime, failed_checklist_items)
TAGS = ("SCRAP", "LATE", "SHORT", "QC", "DOWN", "INSP")


def deviation_id(tag: str, key: str) -> str:
    """``DEV-<tag>-<key>``, without repeating a tag the key already starts with (a quality
    check ``QC-1000123-0010-01`` gives ``DEV-QC-1000123-0010-01``, not ``DEV-QC-QC-…``)."""
    return f"DEV-{key}" if str(key).upper().startswith(f"{tag}-") else f"DEV-{tag}-{key}"


def migrate_ids(store: Store) -> int:
    """Rename deviations stored under the IDs earlier versions gave (``DEV-QC-QC-…``); the
    old ID stays an alias, so what refers to it (a saved link, a decision's client) still
    finds the deviation. Returns how many were renamed (none once a graph is migrated)."""
    prefixes = Rows(f"DEV-{tag}-{tag}-" for tag in TAGS)
    old = [r["id"] for r in store.read(queries.DEVIATIONS_WITH_REPEATED_TAG, prefixes=prefixes)]
    # DEV-QC-QC-1000123-0010-01 -> DEV-QC-1000123-0010-01
    aliases = [Alias("Deviation", key, f"DEV-{key.split('-', 2)[2]}") for key in old]
    return len(identity.declare(store, aliases, "deviation ID migration").renamed) if old else 0


def detect(
    store: Store, limits: Thresholds | None = None, scope: Scope | None = None
) -> Iterator[Record]:
    """Every deviation the rules find in the graph as it is now (within ``scope`` if given)."""
    if scope is None:
        migrate_ids(store)
    for rule in RULES:
        yield from rule(store, limits or Thresholds(), scope)
