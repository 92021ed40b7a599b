"""The analysts' saved queries run on the demo plant, and the style sheet covers the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsgraph.graph.analyst import FAMILIES, GRASS, grass, model_diagram, saved_queries
from opsgraph.graph.identity import Aliases
from opsgraph.graph.rca import QUALITY, RootCauseAnalyzer
from opsgraph.graph.store import Store
from opsgraph.ingest.demo import generate
from opsgraph.ingest.runner import IngestRunner
from opsgraph.schema import node_specs, rel_specs


@pytest.fixture
def demo_store(store: Store, tmp_path: Path) -> tuple[Store, dict]:
    out = tmp_path / "plant"
    truth = generate(out, seed=5, weeks=3)
    IngestRunner(store, tmp_path / "state", aliases=Aliases.load(out / "aliases.toml")).run(
        [out / "erp", out / "mes", out / "worker"]
    )
    analyzer = RootCauseAnalyzer(store)
    for deviation in analyzer.deviations(kinds=QUALITY)[:30]:
        analyzer.persist(analyzer.analyze(deviation))
    return store, truth


def test_every_saved_query_returns_rows_on_the_demo_plant(demo_store: tuple) -> None:
    store, truth = demo_store
    lot_cause = next(c for c in truth["causes"] if c["kind"] == "supplier_lot")
    worn = next(c for c in truth["causes"] if c["kind"] == "worn_tool")
    analysed = store.read(
        "MATCH (d:Deviation)-[:CAUSED_BY]->() RETURN d.deviation_id AS id, d.start AS at LIMIT 1"
    )[0]
    params = {
        "deviation": analysed["id"],
        "lot": lot_cause["key"],
        "machine": worn["related"][0][1],
        "until": "2026-09-24T23:00:00Z",
        "type": "scrap",
    }
    queries = saved_queries()
    assert len(queries) == 6
    for query in queries:
        rows = store.read(query.cypher, **{p: params[p] for p in query.params})
        assert rows, query.name


def test_the_style_sheet_covers_every_label_and_is_current() -> None:
    sheet = grass()
    for spec in node_specs().values():
        assert f"node.{spec.label} {{" in sheet and f"caption: '{{{spec.key}}}'" in sheet
    assert GRASS.read_text() == sheet, (
        "graph/browser/opsgraph.grass is out of date: `.venv/bin/python -m opsgraph.graph.analyst`"
    )


def test_the_model_picture_shows_every_label_and_relationship_in_its_family_colour() -> None:
    picture = model_diagram()
    families = {label for labels, _ in FAMILIES.values() for label in labels}
    for spec in node_specs().values():
        assert spec.label in families, f"give {spec.label} a colour family in FAMILIES"
        assert re.search(rf"\b{spec.label}\b", picture), spec.label
    for rel in rel_specs():
        edge = rf"{rel.start.label} -\.?->\|[^|]*\b{rel.type}\b[^|]*\| {rel.end.label}\b"
        assert re.search(edge, picture), rel.name
