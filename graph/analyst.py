"""What analysts use in Neo4j Browser or the embedded store's Studio: the saved Cypher
queries (graph/browser/saved-queries.cypher) and a Browser style sheet generated from the
model (graph/browser/opsgraph.grass), every label coloured and captioned by its key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from opsgraph.schema import node_specs

BROWSER_DIR = Path(__file__).resolve().parent / "browser"  # shipped as package data
SAVED_QUERIES = BROWSER_DIR / "saved-queries.cypher"
GRASS = BROWSER_DIR / "opsgraph.grass"

# One colour per family of labels, so a picture reads at a glance.
FAMILIES = {
    "plant": (("Site", "Area", "Line", "WorkCenter", "Machine"), "#4C8EDA"),
    "plan": (
        (
            "Customer",
            "SalesOrder",
            "SalesOrderItem",
            "ProductionOrder",
            "Operation",
            "Confirmation",
            "Product",
        ),
        "#57C7E3",
    ),
    "material": (("Supplier", "MaterialLot"), "#8DCC93"),
    "people": (("Person", "Skill", "Shift"), "#F79767"),
    "events": (
        (
            "MachineState",
            "Alarm",
            "ProcessReading",
            "QualityCheck",
            "Inspection",
            "InspectionItem",
            "MaintenanceEvent",
            "Changeover",
        ),
        "#C990C0",
    ),
    "problems": (("Deviation",), "#F16667"),
    "decisions": (("Decision", "Outcome", "Action", "Note"), "#FFC454"),
}


@dataclass(frozen=True)
class SavedQuery:
    name: str
    params: tuple[str, ...]
    cypher: str


def saved_queries(path: Path = SAVED_QUERIES) -> list[SavedQuery]:
    """The saved queries, in file order."""
    found = []
    for block in re.split(r"^// name: ", path.read_text(), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        params = ()
        match = re.match(r"// params: (.*)\n", body)
        if match:
            params = tuple(p.strip() for p in match.group(1).split(","))
            body = body[match.end() :]
        found.append(SavedQuery(name.strip(), params, body.strip().rstrip(";")))
    return found


def grass() -> str:
    """A Neo4j Browser style sheet (GraSS) for every label of the model."""
    colour_of = {label: colour for labels, colour in FAMILIES.values() for label in labels}
    lines = [
        "node {\n  diameter: 50px;\n  color: #A5ABB6;\n  border-color: #9AA1AC;\n"
        "  text-color-internal: #FFFFFF;\n  font-size: 10px;\n}"
    ]
    for spec in node_specs().values():
        colour = colour_of.get(spec.label, "#A5ABB6")
        size = "70px" if spec.label == "Deviation" else "55px"
        lines.append(
            f"node.{spec.label} {{\n  color: {colour};\n  border-color: {colour};\n"
            f"  diameter: {size};\n  caption: '{{{spec.key}}}';\n}}"
        )
    lines.append(
        "relationship {\n  color: #A5ABB6;\n  shaft-width: 1px;\n  font-size: 8px;\n"
        "  caption: '<type>';\n}"
    )
    lines.append("relationship.CAUSED_BY {\n  color: #F16667;\n  shaft-width: 3px;\n}")
    lines.append("relationship.CONTRIBUTED_TO {\n  color: #F79767;\n  shaft-width: 2px;\n}")
    return "\n\n".join(lines) + "\n"
