"""SafetyCulture (connected worker) exports: full inspection documents as the API and its
official exporter produce them, and data-feed pages.

- An inspection document: ``audit_id``, ``template_id``, ``template_data``, ``audit_data``
  (name, score, dates, authorship), ``header_items`` and ``items`` whose ``responses`` carry
  the answer and a ``failed`` flag. A header item labelled like "Machine", "Equipment" or
  "Asset" names the machine inspected (an alias map turns asset names into machine IDs).
- A feed page: ``{"metadata": {"next_page": ..., "remaining_records": ...}, "data": [...]}``
  from ``/feed/inspections``, ``/feed/inspection_items``, ``/feed/actions``,
  ``/feed/action_assignees``, ``/feed/users`` or ``/feed/sites``; the feed is recognised
  by its rows' fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ijson

from opsgraph.schema.base import NaiveTimestamp, parse_iso

from .records import (
    BadRecord,
    Item,
    NodeRow,
    Record,
    RelRow,
    SkippedRecord,
    malformed_json,
    present,
)

SOURCE_SYSTEM = "SafetyCulture"

MACHINE_LABEL = re.compile(r"\b(machine|equipment|asset)\b", re.I)
ANSWER_TYPES = {"question", "list", "text", "textsingle", "checkbox", "slider", "switch"}


class _Bad(ValueError):
    pass


def _time(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_iso(str(value))
    except NaiveTimestamp as error:
        raise _Bad(f"{field}: {error}") from None
    except ValueError:
        raise _Bad(f"{field}: {value!r} is not an ISO 8601 date-time") from None


def _number(value: Any, field: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Bad(f"{field}: {value!r} is not a number") from None


def _answer(responses: dict[str, Any]) -> str | None:
    selected = [str(s.get("label", "")) for s in responses.get("selected") or [] if s]
    parts = selected + [
        str(responses[k]) for k in ("text", "value", "datetime") if responses.get(k)
    ]
    return ", ".join(p for p in parts if p) or None


# -- full inspection documents -----------------------------------------------------------------


def inspection_document(doc: dict[str, Any]) -> list[NodeRow | RelRow]:
    audit_id = doc.get("audit_id")
    if not audit_id:
        raise _Bad("missing audit_id")
    data = doc.get("audit_data") or {}
    template = ((doc.get("template_data") or {}).get("metadata") or {}).get("name")
    items = [*(doc.get("header_items") or []), *(doc.get("items") or [])]
    answered = [i for i in items if i.get("type") in ANSWER_TYPES and i.get("responses")]
    failed = [i for i in answered if (i.get("responses") or {}).get("failed") is True]
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "Inspection",
            present(
                {
                    "inspection_id": audit_id,
                    "template": (template or doc.get("template_id") or "").strip() or None,
                    "title": data.get("name"),
                    "score_percentage": _number(data.get("score_percentage"), "score_percentage"),
                    "failed_items": len(failed),
                    "started_at": _time(data.get("date_started"), "date_started"),
                    "completed_at": _time(data.get("date_completed"), "date_completed"),
                }
            ),
        ),
    ]
    author = (data.get("authorship") or {}).get("author_id")
    if author:
        rows += [
            NodeRow(
                "Person", present({"person_id": author, "name": data["authorship"].get("author")})
            ),
            RelRow("Person", "CONDUCTED", "Inspection", author, audit_id),
        ]
    for item in answered:
        item_id = f"{audit_id}/{item.get('item_id')}"
        responses = item.get("responses") or {}
        rows += [
            NodeRow(
                "InspectionItem",
                present(
                    {
                        "item_id": item_id,
                        "label": item.get("label"),
                        "response": _answer(responses),
                        "failed": responses.get("failed") is True,
                    }
                ),
            ),
            RelRow("Inspection", "HAS_ITEM", "InspectionItem", audit_id, item_id),
        ]
        answer = _answer(responses)
        is_header = item in (doc.get("header_items") or [])
        if answer and is_header and MACHINE_LABEL.search(item.get("label") or ""):
            rows += [
                NodeRow("Machine", {"machine_id": answer}),
                RelRow("Inspection", "INSPECTED", "Machine", audit_id, answer),
            ]
    return rows


# -- data feeds ----------------------------------------------------------------------------------


def feed_inspection(row: dict[str, Any]) -> list[NodeRow | RelRow]:
    audit_id = row.get("id") or ""
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "Inspection",
            present(
                {
                    "inspection_id": audit_id,
                    "template": row.get("template_name") or row.get("template_id"),
                    "title": row.get("name"),
                    "score_percentage": _number(row.get("score_percentage"), "score_percentage"),
                    "started_at": _time(row.get("date_started"), "date_started"),
                    "completed_at": _time(row.get("date_completed"), "date_completed"),
                }
            ),
        ),
    ]
    if row.get("author_id"):
        rows += [
            NodeRow(
                "Person", present({"person_id": row["author_id"], "name": row.get("author_name")})
            ),
            RelRow("Person", "CONDUCTED", "Inspection", row["author_id"], audit_id),
        ]
    if row.get("asset_id"):
        rows += [
            NodeRow("Machine", {"machine_id": row["asset_id"]}),
            RelRow("Inspection", "INSPECTED", "Machine", audit_id, row["asset_id"]),
        ]
    return rows


def feed_inspection_item(row: dict[str, Any]) -> list[NodeRow | RelRow] | str:
    if row.get("type") not in ANSWER_TYPES:
        return f"{row.get('type')} items carry no answer"
    audit_id, item = row.get("audit_id"), row.get("item_id")
    if not audit_id or not item:
        raise _Bad("missing audit_id or item_id")
    item_id = f"{audit_id}/{item}"
    return [
        NodeRow(
            "InspectionItem",
            present(
                {
                    "item_id": item_id,
                    "label": row.get("label"),
                    "response": row.get("response"),
                    "failed": bool(row.get("is_failed_response")),
                }
            ),
        ),
        RelRow("Inspection", "HAS_ITEM", "InspectionItem", audit_id, item_id),
    ]


def feed_action(row: dict[str, Any]) -> list[NodeRow | RelRow]:
    action_id = row.get("id")
    if not action_id:
        raise _Bad("missing id")
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "Action",
            present(
                {
                    "action_id": action_id,
                    "title": row.get("title"),
                    "description": row.get("description"),
                    "status": (row.get("status") or "").lower() or None,
                    "priority": (row.get("priority") or "").lower() or None,
                    "created_at": _time(row.get("created_at"), "created_at"),
                    "due_at": _time(row.get("due_date"), "due_date"),
                    "completed_at": _time(row.get("completed_at"), "completed_at"),
                }
            ),
        ),
    ]
    if row.get("audit_id") and row.get("audit_item_id"):
        item_id = f"{row['audit_id']}/{row['audit_item_id']}"
        rows.append(RelRow("Action", "ABOUT", "InspectionItem", action_id, item_id))
    if row.get("asset_id"):
        rows += [
            NodeRow("Machine", {"machine_id": row["asset_id"]}),
            RelRow("Action", "ABOUT", "Machine", action_id, row["asset_id"]),
        ]
    return rows


def feed_action_assignee(row: dict[str, Any]) -> list[NodeRow | RelRow] | str:
    if row.get("type") not in (None, "USER", "user"):
        return f"assignee of type {row.get('type')} is a group or site, not a person"
    if not row.get("action_id") or not row.get("assignee_id"):
        raise _Bad("missing action_id or assignee_id")
    return [
        NodeRow("Person", present({"person_id": row["assignee_id"], "name": row.get("name")})),
        RelRow("Action", "ASSIGNED_TO", "Person", row["action_id"], row["assignee_id"]),
    ]


def feed_user(row: dict[str, Any]) -> list[NodeRow | RelRow]:
    name = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
    return [
        NodeRow(
            "Person", present({"person_id": row.get("id"), "name": name, "email": row.get("email")})
        )
    ]


def feed_site(row: dict[str, Any]) -> list[NodeRow | RelRow]:
    return [NodeRow("Site", present({"site_id": row.get("id"), "name": row.get("name")}))]


# A feed is known by fields only its rows have (checked in this order).
FEEDS: list[tuple[str, set[str], Callable[[dict[str, Any]], Any]]] = [
    ("inspection_items", {"item_id", "audit_id", "is_failed_response"}, feed_inspection_item),
    ("action_assignees", {"action_id", "assignee_id"}, feed_action_assignee),
    ("actions", {"title", "priority", "status"}, feed_action),
    ("inspections", {"template_id", "date_started"}, feed_inspection),
    ("users", {"firstname", "lastname"}, feed_user),
    ("sites", {"name", "organisation_id"}, feed_site),
]
LOAD_RANK = {
    "sites": 0,
    "users": 1,
    "inspections": 2,
    "inspection_items": 3,
    "actions": 4,
    "action_assignees": 5,
    "document": 3,
}


def _kind(path: Path) -> str | None:
    """'document', a feed name, or None; read from the file's first fields only."""
    try:
        with open(path, "rb") as handle:
            keys: set[str] = set()
            for prefix, event, value in ijson.parse(handle):
                if prefix == "" and event == "map_key":
                    keys.add(value)
                    if {"audit_id", "audit_data"} <= keys or {"audit_id", "items"} <= keys:
                        return "document"
                if prefix == "data.item" and event == "end_map":
                    break
                if prefix == "data.item" and event == "map_key":
                    keys.add(f"row:{value}")
            rows = {k[4:] for k in keys if k.startswith("row:")}
            if "data" in keys or rows:
                for name, fields, _ in FEEDS:
                    if fields <= rows:
                        return name
    except (ijson.JSONError, OSError, UnicodeDecodeError):
        return None
    return None


def load_rank(path: Path) -> int | None:
    kind = _kind(path)
    return None if kind is None else LOAD_RANK[kind]


def parse(path: Path) -> Iterator[Item]:
    kind = _kind(path)
    if kind == "document":
        try:
            doc = json.loads(path.read_text())
            yield Record("document", inspection_document(doc), doc.get("audit_id"))
        except (_Bad, ValueError, AttributeError) as error:
            yield BadRecord("document", str(error))
        return
    mapper = next((m for name, _, m in FEEDS if name == kind), None)
    if mapper is None:
        yield BadRecord("file", "not a SafetyCulture inspection document or feed page")
        return
    try:
        with open(path, "rb") as handle:
            for index, row in enumerate(ijson.items(handle, "data.item", use_float=True)):
                position = f"data[{index}]"
                try:
                    if not isinstance(row, dict):
                        raise _Bad(f"expected an object, got {type(row).__name__}")
                    mapped = mapper(row)
                except _Bad as error:
                    yield BadRecord(position, str(error), row)
                    continue
                if isinstance(mapped, str):
                    yield SkippedRecord(position, mapped)
                else:
                    yield Record(position, mapped, row)
    except ijson.JSONError as error:  # the records before it are loaded; say where it broke
        yield BadRecord("file", malformed_json(path) or f"malformed JSON: {error}")
