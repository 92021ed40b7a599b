"""One entity, one node: aliases kept in the graph and applied by every run, an alias declared
after the fact merging the two nodes already stored, stubs for entities only named by
events flagged ``unresolved`` until their master record or an alias arrives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opsgraph.graph import identity
from opsgraph.graph.identity import Alias, AliasError, Aliases
from opsgraph.graph.store import Store
from opsgraph.ingest.runner import IngestRunner

EQUIPMENT = "machine_id,line_id,name,machine_type\nM-101,L1,DMU65-A,mill\n"
MAINTENANCE = (
    "maintenance_id,machine_id,maintenance_type,status,start,end\n"
    "MX-1,DMU65-A,preventive,done,2026-11-02T06:00:00Z,2026-11-02T07:00:00Z\n"
    "MX-2,M-101,corrective,done,2026-11-03T06:00:00Z,2026-11-03T07:30:00Z\n"
)
STATES = (
    '{"machine_id": "DMU65-A", "state": "running", "start": "2026-11-02T08:00:00Z"}\n'
    '{"machine_id": "M-101", "state": "idle", "start": "2026-11-02T09:00:00Z"}\n'
)


def _files(tmp_path: Path, **files: str) -> list[Path]:
    paths = []
    for name, text in files.items():
        path = tmp_path / name.replace("_csv", ".csv").replace("_jsonl", ".jsonl")
        path.write_text(text)
        paths.append(path)
    return paths


def _machines(store: Store) -> dict[str, dict]:
    rows = store.read(
        "MATCH (m:Machine) OPTIONAL MATCH (m)-[:HAD_MAINTENANCE]->(e:MaintenanceEvent) "
        "OPTIONAL MATCH (m)-[:HAD_STATE]->(s:MachineState) "
        "RETURN m.machine_id AS id, m.name AS name, m.unresolved AS unresolved, "
        "m.source_record AS source, collect(DISTINCT e.maintenance_id) AS maintenance, "
        "collect(DISTINCT s.state) AS states"
    )
    return {r.pop("id"): {**r, "maintenance": sorted(r["maintenance"])} for r in rows}


def test_alias_declared_after_the_fact_merges_the_two_nodes(store: Store, tmp_path: Path) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    report = runner.run(
        _files(tmp_path, equipment_csv=EQUIPMENT, maintenance_csv=MAINTENANCE, states_jsonl=STATES)
    )
    assert report.rejected == 0
    assert report.stubbed == {"Machine": 1, "Line": 1}  # DMU65-A (maintenance, state), L1
    before = _machines(store)
    assert set(before) == {"M-101", "DMU65-A"}
    assert before["DMU65-A"]["unresolved"] is True  # only the maintenance row named it
    assert before["DMU65-A"]["source"].endswith("maintenance.csv:line 2")
    assert before["M-101"]["unresolved"] is None

    done = identity.declare(store, [Alias("Machine", "DMU65-A", "M-101", "safetyculture")], "t")
    assert done.merged == ["Machine 'DMU65-A' -> 'M-101'"]
    assert done.relationships_moved == 2  # its maintenance event and its state
    after = _machines(store)
    assert list(after) == ["M-101"]
    assert after["M-101"]["maintenance"] == ["MX-1", "MX-2"]
    assert sorted(after["M-101"]["states"]) == ["idle", "running"]
    assert after["M-101"]["name"] == "DMU65-A" and after["M-101"]["unresolved"] is None
    # the two timelines are one: the running state now ends where the idle one begins
    running = store.read("MATCH (s:MachineState {state: 'running'}) RETURN s.duration_s AS s")
    assert running == [{"s": 3600.0}]

    again = identity.declare(store, [Alias("Machine", "DMU65-A", "M-101", "safetyculture")], "t")
    assert (again.added, again.unchanged, again.merged) == (0, 1, [])

    # a later run that names the alias writes to M-101: no second machine again
    runner.run(
        _files(
            tmp_path,
            later_csv="maintenance_id,machine_id,maintenance_type\nMX-3,DMU65-A,inspection\n",
        )
    )
    assert _machines(store)["M-101"]["maintenance"] == ["MX-1", "MX-2", "MX-3"]
    assert set(_machines(store)) == {"M-101"}
    assert identity.load(store).theirs("Machine", "M-101", "safetyculture") == "DMU65-A"


def test_alias_for_a_key_no_node_has_renames_the_node(store: Store, tmp_path: Path) -> None:
    IngestRunner(store, tmp_path / "state").run(_files(tmp_path, maintenance_csv=MAINTENANCE))
    done = identity.declare(store, [Alias("Machine", "M-101", "EQ-0101")], "t")
    assert done.renamed == ["Machine 'M-101' -> 'EQ-0101'"]
    assert set(_machines(store)) == {"DMU65-A", "EQ-0101"}
    assert _machines(store)["EQ-0101"]["maintenance"] == ["MX-2"]


def test_runner_stores_the_aliases_it_was_given_for_later_runs(
    store: Store, tmp_path: Path
) -> None:
    aliases = Aliases.parse('[Machine]\n"DMU65-A" = "M-101"\n', "aliases.toml")
    IngestRunner(store, tmp_path / "state", aliases=aliases).run(
        _files(tmp_path, equipment_csv=EQUIPMENT)
    )
    # a new runner (the webhook, MQTT, tomorrow's run) has no --aliases but the store has them
    IngestRunner(store, tmp_path / "state").run(_files(tmp_path, maintenance_csv=MAINTENANCE))
    assert list(_machines(store)) == ["M-101"]
    [stored] = identity.listing(store)
    assert stored["source_record"] == "aliases.toml:Machine.DMU65-A"
    assert identity.remove(store, "Machine", "DMU65-A") is True
    assert identity.remove(store, "Machine", "DMU65-A") is False


def test_unresolved_stub_is_resolved_by_its_master_record(store: Store, tmp_path: Path) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    runner.run(_files(tmp_path, maintenance_csv=MAINTENANCE.replace("DMU65-A", "M-999")))
    assert _machines(store)["M-999"]["unresolved"] is True
    runner.run(_files(tmp_path, equipment_csv=EQUIPMENT.replace("M-101", "M-999")))
    assert _machines(store)["M-999"]["unresolved"] is None
    assert _machines(store)["M-999"]["name"] == "DMU65-A"


def test_unresolved_is_set_by_the_writer_not_by_input(store: Store) -> None:
    from opsgraph.graph.writer import BulkWriter

    result = BulkWriter(store).upsert_nodes("Machine", [{"machine_id": "M-1", "unresolved": 0}])
    assert [r.reason for r in result.rejected] == [
        "property 'unresolved' is set by the writer, not by input"
    ]


def test_suggest_finds_likely_duplicates(store: Store, tmp_path: Path) -> None:
    IngestRunner(store, tmp_path / "state").run(
        _files(
            tmp_path,
            equipment_csv=EQUIPMENT + "m101,L1,,mill\nM-102,L1,Lathe 2,lathe\nM-103,L1,lathe 2,\n",
            maintenance_csv=MAINTENANCE,
        )
    )
    found = {(s.alias, s.key): s.reason for s in identity.suggest(store, ["Machine"])}
    assert found == {
        ("DMU65-A", "M-101"): "its key is the name of Machine 'M-101'; "
        "known only from records that name it",
        ("m101", "M-101"): "the keys differ only in case, punctuation or leading zeros",
        ("M-103", "M-102"): "same name 'Lathe 2'",
    }


def test_alias_files_and_conflicts_are_refused_with_the_reason(store: Store) -> None:
    with pytest.raises(AliasError, match=r"a.toml: \[Robot\]: unknown label 'Robot'"):
        Aliases.parse('[Robot]\n"R1" = "M-1"\n', "a.toml")
    with pytest.raises(AliasError, match="stands for both 'M-1' and 'M-2'"):
        Aliases.parse('[Machine]\n"X" = "M-1"\n[Machine.mes]\n"X" = "M-2"\n', "a.toml")
    with pytest.raises(AliasError, match="malformed TOML"):
        Aliases.parse('[Machine\n"X" = "M-1"\n', "a.toml")
    identity.declare(store, [Alias("Machine", "X", "M-1")], "t")
    with pytest.raises(AliasError, match="'X' already stands for 'M-1'; remove it first"):
        identity.declare(store, [Alias("Machine", "X", "M-2")], "t")
    with pytest.raises(AliasError, match="'M-1' is the business key other aliases stand for"):
        identity.declare(store, [Alias("Machine", "M-1", "M-3")], "t")
    # an alias of an alias stands for the key the first one names
    identity.declare(store, [Alias("Machine", "Y", "X")], "t")
    assert identity.load(store)("Machine", "Y") == "M-1"


def test_webhook_and_graphql_mutations_apply_the_stored_aliases(
    store: Store, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from opsgraph.api.app import ApiKeys, create_app
    from opsgraph.graph.settings import Settings

    IngestRunner(store, tmp_path / "state").run(_files(tmp_path, equipment_csv=EQUIPMENT))
    store.write("CREATE (:Person {person_id: '00004711', name: 'Jonas Weber'})")
    identity.declare(
        store,
        [
            Alias("Machine", "DMU65-A", "M-101"),
            Alias("Person", "user_623d74253aae", "00004711", "safetyculture"),
        ],
        "t",
    )
    key = ApiKeys(tmp_path).create("writer", "mes")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(store, Settings(home=tmp_path))) as client:
        posted = client.post(
            "/ingest", params={"filename": "maintenance.csv"}, content=MAINTENANCE, headers=auth
        )
        assert posted.status_code == 200, posted.text
        decided = client.post(
            "/graphql",
            json={
                "query": 'mutation { recordDecision(clientId: "c-9", decidedBy: '
                '"user_623d74253aae", decisionType: "maintenance", summary: "Replace the '
                'spindle bearing", about: [{label: "Machine", key: "DMU65-A"}]) '
                "{ decisionId } }"
            },
            headers=auth,
        ).json()
    assert "errors" not in decided, decided
    assert list(_machines(store)) == ["M-101"]
    assert _machines(store)["M-101"]["maintenance"] == ["MX-1", "MX-2"]
    linked = store.read(
        "MATCH (p:Person)-[:DECIDED]->(:Decision)-[:ABOUT]->(m:Machine) "
        "RETURN p.person_id AS person, m.machine_id AS machine"
    )
    assert linked == [{"person": "00004711", "machine": "M-101"}]


def test_graphql_shows_and_filters_unresolved_stubs_and_aliases(
    store: Store, tmp_path: Path
) -> None:
    from opsgraph.api.graphql import Context, build_schema

    IngestRunner(store, tmp_path / "state").run(
        _files(tmp_path, equipment_csv=EQUIPMENT, maintenance_csv=MAINTENANCE)
    )
    identity.declare(store, [Alias("Machine", "MILL-7", "M-101", "cmms")], "t")
    query = build_schema().execute(
        "{ machines(filter: {unresolved: true}) { nodes { machineId unresolved sourceRecord } }"
        "  aliases { nodes { otherId businessKey system sourceRecord } } }",
        context_value=Context(store),
    )
    result = asyncio.run(query)
    assert result.errors is None, result.errors
    assert result.data["machines"]["nodes"] == [
        {"machineId": "DMU65-A", "unresolved": True, "sourceRecord": "maintenance.csv:line 2"}
    ]
    assert result.data["aliases"]["nodes"] == [
        {
            "otherId": "MILL-7",
            "businessKey": "M-101",
            "system": "cmms",
            "sourceRecord": "t:Machine.MILL-7",
        }
    ]


def test_deviation_ids_of_earlier_versions_are_migrated_and_still_found(
    store: Store, tmp_path: Path
) -> None:
    from opsgraph.graph import decisions

    checks = tmp_path / "checks.csv"
    checks.write_text(
        "check_id,characteristic,value,unit,lower_limit,upper_limit,checked_at\n"
        "QC-7,bore,42.5,mm,41.99,42.01,2026-11-02T09:30:00Z\n"
    )
    runner = IngestRunner(store, tmp_path / "state")
    assert runner.run([checks]).new_deviations == ["DEV-QC-7"]  # the tag is not repeated
    # a graph written by an earlier version holds the deviation as DEV-QC-QC-7
    store.write("MATCH (d:Deviation {deviation_id: 'DEV-QC-7'}) SET d.deviation_id = 'DEV-QC-QC-7'")
    again = runner.run([checks], full=True)
    assert again.new_deviations == []  # renamed, not found a second time
    ids = store.read("MATCH (d:Deviation) RETURN d.deviation_id AS id")
    assert ids == [{"id": "DEV-QC-7"}]
    decisions.acknowledge_deviation(store, "DEV-QC-QC-7")  # the old ID still finds it
    status = store.read("MATCH (d:Deviation) RETURN d.status AS s")
    assert status == [{"s": "acknowledged"}]
