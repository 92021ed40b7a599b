"""The bulk writer: idempotent, schema-driven upserts that reject bad rows with a reason."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsgraph.graph.store import ConstraintViolation, Store
from opsgraph.graph.writer import BulkWriter
from opsgraph.ingest.runner import IngestReport, IngestRunner
from opsgraph.schema import SchemaError, node_spec, rel_spec


def _dump(store: Store) -> tuple[list, list]:
    nodes = store.read("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    rels = store.read(
        "MATCH (a)-[r]->(b) RETURN labels(a) AS a, type(r) AS type, labels(b) AS b, "
        "properties(r) AS props"
    )
    key = repr
    return sorted(map(key, nodes)), sorted(map(key, rels))


SAMPLE = Path(__file__).parent / "data" / "rows" / "sample_plant.json"


def _load_sample(store: Store, state: Path) -> IngestReport:
    return IngestRunner(store, state).run([SAMPLE], full=True, rules=False)


def _total(report: IngestReport, what: str) -> int:
    return sum(counts[what] for counts in report.writes.values())


def test_reupsert_changes_nothing(store: Store, tmp_path: Path) -> None:
    first = _load_sample(store, tmp_path)
    before = _dump(store)
    second = _load_sample(store, tmp_path)
    assert (_total(first, "created"), first.rejected) == (80, 0)
    assert _total(second, "created") + _total(second, "updated") == 0
    assert _total(second, "unchanged") == 80
    assert _dump(store) == before  # provenance stamps included


def test_changed_value_updates_node_and_stamps_the_run(store: Store) -> None:
    BulkWriter(store, run_id="run-a").upsert_nodes(
        "Machine", [{"machine_id": "M1", "name": "Mill"}]
    )
    report = BulkWriter(store, run_id="run-b").upsert_nodes(
        "Machine", [{"machine_id": "M1", "name": "Mill (rebuilt)"}, {"machine_id": "M2"}]
    )
    assert (report.created, report.updated, report.unchanged) == (1, 1, 0)
    rows = store.read(
        "MATCH (m:Machine {machine_id: 'M1'}) RETURN m.name AS name, m.ingest_run AS run"
    )
    assert rows == [{"name": "Mill (rebuilt)", "run": "run-b"}]


def test_missing_values_do_not_erase_stored_ones(writer: BulkWriter, store: Store) -> None:
    writer.upsert_nodes("Machine", [{"machine_id": "M1", "name": "Mill", "machine_type": "mill"}])
    writer.upsert_nodes("Machine", [{"machine_id": "M1", "name": None, "machine_type": "5-axis"}])
    rows = store.read("MATCH (m:Machine) RETURN m.name AS name, m.machine_type AS type")
    assert rows == [{"name": "Mill", "type": "5-axis"}]


def test_relationship_upsert_between_existing_nodes(writer: BulkWriter, store: Store) -> None:
    writer.upsert_nodes("MaterialLot", [{"lot_id": "RM-1/7731"}])
    writer.upsert_nodes("Operation", [{"operation_id": "1000123/0010"}])
    spec = rel_spec("MaterialLot", "CONSUMED_BY", "Operation")
    row = {"start": "RM-1/7731", "end": "1000123/0010", "quantity": 12.5, "unit": "KG"}
    first = writer.upsert_relationships(spec, [row])
    again = writer.upsert_relationships(spec, [row])
    assert (first.created, again.created, again.unchanged) == (1, 0, 1)
    rows = store.read(
        "MATCH (:MaterialLot {lot_id: 'RM-1/7731'})-[r:CONSUMED_BY]->(:Operation) "
        "RETURN r.quantity AS q, r.unit AS unit, count(*) AS n"
    )
    assert rows == [{"q": 12.5, "unit": "KG", "n": 1}]


def test_relationship_with_unknown_endpoint_is_rejected_not_dropped(
    writer: BulkWriter, store: Store
) -> None:
    writer.upsert_nodes("Line", [{"line_id": "L1"}])
    writer.upsert_nodes("Machine", [{"machine_id": "M1"}])
    spec = rel_spec("Line", "HAS_MACHINE", "Machine")
    report = writer.upsert_relationships(
        spec,
        [
            {"start": "L1", "end": "M1"},
            {"start": "L1", "end": "M-404"},
            {"start": "L9", "end": "M1"},
        ],
    )
    assert report.created == 1
    reasons = {r.position: r.reason for r in report.rejected}
    assert reasons == {1: "unknown Machine machine_id='M-404'", 2: "unknown Line line_id='L9'"}
    assert report.rejected[0].record == {"start": "L1", "end": "M-404"}
    # No placeholder nodes were created for the unknown keys.
    assert store.read("MATCH (n) RETURN count(n) AS n") == [{"n": 2}]


def test_cypher_injection_through_values_is_stored_as_plain_data(
    writer: BulkWriter, store: Store
) -> None:
    writer.upsert_nodes("Machine", [{"machine_id": "M-safe"}])
    hostile = "x'}) MATCH (n) DETACH DELETE n //"
    backticks = "`) DETACH DELETE n WITH 1 AS `"
    report = writer.upsert_nodes(
        "Machine",
        [{"machine_id": hostile, "name": backticks}, {"machine_id": "M2", "name": hostile}],
    )
    assert report.created == 2 and not report.rejected
    rows = store.read("MATCH (m:Machine) RETURN m.machine_id AS id, m.name AS name ORDER BY id")
    assert rows == [
        {"id": "M-safe", "name": None},
        {"id": "M2", "name": hostile},
        {"id": hostile, "name": backticks},
    ]


def test_cypher_injection_through_property_names_is_rejected(
    writer: BulkWriter, store: Store
) -> None:
    writer.upsert_nodes("Machine", [{"machine_id": "M-safe"}])
    hostile_name = "name`}) MATCH (n) DETACH DELETE n //"
    report = writer.upsert_nodes(
        "Machine", [{"machine_id": "M2", hostile_name: "x"}, {"machine_id": "M3"}]
    )
    assert report.created == 1
    assert report.rejected[0].position == 0
    assert report.rejected[0].reason == f"unknown property {hostile_name!r} for Machine"
    assert store.read("MATCH (m:Machine) RETURN count(m) AS n") == [{"n": 2}]


def test_labels_and_relationship_types_come_only_from_the_schema() -> None:
    with pytest.raises(SchemaError, match=re.escape("unknown label 'Machine`) DETACH")):
        node_spec("Machine`) DETACH DELETE n //")
    with pytest.raises(SchemaError, match="declares no relationship"):
        rel_spec("Machine", "CONSUMED_BY", "Operation")


def test_wrong_types_and_bad_records_are_rejected_with_reasons(
    writer: BulkWriter, store: Store
) -> None:
    rows = [
        {"reading_id": "R1", "value": "not a number"},
        {"reading_id": "R2", "measured_at": datetime(2026, 11, 2, 9, 0)},  # no time zone
        {"reading_id": "R3", "measured_at": "2026-11-02"},
        {"reading_id": "R4", "parameter": {"nested": 1}},
        {"reading_id": "R5", "ingest_run": "forged"},
        ["R6", 1.0],
        {"value": 1.0},
        {"reading_id": "R7", "value": "20.5", "measured_at": datetime(2026, 11, 2, tzinfo=UTC)},
    ]
    report = writer.upsert_nodes("ProcessReading", rows)
    reasons = {r.position: r.reason for r in report.rejected}
    assert reasons[0].startswith("property 'value': could not convert string to float")
    assert reasons[1] == (
        "property 'measured_at': datetime without a time zone; give an aware (UTC) datetime"
    )
    assert reasons[2] == "property 'measured_at': datetime expected, got str"
    assert reasons[3] == "property 'parameter' expects a single value, got dict"
    assert reasons[4] == "property 'ingest_run' is set by the writer, not by input"
    assert reasons[5] == "expected a record of properties, got list"
    assert reasons[6] == "missing business key ProcessReading.reading_id"
    assert report.created == 1
    assert store.read("MATCH (r:ProcessReading) RETURN r.reading_id AS id, r.value AS v") == [
        {"id": "R7", "v": 20.5}
    ]


def test_conflicting_duplicate_key_in_one_call_is_rejected(
    writer: BulkWriter, store: Store
) -> None:
    report = writer.upsert_nodes(
        "Machine",
        [
            {"machine_id": "M1", "name": "Mill"},
            {"machine_id": "M1", "name": "Mill"},
            {"machine_id": "M1", "name": "Lathe"},
        ],
    )
    assert (report.created, report.unchanged) == (1, 1)
    assert [r.reason for r in report.rejected] == [
        "key 'M1' repeats record 0 with a different name"
    ]
    assert store.read("MATCH (m:Machine) RETURN m.name AS name") == [{"name": "Mill"}]


def test_later_rows_for_a_key_may_add_properties(store: Store) -> None:
    raised = datetime(2026, 11, 2, 9, 12, tzinfo=UTC)
    cleared = datetime(2026, 11, 2, 9, 20, tzinfo=UTC)
    for batch_size in (10, 1):  # merged inside one batch, and written as an update
        store.write("MATCH (n) DETACH DELETE n")
        report = BulkWriter(store, batch_size=batch_size).upsert_nodes(
            "Alarm",
            [
                {"alarm_id": "A1", "code": "SPINDLE_VIB", "raised_at": raised},
                {"alarm_id": "A1", "cleared_at": cleared},
            ],
        )
        assert not report.rejected
        rows = store.read("MATCH (a:Alarm) RETURN a.code AS code, a.cleared_at AS cleared")
        assert len(rows) == 1 and rows[0]["code"] == "SPINDLE_VIB"
        assert rows[0]["cleared"].to_native().replace(tzinfo=UTC) == cleared


def test_rows_are_written_in_batches(store: Store) -> None:
    seen = []
    writer = BulkWriter(store, batch_size=3, on_batch=lambda r: seen.append(r.batches))
    report = writer.upsert_nodes("Person", ({"person_id": f"{i:08d}"} for i in range(10)))
    assert (report.batches, report.created, seen) == (4, 10, [1, 2, 3, 4])


def test_concurrent_writers_merging_the_same_keys_make_no_duplicates(store: Store) -> None:
    rows = [{"lot_id": f"LOT-{i}", "quantity": float(i)} for i in range(1500)]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            BulkWriter(store, batch_size=250).upsert_nodes("MaterialLot", rows)
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.read(
        "MATCH (l:MaterialLot) RETURN count(l) AS n, count(DISTINCT l.lot_id) AS d"
    ) == [{"n": 1500, "d": 1500}]


def test_constraint_violation_gives_a_clear_error(store: Store) -> None:
    store.write("CREATE (:Machine {machine_id: $key})", key="M-dup")
    with pytest.raises(ConstraintViolation, match="uniqueness constraint violated") as caught:
        store.write("CREATE (:Machine {machine_id: $key})", key="M-dup")
    assert "M-dup" in str(caught.value)
    assert store.read("MATCH (m:Machine) RETURN count(m) AS n") == [{"n": 1}]


def test_references_create_missing_nodes_but_never_overwrite(store: Store) -> None:
    writer = BulkWriter(store, batch_size=2)
    writer.upsert_nodes("Product", [{"product_id": "P-1", "description": "Housing"}])
    ref = {"source_system": "SAP S/4HANA", "source_record": "orders.json:d.results[4]"}
    report = writer.upsert_nodes(
        "Product",
        [
            {"product_id": "P-1", **ref},  # exists: a reference must not touch it
            {"product_id": "P-2", **ref},  # new: created from the reference
            {"product_id": "P-3", **ref},
            {"product_id": "P-3", "description": "Shaft", "source_record": "products.json:1"},
            {"product_id": "P-2", "description": "Cover", "source_record": "products.json:2"},
            {"product_id": "P-2", **ref},  # a later reference adds nothing
        ],
    )
    assert not report.rejected
    rows = store.read(
        "MATCH (p:Product) RETURN p.product_id AS id, p.description AS d, "
        "p.source_record AS origin ORDER BY id"
    )
    assert rows == [
        {"id": "P-1", "d": "Housing", "origin": None},
        {"id": "P-2", "d": "Cover", "origin": "products.json:2"},
        {"id": "P-3", "d": "Shaft", "origin": "products.json:1"},
    ]
