"""Root-cause analysis on small hand-built plants where the cause is known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from opsgraph.graph.rca import RcaError, RootCauseAnalyzer
from opsgraph.graph.store import Store
from opsgraph.graph.writer import BulkWriter
from opsgraph.schema import rel_spec

T0 = datetime(2026, 10, 5, 6, tzinfo=UTC)


def _plant(store: Store, bad_runs: list[int], noise: list[int] = ()) -> None:
    """Twelve milling operations, one a day alternating between two mills, each consuming
    one of three lots; the runs listed in ``bad_runs`` used lot L-BAD and scrapped."""
    w = BulkWriter(store)
    w.upsert_nodes("Machine", [{"machine_id": m, "machine_type": "mill"} for m in ("M1", "M2")])
    w.upsert_nodes("Supplier", [{"supplier_id": "S1"}, {"supplier_id": "S2"}])
    w.upsert_nodes("MaterialLot", [{"lot_id": lot} for lot in ("L-GOOD-1", "L-GOOD-2", "L-BAD")])
    w.upsert_relationships(
        rel_spec("Supplier", "SUPPLIED", "MaterialLot"),
        [
            {"start": "S1", "end": "L-GOOD-1"},
            {"start": "S2", "end": "L-GOOD-2"},
            {"start": "S2", "end": "L-BAD"},
        ],
    )
    ops, on, used, devs, about = [], [], [], [], []
    for i in range(12):
        start = T0 + timedelta(days=i)
        op = f"100{i:02d}/0010"
        lot = "L-BAD" if i in bad_runs else ("L-GOOD-1" if i % 2 else "L-GOOD-2")
        ops.append(
            {"operation_id": op, "actual_start": start, "actual_end": start + timedelta(hours=2)}
        )
        on.append({"start": op, "end": "M1" if i % 2 else "M2"})
        used.append({"start": lot, "end": op, "posted_at": start - timedelta(minutes=5)})
        if i in bad_runs or i in noise:
            devs.append(
                {
                    "deviation_id": f"DEV-SCRAP-{op}",
                    "deviation_type": "scrap",
                    "severity": "high",
                    "start": start,
                    "end": start + timedelta(hours=2),
                }
            )
            about.append({"start": f"DEV-SCRAP-{op}", "end": op})
    w.upsert_nodes("Operation", ops)
    w.upsert_relationships(rel_spec("Operation", "ON_MACHINE", "Machine"), on)
    w.upsert_relationships(rel_spec("MaterialLot", "CONSUMED_BY", "Operation"), used)
    w.upsert_nodes("Deviation", devs)
    w.upsert_relationships(rel_spec("Deviation", "ABOUT", "Operation"), about)


def test_the_known_cause_ranks_first_with_its_evidence_path(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10], noise=[4])
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-10009/0010")
    top = result.causes[0]
    assert (top.label, top.key, top.cause_type) == ("MaterialLot", "L-BAD", "material_lot")
    assert (top.deviating, top.exposed) == (5, 5)  # the five runs on L-BAD, all bad
    assert top.evidence[0] == [
        {"label": "Deviation", "key": "(this)"},
        {"type": "ABOUT", "direction": "out", "at": "2026-10-14T06:00:00+00:00"},
        {"label": "Operation", "key": "10009/0010"},
        {"type": "CONSUMED_BY", "direction": "in", "at": "2026-10-14T05:55:00+00:00"},
        {"label": "MaterialLot", "key": "L-BAD"},
    ]
    assert "5 of 5 operations deviated, this one included" in top.explanation
    ranked = [c.key for c in result.ranking]
    assert ranked[0] == "L-BAD" and {"S2", "M1"} <= set(ranked)
    assert {c.key for c in result.causes} == {"L-BAD"}  # S2 only through L-BAD, M1 at base
    assert result.clear
    assert result.subjects == {
        "operations": ["10009/0010"],
        "orders": [],
        "machines": ["M1"],
        "lots": ["L-BAD"],
    }


def test_an_event_after_the_deviation_is_never_a_cause(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    w = BulkWriter(store)
    after = T0 + timedelta(days=9, hours=5)  # run 9 ends at 08:00
    before = T0 + timedelta(days=9, hours=-1)
    w.upsert_nodes(
        "Alarm",
        [
            {"alarm_id": "A-AFTER", "code": "SPINDLE_VIB", "level": "Fault", "raised_at": after},
            {
                "alarm_id": "A-BEFORE",
                "code": "COOLANT_LOW",
                "level": "Warning",
                "raised_at": before,
            },
        ],
    )
    w.upsert_relationships(
        rel_spec("Machine", "RAISED", "Alarm"),
        [
            {"start": "M1", "end": "A-AFTER"},
            {"start": "M1", "end": "A-BEFORE"},
        ],
    )
    w.upsert_nodes(
        "MaintenanceEvent",
        [
            {
                "maintenance_id": "PM-LATE",
                "status": "missed",
                "maintenance_type": "preventive",
                "scheduled_at": T0 + timedelta(days=9, hours=1),
            }
        ],
    )
    w.upsert_relationships(
        rel_spec("Machine", "HAD_MAINTENANCE", "MaintenanceEvent"),
        [{"start": "M1", "end": "PM-LATE"}],
    )
    result = RootCauseAnalyzer(store, top=20).analyze("DEV-SCRAP-10009/0010")
    evidence = {
        step["key"] for c in result.ranking for path in c.evidence for step in path if "key" in step
    }
    assert "A-BEFORE" in evidence  # a symptom of the machine, in the machine's evidence
    assert "A-AFTER" not in evidence and "PM-LATE" not in evidence


def test_rerunning_replaces_the_inferred_edges(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    analyzer = RootCauseAnalyzer(store, top=3)
    result = analyzer.analyze("DEV-SCRAP-10009/0010")
    first = analyzer.persist(result, run_id="rca-1")
    second = analyzer.persist(analyzer.analyze("DEV-SCRAP-10009/0010"), run_id="rca-2")
    assert (first, second) == ("rca-1", "rca-2")
    edges = store.read(
        "MATCH (:Deviation {deviation_id: 'DEV-SCRAP-10009/0010'})"
        "-[r:CAUSED_BY|CONTRIBUTED_TO]->(c) "
        "RETURN type(r) AS type, r.rank AS rank, r.run_id AS run, r.method AS method, "
        "r.evidence AS evidence, c.lot_id AS lot ORDER BY rank"
    )
    assert [(e["type"], e["rank"], e["run"]) for e in edges] == [("CAUSED_BY", 1, "rca-2")] + [
        ("CONTRIBUTED_TO", rank, "rca-2") for rank in range(2, len(result.causes) + 1)
    ]
    assert edges[0]["lot"] == "L-BAD" and edges[0]["method"].startswith("exposure-contrast")
    assert json.loads(edges[0]["evidence"])[0][-1] == {"label": "MaterialLot", "key": "L-BAD"}


def test_common_causes_across_a_set_of_deviations(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10], noise=[4])
    found = RootCauseAnalyzer(store).common_causes(deviation_type="scrap")
    assert (found["selected"], found["analysed"]) == (6, 6)
    lot = next(c for c in found["shared_causes"] if c["key"] == "L-BAD")
    assert lot["deviations"] == 5 and lot["of"] == 6


def test_unknown_or_untraceable_deviations_get_a_clear_error(store: Store) -> None:
    _plant(store, bad_runs=[2])
    BulkWriter(store).upsert_nodes("Deviation", [{"deviation_id": "DEV-FLOATING"}])
    analyzer = RootCauseAnalyzer(store)
    with pytest.raises(RcaError, match="no deviation 'DEV-NOPE'"):
        analyzer.analyze("DEV-NOPE")
    with pytest.raises(RcaError, match="is about no operation, order or machine"):
        analyzer.analyze("DEV-FLOATING")
