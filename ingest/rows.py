"""Loads a document of schema-shaped rows: the built-in sample plant and hand-made fixtures.

The format mirrors the model one to one, so it is also the simplest way to feed opsgraph
from a system that has no dedicated parser yet::

    {"source_system": "...",
     "nodes": {"Machine": [{"machine_id": "M-100", "name": "..."}], ...},
     "relationships": [{"start": "Line", "type": "HAS_MACHINE", "end": "Machine",
                        "rows": [{"start": "L1", "end": "M-100"}]}]}

Timestamps are ISO 8601 strings with a zone (``2026-11-03T06:00:00Z``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from opsgraph.graph.writer import BulkWriter, Rejection, UpsertReport
from opsgraph.schema import SchemaError, node_spec, rel_spec
from opsgraph.schema.base import UtcDateTimeProperty

SAMPLE_PLANT = "sample_plant.json"


@dataclass
class LoadReport:
    """The per-label and per-relationship reports of one document load."""

    reports: list[UpsertReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[Rejection]:
        return [r for report in self.reports for r in report.rejected]


def _rows(
    properties: Mapping[str, Any], rows: Any, source: str | None, where: str
) -> Iterator[Any]:
    """Stamp the document's source system on each row and parse ISO timestamps."""
    if not isinstance(rows, list):
        raise SchemaError(f"{where}: expected a list of rows, got {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, Mapping):
            yield row  # the writer rejects it with its position
            continue
        typed = {"source_system": source} if source else {}
        for name, value in row.items():
            if isinstance(properties.get(name), UtcDateTimeProperty) and isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    pass  # left as text: the writer rejects it with the property named
            typed[name] = value
        yield typed


def load_rows_document(writer: BulkWriter, document: Mapping[str, Any]) -> LoadReport:
    """Write every node group, then every relationship group; bad groups are reported."""
    report = LoadReport()
    source = document.get("source_system")
    for label, rows in (document.get("nodes") or {}).items():
        try:
            spec = node_spec(label)
            report.reports.append(
                writer.upsert_nodes(spec, _rows(spec.properties, rows, source, label))
            )
        except SchemaError as error:
            report.errors.append(f"nodes {label!r}: {error}")
    for group in document.get("relationships") or []:
        where = f"relationships {group.get('start')}-[{group.get('type')}]->{group.get('end')}"
        try:
            spec = rel_spec(group["start"], group["type"], group["end"])
            rows = _rows(spec.properties, group.get("rows", []), source, where)
            report.reports.append(writer.upsert_relationships(spec, rows))
        except (SchemaError, KeyError) as error:
            report.errors.append(f"{where}: {error}")
    return report


def load_rows_file(writer: BulkWriter, path: Path) -> LoadReport:
    """Load a rows document from a JSON file."""
    return load_rows_document(writer, json.loads(Path(path).read_text()))


def load_sample_plant(writer: BulkWriter) -> LoadReport:
    """Load the small built-in plant that ships with the package."""
    text = resources.files("opsgraph.ingest").joinpath("data", SAMPLE_PLANT).read_text()
    return load_rows_document(writer, json.loads(text))
