"""The command line, run the way a user runs it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from opsgraph.api.app import ApiKeys
from opsgraph.api.cli import app
from opsgraph.graph.embedded import find_runtime
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.schema import node_specs

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def _args(settings: Settings) -> list[str]:
    return [] if settings.uri else ["--home", str(settings.home)]


def _run_json(settings: Settings, *args: str) -> dict:
    result = runner.invoke(app, [*_args(settings), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_generates_loads_and_reports_the_plant(settings: Settings, store: Store) -> None:
    demo = _run_json(settings, "demo", "--weeks", "3")
    assert demo["ingest"]["rejected"] == 0
    assert {"scrap", "out_of_spec", "short_order", "failed_checklist_item"} <= set(
        demo["deviations"]
    )
    assert demo["injected_causes"] > 0 and demo["worst"]
    stats = _run_json(settings, "stats")
    assert stats["nodes"]["Machine"] == 12 and stats["nodes"]["ProductionOrder"] == 90
    again = _run_json(settings, "demo", "--weeks", "3")
    files = [s for s in again["ingest"]["sources"] if s["format"] != "rules"]
    assert files and all(s["unchanged_since_last_run"] for s in files)
    assert again["stats"] == demo["stats"]


def test_schema_apply_reports_constraints_and_indexes(settings: Settings, store: Store) -> None:
    result = _run_json(settings, "schema", "apply")
    assert result["constraints"] == len(node_specs()) == 31 and result["indexes"] > 31


def test_db_status_reports_the_running_server(settings: Settings) -> None:
    if settings.uri:
        return
    status = _run_json(settings, "db", "status")
    assert status["running"] is True and status["bolt_port"] > 0
    runtime = find_runtime()
    assert status["package"] == runtime.label  # e.g. "arcadedb-embedded 26.10.2.post1 (…)"
    assert status["studio"] is runtime.has_studio


def test_studio_is_shown_or_its_absence_explained(settings: Settings) -> None:
    """arcadedb-jvm ships Studio; arcadedb-embedded does not, and the command says so."""
    if settings.uri:
        return
    result = runner.invoke(app, [*_args(settings), "studio", "--json"])
    info = json.loads(result.stdout)
    assert info["bolt_uri"].startswith("bolt://127.0.0.1:")
    if find_runtime().has_studio:
        assert result.exit_code == 0, result.output
        assert info["studio"] is True and info["url"].startswith("http://127.0.0.1:")
        return
    assert result.exit_code == 1
    assert info["studio"] is False and info["url"] is None
    assert "arcadedb-embedded" in info["missing"]
    assert "pip install 'arcadedb-jvm==26.11.1.dev2'" in info["missing"]
    text = runner.invoke(app, [*_args(settings), "studio"])
    assert text.exit_code == 1
    assert "Studio is not available" in text.stderr and "saved queries run over Bolt" in text.stdout


def test_unreachable_store_gives_one_clear_line_not_a_traceback(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from opsgraph.api.cli import main; main()",
         "--uri", "bolt://127.0.0.1:9", "--password", "x", "stats"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error:" in result.stderr and "cannot reach bolt://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_with_a_declared_mapping_reports_rejections(
    settings: Settings, store: Store, tmp_path
) -> None:
    mapping = DATA / "mapping"
    result = runner.invoke(
        app,
        [*_args(settings), "ingest", str(mapping / "dynamics_orders.csv"),
         "--mapping", str(mapping / "dynamics_orders.toml"),
         "--dead-letters", str(tmp_path / "dead.jsonl"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert (report["records"], report["rejected"]) == (3, 1)
    dead = json.loads((tmp_path / "dead.jsonl").read_text())
    assert (dead["position"], dead["reason"]) == (
        "line 3", "column 'QtySched': 'abc' is not a valid float"
    )  # fmt: skip
    rows = store.read(
        "MATCH (o:ProductionOrder)-[:PRODUCES]->(p:Product) "
        "RETURN o.order_id AS o, o.total_quantity AS q, o.source_system AS s, p.product_id AS p "
        "ORDER BY o"
    )
    assert rows == [
        {"o": "P000481", "q": 120.0, "s": "Dynamics 365 SCM", "p": "D0001"},
        {"o": "P000483", "q": 80.0, "s": "Dynamics 365 SCM", "p": "D0002"},
    ]


def test_a_mapping_naming_unknown_properties_is_refused(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from opsgraph.api.cli import main; main()", *_args(settings),
         "ingest", str(DATA / "mapping" / "dynamics_orders.csv"),
         "--mapping", str(DATA / "mapping" / "bad_mapping.toml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ProductionOrder has no properties ['quantity_planned']" in result.stderr


def test_serve_with_several_workers(settings: Settings, store: Store, tmp_path: Path) -> None:
    if settings.uri:
        return  # the workers read the store from the environment; covered on the embedded one
    key = ApiKeys(settings.home).create("reader", "workers-test")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", "from opsgraph.api.cli import main; main()", *_args(settings),
         "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.3)
        answers = [
            httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "{ machines(first: 1) { nodes { machineId } } }"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for _ in range(6)
        ]
        assert all(a.status_code == 200 and "errors" not in a.json() for a in answers)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def test_ingest_parks_what_names_an_unloaded_entity_and_lists_it(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    early = tmp_path / "confirmations.json"
    early.write_text((DATA / "bad" / "unknown_reference_confirmations.json").read_text())
    try:
        report = _run_json(settings, "ingest", str(early))
        assert (report["rejected"], report["parked"], report["waiting"]) == (0, 1, 1)
        (pending,) = _run_json(settings, "ingest", "--pending")
        assert pending["source"] == str(early) and pending["position"] == "d.results[0]"
        assert "unknown Operation operation_id='9999999/0010'" in pending["reason"]
        table = runner.invoke(app, [*_args(settings), "ingest", "--pending"])
        assert "1 record(s) waiting" in table.stdout
        assert "confirmations.json d.results[0]" in table.stdout and "9999999/0010" in table.stdout
    finally:
        (settings.home / "ingest" / "parked.jsonl").unlink(missing_ok=True)


def test_a_file_with_rejected_records_is_read_again_and_says_why_on_the_terminal(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    checks = tmp_path / "checks.csv"
    checks.write_text(
        "check_id,characteristic,value,unit,lower_limit,upper_limit,checked_at\n"
        "QC-CLI-1,bore,42.0,mm,41.99,42.01,2026-11-02T09:30:00\n"
    )
    first = runner.invoke(app, [*_args(settings), "ingest", str(checks), "--no-rules"])
    assert first.exit_code == 3
    assert "rejected checks.csv line 2: column 'checked_at': '2026-11-02T09:30:00' has no " in (
        first.stderr
    )
    again = _run_json(settings, "ingest", str(checks), "--no-rules", "--timezone", "Europe/Berlin")
    (source,) = again["sources"]
    assert not source["unchanged_since_last_run"] and (source["loaded"], again["rejected"]) == (
        1,
        0,
    )
    third = _run_json(settings, "ingest", str(checks), "--no-rules")
    assert third["sources"][0]["unchanged_since_last_run"]  # clean now: skipped as done


def test_demo_generate_refuses_a_folder_that_holds_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "plant"
    out.mkdir()
    (out / "notes.txt").write_text("someone's files\n")
    refused = runner.invoke(app, ["demo", "generate", "--out", str(out), "--weeks", "3"])
    assert refused.exit_code == 2
    said = " ".join(refused.output.replace("│", " ").split())  # the error box wraps lines
    assert f"{out} is not empty; choose an empty folder or pass --force" in said
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    forced = runner.invoke(
        app, ["demo", "generate", "--out", str(out), "--weeks", "3", "--force", "--json"]
    )
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["files"] > 1
    assert (out / "ground_truth.json").exists() and (out / "notes.txt").exists()


def test_aliases_commands_store_list_suggest_and_remove(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    (tmp_path / "maintenance.csv").write_text(
        "maintenance_id,machine_id,maintenance_type\nMX-1,MILL-101,preventive\n"
        "MX-2,M-0101,preventive\n"
    )
    (tmp_path / "equipment.csv").write_text("machine_id,line_id,name\nM-101,L1,MILL-101\n")
    _run_json(
        settings, "ingest", str(tmp_path / "equipment.csv"), str(tmp_path / "maintenance.csv")
    )
    stats = _run_json(settings, "stats")
    assert stats["unresolved"] == {"Line": 1, "Machine": 2}
    suggested = _run_json(settings, "aliases", "suggest", "--label", "Machine")
    assert {(s["alias"], s["key"]) for s in suggested} == {
        ("MILL-101", "M-101"),
        ("M-0101", "M-101"),
    }
    (tmp_path / "aliases.toml").write_text('[Machine.cmms]\n"MILL-101" = "M-101"\n')
    imported = _run_json(settings, "aliases", "import", str(tmp_path / "aliases.toml"))
    assert imported["merged"] == ["Machine 'MILL-101' -> 'M-101'"]
    added = _run_json(settings, "aliases", "add", "Machine", "M-0101", "M-101")
    assert added["merged"] == ["Machine 'M-0101' -> 'M-101'"]
    assert _run_json(settings, "stats")["unresolved"] == {"Line": 1}
    listed = _run_json(settings, "aliases", "list")
    assert [(a["alias"], a["system"]) for a in listed] == [("M-0101", ""), ("MILL-101", "cmms")]
    conflict = runner.invoke(app, [*_args(settings), "aliases", "add", "Machine", "M-0101", "M-7"])
    assert conflict.exit_code == 2 and "already stands for 'M-101'" in conflict.output
    bad = runner.invoke(app, [*_args(settings), "aliases", "add", "Robot", "R", "M-1"])
    assert bad.exit_code == 2 and "unknown label 'Robot'" in bad.output
    removed = runner.invoke(
        app, [*_args(settings), "aliases", "remove", "Machine", "MILL-101", "--system", "cmms"]
    )
    assert removed.exit_code == 0, removed.output
    assert [a["alias"] for a in _run_json(settings, "aliases", "list")] == ["M-0101"]


def test_the_load_report_sums_up_by_source_system_and_format(
    settings: Settings, store: Store
) -> None:
    first = runner.invoke(app, [*_args(settings), "ingest", str(DATA / "sap")])
    assert first.exit_code == 0, first.output
    said = first.stdout
    assert "SAP S/4HANA" in said and "sap-odata" in said and "production_orders" not in said
    assert "deviation rules:" in said and "findings" in said
    again = runner.invoke(app, [*_args(settings), "ingest", str(DATA / "sap"), "--verbose"])
    assert again.exit_code == 0, again.output
    assert "6 files unchanged since the last run, skipped" in again.stdout
    full = runner.invoke(app, [*_args(settings), "ingest", str(DATA / "sap"), "-v", "--full"])
    assert "sap/batches.json" in full.stdout and "SAP S/4HANA" not in full.stdout
    (summary,) = [s for s in _run_json(settings, "ingest", str(DATA / "sap"))["sources"][:1]]
    assert summary["system"] == "SAP S/4HANA" and summary["unchanged_since_last_run"]
