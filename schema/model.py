"""The operational graph model (ISA-95 flavoured): one class per label, declared once.

Labels, business keys, properties, relationships, constraints and indexes all come from
these classes; the bulk writer, `opsgraph schema apply` and the API read them.
Business keys are the source systems' own IDs so that every ingest can MERGE on them.
"""

from __future__ import annotations

from neomodel import (
    ArrayProperty,
    BooleanProperty,
    FloatProperty,
    IntegerProperty,
    RelationshipTo,
    StringProperty,
)

from .base import InferredCause, OpsNode, QuantityRel, SkillRel, SourceRel, UtcDateTimeProperty

# --- Plant structure (ISA-95 equipment hierarchy) ------------------------------------------


class Site(OpsNode):
    site_id = StringProperty(unique_index=True, required=True, help_text="SAP plant or site code")
    name = StringProperty()
    timezone = StringProperty()
    areas = RelationshipTo("Area", "HAS_AREA", model=SourceRel)


class Area(OpsNode):
    area_id = StringProperty(unique_index=True, required=True)
    name = StringProperty()
    lines = RelationshipTo("Line", "HAS_LINE", model=SourceRel)


class Line(OpsNode):
    line_id = StringProperty(unique_index=True, required=True)
    name = StringProperty()
    work_centers = RelationshipTo("WorkCenter", "HAS_WORK_CENTER", model=SourceRel)
    machines = RelationshipTo("Machine", "HAS_MACHINE", model=SourceRel)


class WorkCenter(OpsNode):
    work_center_id = StringProperty(
        unique_index=True, required=True, help_text="SAP WorkCenter (unique within the plant)"
    )
    name = StringProperty()
    plant = StringProperty(index=True)
    machines = RelationshipTo("Machine", "HAS_MACHINE", model=SourceRel)
    required_skills = RelationshipTo("Skill", "REQUIRES_SKILL", model=SourceRel)


class Machine(OpsNode):
    machine_id = StringProperty(
        unique_index=True,
        required=True,
        help_text="equipment ID (SAP Equipment / MTConnect device)",
    )
    name = StringProperty()
    machine_type = StringProperty(index=True)
    manufacturer = StringProperty()
    states = RelationshipTo("MachineState", "HAD_STATE", model=SourceRel)
    alarms = RelationshipTo("Alarm", "RAISED", model=SourceRel)
    readings = RelationshipTo("ProcessReading", "MEASURED", model=SourceRel)
    maintenance = RelationshipTo("MaintenanceEvent", "HAD_MAINTENANCE", model=SourceRel)
    changeovers = RelationshipTo("Changeover", "HAD_CHANGEOVER", model=SourceRel)


# --- Identity across systems -----------------------------------------------------------------


class Alias(OpsNode):
    """Another system's ID for one of our entities (the asset tag a worker app uses for SAP
    equipment M-101): every ingest path maps it to the business key, exports map it back."""

    alias_id = StringProperty(unique_index=True, required=True, help_text="'Machine|DMU65-A'")
    entity_label = StringProperty(index=True, help_text="the label of the entity it names")
    other_id = StringProperty(index=True, help_text="the ID the other system uses")
    business_key = StringProperty(index=True, help_text="our business key for the entity")
    system = StringProperty(help_text="the system that uses the ID (e.g. 'safetyculture')")


# --- Demand and plan --------------------------------------------------------------------------


class Customer(OpsNode):
    customer_id = StringProperty(unique_index=True, required=True, help_text="SAP SoldToParty")
    name = StringProperty()


class Product(OpsNode):
    """A material master record: finished good, semi-finished part or raw material."""

    product_id = StringProperty(unique_index=True, required=True, help_text="SAP Product/Material")
    description = StringProperty()
    product_type = StringProperty(index=True, help_text="SAP ProductType, e.g. FERT, HALB, ROH")
    base_unit = StringProperty()


class SalesOrder(OpsNode):
    sales_order_id = StringProperty(unique_index=True, required=True, help_text="SAP SalesOrder")
    sales_order_type = StringProperty()
    created_at = UtcDateTimeProperty()
    requested_delivery = UtcDateTimeProperty(index=True)
    customer = RelationshipTo("Customer", "ORDERED_BY", model=SourceRel)
    items = RelationshipTo("SalesOrderItem", "HAS_ITEM", model=SourceRel)


class SalesOrderItem(OpsNode):
    item_id = StringProperty(
        unique_index=True, required=True, help_text="'SalesOrder/SalesOrderItem'"
    )
    quantity = FloatProperty()
    unit = StringProperty()
    requested_delivery = UtcDateTimeProperty()
    product = RelationshipTo("Product", "FOR_PRODUCT", model=SourceRel)
    production_orders = RelationshipTo("ProductionOrder", "FULFILLED_BY", model=SourceRel)


class ProductionOrder(OpsNode):
    order_id = StringProperty(unique_index=True, required=True, help_text="SAP ManufacturingOrder")
    order_type = StringProperty()
    plant = StringProperty(index=True)
    status = StringProperty(index=True)
    total_quantity = FloatProperty(help_text="SAP TotalQuantity (planned)")
    unit = StringProperty()
    yield_quantity = FloatProperty()
    scrap_quantity = FloatProperty()
    planned_start = UtcDateTimeProperty(index=True)
    planned_end = UtcDateTimeProperty(index=True)
    actual_start = UtcDateTimeProperty()
    actual_end = UtcDateTimeProperty()
    product = RelationshipTo("Product", "PRODUCES", model=SourceRel)
    operations = RelationshipTo("Operation", "HAS_OPERATION", model=SourceRel)


class Operation(OpsNode):
    operation_id = StringProperty(
        unique_index=True,
        required=True,
        help_text="'ManufacturingOrder/ManufacturingOrderOperation'",
    )
    sequence = StringProperty(help_text="SAP operation number, e.g. '0010'")
    description = StringProperty()
    planned_quantity = FloatProperty()
    yield_quantity = FloatProperty()
    scrap_quantity = FloatProperty()
    rework_quantity = FloatProperty()
    planned_start = UtcDateTimeProperty(index=True)
    planned_end = UtcDateTimeProperty()
    actual_start = UtcDateTimeProperty(index=True)
    actual_end = UtcDateTimeProperty()
    work_center = RelationshipTo("WorkCenter", "AT_WORK_CENTER", model=SourceRel)
    machine = RelationshipTo("Machine", "ON_MACHINE", model=SourceRel)
    next_operation = RelationshipTo("Operation", "NEXT", model=SourceRel)


class Confirmation(OpsNode):
    """An SAP production order confirmation: how shops report yield, scrap and who did it."""

    confirmation_id = StringProperty(
        unique_index=True, required=True, help_text="'ConfirmationGroup/ConfirmationCount'"
    )
    yield_quantity = FloatProperty()
    scrap_quantity = FloatProperty()
    rework_quantity = FloatProperty()
    unit = StringProperty()
    variance_reason = StringProperty(index=True)
    confirmation_text = StringProperty()
    final = BooleanProperty()
    start = UtcDateTimeProperty(index=True)
    end = UtcDateTimeProperty()
    operation = RelationshipTo("Operation", "CONFIRMS", model=SourceRel)


# --- Material ---------------------------------------------------------------------------------


class Supplier(OpsNode):
    supplier_id = StringProperty(unique_index=True, required=True, help_text="SAP Supplier")
    name = StringProperty()
    country = StringProperty()
    lots = RelationshipTo("MaterialLot", "SUPPLIED", model=QuantityRel)


class MaterialLot(OpsNode):
    """A batch of material; genealogy runs through CONSUMED_BY and PRODUCED_BY."""

    lot_id = StringProperty(unique_index=True, required=True, help_text="'Material/Batch'")
    batch = StringProperty(index=True, help_text="SAP Batch")
    plant = StringProperty()
    quantity = FloatProperty()
    unit = StringProperty()
    manufactured_at = UtcDateTimeProperty()
    expires_at = UtcDateTimeProperty()
    supplier_batch = StringProperty(help_text="the supplier's own batch number")
    product = RelationshipTo("Product", "OF_PRODUCT", model=SourceRel)
    consumed_by = RelationshipTo("Operation", "CONSUMED_BY", model=QuantityRel)
    # SAP goods issue (movement 261) names the order, not the operation.
    issued_to = RelationshipTo("ProductionOrder", "ISSUED_TO", model=QuantityRel)
    produced_by = RelationshipTo("ProductionOrder", "PRODUCED_BY", model=QuantityRel)


# --- People -----------------------------------------------------------------------------------


class Skill(OpsNode):
    skill_id = StringProperty(unique_index=True, required=True)
    name = StringProperty()
    requires_certification = BooleanProperty()


class Shift(OpsNode):
    shift_id = StringProperty(unique_index=True, required=True, help_text="e.g. 'L2-2026-11-03-B'")
    crew = StringProperty(index=True)
    start = UtcDateTimeProperty(index=True)
    end = UtcDateTimeProperty()
    line = RelationshipTo("Line", "ON_LINE", model=SourceRel)


class Person(OpsNode):
    person_id = StringProperty(
        unique_index=True, required=True, help_text="SAP personnel number or worker-app user ID"
    )
    name = StringProperty()
    role = StringProperty(index=True)
    email = StringProperty()
    skills = RelationshipTo("Skill", "HAS_SKILL", model=SkillRel)
    shifts = RelationshipTo("Shift", "WORKED", model=SourceRel)
    performed = RelationshipTo("Operation", "PERFORMED", model=SourceRel)
    confirmed = RelationshipTo("Confirmation", "ENTERED", model=SourceRel)
    inspected = RelationshipTo("Inspection", "CONDUCTED", model=SourceRel)
    decided = RelationshipTo("Decision", "DECIDED", model=SourceRel)
    wrote = RelationshipTo("Note", "WROTE", model=SourceRel)


# --- Execution events (time-stamped) ----------------------------------------------------------


class MachineState(OpsNode):
    state_id = StringProperty(unique_index=True, required=True)
    state = StringProperty(index=True, help_text="running, idle, down, setup, unavailable")
    reason_code = StringProperty(index=True)
    start = UtcDateTimeProperty(index=True)
    end = UtcDateTimeProperty()
    duration_s = FloatProperty()
    end_inferred = BooleanProperty(help_text="end is the machine's next state's start")


class Alarm(OpsNode):
    alarm_id = StringProperty(unique_index=True, required=True)
    code = StringProperty(index=True)
    level = StringProperty(
        help_text="Warning or Fault (MTConnect condition); Normal: the condition's return to "
        "normal, kept to close an alarm raised in another file"
    )
    message = StringProperty()
    raised_at = UtcDateTimeProperty(index=True)
    cleared_at = UtcDateTimeProperty()
    data_item = StringProperty(help_text="the MTConnect data item (condition) it was reported on")
    cleared_inferred = BooleanProperty(
        help_text="cleared_at is the condition's next Normal, from another file, run or message"
    )


class ProcessReading(OpsNode):
    reading_id = StringProperty(unique_index=True, required=True)
    parameter = StringProperty(index=True)
    value = FloatProperty()
    unit = StringProperty()
    measured_at = UtcDateTimeProperty(index=True)
    lower_limit = FloatProperty()
    upper_limit = FloatProperty()
    out_of_spec = BooleanProperty(index=True)


class QualityCheck(OpsNode):
    check_id = StringProperty(unique_index=True, required=True)
    characteristic = StringProperty(index=True)
    value = FloatProperty()
    unit = StringProperty()
    lower_limit = FloatProperty()
    upper_limit = FloatProperty()
    result = StringProperty(index=True, help_text="pass or fail")
    checked_at = UtcDateTimeProperty(index=True)
    operation = RelationshipTo("Operation", "CHECKED", model=SourceRel)
    lot = RelationshipTo("MaterialLot", "CHECKED_LOT", model=SourceRel)


class Inspection(OpsNode):
    """A connected-worker inspection/audit (e.g. a SafetyCulture audit)."""

    inspection_id = StringProperty(unique_index=True, required=True, help_text="audit_id")
    template = StringProperty(index=True)
    title = StringProperty()
    score_percentage = FloatProperty()
    failed_items = IntegerProperty()
    started_at = UtcDateTimeProperty(index=True)
    completed_at = UtcDateTimeProperty()
    machine = RelationshipTo("Machine", "INSPECTED", model=SourceRel)
    items = RelationshipTo("InspectionItem", "HAS_ITEM", model=SourceRel)


class InspectionItem(OpsNode):
    item_id = StringProperty(unique_index=True, required=True, help_text="'audit_id/item_id'")
    label = StringProperty()
    response = StringProperty()
    failed = BooleanProperty(index=True)


class MaintenanceEvent(OpsNode):
    maintenance_id = StringProperty(unique_index=True, required=True)
    maintenance_type = StringProperty(index=True, help_text="preventive, corrective, inspection")
    status = StringProperty(index=True, help_text="done, missed, overdue, open")
    description = StringProperty()
    scheduled_at = UtcDateTimeProperty(index=True)
    start = UtcDateTimeProperty()
    end = UtcDateTimeProperty()


class Changeover(OpsNode):
    changeover_id = StringProperty(unique_index=True, required=True)
    from_product = StringProperty()
    to_product = StringProperty()
    start = UtcDateTimeProperty(index=True)
    end = UtcDateTimeProperty()


# --- Deviations, decisions and what came of them ----------------------------------------------


class Deviation(OpsNode):
    """Anything off plan, detected by a rule or reported by a source."""

    deviation_id = StringProperty(unique_index=True, required=True)
    deviation_type = StringProperty(
        index=True, help_text="late_order, short_order, scrap, out_of_spec, downtime, ..."
    )
    severity = StringProperty(index=True, help_text="low, medium, high, critical")
    detected_by = StringProperty(help_text="rule name, or 'reported'")
    description = StringProperty()
    start = UtcDateTimeProperty(index=True)
    end = UtcDateTimeProperty()
    status = StringProperty(index=True, help_text="open, acknowledged, closed")
    about_order = RelationshipTo("ProductionOrder", "ABOUT", model=SourceRel)
    about_operation = RelationshipTo("Operation", "ABOUT", model=SourceRel)
    about_machine = RelationshipTo("Machine", "ABOUT", model=SourceRel)
    about_lot = RelationshipTo("MaterialLot", "ABOUT", model=SourceRel)
    about_product = RelationshipTo("Product", "ABOUT", model=SourceRel)
    about_line = RelationshipTo("Line", "ABOUT", model=SourceRel)
    about_inspection = RelationshipTo("InspectionItem", "ABOUT", model=SourceRel)
    about_check = RelationshipTo("QualityCheck", "ABOUT", model=SourceRel)
    # Written by root-cause analysis only: the most likely cause, and other contributors.
    caused_by_lot = RelationshipTo("MaterialLot", "CAUSED_BY", model=InferredCause)
    caused_by_supplier = RelationshipTo("Supplier", "CAUSED_BY", model=InferredCause)
    caused_by_machine = RelationshipTo("Machine", "CAUSED_BY", model=InferredCause)
    caused_by_person = RelationshipTo("Person", "CAUSED_BY", model=InferredCause)
    caused_by_maintenance = RelationshipTo("MaintenanceEvent", "CAUSED_BY", model=InferredCause)
    caused_by_changeover = RelationshipTo("Changeover", "CAUSED_BY", model=InferredCause)
    caused_by_alarm = RelationshipTo("Alarm", "CAUSED_BY", model=InferredCause)
    caused_by_operation = RelationshipTo("Operation", "CAUSED_BY", model=InferredCause)
    caused_by_reading = RelationshipTo("ProcessReading", "CAUSED_BY", model=InferredCause)
    contributed_lot = RelationshipTo("MaterialLot", "CONTRIBUTED_TO", model=InferredCause)
    contributed_supplier = RelationshipTo("Supplier", "CONTRIBUTED_TO", model=InferredCause)
    contributed_machine = RelationshipTo("Machine", "CONTRIBUTED_TO", model=InferredCause)
    contributed_person = RelationshipTo("Person", "CONTRIBUTED_TO", model=InferredCause)
    contributed_maintenance = RelationshipTo(
        "MaintenanceEvent", "CONTRIBUTED_TO", model=InferredCause
    )
    contributed_changeover = RelationshipTo("Changeover", "CONTRIBUTED_TO", model=InferredCause)
    contributed_alarm = RelationshipTo("Alarm", "CONTRIBUTED_TO", model=InferredCause)
    contributed_operation = RelationshipTo("Operation", "CONTRIBUTED_TO", model=InferredCause)
    contributed_reading = RelationshipTo("ProcessReading", "CONTRIBUTED_TO", model=InferredCause)


class Outcome(OpsNode):
    outcome_id = StringProperty(unique_index=True, required=True)
    result = StringProperty(index=True, help_text="effective, partially_effective, ineffective")
    description = StringProperty()
    recorded_at = UtcDateTimeProperty()


class Decision(OpsNode):
    decision_id = StringProperty(unique_index=True, required=True)
    decision_type = StringProperty(
        index=True, help_text="disposition, rework, reschedule, hold, parameter_change, ..."
    )
    summary = StringProperty()
    rationale = StringProperty()
    decided_at = UtcDateTimeProperty(index=True)
    about_deviation = RelationshipTo("Deviation", "ABOUT", model=SourceRel)
    about_order = RelationshipTo("ProductionOrder", "ABOUT", model=SourceRel)
    about_lot = RelationshipTo("MaterialLot", "ABOUT", model=SourceRel)
    about_machine = RelationshipTo("Machine", "ABOUT", model=SourceRel)
    outcome = RelationshipTo("Outcome", "HAS_OUTCOME", model=SourceRel)


class Action(OpsNode):
    """A task assigned to people (a SafetyCulture action, a CAPA step)."""

    action_id = StringProperty(unique_index=True, required=True)
    title = StringProperty()
    description = StringProperty()
    status = StringProperty(index=True, help_text="to_do, in_progress, complete, cannot_do")
    priority = StringProperty(index=True)
    created_at = UtcDateTimeProperty()
    due_at = UtcDateTimeProperty(index=True)
    completed_at = UtcDateTimeProperty()
    workflow = StringProperty(index=True, help_text="the workflow rule that created it, if any")
    assignees = RelationshipTo("Person", "ASSIGNED_TO", model=SourceRel)
    about_deviation = RelationshipTo("Deviation", "ABOUT", model=SourceRel)
    about_machine = RelationshipTo("Machine", "ABOUT", model=SourceRel)
    about_order = RelationshipTo("ProductionOrder", "ABOUT", model=SourceRel)
    about_inspection_item = RelationshipTo("InspectionItem", "ABOUT", model=SourceRel)
    decision = RelationshipTo("Decision", "RESULTED_IN", model=SourceRel)
    # past decisions on similar situations, attached by a workflow for whoever takes it on
    cites = RelationshipTo("Decision", "CITES", model=SourceRel)


class Note(OpsNode):
    """Free text from any source, embedded for search by meaning."""

    note_id = StringProperty(unique_index=True, required=True)
    text = StringProperty(required=True)
    note_kind = StringProperty(index=True, help_text="operator_note, ncr, action_comment, ...")
    written_at = UtcDateTimeProperty(index=True)
    text_hash = StringProperty(help_text="hash of the text the embedding was computed from")
    embedding = ArrayProperty(FloatProperty())
    embedded_at = UtcDateTimeProperty(index=True, help_text="when the embedding was computed")
    about_deviation = RelationshipTo("Deviation", "ABOUT", model=SourceRel)
    about_decision = RelationshipTo("Decision", "ABOUT", model=SourceRel)
    about_machine = RelationshipTo("Machine", "ABOUT", model=SourceRel)
    about_order = RelationshipTo("ProductionOrder", "ABOUT", model=SourceRel)
    about_lot = RelationshipTo("MaterialLot", "ABOUT", model=SourceRel)
    about_action = RelationshipTo("Action", "ABOUT", model=SourceRel)
