"""Live ingest: files dropped into a watched folder, and records posted to the webhook."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from opsgraph.api.app import ApiKeys, BackgroundServer, create_app
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.ingest.live import LiveIngest
from opsgraph.ingest.runner import IngestRunner
from opsgraph.schema.base import as_utc

DATA = Path(__file__).parent / "data"


def quality_check(check_id: str, value: float) -> str:
    """A one-line quality-check CSV export: bore diameter, in spec between 41.99 and 42.01."""
    return (
        "check_id,characteristic,value,unit,lower_limit,upper_limit,checked_at\n"
        f"{check_id},bore_diameter,{value:.3f},mm,41.99,42.01,2026-11-02T09:30Z\n"
    )


def test_a_file_dropped_into_a_watched_folder_is_loaded_once(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "notes.txt").write_text("not an export")
    runner = IngestRunner(store, tmp_path / "state")
    reports = []
    loaded = []
    thread = threading.Thread(
        target=lambda: loaded.append(
            runner.watch(inbox, interval=0.3, cycles=8, on_report=reports.append)
        )
    )
    thread.start()
    time.sleep(0.5)
    shutil.copy(DATA / "sap" / "production_orders.json", inbox / "orders.json")
    thread.join(timeout=60)
    assert loaded == [1]
    files = [s for r in reports for s in r.sources if s.format not in ("rules", "unknown")]
    assert [Path(s.path).name for s in files] == ["orders.json"]
    assert sum(1 for r in reports for s in r.sources if s.format == "unknown") == 1  # once
    assert store.read("MATCH (o:ProductionOrder) RETURN count(o) AS n") == [{"n": 2}]


def test_the_webhook_loads_records_for_writers(store: Store, tmp_path: Path) -> None:
    keys = ApiKeys(tmp_path)
    writer, reader = keys.create("writer", "mes"), keys.create("reader", "app")
    client = TestClient(create_app(store, Settings(home=tmp_path)))
    body = (DATA / "sap" / "production_orders.json").read_bytes()

    def post(key: str, payload: bytes, name: str = "orders.json"):  # type: ignore[no-untyped-def]
        return client.post(
            "/ingest",
            params={"filename": name},
            content=payload,
            headers={"Authorization": f"Bearer {key}"},
        )

    assert post(reader, body).status_code == 403
    accepted = post(writer, body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["records"] == 2
    assert store.read("MATCH (o:ProductionOrder) RETURN count(o) AS n") == [{"n": 2}]
    bad = post(writer, (DATA / "bad" / "bad_records.json").read_bytes(), "bad.json")
    assert bad.status_code == 422
    reasons = {r["position"]: r["reason"] for r in bad.json()["rejections"]}
    assert reasons["d.results[2]"] == "missing ManufacturingOrder"
    # bodies that loaded whole are gone; one with rejections stays for replay (dead letters
    # name it), and the answers name the file as sent, not where this server keeps it
    kept = [p.name for p in (tmp_path / "inbox").iterdir()]
    assert len(kept) == 1 and kept[0].endswith("-bad.json"), kept
    assert str(tmp_path) not in bad.text and str(tmp_path) not in accepted.text
    assert {s["path"] for s in bad.json()["sources"]} == {"bad.json"}
    truncated = post(writer, body[: len(body) // 2], "cut.json")
    assert truncated.status_code == 422 and str(tmp_path) not in truncated.text
    assert post(writer, b"{}", "../escape.json").status_code in (200, 422)
    assert not (tmp_path / "escape.json").exists()


def test_a_posted_event_reaches_websocket_subscribers_as_a_new_deviation(
    store: Store, tmp_path: Path
) -> None:
    keys = ApiKeys(tmp_path)
    writer, reader = keys.create("writer", "mes"), keys.create("reader", "app")
    with BackgroundServer(create_app(store, Settings(home=tmp_path))) as server:
        ws_url = server.url.replace("http", "ws") + f"/graphql?api_key={reader}"
        with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
            ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
            query = "subscription { newDeviations(pollSeconds: 30) { deviationId deviationType } }"
            ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            time.sleep(0.5)  # the subscription takes its starting point
            # one out-of-spec measurement, posted as a one-line CSV webhook body
            body = quality_check("QC-LIVE-1", 42.031)
            posted = httpx.post(
                f"{server.url}/ingest",
                params={"filename": "quality_checks.csv"},
                content=body,
                headers={"Authorization": f"Bearer {writer}"},
                timeout=30,
            )
            assert posted.status_code == 200, posted.text
            assert posted.json()["commit_new_deviations"] == ["DEV-QC-LIVE-1"]
            # pushed at commit, not after the 30 s polling interval, as a text frame
            pushed = ws.recv(timeout=5)
            assert isinstance(pushed, str)
            message = json.loads(pushed)
    assert message["type"] == "next", message
    assert message["payload"]["data"]["newDeviations"] == {
        "deviationId": "DEV-QC-LIVE-1",
        "deviationType": "out_of_spec",
    }


def test_websocket_subscriptions_need_a_key(store: Store, tmp_path: Path) -> None:
    with BackgroundServer(create_app(store, Settings(home=tmp_path))) as server:
        ws_url = server.url.replace("http", "ws") + "/graphql"
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10)
    assert refused.value.response.status_code in (401, 403)


def test_concurrent_webhook_bodies_are_committed_together(store: Store, tmp_path: Path) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    live = LiveIngest(runner, linger=0.5)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    futures = []
    for number in range(5):
        path = inbox / f"qc-{number}.csv"
        path.write_text(quality_check(f"QC-G-{number}", 42.0 + number / 100))
        futures.append(live.submit([runner.file_stream(path)]))
    outcomes = [future.result(timeout=60) for future in futures]
    live.close()
    assert len({id(outcome.run) for outcome in outcomes}) == 1  # one group, one commit
    assert [o.sources[0].loaded for o in outcomes] == [1] * 5
    found = store.read("MATCH (d:Deviation) RETURN d.deviation_id AS id ORDER BY id")
    assert found == [{"id": "DEV-QC-G-2"}, {"id": "DEV-QC-G-3"}, {"id": "DEV-QC-G-4"}]


def test_a_submitter_that_gave_up_does_not_stop_the_group(store: Store, tmp_path: Path) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    live = LiveIngest(runner, linger=0.5)
    files = []
    for number in range(2):
        path = tmp_path / f"qc-{number}.csv"
        path.write_text(quality_check(f"QC-C-{number}", 42.0))
        files.append(path)
    gone = live.submit([runner.file_stream(files[0])])
    assert gone.cancel()  # e.g. the HTTP client hung up while waiting
    kept = live.submit([runner.file_stream(files[1])])
    assert kept.result(timeout=60).sources[0].loaded == 1
    live.close()
    found = store.read("MATCH (q:QualityCheck) RETURN q.check_id AS id ORDER BY id")
    assert found == [{"id": "QC-C-0"}, {"id": "QC-C-1"}]  # both committed all the same


def test_dead_letters_are_replayed_after_a_fix_files_and_webhook_bodies(
    store: Store, tmp_path: Path
) -> None:
    """Local-time exports are rejected until the run is told the zone; replaying the dead
    letters then loads them, from the plant's file and from the webhook's inbox alike."""
    states = (
        '{"machine_id": "M-1", "state": "running", "start": "2026-11-02T08:00:00"}\n'
        '{"machine_id": "M-1", "state": "idle", "start": "2026-11-02T09:00:00+01:00"}\n'
    )
    export = tmp_path / "plant" / "states.jsonl"
    export.parent.mkdir()
    export.write_text(states)
    first = IngestRunner(store, tmp_path / "ingest").run([export])
    assert first.rejected == 1
    key = ApiKeys(tmp_path).create("writer", "mes")
    with TestClient(create_app(store, Settings(home=tmp_path))) as client:
        posted = client.post(
            "/ingest",
            params={"filename": "m2.jsonl"},
            content=states.replace("M-1", "M-2"),
            headers={"Authorization": f"Bearer {key}"},
        )
    assert posted.status_code == 422
    letters = sorted((tmp_path / "ingest" / "dead-letters").glob("*.jsonl"))
    assert len(letters) == 2
    runner = IngestRunner(store, tmp_path / "ingest", timezone=ZoneInfo("Europe/Berlin"))
    replay = runner.retry_dead_letters()
    assert replay.rejected == 0 and replay.replayed is not None
    assert len(replay.replayed["sources"]) == 2 and replay.replayed["not_replayable"] == []
    starts = store.read(
        "MATCH (m:Machine)-[:HAD_STATE]->(s:MachineState {state: 'running'}) "
        "RETURN m.machine_id AS m, s.start AS start ORDER BY m"
    )
    assert [(r["m"], as_utc(r["start"]).isoformat()) for r in starts] == [
        ("M-1", "2026-11-02T07:00:00+00:00"),  # 08:00 in Berlin
        ("M-2", "2026-11-02T07:00:00+00:00"),
    ]
    # the replayed letters are kept apart; nothing failed again, so nothing new is waiting
    assert sorted(p.name for p in (tmp_path / "ingest" / "dead-letters").glob("*.jsonl")) == []
    assert len(list((tmp_path / "ingest" / "dead-letters" / "replayed").glob("*.jsonl"))) == 2


def test_a_parked_record_loads_when_its_parent_arrives_by_webhook(
    store: Store, tmp_path: Path
) -> None:
    """Confirmations from a file run wait for their order; the MES posting the order to the
    webhook later is the run that loads them."""
    early = tmp_path / "confirmations.json"
    early.write_text((DATA / "sap" / "confirmations.json").read_text())
    first = IngestRunner(store, tmp_path / "ingest").run([early])
    assert first.rejected == 0 and first.parked > 0
    key = ApiKeys(tmp_path).create("writer", "mes")
    with TestClient(create_app(store, Settings(home=tmp_path))) as client:
        posted = client.post(
            "/ingest",
            params={"filename": "production_orders.json"},
            content=(DATA / "sap" / "production_orders.json").read_bytes(),
            headers={"Authorization": f"Bearer {key}"},
        )
    assert posted.status_code == 200, posted.text
    confirmed = store.read("MATCH (c:Confirmation)-[:CONFIRMS]->(:Operation) RETURN count(c) AS n")
    assert confirmed == [{"n": first.parked}]
    assert (tmp_path / "ingest" / "parked.jsonl").read_text().strip() == ""
