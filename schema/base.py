"""Shared building blocks of the graph model: provenance, UTC timestamps, relationship models.

Every node and relationship that ingest writes says where it came from, so an analyst can
always tell a source fact from something opsgraph inferred.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from typing import Any

import neo4j.time
from neomodel import (
    BooleanProperty,
    DateTimeNeo4jFormatProperty,
    FloatProperty,
    IntegerProperty,
    JSONProperty,
    StringProperty,
    StructuredNode,
    StructuredRel,
)
from neomodel.properties import validator

# Properties the bulk writer stamps itself; input rows may not set them.
MANAGED_PROPERTIES = frozenset({"ingest_run", "ingested_at", "updated_at"})
# Where a row came from; not part of what it says, so never a reason to call two rows different.
PROVENANCE_PROPERTIES = frozenset({"source_system", "source_record"})
# Flags the writer keeps (readable and filterable like any property, never set by input).
WRITER_FLAGS = frozenset({"unresolved"})


def as_utc(value: Any) -> datetime | None:
    """A stored timestamp (driver DateTime, Python datetime or ISO text, as the read
    services return it) as an aware UTC datetime.

    The embedded store returns UTC datetimes it was given as parameters without a zone.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return parse_iso(value, UTC).astimezone(UTC)
    native = value.to_native() if hasattr(value, "to_native") else value
    return native.astimezone(UTC) if native.tzinfo else native.replace(tzinfo=UTC)


# How an ingest run reads timestamps that carry no zone (``opsgraph ingest --timezone``).
NAIVE_ZONE: ContextVar[tzinfo | None] = ContextVar("naive_zone", default=None)


class NaiveTimestamp(ValueError):
    """A timestamp without a time zone, and no zone given to read it in."""


def parse_iso(text: str, naive: tzinfo | None = None) -> datetime:
    """ISO 8601 text (``Z`` allowed) as an aware datetime. A timestamp without a zone is read
    in ``naive`` (formats whose spec fixes it: MTConnect is UTC) or in the zone the ingest run
    was given; with neither it is refused, not guessed: a plant's MES often writes local time,
    and an hour's error breaks every "before" question root-cause analysis asks."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo:
        return parsed
    zone = naive or NAIVE_ZONE.get()
    if zone is None:
        raise NaiveTimestamp(
            f"{text.strip()!r} has no time zone: add one (Z, +01:00) or say how to read it "
            "(opsgraph ingest --timezone Europe/Berlin)"
        )
    return parsed.replace(tzinfo=zone)


class UtcDateTimeProperty(DateTimeNeo4jFormatProperty):
    """A native Cypher datetime that is always timezone-aware UTC.

    Naive datetimes are rejected rather than guessed: a plant's MES and ERP often sit in
    different time zones, and a silently mis-zoned timestamp breaks every "before" question
    root-cause analysis asks.
    """

    @staticmethod
    def utc(value: Any) -> datetime:
        """The value as an aware UTC datetime; ValueError says what is wrong with it."""
        if not isinstance(value, datetime):
            raise ValueError(f"datetime expected, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("datetime without a time zone; give an aware (UTC) datetime")
        return value.astimezone(UTC)

    @validator
    def deflate(self, value: Any) -> Any:
        return neo4j.time.DateTime.from_native(self.utc(value))

    @validator
    def inflate(self, value: Any) -> datetime:
        return as_utc(value)


class OpsNode(StructuredNode):
    """Abstract base of every node: provenance fields shared by all labels.

    Each concrete subclass declares exactly one business-key property with
    ``unique_index=True``; the bulk writer merges on it.
    """

    __abstract_node__ = True

    source_system = StringProperty(index=True, help_text="e.g. 'SAP S/4HANA', 'MTConnect'")
    source_record = StringProperty(help_text="file and record position or id in the source")
    ingest_run = StringProperty(help_text="ingest run that last changed this node")
    ingested_at = UtcDateTimeProperty(help_text="when this node was first written")
    updated_at = UtcDateTimeProperty(help_text="when ingest last changed this node")
    unresolved = BooleanProperty(
        index=True,
        help_text="true while only other records name this entity (no master record, no alias)",
    )


class SourceRel(StructuredRel):
    """A relationship stated by a source system, with its provenance."""

    source_system = StringProperty()
    source_record = StringProperty()
    ingest_run = StringProperty()
    ingested_at = UtcDateTimeProperty()
    updated_at = UtcDateTimeProperty()


class QuantityRel(SourceRel):
    """A source relationship that moves material: a lot consumed by or produced by work."""

    quantity = FloatProperty()
    unit = StringProperty()
    material_document = StringProperty(help_text="SAP material document / item, if any")
    posted_at = UtcDateTimeProperty()


class SkillRel(SourceRel):
    """A person's skill or certification, with its level and validity."""

    level = IntegerProperty()
    certified = StringProperty(help_text="'yes', 'no' or 'expired'")
    valid_until = UtcDateTimeProperty()


class InferredCause(StructuredRel):
    """A cause found by root-cause analysis — never a source fact.

    Kept apart from :class:`SourceRel` (no provenance fields, its own relationship types)
    so that nobody mistakes an inference for something a system reported.
    """

    score = FloatProperty(required=True)
    rank = IntegerProperty()
    method = StringProperty(required=True)
    run_id = StringProperty(required=True, index=True)
    cause_type = StringProperty()
    explanation = StringProperty()
    evidence = JSONProperty(help_text="evidence paths: nodes and relationships with times")
    computed_at = UtcDateTimeProperty()
