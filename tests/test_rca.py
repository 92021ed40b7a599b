"""Root-cause analysis on small hand-built plants where the cause is known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from opsgraph.graph.rca import METHOD, RcaError, RootCauseAnalyzer
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
    assert edges[0]["lot"] == "L-BAD" and edges[0]["method"] == METHOD
    assert json.loads(edges[0]["evidence"])[0][-1] == {"label": "MaterialLot", "key": "L-BAD"}


def test_common_causes_across_a_set_of_deviations(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10], noise=[4])
    found = RootCauseAnalyzer(store).common_causes(deviation_type="scrap")
    assert (found["selected"], found["analysed"]) == (6, 6)
    lot = next(c for c in found["shared_causes"] if c["pattern"] == "MaterialLot L-BAD")
    assert lot["keys"] == ["L-BAD"]
    assert lot["deviations"] == 5 and lot["of"] == 6


def test_unknown_or_untraceable_deviations_get_a_clear_error(store: Store) -> None:
    _plant(store, bad_runs=[2])
    BulkWriter(store).upsert_nodes("Deviation", [{"deviation_id": "DEV-FLOATING"}])
    analyzer = RootCauseAnalyzer(store)
    with pytest.raises(RcaError, match="no deviation 'DEV-NOPE'"):
        analyzer.analyze("DEV-NOPE")
    with pytest.raises(RcaError, match="is about no operation, order or machine"):
        analyzer.analyze("DEV-FLOATING")


# -- failure modes of comparing against optional metadata or raw rates -------------------------


def _work(store: Store, runs: list[dict]) -> None:
    """Operations from plain specs: ``op``, ``day`` (hours after T0 if ``hour``), ``machine``,
    optional ``lot``, ``person``, ``step``, ``order`` and ``bad`` (a scrap deviation about
    it). Machines carry no type, as SAP work centers and MTConnect devices do not."""
    w = BulkWriter(store)
    w.upsert_nodes("Machine", [{"machine_id": m} for m in sorted({r["machine"] for r in runs})])
    lots = sorted({r["lot"] for r in runs if r.get("lot")})
    people = sorted({r["person"] for r in runs if r.get("person")})
    w.upsert_nodes("MaterialLot", [{"lot_id": lot} for lot in lots])
    w.upsert_nodes("Person", [{"person_id": p} for p in people])
    ops, devs = [], []
    for r in runs:
        start = T0 + timedelta(days=r["day"], hours=r.get("hour", 0))
        r["start"] = start
        ops.append(
            {
                "operation_id": r["op"],
                "description": r.get("step", "Milling"),
                "actual_start": start,
                "actual_end": start + timedelta(hours=2),
            }
        )
        if r.get("bad"):
            devs.append(
                {
                    "deviation_id": f"DEV-SCRAP-{r['op']}",
                    "deviation_type": "scrap",
                    "severity": "high",
                    "start": start,
                    "end": start + timedelta(hours=2),
                }
            )
    w.upsert_nodes("Operation", ops)
    w.upsert_relationships(
        rel_spec("Operation", "ON_MACHINE", "Machine"),
        [{"start": r["op"], "end": r["machine"]} for r in runs],
    )
    w.upsert_relationships(
        rel_spec("MaterialLot", "CONSUMED_BY", "Operation"),
        [
            {"start": r["lot"], "end": r["op"], "posted_at": r["start"]}
            for r in runs
            if r.get("lot")
        ],
    )
    w.upsert_relationships(
        rel_spec("Person", "PERFORMED", "Operation"),
        [{"start": r["person"], "end": r["op"]} for r in runs if r.get("person")],
    )
    orders = sorted({r["order"] for r in runs if r.get("order")})
    w.upsert_nodes("ProductionOrder", [{"order_id": o} for o in orders])
    w.upsert_relationships(
        rel_spec("ProductionOrder", "HAS_OPERATION", "Operation"),
        [{"start": r["order"], "end": r["op"]} for r in runs if r.get("order")],
    )
    w.upsert_nodes("Deviation", devs)
    w.upsert_relationships(
        rel_spec("Deviation", "ABOUT", "Operation"),
        [
            {"start": d["deviation_id"], "end": d["deviation_id"].removeprefix("DEV-SCRAP-")}
            for d in devs
        ],
    )


def _first(result) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return (result.ranking[0].label, result.ranking[0].key)


def test_a_machine_without_a_type_can_be_the_cause(store: Store) -> None:
    """With no machine types the old comparison collapsed to the machine itself, which then
    could never be a cause; the plant-wide comparison sees it."""
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 4, "hour": 6 * (i % 4), "machine": f"M{i % 4}",
         "lot": f"L{i // 8}", "person": f"P{i % 3}", "bad": i % 4 == 2 and i % 8 != 6}
        for i in range(120)
    ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-114")
    assert _first(result) == ("Machine", "M2") and result.clear
    assert "15 of 30 operations deviated" in result.causes[0].explanation


def test_one_bad_run_on_a_lot_does_not_outrank_twenty_of_forty_on_a_machine(store: Store) -> None:
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 2, "machine": "M1" if i % 2 else "M2",
         "lot": "L-ONCE" if i == 79 else "L-COMMON", "bad": i % 2 == 1 and i % 4 == 1}
        for i in range(80)
    ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-077")  # M1, lot L-COMMON
    assert _first(result) == ("Machine", "M1")
    runs[79]["bad"] = True
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-079")  # M1 and the one-off lot
    assert _first(result) == ("Machine", "M1")
    once = next(c for c in result.ranking if c.key == "L-ONCE")
    assert once not in result.causes  # seen once, in this very run: no evidence beyond it


def test_a_factor_never_seen_elsewhere_is_no_cause(store: Store) -> None:
    runs = [
        {"op": f"OP-{i:03d}", "day": i, "machine": "M1", "lot": "L-BAD" if i % 3 == 0 else "L-OK",
         "person": "P-NEW" if i == 30 else "P-USUAL", "bad": i % 3 == 0}
        for i in range(31)
    ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-030")
    assert _first(result) == ("MaterialLot", "L-BAD")
    assert "P-NEW" not in {c.key for c in result.causes}


def test_a_problem_that_starts_and_stops_is_seen_in_its_own_days(store: Store) -> None:
    """M1 runs badly for five days of forty: over the whole window it is barely above the
    rest, within its bad days it stands out."""
    runs = []
    for day in range(40):
        for n, machine in enumerate(("M1", "M2", "M3")):
            bad = (machine == "M1" and 20 <= day < 25) or (day * 3 + n) % 29 == 0
            runs.append({"op": f"OP-{day:02d}-{machine}", "day": day, "hour": 3 * n,
                         "machine": machine, "lot": f"L{day // 3}", "bad": bad})  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-23-M1")
    assert _first(result) == ("Machine", "M1") and result.clear
    assert "(local" in result.causes[0].explanation  # counted in its own days


def test_symptoms_support_their_machine_instead_of_competing(store: Store) -> None:
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 3, "hour": 3 * (i % 3), "machine": f"M{i % 3}",
         "lot": f"L{i // 6}", "bad": i % 3 == 1 and i % 2 == 0}
        for i in range(90)
    ]  # fmt: skip
    _work(store, runs)
    alarms = [
        {"alarm_id": f"A-{r['op']}", "code": "SPINDLE_VIB", "level": "Warning",
         "raised_at": r["start"] + timedelta(minutes=30)}
        for r in runs if r["bad"]
    ]  # fmt: skip
    w = BulkWriter(store)
    w.upsert_nodes("Alarm", alarms)
    w.upsert_relationships(
        rel_spec("Machine", "RAISED", "Alarm"),
        [{"start": "M1", "end": a["alarm_id"]} for a in alarms],
    )
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-088")
    assert {c.label for c in result.ranking} <= {"Machine", "MaterialLot"}  # no Alarm ranked
    top = result.causes[0]
    assert (top.label, top.key) == ("Machine", "M1")
    assert "Warning SPINDLE_VIB" in top.explanation
    assert any(path[-1] == {"label": "Alarm", "key": "A-OP-088"} for path in top.evidence)


def test_no_clear_cause_when_nothing_stands_out(store: Store) -> None:
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 3, "hour": 3 * (i % 3), "machine": f"M{i % 3}",
         "lot": f"L{i // 5}", "person": f"P{i % 4}", "bad": i in (17, 52, 89)}
        for i in range(90)
    ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-052")
    assert not result.clear and result.causes == []
    assert any(n.startswith("no clear cause") for n in result.notes)
    assert result.as_dict()["verdict"] == "no clear cause"
    assert len(result.as_dict()["nearest_candidates"]) == 3
    analyzer = RootCauseAnalyzer(store)
    analyzer.persist(result)
    edges = store.read("MATCH (:Deviation)-[r:CAUSED_BY]->() RETURN count(r) AS n")
    assert edges == [{"n": 0}]  # nothing is recorded as the cause


def test_a_lot_that_only_ran_on_a_bad_machine_is_explained_by_the_machine(store: Store) -> None:
    """M1 is bad all along, whatever it runs; lot L-7 ran only on M1 and deviated there, as
    everything on M1 did: the machine explains the lot, not the other way round."""
    runs = []
    for i in range(90):
        machine = f"M{i % 3}"
        lot = "L-7" if machine == "M1" and 40 <= i < 60 else f"L{i // 9}"
        runs.append({"op": f"OP-{i:03d}", "day": i // 3, "hour": 3 * (i % 3), "machine": machine,
                     "lot": lot, "bad": machine == "M1" and i % 2 == 1 or i == 55})  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-049")
    assert _first(result) == ("Machine", "M1")
    lot = next(c for c in result.ranking if c.key == "L-7")
    assert "without those of Machine M1" in lot.explanation


def test_a_downtime_deviation_is_traced_through_the_work_on_the_machine(store: Store) -> None:
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 3, "hour": 3 * (i % 3), "machine": f"M{i % 3}",
         "person": "P-NIGHT" if i % 6 == 4 else f"P{i % 2}"}
        for i in range(90)
    ]  # fmt: skip
    _work(store, runs)
    stops = [r for r in runs if r["person"] == "P-NIGHT"]  # P-NIGHT's runs all stopped
    w = BulkWriter(store)
    w.upsert_nodes(
        "Deviation",
        [{"deviation_id": f"DEV-DOWN-{r['op']}", "deviation_type": "downtime", "severity": "high",
          "start": r["start"] + timedelta(minutes=40)} for r in stops],
    )  # fmt: skip
    w.upsert_relationships(
        rel_spec("Deviation", "ABOUT", "Machine"),
        [{"start": f"DEV-DOWN-{r['op']}", "end": r["machine"]} for r in stops],
    )
    result = RootCauseAnalyzer(store).analyze("DEV-DOWN-OP-082")
    assert result.subjects["operations"] == ["OP-082"]
    assert _first(result) == ("Person", "P-NIGHT") and result.clear


def test_common_causes_group_a_pattern_and_reject_an_unknown_type(store: Store) -> None:
    """Every run right after a changeover on M1 scraps: the changeovers are one pattern,
    not one cause each."""
    runs = [
        {"op": f"OP-{i:03d}", "day": i // 3, "hour": 3 * (i % 3), "machine": f"M{i % 3}",
         "lot": f"L{i // 9}", "bad": i % 3 == 1 and i % 12 == 1}
        for i in range(96)
    ]  # fmt: skip
    _work(store, runs)
    changeovers = [
        {"changeover_id": f"CO-{r['op']}", "start": r["start"] - timedelta(minutes=30)}
        for r in runs
        if r["bad"]
    ]
    w = BulkWriter(store)
    w.upsert_nodes("Changeover", changeovers)
    w.upsert_relationships(
        rel_spec("Machine", "HAD_CHANGEOVER", "Changeover"),
        [{"start": "M1", "end": c["changeover_id"]} for c in changeovers],
    )
    found = RootCauseAnalyzer(store).common_causes(deviation_type="scrap")
    top = found["shared_causes"][0]
    assert top["pattern"] == "changeovers on M1" and top["label"] == "Changeover"
    assert top["deviations"] == found["analysed"] == len(changeovers)
    assert len(top["keys"]) == min(10, len(changeovers))
    with pytest.raises(RcaError, match="no deviations of type 'scarp'; the graph has: scrap"):
        RootCauseAnalyzer(store).common_causes(deviation_type="scarp")
    assert RootCauseAnalyzer(store).common_causes(deviation_type="SCRAP") == found
    BulkWriter(store).upsert_nodes("Line", [{"line_id": "L1"}])
    with pytest.raises(RcaError, match="no line 'L9'; the graph has: L1"):
        RootCauseAnalyzer(store).common_causes(deviation_type="scrap", line="L9")


def test_a_lot_carried_from_an_earlier_step_is_seen_where_its_flaw_shows(store: Store) -> None:
    """Bar stock consumed at turning whose hardness only shows at grinding: the grinding
    deviation's own operation consumed nothing, the lot came with the workpiece."""
    runs = []
    for i in range(40):
        lot = "L-HARD" if 12 <= i < 18 else f"L{i // 6}"
        ground_bad = lot == "L-HARD" and i != 14 or i == 31
        runs += [
            {"op": f"{1000 + i}/0010", "order": str(1000 + i), "day": i // 2, "hour": 8 * (i % 2),
             "machine": f"T{i % 2}", "lot": lot, "person": f"P{i % 3}", "step": "Turning"},
            {"op": f"{1000 + i}/0020", "order": str(1000 + i), "day": i // 2,
             "hour": 8 * (i % 2) + 3, "machine": f"G{i % 3}", "person": f"P{(i + 1) % 3}",
             "step": "Grinding", "bad": ground_bad},
        ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-1016/0020")
    assert _first(result) == ("MaterialLot", "L-HARD") and result.clear
    top = result.causes[0]
    assert "consumed by 1016/0010, earlier in the order of 1016/0020" in top.explanation
    assert [n.get("label") for n in top.evidence[0] if "label" in n] == [
        "Deviation", "Operation", "ProductionOrder", "Operation", "MaterialLot"
    ]  # fmt: skip


def test_the_machine_of_an_earlier_step_is_seen_two_steps_on(store: Store) -> None:
    """A lathe turning off-centre for a week: the parts pass the washer fine and fail at
    grinding, on other machines."""
    runs = []
    for i in range(60):
        lathe = f"T{i % 3}"
        bad = lathe == "T2" and 24 <= i < 45 and i % 5 != 0
        order = str(2000 + i)
        runs += [
            {"op": f"{order}/0010", "order": order, "day": i // 3, "hour": 6 * (i % 3),
             "machine": lathe, "step": "Turning"},
            {"op": f"{order}/0020", "order": order, "day": i // 3, "hour": 6 * (i % 3) + 2,
             "machine": "W1", "step": "Washing"},
            {"op": f"{order}/0030", "order": order, "day": i // 3, "hour": 6 * (i % 3) + 4,
             "machine": f"G{i % 2}", "step": "Grinding", "bad": bad or i == 7},
        ]  # fmt: skip
    _work(store, runs)
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-2038/0030")
    assert _first(result) == ("Machine", "T2") and result.clear
    assert result.causes[0].cause_type == "upstream_operation"
    assert result.causes[0].pattern == "work fed from T2"


def test_a_bad_setup_stays_bad_until_the_fixture_is_rebuilt(store: Store) -> None:
    """A mill alternates two products in two-day setups; the fixture for B is built badly
    on day 10 and remounted at every later setup for B, hours and days after the
    changeover. The setup, not the mill, is the cause."""
    runs, changeovers = [], []
    for day in range(24):
        product = "A" if day // 2 % 2 == 0 else "B"
        if day % 2 == 0:
            changeovers.append((f"CO-M1-{day:02d}", T0 + timedelta(days=day, hours=-1), product))
        for n in range(3):
            op = f"OP-{day:02d}-{n}"
            bad = product == "B" and day >= 10 and (day + n) % 3 != 0
            runs.append({"op": op, "day": day, "hour": 5 * n, "machine": "M1", "step": "Milling",
                         "bad": bad})  # fmt: skip
            runs.append({"op": f"{op}-M2", "day": day, "hour": 5 * n + 1, "machine": "M2",
                         "step": "Milling", "bad": (day + n) % 11 == 0})  # fmt: skip
    _work(store, runs)
    w = BulkWriter(store)
    w.upsert_nodes(
        "Changeover",
        [{"changeover_id": c, "start": at, "end": at + timedelta(minutes=30), "to_product": p}
         for c, at, p in changeovers],
    )  # fmt: skip
    w.upsert_relationships(
        rel_spec("Machine", "HAD_CHANGEOVER", "Changeover"),
        [{"start": "M1", "end": c} for c, _, _ in changeovers],
    )
    result = RootCauseAnalyzer(store).analyze("DEV-SCRAP-OP-18-2")  # ten hours into the setup
    assert _first(result) == ("Changeover", "CO-M1-18") and result.clear
    top = result.causes[0]
    assert (top.cause_type, top.pattern) == ("setup", "setups to B on M1")
    assert "Machine" not in {c.label for c in result.causes[:1]}
