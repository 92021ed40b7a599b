"""The evidence-graph view: built from a real analysis, served by the app, drawn by a real
headless Chromium (Debian's chromium package), with a screenshot kept with the test output."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_rca import _plant

from opsgraph.api import evidence
from opsgraph.api.app import ApiKeys, create_app
from opsgraph.graph.rca import RootCauseAnalyzer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store

DEVIATION = "DEV-SCRAP-10009/0010"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_elements_follow_the_evidence_paths(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    result = RootCauseAnalyzer(store, top=3).analyze(DEVIATION)
    items = [e["data"] for e in evidence.elements(result)]
    nodes = {d["id"]: d for d in items if "source" not in d}
    edges = [d for d in items if "source" in d]
    assert nodes[f"Deviation:{DEVIATION}"]["role"] == "deviation"
    assert nodes["MaterialLot:L-BAD"]["role"] == "cause" and nodes["MaterialLot:L-BAD"]["rank"] == 1
    assert {"source": "MaterialLot:L-BAD", "target": "Operation:10009/0010"}.items() <= next(
        e for e in edges if e["label"].startswith("CONSUMED_BY")
    ).items()


def test_the_app_serves_the_page_to_key_holders(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    key = ApiKeys(tmp_path).create("reader", "tests")
    client = TestClient(create_app(store, Settings(home=tmp_path)))
    assert client.get(f"/explore/deviation/{DEVIATION}").status_code == 401
    page = client.get(f"/explore/deviation/{DEVIATION}", params={"api_key": key})
    assert page.status_code == 200 and "L-BAD" in page.text
    assert f'src="/static/{evidence.LIBRARY}"' in page.text
    assert client.get(f"/static/{evidence.LIBRARY}").text.startswith("/**")
    missing = client.get("/explore/deviation/DEV-404", params={"api_key": key})
    assert missing.status_code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_headless_chromium_draws_the_graph(store: Store, tmp_path: Path) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    result = RootCauseAnalyzer(store, top=3).analyze(DEVIATION)
    page = tmp_path / "evidence.html"
    page.write_text(evidence.render(result))  # standalone: the library is inlined
    expected = [e["data"] for e in evidence.elements(result)]
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1").stdout
    drawn = re.search(r'data-nodes="(\d+)" data-edges="(\d+)"', dom)
    assert drawn, dom[-500:]
    assert int(drawn.group(1)) == sum(1 for d in expected if "source" not in d)
    assert int(drawn.group(2)) == sum(1 for d in expected if "source" in d)
    shot = tmp_path / "evidence.png"
    _chromium(
        "--window-size=1400,900", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
