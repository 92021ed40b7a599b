"""The demo plant: deterministic, in the real formats, and its ground truth matches what the
deviation rules find once it is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsgraph.graph.identity import Aliases
from opsgraph.graph.store import Store
from opsgraph.ingest.demo import generate
from opsgraph.ingest.runner import IngestRunner


def test_same_seed_same_plant_other_seed_other_plant(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=3, weeks=3)
    second = generate(tmp_path / "b", seed=3, weeks=3)
    other = generate(tmp_path / "c", seed=4, weeks=3)
    assert first == second and first != other
    for name in ("erp/production_orders_001.json", "mes/quality_checks.csv", "aliases.toml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    kinds = {cause["kind"] for cause in first["causes"]}
    assert kinds == {"supplier_lot", "worn_tool", "uncertified_operator", "changeover_drift"}


def test_loaded_demo_shows_every_deviation_the_ground_truth_names(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "plant"
    truth = generate(out, seed=11, weeks=4)
    report = IngestRunner(
        store, tmp_path / "state", aliases=Aliases.load(out / "aliases.toml")
    ).run([out / "erp", out / "mes", out / "worker"])
    assert report.rejected == 0, report.dead_letters and Path(report.dead_letters).read_text()[:500]
    expected = {d for cause in truth["causes"] for d in cause["deviations"]}
    found = {r["id"] for r in store.read("MATCH (d:Deviation) RETURN d.deviation_id AS id")}
    assert expected and expected <= found
    for cause in truth["causes"]:
        key = store.read(
            "MATCH (n) WHERE $label IN labels(n) RETURN n", label=cause["label"]
        )  # the cause's label exists in the graph
        assert key, cause["label"]
    lot = next(c for c in truth["causes"] if c["kind"] == "supplier_lot")
    supplied = store.read(
        "MATCH (s:Supplier)-[:SUPPLIED]->(l:MaterialLot {lot_id: $lot})"
        "-[:CONSUMED_BY]->(o:Operation) "
        "RETURN s.supplier_id AS supplier, count(o) AS operations",
        lot=lot["key"],
    )
    assert supplied[0]["supplier"] == lot["related"][0][1] and supplied[0]["operations"] > 0
    worn = next(c for c in truth["causes"] if c["kind"] == "worn_tool")
    missed = store.read(
        "MATCH (m:Machine)-[:HAD_MAINTENANCE]->(e:MaintenanceEvent {maintenance_id: $key}) "
        "RETURN e.status AS status, m.machine_id AS machine",
        key=worn["key"],
    )
    assert missed == [{"status": "missed", "machine": worn["related"][0][1]}]
    inspected = store.read(
        "MATCH (i:Inspection)-[:INSPECTED]->(m:Machine {machine_id: $m}) RETURN count(i) AS n",
        m=worn["related"][0][1],
    )
    assert inspected[0]["n"] > 0  # SafetyCulture asset tags resolved through the alias map
    decisions = store.read(
        "MATCH (:Person)-[:DECIDED]->(d:Decision)-[:ABOUT]->(:Deviation) "
        "MATCH (d)-[:HAS_OUTCOME]->(o:Outcome) RETURN count(d) AS n"
    )
    assert decisions[0]["n"] > 0
    json.dumps(truth)  # the ground truth is plain JSON


def test_variants_leave_out_what_real_exports_lack(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "plant"
    variants = ("no-machine-types", "no-certifications", "no-maintenance-records", "alarm-noise")
    truth = generate(out, seed=11, weeks=4, variants=variants)
    assert truth["variants"] == sorted(variants)
    assert not (out / "mes" / "maintenance.csv").exists()
    assert not (out / "worker" / "skills_matrix.csv").exists()
    assert "machine_type" not in (out / "erp" / "equipment.csv").read_text().splitlines()[0]
    worn = next(c for c in truth["causes"] if c["kind"] == "worn_tool")
    assert worn["label"] == "Machine"  # no maintenance record to blame: the machine
    report = IngestRunner(
        store, tmp_path / "state", aliases=Aliases.load(out / "aliases.toml")
    ).run([out / "erp", out / "mes", out / "worker"])
    assert report.rejected == 0
    typed = store.read("MATCH (m:Machine) WHERE m.machine_type IS NOT NULL RETURN count(m) AS n")
    assert typed == [{"n": 0}]
    checklists = store.read(
        "MATCH (i:Inspection {template: 'Preventive maintenance checklist'})-[:INSPECTED]->"
        "(:Machine {machine_id: $m}) RETURN count(i) AS n",
        m=worn["key"],
    )
    assert checklists[0]["n"] > 0  # maintenance seen only as checklists
    noise = store.read("MATCH (a:Alarm {code: 'AXIS_LOAD'}) RETURN count(a) AS n")
    assert noise[0]["n"] > 20
    assert set(truth["unexplained"]) <= {
        r["id"] for r in store.read("MATCH (d:Deviation) RETURN d.deviation_id AS id")
    }


def test_an_unknown_variant_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown demo variant.*no-machine-types"):
        generate(tmp_path / "plant", seed=1, weeks=3, variants=["no-machine-typos"])
