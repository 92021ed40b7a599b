"""SAP S/4HANA OData v2 exports: products, sales orders, batches, production orders and
operations, order confirmations and material documents, mapped to the graph with SAP's own
field names and keys.

Services and entity types (field names as in SAP's published OpenAPI specs):
API_PRODUCT_SRV (A_Product + ``to_Description``), API_SALES_ORDER_SRV (A_SalesOrder +
``to_Item``, A_SalesOrderItem), API_BATCH_SRV (Batch), API_PRODUCTION_ORDER_2_SRV
(A_ProductionOrder_2, A_ProductionOrderOperation_2, also nested under
``to_ProductionOrderOperation``), API_PROD_ORDER_CONFIRMATION_2_SRV (ProdnOrdConf2) and
API_MATERIAL_DOCUMENT_SRV (A_MaterialDocumentItem, also nested under a header's
``to_MaterialDocumentItem``; the posting date lives on the header).

Master data a record merely names (a product, a person, a work center, a lot) is created if
missing. Transactional references (an operation's order, a confirmation's operation, the
order a goods movement posts to) must exist: a dangling one is rejected, not invented.
Load orders before confirmations and goods movements; the runner sorts files that way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ijson

from .odata import ODataValueError, iter_results, moment, number, text
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

SOURCE_SYSTEM = "SAP S/4HANA"

Mapper = Callable[[dict[str, Any], "_FileState"], list[NodeRow | RelRow] | str]


class _FileState:
    """What a file's earlier records tell about later ones: the last operation of each order
    (operations arrive in routing order, which gives the NEXT chain)."""

    def __init__(self) -> None:
        self.last_operation: dict[str, tuple[str, str]] = {}


def _required(entity: dict[str, Any], field: str) -> str:
    value = text(entity.get(field))
    if value is None:
        raise ODataValueError(f"missing {field}")
    return value


def _order_status(order: dict[str, Any]) -> str:
    """SAP's system status from the order's status flags, most advanced first."""
    for flag, status in (
        ("OrderIsClosed", "CLSD"),
        ("OrderIsTechnicallyCompleted", "TECO"),
        ("OrderIsDelivered", "DLV"),
        ("OrderIsConfirmed", "CNF"),
        ("OrderIsPartiallyConfirmed", "PCNF"),
        ("OrderIsReleased", "REL"),
    ):
        if order.get(flag) is True:
            return status
    return "CRTD"


def production_order(order: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    order_id = _required(order, "ManufacturingOrder")
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "ProductionOrder",
            present(
                {
                    "order_id": order_id,
                    "order_type": text(order.get("ManufacturingOrderType")),
                    "plant": text(order.get("ProductionPlant")),
                    "status": _order_status(order),
                    "total_quantity": number(order.get("TotalQuantity"), "TotalQuantity"),
                    "unit": text(order.get("ProductionUnit")),
                    "yield_quantity": number(
                        order.get("MfgOrderConfirmedYieldQty"), "MfgOrderConfirmedYieldQty"
                    ),
                    "planned_start": moment(
                        order, "MfgOrderPlannedStartDate", "MfgOrderPlannedStartTime"
                    ),
                    "planned_end": moment(
                        order, "MfgOrderPlannedEndDate", "MfgOrderPlannedEndTime"
                    ),
                }
            ),
        )
    ]
    material = text(order.get("Material"))
    if material:
        rows += [
            NodeRow("Product", {"product_id": material}),
            RelRow("ProductionOrder", "PRODUCES", "Product", order_id, material),
        ]
    sales_order, item = text(order.get("SalesOrder")), text(order.get("SalesOrderItem"))
    if sales_order and item and sales_order.strip("0"):
        item_id = f"{sales_order}/{item}"
        rows += [
            NodeRow("SalesOrderItem", {"item_id": item_id}),
            RelRow("SalesOrderItem", "FULFILLED_BY", "ProductionOrder", item_id, order_id),
        ]
    nested = order.get("to_ProductionOrderOperation")
    if isinstance(nested, dict):
        for operation in nested.get("results", []):
            rows += production_order_operation(operation, state)
    return rows


def production_order_operation(op: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    order_id = _required(op, "ManufacturingOrder")
    number_ = _required(op, "ManufacturingOrderOperation")
    operation_id = f"{order_id}/{number_}"
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "Operation",
            present(
                {
                    "operation_id": operation_id,
                    "sequence": number_,
                    "description": text(op.get("MfgOrderOperationText")),
                    "planned_quantity": number(
                        op.get("OpPlannedTotalQuantity"), "OpPlannedTotalQuantity"
                    ),
                    "yield_quantity": number(
                        op.get("OpTotalConfirmedYieldQty"), "OpTotalConfirmedYieldQty"
                    ),
                    "planned_start": moment(
                        op, "OpErlstSchedldExecStrtDte", "OpErlstSchedldExecStrtTme"
                    ),
                    "planned_end": moment(
                        op, "OpErlstSchedldExecEndDte", "OpErlstSchedldExecEndTme"
                    ),
                    "actual_start": moment(
                        op, "OpActualExecutionStartDate", "OpActualExecutionStartTime"
                    ),
                    "actual_end": moment(
                        op, "OpActualExecutionEndDate", "OpActualExecutionEndTime"
                    ),
                }
            ),
        ),
        RelRow("ProductionOrder", "HAS_OPERATION", "Operation", order_id, operation_id),
    ]
    work_center = text(op.get("WorkCenter"))
    if work_center:
        rows += [
            NodeRow(
                "WorkCenter",
                present({"work_center_id": work_center, "plant": text(op.get("ProductionPlant"))}),
            ),
            RelRow("Operation", "AT_WORK_CENTER", "WorkCenter", operation_id, work_center),
        ]
    previous = state.last_operation.get(order_id)
    if previous and previous[0] < number_:
        rows.append(RelRow("Operation", "NEXT", "Operation", previous[1], operation_id))
    if not previous or previous[0] < number_:
        state.last_operation[order_id] = (number_, operation_id)
    return rows


def confirmation(conf: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow] | str:
    if conf.get("IsReversed") is True or conf.get("IsReversal") is True:
        return "reversed or reversal confirmation: cancelled in SAP, not loaded"
    confirmation_id = (
        f"{_required(conf, 'ConfirmationGroup')}/{_required(conf, 'ConfirmationCount')}"
    )
    operation_id = f"{_required(conf, 'OrderID')}/{_required(conf, 'OrderOperation')}"
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "Confirmation",
            present(
                {
                    "confirmation_id": confirmation_id,
                    "yield_quantity": number(
                        conf.get("ConfirmationYieldQuantity"), "ConfirmationYieldQuantity"
                    ),
                    "scrap_quantity": number(
                        conf.get("ConfirmationScrapQuantity"), "ConfirmationScrapQuantity"
                    ),
                    "rework_quantity": number(
                        conf.get("ConfirmationReworkQuantity"), "ConfirmationReworkQuantity"
                    ),
                    "unit": text(conf.get("ConfirmationUnit")),
                    "variance_reason": text(conf.get("VarianceReasonCode")),
                    "confirmation_text": text(conf.get("ConfirmationText")),
                    "final": conf.get("IsFinalConfirmation")
                    if isinstance(conf.get("IsFinalConfirmation"), bool)
                    else None,
                    "start": moment(
                        conf, "ConfirmedExecutionStartDate", "ConfirmedExecutionStartTime"
                    ),
                    "end": moment(conf, "ConfirmedExecutionEndDate", "ConfirmedExecutionEndTime"),
                }
            ),
        ),
        RelRow("Confirmation", "CONFIRMS", "Operation", confirmation_id, operation_id),
    ]
    personnel = text(conf.get("Personnel"))
    if personnel and personnel.strip("0"):
        rows += [
            NodeRow("Person", {"person_id": personnel}),
            RelRow("Person", "ENTERED", "Confirmation", personnel, confirmation_id),
            RelRow("Person", "PERFORMED", "Operation", personnel, operation_id),
        ]
    return rows


def material_document_item(
    item: dict[str, Any], state: _FileState, header: dict[str, Any] | None = None
) -> list[NodeRow | RelRow] | str:
    movement = _required(item, "GoodsMovementType")
    material, batch = _required(item, "Material"), text(item.get("Batch"))
    if not batch:
        return f"movement {movement} of {material} without a batch: no lot to trace"
    document = "/".join(
        _required(item, f)
        for f in ("MaterialDocumentYear", "MaterialDocument", "MaterialDocumentItem")
    )
    lot_id = f"{material}/{batch}"
    posted = moment(header or item, "PostingDate") if (header or item).get("PostingDate") else None
    flow = present(
        {
            "quantity": number(item.get("QuantityInEntryUnit"), "QuantityInEntryUnit"),
            "unit": text(item.get("EntryUnit")),
            "material_document": document,
            "posted_at": posted,
        }
    )
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "MaterialLot",
            present({"lot_id": lot_id, "batch": batch, "plant": text(item.get("Plant"))}),
        ),
        NodeRow("Product", {"product_id": material}),
        RelRow("MaterialLot", "OF_PRODUCT", "Product", lot_id, material),
    ]
    order = text(item.get("ManufacturingOrder"))
    supplier = text(item.get("Supplier"))
    if movement == "261" and order:
        rows.append(RelRow("MaterialLot", "ISSUED_TO", "ProductionOrder", lot_id, order, flow))
    elif movement == "101" and order:
        rows.append(RelRow("MaterialLot", "PRODUCED_BY", "ProductionOrder", lot_id, order, flow))
    elif movement == "101" and supplier:
        rows += [
            NodeRow("Supplier", {"supplier_id": supplier}),
            RelRow("Supplier", "SUPPLIED", "MaterialLot", supplier, lot_id, flow),
        ]
    else:
        return f"movement type {movement} without an order or supplier is not traced"
    return rows


def material_document_header(header: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    items = (header.get("to_MaterialDocumentItem") or {}).get("results", [])
    rows: list[NodeRow | RelRow] = []
    for item in items:
        mapped = material_document_item(item, state, header)
        if isinstance(mapped, list):
            rows += mapped
    return rows


def product(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_PRODUCT_SRV A_Product, with its description from ``to_Description``."""
    descriptions = (entity.get("to_Description") or {}).get("results", [])
    english = [d for d in descriptions if d.get("Language") in ("EN", "E")] or descriptions
    return [
        NodeRow(
            "Product",
            present(
                {
                    "product_id": _required(entity, "Product"),
                    "product_type": text(entity.get("ProductType")),
                    "base_unit": text(entity.get("BaseUnit")),
                    "description": text(english[0].get("ProductDescription")) if english else None,
                }
            ),
        )
    ]


def supplier(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_BUSINESS_PARTNER A_Supplier: the supplier master (batches name only its number)."""
    name = text(entity.get("SupplierName")) or text(entity.get("SupplierFullName"))
    return [
        NodeRow("Supplier", present({"supplier_id": _required(entity, "Supplier"), "name": name}))
    ]


def business_partner(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow] | str:
    """API_BUSINESS_PARTNER A_BusinessPartner: a supplier's name and, from its first address
    (``to_BusinessPartnerAddress``), its country; partners that are no supplier are skipped."""
    partner = _required(entity, "BusinessPartner")
    number_ = text(entity.get("Supplier"))
    if not number_:
        return f"business partner {partner} is not a supplier"
    addresses = (entity.get("to_BusinessPartnerAddress") or {}).get("results", [])
    name = text(entity.get("BusinessPartnerFullName")) or text(entity.get("OrganizationBPName1"))
    props = {
        "supplier_id": number_,
        "name": name,
        "country": text(addresses[0].get("Country")) if addresses else None,
    }
    return [NodeRow("Supplier", present(props))]


def work_center(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_WORK_CENTERS A_WorkCenters: the work center master, its description from
    ``WorkCenterDesc`` or the expanded ``to_WorkCenterDescription``."""
    descriptions = (entity.get("to_WorkCenterDescription") or {}).get("results", [])
    english = [d for d in descriptions if d.get("Language") in ("EN", "E")] or descriptions
    name = text(entity.get("WorkCenterDesc")) or (
        text(english[0].get("WorkCenterDesc")) if english else None
    )
    props = {
        "work_center_id": _required(entity, "WorkCenter"),
        "name": name,
        "plant": text(entity.get("Plant")),
    }
    return [NodeRow("WorkCenter", present(props))]


def sales_order(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_SALES_ORDER_SRV A_SalesOrder (with items nested under ``to_Item``)."""
    order = _required(entity, "SalesOrder")
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "SalesOrder",
            present(
                {
                    "sales_order_id": order,
                    "sales_order_type": text(entity.get("SalesOrderType")),
                    "created_at": moment(entity, "CreationDate"),
                    "requested_delivery": moment(entity, "RequestedDeliveryDate"),
                }
            ),
        )
    ]
    customer = text(entity.get("SoldToParty"))
    if customer:
        rows += [
            NodeRow("Customer", {"customer_id": customer}),
            RelRow("SalesOrder", "ORDERED_BY", "Customer", order, customer),
        ]
    for item in (entity.get("to_Item") or {}).get("results", []):
        rows += sales_order_item(item, state)
    return rows


def sales_order_item(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_SALES_ORDER_SRV A_SalesOrderItem."""
    order, item = _required(entity, "SalesOrder"), _required(entity, "SalesOrderItem")
    item_id = f"{order}/{item}"
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "SalesOrderItem",
            present(
                {
                    "item_id": item_id,
                    "quantity": number(entity.get("RequestedQuantity"), "RequestedQuantity"),
                    "unit": text(entity.get("RequestedQuantityUnit")),
                }
            ),
        ),
        RelRow("SalesOrder", "HAS_ITEM", "SalesOrderItem", order, item_id),
    ]
    material = text(entity.get("Material"))
    if material:
        rows += [
            NodeRow("Product", {"product_id": material}),
            RelRow("SalesOrderItem", "FOR_PRODUCT", "Product", item_id, material),
        ]
    return rows


def batch(entity: dict[str, Any], state: _FileState) -> list[NodeRow | RelRow]:
    """API_BATCH_SRV Batch: a lot's dates and the supplier's own batch number."""
    material, number_ = _required(entity, "Material"), _required(entity, "Batch")
    lot_id = f"{material}/{number_}"
    rows: list[NodeRow | RelRow] = [
        NodeRow(
            "MaterialLot",
            present(
                {
                    "lot_id": lot_id,
                    "batch": number_,
                    "plant": text(entity.get("BatchIdentifyingPlant")),
                    "manufactured_at": moment(entity, "ManufactureDate"),
                    "expires_at": moment(entity, "ShelfLifeExpirationDate"),
                    "supplier_batch": text(entity.get("BatchBySupplier")),
                }
            ),
        ),
        NodeRow("Product", {"product_id": material}),
        RelRow("MaterialLot", "OF_PRODUCT", "Product", lot_id, material),
    ]
    supplier = text(entity.get("Supplier"))
    if supplier:
        rows += [
            NodeRow("Supplier", {"supplier_id": supplier}),
            RelRow("Supplier", "SUPPLIED", "MaterialLot", supplier, lot_id),
        ]
    return rows


# Entity type names as they appear in each record's __metadata.type, in load order: what
# later types refer to comes first.
ENTITY_TYPES: dict[str, Mapper] = {
    "A_SupplierType": supplier,
    "A_BusinessPartnerType": business_partner,
    "A_WorkCentersType": work_center,
    "A_ProductType": product,
    "A_SalesOrderType": sales_order,
    "A_SalesOrderItemType": sales_order_item,
    "BatchType": batch,
    "A_ProductionOrder_2Type": production_order,
    "A_ProductionOrderOperation_2Type": production_order_operation,
    "ProdnOrdConf2Type": confirmation,
    "A_MaterialDocumentItemType": material_document_item,
    "A_MaterialDocumentHeaderType": material_document_header,
}

# Without __metadata (a trimmed export), fields only one entity type has tell them apart.
SIGNATURE_FIELDS: list[tuple[str, str]] = [
    ("ConfirmationGroup", "ProdnOrdConf2Type"),
    ("ManufacturingOrderOperation", "A_ProductionOrderOperation_2Type"),
    ("TotalQuantity", "A_ProductionOrder_2Type"),
    ("GoodsMovementType", "A_MaterialDocumentItemType"),
    ("to_MaterialDocumentItem", "A_MaterialDocumentHeaderType"),
    ("SoldToParty", "A_SalesOrderType"),
    ("SalesOrderItem", "A_SalesOrderItemType"),
    ("ProductType", "A_ProductType"),
    ("SupplierAccountGroup", "A_SupplierType"),
    ("BusinessPartnerCategory", "A_BusinessPartnerType"),
    ("WorkCenterInternalID", "A_WorkCentersType"),
    ("BatchIdentifyingPlant", "BatchType"),
]


def entity_type(entity: dict[str, Any]) -> str:
    declared = (entity.get("__metadata") or {}).get("type", "")
    name = declared.rsplit(".", 1)[-1]
    if name in ENTITY_TYPES:
        return name
    for field, candidate in SIGNATURE_FIELDS:
        if field in entity:
            return candidate
    raise ODataValueError(f"not a supported SAP entity ({declared or 'no __metadata.type'})")


# Master data (suppliers, work centers, products) loads first, in one place of the order;
# the transactional entities follow in the order of ENTITY_TYPES.
MASTERS = ("A_SupplierType", "A_BusinessPartnerType", "A_WorkCentersType", "A_ProductType")
LOAD_ORDER = [t for t in ENTITY_TYPES if t not in MASTERS]


def load_rank(path: Path) -> int | None:
    """Where a file goes in the load order, from its first entity; None if it is not ours."""
    try:
        for _, entity in iter_results(path):
            if not isinstance(entity, dict):
                return None
            kind = entity_type(entity)
            return 0 if kind in MASTERS else 1 + LOAD_ORDER.index(kind)
    except (ODataValueError, ijson.JSONError, OSError, UnicodeDecodeError):
        return None
    return None


def parse(path: Path) -> Iterator[Item]:
    """Stream a file of SAP entities, one Record (or BadRecord) per entity."""
    state = _FileState()
    try:
        for index, entity in iter_results(path):
            position = f"d.results[{index}]"
            try:
                if not isinstance(entity, dict):
                    raise ODataValueError(f"expected an entity object, got {type(entity).__name__}")
                mapped = ENTITY_TYPES[entity_type(entity)](entity, state)
            except ODataValueError as error:
                yield BadRecord(position, str(error), entity)
                continue
            if isinstance(mapped, str):
                yield SkippedRecord(position, mapped)
            else:
                yield Record(position, mapped, entity)
    except ijson.JSONError as error:  # the records before it are loaded; say where it broke
        yield BadRecord("file", malformed_json(path) or f"malformed JSON: {error}")
    except ODataValueError as error:
        yield BadRecord("file", str(error))
