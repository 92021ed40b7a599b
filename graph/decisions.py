"""Recording what people decide through the API: decisions about deviations, orders, lots or
machines, their outcomes later, and acknowledging deviations. Writes go through the bulk
writer, so they are validated against the model, stamped with provenance and idempotent:
retrying with the same client id changes nothing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsgraph.schema import SchemaError, node_spec, rel_spec

from . import identity, queries, read
from .store import Store
from .writer import BulkWriter, UpsertReport

SOURCE_SYSTEM = "opsgraph api"
ABOUT = ("Deviation", "ProductionOrder", "MaterialLot", "Machine")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


class DecisionError(ValueError):
    """A decision that cannot be recorded; the message says what to fix."""


@dataclass(frozen=True)
class Recorded:
    decision_id: str
    created: bool


def _check(report: UpsertReport) -> None:
    if report.rejected:
        raise DecisionError("; ".join(r.reason for r in report.rejected))


def record_decision(
    store: Store,
    client_id: str,
    decided_by: str,
    decision_type: str,
    summary: str,
    about: Sequence[tuple[str, str]],
    rationale: str | None = None,
    decided_at: datetime | None = None,
    action_id: str | None = None,
) -> Recorded:
    """Record who decided what and why, about which entities (which must exist).

    ``action_id`` names the action (e.g. one a workflow created) this decision came out of:
    the action is linked to it and the decision to the deviations the action is about, so
    the outcome recorded later is reachable from the deviation. People and entities may be
    named by any system's ID the alias table knows (a worker app's user ID)."""
    if not CLIENT_ID.match(client_id):
        raise DecisionError("client_id: 1-80 letters, digits or _ . : - (retries reuse it)")
    if not summary.strip():
        raise DecisionError("summary: say what was decided")
    if not about and not action_id:
        raise DecisionError("about: name at least one deviation, order, lot or machine")
    for label, _ in about:
        if label not in ABOUT:
            raise DecisionError(f"about: {label!r} is not one of {', '.join(ABOUT)}")
    decision_id = f"DEC-{client_id}"
    aliases = identity.load(store)
    decided_by = aliases("Person", decided_by)
    about = [(label, aliases(label, key)) for label, key in about]
    origin = {"source_system": SOURCE_SYSTEM, "source_record": f"client:{client_id}"}
    writer = BulkWriter(store)
    missing = [
        f"{label} {key!r}" for label, key in about if key not in _existing(store, label, [key])
    ]
    if decided_by not in _existing(store, "Person", [decided_by]):
        missing.append(f"Person {decided_by!r}")
    if action_id is not None and action_id not in _existing(store, "Action", [action_id]):
        missing.append(f"Action {action_id!r}")
    if missing:
        raise DecisionError(f"unknown {', '.join(missing)}")
    report = writer.upsert_nodes(
        "Decision",
        [
            {
                "decision_id": decision_id,
                "decision_type": decision_type,
                "summary": summary,
                "rationale": rationale,
                "decided_at": decided_at or datetime.now(UTC),
                **origin,
            }
        ],
    )
    _check(report)
    _check(
        writer.upsert_relationships(
            rel_spec("Person", "DECIDED", "Decision"),
            [{"start": decided_by, "end": decision_id, **origin}],
        )
    )
    links = [("Decision", "ABOUT", label, decision_id, key) for label, key in about]
    if action_id is not None:
        links.append(("Action", "RESULTED_IN", "Decision", action_id, decision_id))
        for row in store.read(queries.ACTION_DEVIATIONS, action=action_id):
            links.append(("Decision", "ABOUT", "Deviation", decision_id, row["deviation"]))
    for start, rel_type, end, start_key, end_key in links:
        _check(
            writer.upsert_relationships(
                rel_spec(start, rel_type, end), [{"start": start_key, "end": end_key, **origin}]
            )
        )
    return Recorded(decision_id, report.created == 1)


def record_outcome(store: Store, decision_id: str, result: str, description: str | None) -> str:
    """Attach (or correct) a decision's outcome: effective, partially_effective, ineffective."""
    if result not in ("effective", "partially_effective", "ineffective"):
        raise DecisionError("result: effective, partially_effective or ineffective")
    if decision_id not in _existing(store, "Decision", [decision_id]):
        raise DecisionError(f"unknown Decision {decision_id!r}")
    outcome_id = f"{decision_id}/outcome"
    writer = BulkWriter(store)
    origin = {"source_system": SOURCE_SYSTEM, "source_record": f"outcome:{decision_id}"}
    _check(
        writer.upsert_nodes(
            "Outcome",
            [
                {
                    "outcome_id": outcome_id,
                    "result": result,
                    "description": description,
                    "recorded_at": datetime.now(UTC),
                    **origin,
                }
            ],
        )
    )
    _check(
        writer.upsert_relationships(
            rel_spec("Decision", "HAS_OUTCOME", "Outcome"),
            [{"start": decision_id, "end": outcome_id, **origin}],
        )
    )
    return outcome_id


def acknowledge_deviation(store: Store, deviation_id: str) -> None:
    """Mark a deviation as seen and being handled."""
    deviation_id = identity.load(store)("Deviation", deviation_id)
    if deviation_id not in _existing(store, "Deviation", [deviation_id]):
        raise DecisionError(f"unknown Deviation {deviation_id!r}")
    _check(
        BulkWriter(store).upsert_nodes(
            "Deviation", [{"deviation_id": deviation_id, "status": "acknowledged"}]
        )
    )


def _existing(store: Store, label: str, keys: list[str]) -> set[Any]:
    try:
        return set(read.nodes_by_key(store, node_spec(label).label, keys))
    except SchemaError as error:
        raise DecisionError(str(error)) from None
