"""A small plant from every source kind (SAP, B2MML, MTConnect, SafetyCulture, CSV/JSON
lines) ingested in one run: the graph joins them, the rules find the deviations, and every
bad record is in the dead-letter file with its reason."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from opsgraph.graph import queries
from opsgraph.graph.identity import Aliases
from opsgraph.graph.store import Store
from opsgraph.ingest.runner import IngestReport, IngestRunner

DATA = Path(__file__).parent / "data"
SOURCES = [DATA / "sap", DATA / "mes", DATA / "worker"]


@pytest.fixture
def plant(store: Store, tmp_path: Path) -> tuple[Store, IngestReport, dict]:
    runner = IngestRunner(
        store, tmp_path / "state", batch_size=50, aliases=Aliases.load(DATA / "aliases.toml")
    )
    report = runner.run(SOURCES, dead_letter_path=tmp_path / "dead.jsonl")
    letters = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    reasons = {(Path(d["source"]).name, d["position"]): d["reason"] for d in letters}
    return store, report, reasons


def _one(store: Store, query: str) -> dict:
    rows = store.read(query)
    assert len(rows) == 1, rows
    return rows[0]


def test_files_load_in_dependency_order(plant: tuple) -> None:
    _, report, _ = plant
    order = [Path(s.path).name for s in report.sources]
    assert order.index("production_orders.json") < order.index("confirmations.json")
    assert order.index("production_performance.xml") < order.index("deviation rules")
    assert order.index("deviation rules") < order.index("operator_notes.csv")
    assert order.index("deviation rules") < order.index("decision_log.csv")


def test_mtconnect_states_alarms_and_samples(plant: tuple) -> None:
    store, _, reasons = plant
    states = store.read(
        "MATCH (:Machine {machine_id: 'M-101'})-[:HAD_STATE]->(s:MachineState) "
        "RETURN s.state AS state, s.reason_code AS reason, s.duration_s AS seconds "
        "ORDER BY s.start"
    )
    assert states == [
        {"state": "idle", "reason": "READY", "seconds": 300.0},
        {"state": "running", "reason": "ACTIVE", "seconds": 10950.0},
        {"state": "down", "reason": "INTERRUPTED", "seconds": 1680.0},
        {"state": "running", "reason": "ACTIVE", "seconds": None},
    ]
    alarm = _one(
        store,
        "MATCH (:Machine {machine_id: 'M-101'})-[:RAISED]->(a:Alarm) "
        "RETURN a.code AS code, a.level AS level, a.message AS message, "
        "a.cleared_at IS NOT NULL AS cleared",
    )
    assert alarm == {"code": "SPINDLE_VIB", "level": "Fault",
                     "message": "Spindle vibration above limit", "cleared": True}  # fmt: skip
    readings = store.read(
        "MATCH (:Machine {machine_id: 'M-101'})-[:MEASURED]->(r:ProcessReading) "
        "RETURN r.parameter AS p, r.value AS v ORDER BY r.measured_at"
    )
    assert readings == [{"p": "Sspeed", "v": 11980.0}, {"p": "Sspeed", "v": 12010.5}]
    assert store.read("MATCH (m:Machine {machine_id: 'Agent'}) RETURN m") == []
    assert reasons[("mtconnect_current_v2.xml", "M-201/exec2@72")] == (
        "unknown Execution value 'SPINNING'"
    )
    assert "not-a-time" in reasons[("mtconnect_current_v2.xml", "M-201/Xact@73")]
    assert reasons[("mtconnect_current_v2.xml", "M-201/Xtemp@74")] == (
        "sample Xtemp: 'forty' is not a number"
    )


def test_b2mml_actuals_join_the_sap_orders(plant: tuple) -> None:
    store, report, reasons = plant
    row = _one(
        store,
        "MATCH (l:MaterialLot)-[c:CONSUMED_BY]->(o:Operation {operation_id: '1000123/0010'})"
        "-[:ON_MACHINE]->(m:Machine) MATCH (p:Person)-[:PERFORMED]->(o) "
        "RETURN l.lot_id AS lot, c.quantity AS qty, m.machine_id AS machine, "
        "collect(DISTINCT p.person_id) AS people",
    )
    assert row == {"lot": "RM-AL6061-BAR/7731", "qty": 240.0, "machine": "M-101",
                   "people": ["00004711"]}  # fmt: skip
    assert _one(
        store,
        "MATCH (:Operation {operation_id: '1000123/0010'})-[:NEXT]->(n)-[:ON_MACHINE]->(m) "
        "RETURN m.machine_id AS m",
    ) == {"m": "M-102"}
    assert reasons[("production_performance.xml", "ProductionResponse[2]/SegmentResponse[1]")] == (
        "ActualStartTime: 'yesterday' is not an ISO 8601 date-time"
    )
    # actuals of an order the ERP has not sent: kept until it does
    parked = {(Path(p["source"]).name, p["position"]): p["reason"] for p in report.parked_records}
    assert (
        "unknown ProductionOrder order_id='7777777'"
        in parked[("production_performance.xml", "ProductionResponse[2]/SegmentResponse[2]")]
    )
    assert store.read("MATCH (o:Operation {operation_id: '7777777/0020'}) RETURN o") == []
    planned = _one(
        store,
        "MATCH (:ProductionOrder {order_id: '1000124'})-[:HAS_OPERATION]->"
        "(o:Operation {operation_id: '1000124/0010'})-[:ON_MACHINE]->(m:Machine) "
        "RETURN m.machine_id AS machine, o.planned_end IS NOT NULL AS planned",
    )
    assert planned == {"machine": "M-101", "planned": True}
    assert reasons[("production_schedule.xml", "ProductionRequest[2]")] == (
        "ProductionRequest without ID"
    )


def test_worker_data_is_linked_through_aliases(plant: tuple) -> None:
    store, _, reasons = plant
    inspection = _one(
        store,
        "MATCH (p:Person)-[:CONDUCTED]->(i:Inspection)-[:INSPECTED]->(m:Machine) "
        "RETURN p.person_id AS person, m.machine_id AS machine, i.failed_items AS failed, "
        "i.template AS template",
    )
    assert inspection == {"person": "00004711", "machine": "M-101", "failed": 1,
                          "template": "CNC start-of-shift checklist"}  # fmt: skip
    action = _one(
        store,
        "MATCH (a:Action)-[:ABOUT]->(item:InspectionItem) MATCH (a)-[:ASSIGNED_TO]->(p:Person) "
        "RETURN a.status AS status, item.label AS item, collect(p.name) AS assignees",
    )
    assert action == {"status": "complete", "item": "Spindle runs without noise or vibration?",
                      "assignees": ["Tom Brandt"]}  # fmt: skip
    assert reasons[("feed_actions.json", "data[1]")] == (
        "due_date: 'soon' is not an ISO 8601 date-time"
    )
    skills = store.read(
        "MATCH (p:Person)-[h:HAS_SKILL]->(:Skill {skill_id: '5AXIS-CNC'}) "
        "RETURN p.person_id AS p, h.certified AS c ORDER BY p"
    )
    assert skills == [{"p": "00004711", "c": "yes"}, {"p": "00004802", "c": "expired"}]
    assert (
        reasons[("skills_matrix.csv", "line 4")] == "column 'level': 'three' is not a valid integer"
    )
    crew = store.read(
        "MATCH (p:Person)-[:WORKED]->(s:Shift {shift_id: 'L1-2026-11-02-B'})-[:ON_LINE]->(l:Line) "
        "RETURN p.person_id AS p, l.line_id AS line ORDER BY p"
    )
    assert crew == [{"p": "00004802", "line": "L1"}, {"p": "00005120", "line": "L1"}]


def test_rules_find_the_deviations_and_notes_and_decisions_attach(plant: tuple) -> None:
    store, report, reasons = plant
    found = {
        r["id"]: r["type"]
        for r in store.read(
            "MATCH (d:Deviation) RETURN d.deviation_id AS id, d.deviation_type AS type"
        )
    }
    assert found == {
        "DEV-SCRAP-1000123/0010": "scrap",
        "DEV-SHORT-1000123": "short_order",
        "DEV-LATE-1000123": "late_order",
        "DEV-QC-1000123-0010-01": "out_of_spec",
        "DEV-DOWN-M-101/2026-11-02T09:12:30+00:00": "downtime",
        "DEV-DOWN-M-102/2026-11-02T15:00:00Z": "downtime",
        "DEV-INSP-audit_5f1c2b7e0d9a4c3b8e6f1a2b3c4d5e6f/q-spindle": "failed_checklist_item",
    }
    scrap = _one(
        store,
        "MATCH (d:Deviation {deviation_id: 'DEV-SCRAP-1000123/0010'})-[:ABOUT]->(m:Machine) "
        "MATCH (n:Note)-[:ABOUT]->(d) MATCH (dec:Decision)-[:ABOUT]->(d) "
        "OPTIONAL MATCH (dec)-[:HAS_OUTCOME]->(o:Outcome) "
        "RETURN d.severity AS severity, m.machine_id AS machine, "
        "collect(DISTINCT n.note_id) AS notes, "
        "collect(DISTINCT [dec.decision_id, o.result]) AS decisions",
    )
    assert scrap["severity"] == "high" and scrap["machine"] == "M-101"
    assert scrap["notes"] == ["NOTE-88122"]
    assert sorted(scrap["decisions"], key=str) == [
        ["DEC-2026-0412", "effective"], ["DEC-2026-0413", None]
    ]  # fmt: skip
    parked = {(Path(p["source"]).name, p["position"]): p["reason"] for p in report.parked_records}
    assert "unknown ProductionOrder order_id='9999999'" in parked[("operator_notes.csv", "line 4")]
    assert store.read("MATCH (n:Note {note_id: 'NOTE-88123'}) RETURN n") == []
    assert (
        reasons[("quality_checks.csv", "line 4")] == "column 'value': '0.6O' is not a valid float"
    )
    assert reasons[("machine_states.jsonl", "line 3")].startswith("malformed JSON")


def test_the_whole_plant_reingests_without_change(plant: tuple, tmp_path: Path) -> None:
    store, first, _ = plant
    again = IngestRunner(
        store, tmp_path / "state", aliases=Aliases.load(DATA / "aliases.toml")
    ).run(SOURCES, full=True, dead_letter_path=tmp_path / "again.jsonl")
    assert again.rejected == first.rejected
    assert {
        k: (v["created"], v["updated"])
        for k, v in again.writes.items()
        if v["created"] or v["updated"]
    } == {}


def _streams(day: str, observations: list[tuple[str, str]]) -> str:
    """An agent's Streams document for M-900 with the given (time, Execution) observations."""
    events = "".join(
        f'<Execution dataItemId="exec" timestamp="{day}T{t}Z" sequence="{i}">{v}</Execution>'
        for i, (t, v) in enumerate(observations, start=1)
    )
    return (
        '<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.0"><Streams>'
        '<DeviceStream name="M-900" uuid="m900"><ComponentStream component="Controller" '
        f'name="c" componentId="c"><Events>{events}</Events></ComponentStream></DeviceStream>'
        "</Streams></MTConnectStreams>"
    )


def _states(store: Store) -> list[tuple[str, str, float | None]]:
    rows = store.read(
        "MATCH (:Machine {machine_id: 'M-900'})-[:HAD_STATE]->(s:MachineState) "
        "RETURN s.start AS start, s.reason_code AS reason, s.duration_s AS seconds "
        "ORDER BY s.start"
    )
    return [(str(r["start"])[:16], r["reason"], r["seconds"]) for r in rows]


def test_machine_states_chain_across_files_runs_and_out_of_order(
    store: Store, tmp_path: Path
) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    day1, day2, day3 = (tmp_path / f"day{i}" for i in (1, 2, 3))
    for folder in (day1, day2, day3):
        folder.mkdir()
    (day1 / "m900.xml").write_text(
        _streams("2026-11-02", [("22:00:00", "ACTIVE"), ("23:00:00", "READY")])
    )
    # the next day's file repeats the state the machine is in, then it stops for 40 minutes
    (day2 / "m900.xml").write_text(
        _streams(
            "2026-11-03", [("00:00:00", "READY"), ("01:00:00", "STOPPED"), ("01:40:00", "ACTIVE")]
        )
    )
    runner.run([day1, day2])
    assert _states(store) == [
        ("2026-11-02T22:00", "ACTIVE", 3600.0),
        ("2026-11-02T23:00", "READY", 7200.0),  # the repeat at midnight is the same interval
        ("2026-11-03T01:00", "STOPPED", 2400.0),
        ("2026-11-03T01:40", "ACTIVE", None),  # still running: the only open interval
    ]
    downtime = store.read(
        "MATCH (d:Deviation {deviation_type: 'downtime'})-[:ABOUT]->(m:Machine) "
        "WHERE m.machine_id = 'M-900' RETURN d.deviation_id AS id"
    )
    assert len(downtime) == 1
    # a later run brings an earlier stretch (a file that arrived late): ordered by time
    (day3 / "m900.xml").write_text(_streams("2026-11-02", [("22:30:00", "STOPPED")]))
    runner.run([day3])
    assert _states(store)[:3] == [
        ("2026-11-02T22:00", "ACTIVE", 1800.0),
        ("2026-11-02T22:30", "STOPPED", 1800.0),
        ("2026-11-02T23:00", "READY", 7200.0),
    ]
    again = runner.run([day1, day2, day3], full=True)
    assert len(_states(store)) == 5 and again.rejected == 0


def _conditions(day: str, observations: list[tuple[str, str]]) -> str:
    """An agent's Streams document for M-900 with (time, level) spindle conditions."""
    conditions = "".join(
        f'<{level} dataItemId="spindle_cond" timestamp="{day}T{t}Z" sequence="{i}" type="LOAD"'
        + (' nativeCode="SPINDLE_VIB">Spindle vibration</Fault>' if level == "Fault" else "/>")
        for i, (t, level) in enumerate(observations, start=1)
    )
    return (
        '<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:2.0"><Streams>'
        '<DeviceStream name="M-900" uuid="m900"><ComponentStream component="Rotary" '
        f'name="C" componentId="c1"><Condition>{conditions}</Condition></ComponentStream>'
        "</DeviceStream></Streams></MTConnectStreams>"
    )


def _alarms(store: Store) -> list[tuple[str, str | None, bool | None]]:
    rows = store.read(
        "MATCH (:Machine {machine_id: 'M-900'})-[:RAISED]->(a:Alarm) WHERE a.level = 'Fault' "
        "RETURN a.raised_at AS raised, a.cleared_at AS cleared, a.cleared_inferred AS inferred "
        "ORDER BY a.raised_at"
    )
    return [
        (str(r["raised"])[:16], r["cleared"] and str(r["cleared"])[:16], r["inferred"])
        for r in rows
    ]


@pytest.mark.parametrize("order", ["in order", "late file first"])
def test_alarms_clear_across_files_and_runs_whatever_the_order(
    store: Store, tmp_path: Path, order: str
) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    day1, day2 = tmp_path / "day1.xml", tmp_path / "day2.xml"
    # raised late on day 1 (and once cleared within the file), back to Normal after midnight
    day1.write_text(
        _conditions(
            "2026-11-02",
            [("08:00:00", "Fault"), ("08:30:00", "Normal"), ("23:50:00", "Fault")],
        )
    )
    day2.write_text(_conditions("2026-11-03", [("00:10:00", "Normal"), ("02:00:00", "Fault")]))
    for file in [day1, day2] if order == "in order" else [day2, day1]:
        assert runner.run([file]).rejected == 0
    assert _alarms(store) == [
        ("2026-11-02T08:00", "2026-11-02T08:30", None),  # its own file cleared it
        ("2026-11-02T23:50", "2026-11-03T00:10", True),  # the next file's Normal
        ("2026-11-03T02:00", None, None),  # still open
    ]
    # a return to Normal is kept to clear other files' alarms, not shown as an alarm
    during = store.read(
        queries.RCA_ALARMS,
        machines=["M-900"],
        since="2026-11-01T00:00:00+00:00",
        until="2026-11-04T00:00:00+00:00",
    )
    assert {r["level"] for r in during} == {"Fault"} and len(during) == 3
    again = runner.run([day1, day2], full=True)
    assert again.rejected == 0 and _alarms(store)[1][1] == "2026-11-03T00:10"


def test_safetyculture_items_that_arrive_before_their_inspection_all_load(
    store: Store, tmp_path: Path
) -> None:
    """Data-feed pages as the exporter writes them, the items page first: after the run that
    brings the inspections, every item is in the graph and the failed one is a deviation."""
    audit = "audit_0c7e5a9b2d4f4e6a8b1c3d5e7f9a1b2c"
    items = [
        {"id": f"row-{n}", "item_id": f"item-{n}", "audit_id": audit, "label": label,
         "type": "question", "response": response, "is_failed_response": failed,
         "modified_at": "2026-11-03T06:20:00Z"}
        for n, (label, response, failed) in enumerate(
            [("Coolant level ok", "Yes", False), ("Spindle noise", "No", True),
             ("Guards closed", "Yes", False)]
        )
    ]  # fmt: skip
    inspection = {
        "id": audit, "name": "Start of shift M-900", "template_id": "template_1a2b",
        "template_name": "Start of shift", "date_started": "2026-11-03T06:00:00Z",
        "date_completed": "2026-11-03T06:25:00Z", "score_percentage": 66.7,
        "asset_id": "M-900", "modified_at": "2026-11-03T06:25:00Z",
    }  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    page = {"metadata": {"next_page": None, "remaining_records": 0}}
    (first / "inspection_items.json").write_text(json.dumps({"data": items, **page}))
    (second / "inspections.json").write_text(json.dumps({"data": [inspection], **page}))
    runner = IngestRunner(store, tmp_path / "state")
    early = runner.run([first])
    assert (early.rejected, early.parked) == (0, 3)
    late = runner.run([second])
    assert (late.rejected, late.unparked, late.waiting) == (0, 3, 0)
    found = store.read(
        "MATCH (i:Inspection {inspection_id: $audit})-[:HAS_ITEM]->(x:InspectionItem) "
        "RETURN x.label AS label, x.failed AS failed ORDER BY label",
        audit=audit,
    )
    assert [(r["label"], r["failed"]) for r in found] == [
        ("Coolant level ok", False),
        ("Guards closed", False),
        ("Spindle noise", True),
    ]
    failed = store.read(
        "MATCH (d:Deviation {deviation_type: 'failed_checklist_item'})-[:ABOUT]->(m:Machine) "
        "WHERE m.machine_id = 'M-900' RETURN count(d) AS n"
    )
    assert failed == [{"n": 1}]


def test_timestamps_without_a_zone_are_refused_unless_the_run_says_how_to_read_them(
    store: Store, tmp_path: Path
) -> None:
    local = tmp_path / "checks.csv"
    local.write_text(
        "check_id,characteristic,value,unit,lower_limit,upper_limit,checked_at\n"
        "QC-TZ-1,bore,42.0,mm,41.99,42.01,2026-11-02T09:30:00\n"
        "QC-TZ-2,bore,42.0,mm,41.99,42.01,2026-11-02T09:30:00Z\n"
    )
    report = IngestRunner(store, tmp_path / "state").run([local], rules=False)
    assert report.rejected == 1
    assert report.rejections[0]["position"] == "line 2"
    assert "'2026-11-02T09:30:00' has no time zone" in report.rejections[0]["reason"]
    assert "--timezone" in report.rejections[0]["reason"]
    berlin = IngestRunner(store, tmp_path / "state", timezone=ZoneInfo("Europe/Berlin"))
    assert berlin.run([local], full=True, rules=False).rejected == 0
    checked = store.read(
        "MATCH (q:QualityCheck) WHERE q.check_id IN ['QC-TZ-1', 'QC-TZ-2'] "
        "RETURN q.check_id AS id, q.checked_at AS at ORDER BY id"
    )
    hours = [r["at"].to_native().astimezone(UTC).hour for r in checked]
    assert hours == [8, 9]  # 09:30 in Berlin (CET) is 08:30 UTC; the zoned one is as given


def test_a_rows_document_with_a_naive_timestamp_says_so(store: Store, tmp_path: Path) -> None:
    doc = tmp_path / "states.json"
    doc.write_text(
        json.dumps(
            {
                "nodes": {
                    "MachineState": [
                        {"state_id": "M-1/a", "state": "down", "start": "2026-11-02T09:30:00"},
                        {"state_id": "M-1/b", "state": "idle", "start": "2026-11-02T10:30:00Z"},
                    ]
                }
            }
        )
    )
    report = IngestRunner(store, tmp_path / "state").run([doc], rules=False)
    assert [(r["position"], r["reason"]) for r in report.rejections] == [
        (
            "nodes.MachineState[0]",
            "start: '2026-11-02T09:30:00' has no time zone: add one (Z, +01:00) or say how to "
            "read it (opsgraph ingest --timezone Europe/Berlin)",
        )
    ]
    assert store.read("MATCH (s:MachineState {state_id: 'M-1/b'}) RETURN count(s) AS n") == [
        {"n": 1}
    ]
