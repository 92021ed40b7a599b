"""opsgraph rows documents: schema-shaped rows in one JSON file, for systems without a
dedicated parser and for hand-made fixtures. The format mirrors the model one to one::

    {"source_system": "...",
     "nodes": {"Machine": [{"machine_id": "M-100", "name": "..."}], ...},
     "relationships": [{"start": "Line", "type": "HAS_MACHINE", "end": "Machine",
                        "rows": [{"start": "L1", "end": "M-100"}]}]}

Timestamps are ISO 8601 strings with a zone (``2026-11-03T06:00:00Z``). Unknown labels,
relationships and properties are rejected with the row's position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ijson

from opsgraph.schema import SchemaError, node_spec, rel_spec
from opsgraph.schema.base import NaiveTimestamp, UtcDateTimeProperty, parse_iso

from .records import BadRecord, Item, NodeRow, Record, RelRow, malformed_json


def looks_like(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            for prefix, event, value in ijson.parse(handle):
                if prefix == "" and event == "map_key" and value in ("nodes", "relationships"):
                    return True
                if prefix == "" and event == "end_map":
                    return False
    except (ijson.JSONError, OSError, UnicodeDecodeError):
        return False
    return False


def source_system(path: Path) -> str:
    try:
        return json.loads(Path(path).read_text()).get("source_system") or "rows document"
    except (OSError, ValueError, AttributeError):
        return "rows document"


def _typed(properties: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    typed = {}
    for name, value in row.items():
        if isinstance(properties.get(name), UtcDateTimeProperty) and isinstance(value, str):
            try:
                value = parse_iso(value)
            except NaiveTimestamp as error:
                raise NaiveTimestamp(f"{name}: {error}") from None  # the record is rejected
            except ValueError:
                pass  # left as text: the writer rejects it with the property named
        typed[name] = value
    return typed


def parse(path: Path) -> Iterator[Item]:
    try:
        document = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        yield BadRecord("file", malformed_json(Path(path)) or f"malformed JSON: {error}")
        return
    for label, rows in (document.get("nodes") or {}).items():
        try:
            spec = node_spec(label)
        except SchemaError as error:
            yield BadRecord(f"nodes.{label}", str(error))
            continue
        for index, row in enumerate(rows if isinstance(rows, list) else []):
            position = f"nodes.{label}[{index}]"
            if not isinstance(row, Mapping):
                yield BadRecord(position, "expected an object of properties", row)
                continue
            try:
                yield Record(position, [NodeRow(spec.label, _typed(spec.properties, row))], row)
            except NaiveTimestamp as error:
                yield BadRecord(position, str(error), row)
    for number, group in enumerate(document.get("relationships") or []):
        where = f"relationships[{number}]"
        try:
            spec = rel_spec(group["start"], group["type"], group["end"])
        except (SchemaError, KeyError, TypeError) as error:
            yield BadRecord(where, f"{error}")
            continue
        for index, row in enumerate(group.get("rows") or []):
            position = f"{where}.rows[{index}]"
            if not isinstance(row, Mapping) or "start" not in row or "end" not in row:
                yield BadRecord(position, "expected an object with start and end keys", row)
                continue
            try:
                props = _typed(
                    spec.properties, {k: v for k, v in row.items() if k not in ("start", "end")}
                )
            except NaiveTimestamp as error:
                yield BadRecord(position, str(error), row)
                continue
            yield Record(
                position,
                [
                    RelRow(
                        spec.start.label,
                        spec.type,
                        spec.end.label,
                        str(row["start"]),
                        str(row["end"]),
                        props,
                    )
                ],
                row,
            )
