"""The graph model declares every label once, with a business key, and installs cleanly."""

from __future__ import annotations

from opsgraph.graph.constraints import apply_schema, schema_statements
from opsgraph.graph.store import Store
from opsgraph.schema import node_specs, rel_specs

ARCHITECTURE_LABELS = {
    "Site", "Area", "Line", "WorkCenter", "Machine", "Customer", "SalesOrder", "SalesOrderItem",
    "ProductionOrder", "Operation", "Confirmation", "Product", "Supplier", "MaterialLot", "Person",
    "Skill", "Shift", "MachineState", "Alarm", "ProcessReading", "QualityCheck", "Inspection",
    "InspectionItem", "MaintenanceEvent", "Changeover", "Deviation", "Decision", "Outcome",
    "Action", "Note",
}  # fmt: skip


def test_model_covers_the_architecture_with_one_key_per_label() -> None:
    specs = node_specs()
    # the architecture's labels, and the identity map kept in the graph (graph/identity.py)
    assert set(specs) == ARCHITECTURE_LABELS | {"Alias"}
    for spec in specs.values():
        assert spec.key in spec.properties
        assert {"source_system", "source_record"} <= set(spec.properties)


def test_inferred_cause_edges_are_apart_from_source_facts() -> None:
    causes = [r for r in rel_specs() if r.type in ("CAUSED_BY", "CONTRIBUTED_TO")]
    assert {r.end.label for r in causes} >= {"MaterialLot", "Supplier", "Machine", "Person"}
    for spec in causes:
        assert "score" in spec.properties and "source_system" not in spec.properties
    for spec in rel_specs():
        if spec.type not in ("CAUSED_BY", "CONTRIBUTED_TO"):
            assert "source_system" in spec.properties, spec.name


def test_schema_apply_is_idempotent_and_installs_every_key(store: Store) -> None:
    apply_schema(store)
    apply_schema(store)
    constraints = store.read("SHOW CONSTRAINTS")
    installed = {(tuple(c["labelsOrTypes"]), tuple(c["properties"])) for c in constraints}
    for spec in node_specs().values():
        assert ((spec.label,), (spec.key,)) in installed
    expected_indexes = sum(1 for s in schema_statements() if s.kind == "index")
    assert expected_indexes > 30
