"""ISA-95 B2MML from the MES: production schedules (what is planned where) and production
performance (what each order's segments actually used).

A ``ProductionSchedule`` holds ``ProductionRequest`` elements (``ID`` = the order, with
``StartTime``/``EndTime``) whose ``SegmentRequirement`` elements plan each operation
(``ProcessSegmentID``, ``EarliestStartTime``, ``LatestEndTime``, ``EquipmentRequirement``).
A ``ProductionPerformance`` document holds ``ProductionResponse`` elements (one per order,
named by ``ProductionRequestID`` or ``ID``) with ``SegmentResponse`` elements (one per
operation, ``ProcessSegmentID`` = the operation number) listing equipment, personnel and
material actuals with lots and quantities. Both the V0600+ ``MaterialActual`` +
``MaterialUse`` form and the older ``MaterialConsumedActual`` / ``MaterialProducedActual``
elements are read; any B2MML namespace version is accepted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from opsgraph.schema.base import NaiveTimestamp, parse_iso

from .records import BadRecord, Item, NodeRow, Record, RelRow, local_name

SOURCE_SYSTEM = "MES (B2MML)"


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if local_name(c.tag) == name), None)


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if local_name(c.tag) == name]


def _text(element: ET.Element | None, name: str) -> str | None:
    found = _child(element, name) if element is not None else None
    value = (found.text or "").strip() if found is not None else ""
    return value or None


def _time(element: ET.Element, name: str) -> datetime | None:
    value = _text(element, name)
    if value is None:
        return None
    try:
        return parse_iso(value)
    except NaiveTimestamp as error:
        raise ValueError(f"{name}: {error}") from None
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 date-time") from None


def _quantity(element: ET.Element) -> tuple[float | None, str | None]:
    quantity = _child(element, "Quantity")
    if quantity is None:
        return None, None
    raw = _text(quantity, "QuantityString")
    try:
        return (float(raw) if raw else None), _text(quantity, "UnitOfMeasure")
    except ValueError:
        raise ValueError(f"Quantity: {raw!r} is not a number") from None


ROOTS = ("ProductionPerformance", "ProductionSchedule")


def _root(path: Path) -> str | None:
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            tag = local_name(element.tag)
            return tag if tag in ROOTS else None
    except (ET.ParseError, OSError):
        return None
    return None


def looks_like(path: Path) -> bool:
    return _root(path) is not None


def parse(path: Path) -> Iterator[Item]:
    """One Record per SegmentResponse (performance) or ProductionRequest (schedule)."""
    if _root(path) == "ProductionSchedule":
        yield from _schedule(path)
        return
    yield from _performance(path)


def _schedule(path: Path) -> Iterator[Item]:
    """A production schedule: planned times and machines of each order's segments."""
    requests = 0
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if local_name(element.tag) != "ProductionRequest":
                continue
            requests += 1
            position = f"ProductionRequest[{requests}]"
            raw = ET.tostring(element, encoding="unicode")
            try:
                yield Record(position, _request(element), raw)
            except ValueError as error:
                yield BadRecord(position, str(error), raw)
            element.clear()
    except ET.ParseError as error:
        yield BadRecord("file", f"malformed XML: {error}")


def _request(request: ET.Element) -> list[NodeRow | RelRow]:
    order = _text(request, "ID")
    if not order:
        raise ValueError("ProductionRequest without ID")
    planned = {"order_id": order}
    for prop, name in (("planned_start", "StartTime"), ("planned_end", "EndTime")):
        moment = _time(request, name)
        if moment is not None:
            planned[prop] = moment
    rows: list[NodeRow | RelRow] = [NodeRow("ProductionOrder", planned)]
    for segment in _children(request, "SegmentRequirement"):
        rows += _segment_rows(
            order,
            segment,
            (("planned_start", "EarliestStartTime"), ("planned_end", "LatestEndTime")),
            "EquipmentRequirement",
            "SegmentRequirement",
        )
    return rows


def _segment_rows(
    order: str,
    segment: ET.Element,
    times: tuple[tuple[str, str], ...],
    equipment_tag: str,
    what: str,
) -> list[NodeRow | RelRow]:
    """The operation a segment (planned or actual) stands for, with its times and machines."""
    number = _text(segment, "ProcessSegmentID") or _text(segment, "ID")
    if not number:
        raise ValueError(f"{what} without ProcessSegmentID or ID")
    operation_id = f"{order}/{number}"
    operation: dict[str, Any] = {"operation_id": operation_id, "sequence": number}
    for prop, name in times:
        moment = _time(segment, name)
        if moment is not None:
            operation[prop] = moment
    rows: list[NodeRow | RelRow] = [
        NodeRow("Operation", operation),
        RelRow("ProductionOrder", "HAS_OPERATION", "Operation", order, operation_id),
    ]
    for equipment in _children(segment, equipment_tag):
        machine = _text(equipment, "EquipmentID")
        if machine:
            rows += [
                NodeRow("Machine", {"machine_id": machine}),
                RelRow("Operation", "ON_MACHINE", "Machine", operation_id, machine),
            ]
    return rows


def _performance(path: Path) -> Iterator[Item]:
    """One Record per SegmentResponse, streamed."""
    order: str | None = None
    depth: list[str] = []
    responses = segments = 0
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            tag = local_name(element.tag)
            if event == "start":
                depth.append(tag)
                if tag == "ProductionResponse":
                    order, responses, segments = None, responses + 1, 0
                continue
            depth.pop()
            parent = depth[-1] if depth else ""
            if parent == "ProductionResponse" and tag in ("ProductionRequestID", "ID"):
                if tag == "ProductionRequestID" or order is None:
                    order = (element.text or "").strip() or order
            elif tag == "SegmentResponse" and parent == "ProductionResponse":
                segments += 1
                position = f"ProductionResponse[{responses}]/SegmentResponse[{segments}]"
                try:
                    yield Record(
                        position, _segment(order, element), ET.tostring(element, encoding="unicode")
                    )
                except ValueError as error:
                    yield BadRecord(position, str(error), ET.tostring(element, encoding="unicode"))
                element.clear()
    except ET.ParseError as error:
        yield BadRecord("file", f"malformed XML: {error}")


def _segment(order: str | None, segment: ET.Element) -> list[NodeRow | RelRow]:
    if not order:
        raise ValueError("ProductionResponse without ProductionRequestID or ID")
    rows = _segment_rows(
        order,
        segment,
        (("actual_start", "ActualStartTime"), ("actual_end", "ActualEndTime")),
        "EquipmentActual",
        "SegmentResponse",
    )
    operation_id = rows[0].props["operation_id"]  # _segment_rows puts the operation first
    for personnel in _children(segment, "PersonnelActual"):
        person = _text(personnel, "PersonID")
        if person:
            rows += [
                NodeRow("Person", {"person_id": person}),
                RelRow("Person", "PERFORMED", "Operation", person, operation_id),
            ]
    materials = [(m, _text(m, "MaterialUse")) for m in _children(segment, "MaterialActual")]
    materials += [(m, "Consumed") for m in _children(segment, "MaterialConsumedActual")]
    materials += [(m, "Produced") for m in _children(segment, "MaterialProducedActual")]
    for material, use in materials:
        definition, lot = _text(material, "MaterialDefinitionID"), _text(material, "MaterialLotID")
        if not (definition and lot):
            continue
        lot_id = f"{definition}/{lot}"
        quantity, unit = _quantity(material)
        flow = {k: v for k, v in (("quantity", quantity), ("unit", unit)) if v is not None}
        rows += [
            NodeRow("MaterialLot", {"lot_id": lot_id, "batch": lot}),
            NodeRow("Product", {"product_id": definition}),
            RelRow("MaterialLot", "OF_PRODUCT", "Product", lot_id, definition),
        ]
        if use == "Produced":
            rows.append(
                RelRow("MaterialLot", "PRODUCED_BY", "ProductionOrder", lot_id, order, flow)
            )
        elif use in ("Consumed", "Consumable"):
            rows.append(
                RelRow("MaterialLot", "CONSUMED_BY", "Operation", lot_id, operation_id, flow)
            )
    return rows
