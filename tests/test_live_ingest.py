"""Live ingest: files dropped into a watched folder, and records posted to the webhook."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from opsgraph.api.app import ApiKeys, create_app
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.ingest.runner import IngestRunner

DATA = Path(__file__).parent / "data"


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
    assert post(writer, b"{}", "../escape.json").status_code in (200, 422)
    assert not (tmp_path / "escape.json").exists()
