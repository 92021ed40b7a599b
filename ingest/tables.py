"""Tabular sources — CSV files and JSON-lines — mapped to the graph by declared mappings.

One engine serves the built-in layouts (machine states, alarms, process readings, quality
measurements, shift rosters, skills matrices, operator notes, decision logs) and a user's own
mapping for another ERP or MES, declared in a small TOML file (see ``load_mapping``). Values
are converted by the target property's type in the schema, so a mapping never repeats it.
"""

from __future__ import annotations

import csv
import json
import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neomodel import BooleanProperty, FloatProperty, IntegerProperty

from opsgraph.schema import SchemaError, node_spec, rel_spec
from opsgraph.schema.base import NaiveTimestamp, UtcDateTimeProperty, parse_iso

from .records import BadRecord, Item, NodeRow, Record, RelRow

TRUE = {"true", "yes", "y", "1", "x"}
FALSE = {"false", "no", "n", "0", ""}


class MappingError(ValueError):
    """A value or a mapping that cannot be applied; the message names the column."""


@dataclass(frozen=True)
class NodeMap:
    """One entity a row describes: its label, where its key comes from, its columns.

    ``role``: "entity" writes its columns; "reference" makes sure the node exists (master
    data such as a machine or a person); "existing" must already be in the graph (an order,
    a deviation), otherwise the whole row is rejected.
    """

    label: str
    key: str  # a column name, or a template like "{machine_id}/{code}/{raised_at}"
    columns: dict[str, str] = field(default_factory=dict)  # property -> column
    role: str = "entity"
    name: str = ""  # how relationships refer to this entity; defaults to the label


@dataclass(frozen=True)
class RelMap:
    start: str
    type: str
    end: str
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableMapping:
    name: str
    source_system: str
    detect: tuple[str, ...]  # columns whose presence identifies the layout
    nodes: tuple[NodeMap, ...]
    relationships: tuple[RelMap, ...] = ()

    def validate(self) -> TableMapping:
        """Check labels, properties and relationship types against the schema up front."""
        names = {}
        for node in self.nodes:
            spec = node_spec(node.label)
            unknown = set(node.columns) - set(spec.properties)
            if unknown:
                raise SchemaError(
                    f"mapping {self.name}: {node.label} has no properties {sorted(unknown)}"
                )
            if node.role not in ("entity", "reference", "existing"):
                raise SchemaError(
                    f"mapping {self.name}: role {node.role!r} is not entity/reference/existing"
                )
            names[node.name or node.label] = node
        for rel in self.relationships:
            if rel.start not in names or rel.end not in names:
                raise SchemaError(
                    f"mapping {self.name}: relationship {rel.start}-{rel.type}->{rel.end} "
                    "names an entity the mapping does not declare"
                )
            spec = rel_spec(names[rel.start].label, rel.type, names[rel.end].label)
            unknown = set(rel.columns) - set(spec.properties)
            if unknown:
                raise SchemaError(
                    f"mapping {self.name}: {spec.name} has no properties {sorted(unknown)}"
                )
        return self


def _convert_to(target: Any, raw: Any, column: str) -> Any:
    text = raw.strip() if isinstance(raw, str) else raw
    try:
        if isinstance(target, UtcDateTimeProperty):
            if isinstance(text, str):
                return parse_iso(text)
            raise ValueError
        if isinstance(target, FloatProperty):
            return float(text)
        if isinstance(target, IntegerProperty):
            return int(text)
        if isinstance(target, BooleanProperty):
            if isinstance(text, bool):
                return text
            if str(text).lower() in TRUE:
                return True
            if str(text).lower() in FALSE:
                return False
            raise ValueError
    except NaiveTimestamp as error:
        raise MappingError(f"column {column!r}: {error}") from None
    except (ValueError, TypeError):
        kind = (
            type(target)
            .__name__.replace("Property", "")
            .replace("UtcDateTime", "ISO 8601 datetime")
        )
        raise MappingError(f"column {column!r}: {raw!r} is not a valid {kind.lower()}") from None
    return str(text) if not isinstance(text, str) else text


def _key(node: NodeMap, row: Mapping[str, Any]) -> str | None:
    if "{" in node.key:
        try:
            values = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
            if any(values.get(name) in (None, "") for name in _template_fields(node.key)):
                return None
            return node.key.format(**values)
        except (KeyError, IndexError, ValueError):
            return None
    value = row.get(node.key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def map_row(mapping: TableMapping, row: Mapping[str, Any]) -> list[NodeRow | RelRow]:
    """The graph rows one source row stands for; raises MappingError naming the column."""
    rows: list[NodeRow | RelRow] = []
    keys: dict[str, str] = {}
    for node in mapping.nodes:
        if (
            node is not mapping.nodes[0]
            and "{" in node.key
            and node.columns
            and all(row.get(column) in (None, "") for column in node.columns.values())
        ):
            continue  # an optional part of the row (e.g. a decision's outcome) left empty
        key = _key(node, row)
        if key is None:
            if node.role == "entity" and node is mapping.nodes[0]:
                raise MappingError(f"missing key {node.key!r} for {node.label}")
            continue
        keys[node.name or node.label] = key
        if node.role == "existing":
            continue
        spec = node_spec(node.label)
        props = {spec.key: key}
        if node.role == "entity":
            for prop, column in node.columns.items():
                if row.get(column) not in (None, ""):
                    props[prop] = _convert_to(spec.properties[prop], row.get(column), column)
        rows.append(NodeRow(node.label, props))
    labels = {node.name or node.label: node.label for node in mapping.nodes}
    for rel in mapping.relationships:
        if rel.start not in keys or rel.end not in keys:
            continue
        spec = rel_spec(labels[rel.start], rel.type, labels[rel.end])
        props = {}
        for prop, column in rel.columns.items():
            if row.get(column) not in (None, ""):
                props[prop] = _convert_to(spec.properties[prop], row.get(column), column)
        rows.append(
            RelRow(
                labels[rel.start], rel.type, labels[rel.end], keys[rel.start], keys[rel.end], props
            )
        )
    return rows


# -- reading files -----------------------------------------------------------------------------


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:
                yield (
                    f"line {reader.line_num}",
                    MappingError(f"{len(row[None])} more cells than the header has columns"),
                )
            else:
                yield f"line {reader.line_num}", row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield (
                    f"line {number}",
                    MappingError(f"malformed JSON: {error.msg} at column {error.colno}"),
                )
                continue
            yield (
                f"line {number}",
                value
                if isinstance(value, dict)
                else MappingError("expected a JSON object per line"),
            )


def header(path: Path) -> set[str]:
    """The column names of a CSV file or the keys of a JSON-lines file's first record."""
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                return set(next(csv.reader(handle), []))
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        first = json.loads(line)
                        return set(first) if isinstance(first, dict) else set()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    return set()


def parse_table(path: Path, mapping: TableMapping) -> Iterator[Item]:
    """Stream a CSV or JSON-lines file through a mapping, one Record per row."""
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    try:
        for position, row in rows:
            if isinstance(row, MappingError):
                yield BadRecord(position, str(row))
                continue
            try:
                yield Record(position, map_row(mapping, row), row)
            except MappingError as error:
                yield BadRecord(position, str(error), row)
    except (UnicodeDecodeError, csv.Error) as error:
        yield BadRecord("file", f"unreadable: {error}")


def load_mapping(path: Path) -> TableMapping:
    """A user's mapping from TOML::

    name = "dynamics-orders"
    source_system = "Dynamics 365"
    detect = ["ProdId", "QtySched"]

    [[nodes]]
    label = "ProductionOrder"
    key = "ProdId"
    columns = { total_quantity = "QtySched", planned_start = "SchedStart" }

    [[nodes]]
    label = "Product"
    key = "ItemId"
    role = "reference"

    [[relationships]]
    start = "ProductionOrder"
    type = "PRODUCES"
    end = "Product"
    """
    data = tomllib.loads(Path(path).read_text())
    try:
        return TableMapping(
            name=data["name"],
            source_system=data.get("source_system", data["name"]),
            detect=tuple(data.get("detect", ())),
            nodes=tuple(NodeMap(**node) for node in data["nodes"]),
            relationships=tuple(RelMap(**rel) for rel in data.get("relationships", ())),
        ).validate()
    except (KeyError, TypeError) as error:
        raise SchemaError(f"mapping {path}: {error}") from None


# -- built-in layouts --------------------------------------------------------------------------

MES = "MES"
WORKER = "connected worker"

BUILTIN: dict[str, TableMapping] = {
    m.name: m.validate()
    for m in (
        TableMapping(
            "machine-states", MES, ("machine_id", "state", "start"),
            nodes=(
                NodeMap("MachineState", "{machine_id}/{start}",
                        {"state": "state", "reason_code": "reason_code", "start": "start",
                         "end": "end", "duration_s": "duration_s"}),
                NodeMap("Machine", "machine_id", role="reference"),
            ),
            relationships=(RelMap("Machine", "HAD_STATE", "MachineState"),),
        ),
        TableMapping(
            "alarms", MES, ("machine_id", "code", "raised_at"),
            nodes=(
                NodeMap("Alarm", "{machine_id}/{code}/{raised_at}",
                        {"code": "code", "level": "level", "message": "message",
                         "raised_at": "raised_at", "cleared_at": "cleared_at"}),
                NodeMap("Machine", "machine_id", role="reference"),
            ),
            relationships=(RelMap("Machine", "RAISED", "Alarm"),),
        ),
        TableMapping(
            "process-readings", MES, ("machine_id", "parameter", "value", "measured_at"),
            nodes=(
                NodeMap("ProcessReading", "{machine_id}/{parameter}/{measured_at}",
                        {"parameter": "parameter", "value": "value", "unit": "unit",
                         "measured_at": "measured_at", "lower_limit": "lower_limit",
                         "upper_limit": "upper_limit", "out_of_spec": "out_of_spec"}),
                NodeMap("Machine", "machine_id", role="reference"),
            ),
            relationships=(RelMap("Machine", "MEASURED", "ProcessReading"),),
        ),
        TableMapping(
            "quality-checks", MES, ("check_id", "characteristic", "value"),
            nodes=(
                NodeMap("QualityCheck", "check_id",
                        {"characteristic": "characteristic", "value": "value", "unit": "unit",
                         "lower_limit": "lower_limit", "upper_limit": "upper_limit",
                         "result": "result", "checked_at": "checked_at"}),
                NodeMap("Operation", "operation_id", role="existing"),
                NodeMap("MaterialLot", "lot_id", role="reference"),
            ),
            relationships=(
                RelMap("QualityCheck", "CHECKED", "Operation"),
                RelMap("QualityCheck", "CHECKED_LOT", "MaterialLot"),
            ),
        ),
        TableMapping(
            "equipment", "ERP (equipment master)", ("machine_id", "line_id"),
            nodes=(
                NodeMap("Machine", "machine_id",
                        {"name": "name", "machine_type": "machine_type",
                         "manufacturer": "manufacturer"}),
                NodeMap("Line", "line_id", role="reference"),
                NodeMap("WorkCenter", "work_center_id", role="reference"),
            ),
            relationships=(
                RelMap("Line", "HAS_MACHINE", "Machine"),
                RelMap("WorkCenter", "HAS_MACHINE", "Machine"),
            ),
        ),
        TableMapping(
            "maintenance", "CMMS", ("maintenance_id", "machine_id", "maintenance_type"),
            nodes=(
                NodeMap("MaintenanceEvent", "maintenance_id",
                        {"maintenance_type": "maintenance_type", "status": "status",
                         "description": "description", "scheduled_at": "scheduled_at",
                         "start": "start", "end": "end"}),
                NodeMap("Machine", "machine_id", role="reference"),
            ),
            relationships=(RelMap("Machine", "HAD_MAINTENANCE", "MaintenanceEvent"),),
        ),
        TableMapping(
            "changeovers", MES, ("changeover_id", "machine_id", "to_product"),
            nodes=(
                NodeMap("Changeover", "changeover_id",
                        {"from_product": "from_product", "to_product": "to_product",
                         "start": "start", "end": "end"}),
                NodeMap("Machine", "machine_id", role="reference"),
            ),
            relationships=(RelMap("Machine", "HAD_CHANGEOVER", "Changeover"),),
        ),
        TableMapping(
            "shift-roster", WORKER, ("shift_id", "person_id", "start"),
            nodes=(
                NodeMap("Shift", "shift_id", {"crew": "crew", "start": "start", "end": "end"}),
                NodeMap("Person", "person_id", {"name": "name", "role": "role"}),
                NodeMap("Line", "line_id", role="reference"),
            ),
            relationships=(RelMap("Person", "WORKED", "Shift"), RelMap("Shift", "ON_LINE", "Line")),
        ),
        TableMapping(
            "skills-matrix", WORKER, ("person_id", "skill_id", "level"),
            nodes=(
                NodeMap("Person", "person_id", {"name": "name"}),
                NodeMap("Skill", "skill_id", {"name": "skill_name",
                                              "requires_certification": "requires_certification"}),
            ),
            relationships=(
                RelMap("Person", "HAS_SKILL", "Skill",
                       {"level": "level", "certified": "certified", "valid_until": "valid_until"}),
            ),
        ),
        TableMapping(
            "operator-notes", WORKER, ("note_id", "text", "written_at"),
            nodes=(
                NodeMap("Note", "note_id", {"text": "text", "note_kind": "note_kind",
                                            "written_at": "written_at"}),
                NodeMap("Person", "author_id", role="reference"),
                NodeMap("Machine", "machine_id", role="reference"),
                NodeMap("ProductionOrder", "order_id", role="existing"),
                NodeMap("MaterialLot", "lot_id", role="reference"),
                NodeMap("Deviation", "deviation_id", role="existing"),
            ),
            relationships=(
                RelMap("Person", "WROTE", "Note"),
                RelMap("Note", "ABOUT", "Machine"),
                RelMap("Note", "ABOUT", "ProductionOrder"),
                RelMap("Note", "ABOUT", "MaterialLot"),
                RelMap("Note", "ABOUT", "Deviation"),
            ),
        ),
        TableMapping(
            "decision-log", WORKER, ("decision_id", "decided_by", "decided_at"),
            nodes=(
                NodeMap("Decision", "decision_id",
                        {"decision_type": "decision_type", "summary": "summary",
                         "rationale": "rationale", "decided_at": "decided_at"}),
                NodeMap("Person", "decided_by", role="reference"),
                NodeMap("Outcome", "{decision_id}/outcome",
                        {"result": "outcome", "description": "outcome_description",
                         "recorded_at": "outcome_recorded_at"}),
                NodeMap("Deviation", "deviation_id", role="existing"),
                NodeMap("ProductionOrder", "order_id", role="existing"),
                NodeMap("Machine", "machine_id", role="reference"),
                NodeMap("MaterialLot", "lot_id", role="reference"),
            ),
            relationships=(
                RelMap("Person", "DECIDED", "Decision"),
                RelMap("Decision", "HAS_OUTCOME", "Outcome"),
                RelMap("Decision", "ABOUT", "Deviation"),
                RelMap("Decision", "ABOUT", "ProductionOrder"),
                RelMap("Decision", "ABOUT", "Machine"),
                RelMap("Decision", "ABOUT", "MaterialLot"),
            ),
        ),
    )
}  # fmt: skip


def builtin_for(path: Path) -> TableMapping | None:
    """The built-in layout whose identifying columns the file has (most specific first)."""
    columns = header(path)
    matches = [m for m in BUILTIN.values() if set(m.detect) <= columns]
    return max(matches, key=lambda m: len(m.detect)) if matches else None
