"""Ingesting SAP S/4HANA OData exports through the runner, checked on the graph."""

from __future__ import annotations

import gc
import json
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsgraph.graph.store import Store
from opsgraph.ingest.parking import ParkingLot
from opsgraph.ingest.runner import IngestRunner, UnknownFormat

DATA = Path(__file__).parent / "data"


def _runner(store: Store, tmp_path: Path) -> IngestRunner:
    return IngestRunner(store, tmp_path / "state", batch_size=7)


def test_sap_exports_build_the_order_graph(store: Store, tmp_path: Path) -> None:
    report = _runner(store, tmp_path).run([DATA / "sap"], rules=False)
    assert (report.records, report.rejected) == (10, 0)
    skipped = {Path(s.path).name: s.skipped for s in report.sources}
    assert skipped["confirmations.json"] == 1  # the reversal confirmation
    assert sum(skipped.values()) == 1
    master = _one(
        store,
        "MATCH (c:Customer)<-[:ORDERED_BY]-(so:SalesOrder)-[:HAS_ITEM]->(i:SalesOrderItem)"
        "-[:FOR_PRODUCT]->(p:Product) MATCH (i)-[:FULFILLED_BY]->(o:ProductionOrder) "
        "RETURN c.customer_id AS customer, i.quantity AS qty, p.description AS product, "
        "o.order_id AS order",
    )
    assert master == {"customer": "C-1001", "qty": 200.0, "product": "Pump housing A",
                      "order": "1000123"}  # fmt: skip
    lot = _one(
        store,
        "MATCH (s:Supplier)-[:SUPPLIED]->(l:MaterialLot {lot_id: 'RM-AL6061-BAR/7731'}) "
        "RETURN s.supplier_id AS supplier, l.supplier_batch AS theirs, "
        "l.expires_at IS NOT NULL AS x",
    )
    assert lot == {"supplier": "S-104", "theirs": "AWS-2026-0419", "x": True}
    order = store.read(
        "MATCH (o:ProductionOrder {order_id: '1000123'})-[:PRODUCES]->(p:Product) "
        "MATCH (i:SalesOrderItem)-[:FULFILLED_BY]->(o) "
        "RETURN o.status AS status, o.total_quantity AS qty, o.planned_start AS start, "
        "p.product_id AS product, i.item_id AS item, o.source_system AS system"
    )[0]
    assert order["start"].to_native().replace(tzinfo=UTC) == datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert {k: v for k, v in order.items() if k != "start"} == {
        "status": "TECO", "qty": 200.0, "product": "FG-HOUSING-A", "item": "5000017/10",
        "system": "SAP S/4HANA",
    }  # fmt: skip
    path = store.read(
        "MATCH (:ProductionOrder {order_id: '1000123'})-[:HAS_OPERATION]->(a:Operation)"
        "-[:NEXT]->(b:Operation) MATCH (a)-[:AT_WORK_CENTER]->(w:WorkCenter) "
        "MATCH (c:Confirmation)-[:CONFIRMS]->(a) MATCH (p:Person)-[:PERFORMED]->(a) "
        "MATCH (p)-[:ENTERED]->(c) "
        "RETURN a.operation_id AS a, b.operation_id AS b, w.work_center_id AS wc, "
        "c.scrap_quantity AS scrap, c.variance_reason AS reason, p.person_id AS person"
    )
    assert path == [
        {"a": "1000123/0010", "b": "1000123/0020", "wc": "MILL-01", "scrap": 29.0,
         "reason": "0004", "person": "00004711"}
    ]  # fmt: skip
    genealogy = store.read(
        "MATCH (s:Supplier)-[:SUPPLIED]->(l:MaterialLot)-[i:ISSUED_TO]->(o:ProductionOrder) "
        "MATCH (fg:MaterialLot)-[:PRODUCED_BY]->(o) "
        "RETURN s.supplier_id AS supplier, l.lot_id AS lot, i.quantity AS qty, "
        "i.material_document AS doc, i.posted_at AS posted, o.order_id AS order, fg.lot_id AS fg"
    )
    assert len(genealogy) == 1
    row = genealogy[0]
    assert row["posted"].to_native().date().isoformat() == "2026-11-02"
    assert (row["supplier"], row["lot"], row["qty"], row["doc"], row["order"], row["fg"]) == (
        "S-104", "RM-AL6061-BAR/7731", 240.0, "2026/4900001234/1", "1000123", "FG-HOUSING-A/FG-0001"
    )  # fmt: skip
    assert store.read("MATCH (c:Confirmation) RETURN count(c) AS n") == [{"n": 1}]


def _one(store: Store, query: str) -> dict:
    rows = store.read(query)
    assert len(rows) == 1, rows
    return rows[0]


def _dump(store: Store) -> list[str]:
    return sorted(
        repr(r)
        for r in store.read(
            "MATCH (n) OPTIONAL MATCH (n)-[r]->(m) "
            "RETURN labels(n) AS l, properties(n) AS n, type(r) AS t, properties(r) AS r"
        )
    )


def test_reingest_changes_nothing(store: Store, tmp_path: Path) -> None:
    _runner(store, tmp_path).run([DATA / "sap"])
    before = _dump(store)
    again = _runner(store, tmp_path).run([DATA / "sap"], full=True)
    assert (again.records, again.findings) == (10, 2)  # the rules found two deviations
    assert all(w["created"] == 0 and w["updated"] == 0 for w in again.writes.values())
    assert _dump(store) == before


def test_a_run_leaves_the_collector_as_it_found_it(store: Store, tmp_path: Path) -> None:
    """Runs collect young objects less often (a batch keeps many alive); the process's own
    setting, e.g. the API server's, comes back when the last of two overlapping runs ends,
    even when the run that started first ends first."""
    before = gc.get_threshold()
    gc.set_threshold(1234, 7, 9)
    other_started, first_done = threading.Event(), threading.Event()
    seen: list[tuple[int, ...]] = []

    def other_record(path: str, count: int) -> None:  # a webhook's run in another thread
        if not other_started.is_set():
            other_started.set()
            assert first_done.wait(60)  # it outlives the first run: nothing written yet
        seen.append(gc.get_threshold())

    other = _runner(store, tmp_path / "other")
    other.on_record = other_record
    thread = threading.Thread(target=other.run, args=([DATA / "sap"],), kwargs={"full": True})

    def first_record(path: str, count: int) -> None:
        if not other_started.is_set():
            thread.start()
            assert other_started.wait(60)
        seen.append(gc.get_threshold())

    first = _runner(store, tmp_path)
    first.on_record = first_record
    try:
        first.run([DATA / "sap"])
        first_done.set()
        thread.join(60)
        assert other_started.is_set() and not thread.is_alive()
        assert len(seen) > 10 and all(threshold[0] >= 50_000 for threshold in seen)
        assert gc.get_threshold() == (1234, 7, 9)
    finally:
        first_done.set()
        if thread.is_alive():
            thread.join(60)
        gc.set_threshold(*before)


def test_watermarks_skip_unchanged_files_and_pick_up_changed_ones(
    store: Store, tmp_path: Path
) -> None:
    source = tmp_path / "exports"
    shutil.copytree(DATA / "sap", source)
    _runner(store, tmp_path).run([source], rules=False)
    second = _runner(store, tmp_path).run([source], rules=False)
    assert all(s.unchanged_since_last_run for s in second.sources)
    orders = source / "production_orders.json"
    orders.write_text(
        orders.read_text().replace('"TotalQuantity": "150.000"', '"TotalQuantity": "160"')
    )
    third = _runner(store, tmp_path).run([source], rules=False)
    reprocessed = [Path(s.path).name for s in third.sources if not s.unchanged_since_last_run]
    assert reprocessed == ["production_orders.json"]
    assert third.writes["ProductionOrder"]["updated"] == 1
    assert store.read(
        "MATCH (o:ProductionOrder {order_id: '1000124'}) RETURN o.total_quantity AS q"
    ) == [{"q": 160.0}]


def test_bad_input_goes_to_dead_letters_while_valid_records_load(
    store: Store, tmp_path: Path
) -> None:
    _runner(store, tmp_path).run([DATA / "sap" / "production_orders.json"])
    before = store.read("MATCH (n) RETURN count(n) AS n")
    report = _runner(store, tmp_path).run([DATA / "bad"], dead_letter_path=tmp_path / "dead.jsonl")
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    reasons = {(Path(d["source"]).name, d["position"]): d["reason"] for d in letters}
    assert report.rejected == len(letters) == 7
    assert (
        reasons[("bad_records.json", "d.results[0]")]
        == "TotalQuantity: expected a number, got 'lots'"
    )
    assert reasons[("bad_records.json", "d.results[2]")] == "missing ManufacturingOrder"
    assert reasons[("bad_records.json", "d.results[3]")] == (
        "MfgOrderPlannedStartTime: 'PT25H00M00S' is not a time of day"
    )
    assert reasons[("bad_records.json", "d.results[4]")] == "expected an entity object, got str"
    assert reasons[("truncated_orders.json", "file")] == (
        "malformed JSON at line 3, column 65 (byte 198): Invalid control character "
        "(the file ends there: cut short?)"
    )  # the orders before the cut are loaded
    assert reasons[("not_odata.json", "file")] == (
        'not_odata.json: JSON, but not an export opsgraph reads: no OData v2 envelope {"d": '
        '{"results": [...]}} in this file'
    )
    counts = {Path(x.path).name: (x.records, x.loaded, x.rejected) for x in report.sources}
    assert counts["not_odata.json"] == (0, 0, 1)  # the file is rejected, no record is
    assert all(loaded >= 0 for _, loaded, _ in counts.values())
    # a confirmation of an order not loaded yet is not bad: it waits for the order
    assert report.parked == report.waiting == 1
    (waiting,) = ParkingLot(tmp_path / "state").read()
    assert (Path(waiting.source).name, waiting.position) == (
        "unknown_reference_confirmations.json",
        "d.results[0]",
    )
    assert waiting.reason.startswith(
        "(Confirmation)-[:CONFIRMS]->(Operation): unknown Operation operation_id='9999999/0010'"
    )
    assert letters[1]["raw"]["TotalQuantity"] == "lots"
    # The good records beside the bad ones loaded; the rejected ones left nothing behind.
    loaded = store.read("MATCH (o:ProductionOrder) RETURN o.order_id AS id ORDER BY id")
    assert [r["id"] for r in loaded] == ["1000123", "1000124", "2000001", "3000006"]
    assert store.read("MATCH (c:Confirmation) RETURN count(c) AS n") == [{"n": 0}]
    # Two orders and the product they name; nothing from the parked confirmation's person.
    assert store.read("MATCH (n) RETURN count(n) AS n")[0]["n"] == before[0]["n"] + 3
    assert store.read("MATCH (p:Product {product_id: 'FG-SHAFT-20'}) RETURN count(p) AS n") == [
        {"n": 1}
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "orders.json",
            '{"d": {"results": [{"ManufacturingOrder": "1"',
            "malformed JSON at line 1",
        ),
        ("broken.json", '{"d":\n {"results": [}\n', "malformed JSON at line 2, column 15"),
        ("feed.jsonl", '{"a": 1}\n{"a": \n', "malformed JSON at line 2, column 7"),
        ("agent.xml", '<?xml version="1.0"?>\n<MTConnectStreams xmlns=', "malformed XML at line 2"),
        ("other.xml", "<Invoice><Total>3</Total></Invoice>", "XML with root <Invoice>"),
        ("empty.json", "", "the file is empty"),
        ("prices.csv", "sku,price\nA,3\n", "its columns (price, sku) match no built-in"),
    ],
)
def test_unrecognised_files_say_what_is_wrong_with_them(
    store: Store, tmp_path: Path, name: str, content: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UnknownFormat) as raised:
        _runner(store, tmp_path).detect(path)
    assert str(raised.value).startswith(f"{name}: {reason}"), raised.value


def test_a_record_that_arrives_before_its_parent_loads_when_the_parent_does(
    store: Store, tmp_path: Path
) -> None:
    """Confirmations exported before their order: parked with the reason, loaded by the run
    that brings the order (with the provenance of the file they came from), then gone from
    the parking lot."""
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir()
    late.mkdir()
    (early / "confirmations.json").write_text((DATA / "sap" / "confirmations.json").read_text())
    first = _runner(store, tmp_path).run([early])
    assert first.rejected == 0 and first.parked > 0
    assert store.read("MATCH (c:Confirmation) RETURN count(c) AS n") == [{"n": 0}]
    assert all(p.rank < 50 for p in ParkingLot(tmp_path / "state").read())
    for name in ("production_orders.json",):
        (late / name).write_text((DATA / "sap" / name).read_text())
    second = _runner(store, tmp_path).run([late])
    assert second.unparked == first.parked and second.waiting == 0
    assert ParkingLot(tmp_path / "state").read() == []
    rows = store.read(
        "MATCH (c:Confirmation)-[:CONFIRMS]->(o:Operation) "
        "RETURN count(c) AS n, collect(DISTINCT c.source_record)[0] AS origin"
    )
    assert rows[0]["n"] == first.parked
    assert rows[0]["origin"].startswith("confirmations.json:d.results[")


def test_sap_master_data_names_suppliers_and_work_centers(store: Store, tmp_path: Path) -> None:
    """A_Supplier and A_BusinessPartner (API_BUSINESS_PARTNER) and A_WorkCenters
    (API_WORK_CENTERS) load before the orders and batches that name them by number."""
    report = _runner(store, tmp_path).run([DATA / "sap_masters", DATA / "sap"], rules=False)
    assert report.rejected == 0
    order = [Path(s.path).name for s in report.sources]
    assert max(order.index(n) for n in ("suppliers.json", "business_partners.json")) < order.index(
        "batches.json"
    )
    skipped = {Path(s.path).name: s.skipped for s in report.sources}
    assert skipped["business_partners.json"] == 1  # a customer, not a supplier
    suppliers = store.read(
        "MATCH (s:Supplier) WHERE s.supplier_id IN ['0000100001', '0000100002'] "
        "RETURN s.supplier_id AS id, s.name AS name, s.country AS country ORDER BY id"
    )
    assert suppliers == [
        {"id": "0000100001", "name": "Aluwerk Hannover GmbH", "country": None},
        {"id": "0000100002", "name": "Stahlhandel Ruhr AG", "country": "DE"},
    ]
    center = _one(
        store,
        "MATCH (o:Operation)-[:AT_WORK_CENTER]->(w:WorkCenter {work_center_id: 'MILL-01'}) "
        "RETURN w.name AS name, w.plant AS plant, count(o) > 0 AS used",
    )
    assert center == {"name": "Milling center 1", "plant": "1010", "used": True}
