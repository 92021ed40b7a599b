"""A plant's Unified Namespace over MQTT: ISA-95 topics with JSON payloads, and Sparkplug B.

Plain UNS topics follow the ISA-95 equipment hierarchy,
``enterprise/site/area/line/machine/<tag...>``: the levels become Site, Area, Line and Machine
nodes, and the tag says what the payload is::

    acme/dresden/machining/line-2/M-101/execution   {"value": "STOPPED", "timestamp": "..."}
    acme/dresden/machining/line-2/M-101/alarm       {"code": "2001", "level": "Fault", ...}
    acme/dresden/machining/line-2/M-101/spindle/temperature  {"value": 61.5, "unit": "C"}

``state``, ``execution`` and ``availability`` tags are machine states (MTConnect vocabulary or
opsgraph's own: running, idle, down, setup, unavailable), ``alarm``/``condition`` tags raise
(Warning, Fault) and clear (Normal) alarms, anything else numeric is a process reading. A
payload is a JSON object with ``value`` and ``timestamp`` (ISO 8601 or epoch milliseconds), or
a bare value (JSON or plain text: ``ACTIVE``, ``61.5``); without a timestamp the time of
receipt counts.

Sparkplug B topics (``spBv1.0/group/NDATA/edge_node[/device]``) carry protobuf payloads
decoded with Eclipse Tahu's generated classes (PyPI ``tahutils``): group = site, edge node =
line (or the machine, for node-level metrics), device = machine. Births declare metric aliases
that later data messages use; deaths mark the machine unavailable. Metric names map like UNS
tags (``Execution``, ``Alarms/<code>``, numeric metrics as readings).

State intervals and open alarms span messages: a :class:`Tracker` keeps them per machine and,
for a machine it has not seen since it started, reads them from the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from tahutils.tahu import sparkplug_b_pb2 as spb

from opsgraph.graph import identity, queries
from opsgraph.graph.store import Store
from opsgraph.schema.base import as_utc, parse_iso

from . import mtconnect
from .records import BadRecord, Item, NodeRow, Record, RelRow, SkippedRecord

UNS_SOURCE = "MQTT UNS"
SPARKPLUG_SOURCE = "Sparkplug B"
SPARKPLUG_NAMESPACE = "spBv1.0"
STATE_TAGS = ("state", "execution", "availability")
ALARM_TAGS = ("alarm", "alarms", "condition")
OWN_STATES = ("running", "idle", "down", "setup", "unavailable")
ALARM_LEVELS = ("Warning", "Fault", "Normal")
# Sparkplug metric datatypes (Tahu's MetricDataType) by the field that holds their value.
_INT_TYPES = range(1, 9)  # Int8..UInt64
_FLOAT_TYPES = (9, 10)  # Float, Double
_BOOLEAN, _STRING_TYPES, _DATETIME = 11, (12, 14, 15), 13


@dataclass(frozen=True)
class Place:
    """Where in the equipment hierarchy a message comes from (levels may be unknown)."""

    machine: str
    site: str | None = None
    area: str | None = None
    line: str | None = None

    def rows(self) -> list[NodeRow | RelRow]:
        """The hierarchy as rows: written with a machine's first message of a session."""
        rows: list[NodeRow | RelRow] = [NodeRow("Machine", {"machine_id": self.machine})]
        chain = [
            ("Site", "site_id", self.site),
            ("Area", "area_id", self.area),
            ("Line", "line_id", self.line),
        ]
        known = [(label, key, value) for label, key, value in chain if value]
        for label, key, value in known:
            rows.append(NodeRow(label, {key: value}))
        links = {("Site", "Area"): "HAS_AREA", ("Area", "Line"): "HAS_LINE"}
        for (upper, _, upper_key), (lower, _, lower_key) in zip(known, known[1:], strict=False):
            if (upper, lower) in links:
                rows.append(RelRow(upper, links[upper, lower], lower, upper_key, lower_key))
        if self.line:
            rows.append(RelRow("Line", "HAS_MACHINE", "Machine", self.line, self.machine))
        return rows


class Tracker:
    """Open state intervals and alarms per machine across messages (see module docstring).
    Not shared between threads: the MQTT subscriber maps messages on its one loader thread."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.devices: dict[str, mtconnect.Device] = {}
        self.placed: set[Place] = set()

    def device(self, machine: str) -> mtconnect.Device:
        device = self.devices.get(machine)
        if device is None:
            device = mtconnect.Device(machine)
            if self.store is not None:
                self._resume(device)  # may raise if the store is away: nothing kept then
            self.devices[machine] = device
        return device

    def _resume(self, device: mtconnect.Device) -> None:
        """Pick up the alarms a previous session left open (its open state interval needs
        nothing: the runner closes intervals from what is stored). The device may be named
        by an alias: its alarms are stored under the machine's business key."""
        machine = identity.load(self.store)("Machine", device.name)
        for r in self.store.read(queries.OPEN_MACHINE_ALARMS, machine=machine):
            device.open_alarms.setdefault(r["code"], []).append((r["id"], as_utc(r["at"])))

    def place_rows(self, place: Place) -> list[NodeRow | RelRow]:
        if place in self.placed:
            return []
        self.placed.add(place)
        return place.rows()


def _moment(value: Any, received: datetime) -> datetime:
    if value is None:
        return received
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is neither ISO 8601 nor epoch milliseconds")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        return parse_iso(value)
    raise ValueError(f"timestamp {value!r} is neither ISO 8601 nor epoch milliseconds")


def _observe(
    tracker: Tracker,
    place: Place,
    position: str,
    tag: str,
    fields: dict[str, Any],
    moment: datetime,
) -> Item:
    """One observation (a state, an alarm or a reading) as a record, with the hierarchy rows
    when the machine is new to this session."""
    device = tracker.device(place.machine)
    name = tag.rsplit("/", 1)[-1].lower()
    value = fields.get("value")
    if name in STATE_TAGS:
        item = _state(device, position, name, value, fields.get("reason"), moment, fields)
    elif name in ALARM_TAGS or tag.split("/", 1)[0].lower() in ALARM_TAGS:
        code = fields.get("code") or (tag.split("/", 1)[1] if "/" in tag else None)
        level = fields.get("level")
        if not code or level not in ALARM_LEVELS:
            return BadRecord(position, "an alarm needs a code and a level (Warning, Fault, Normal)")
        if level == "Normal":
            item = mtconnect.clear_alarms(device, position, str(code), level, moment)
        else:
            message = fields.get("message")
            item = mtconnect.raise_alarm(
                device, position, str(code), str(code), level, message, moment, fields
            )
    else:
        item = _reading(place, position, tag, fields, moment)
    if isinstance(item, Record):
        hierarchy = tracker.place_rows(place)
        if hierarchy:
            item = Record(item.position, [*hierarchy, *item.rows], item.raw)
    return item


def _state(
    device: mtconnect.Device,
    position: str,
    tag: str,
    value: Any,
    reason: Any,
    moment: datetime,
    raw: Any,
) -> Item:
    if not isinstance(value, str) or not value:
        return BadRecord(position, f"{tag}: value must be a state name, got {value!r}", raw)
    if tag == "availability" and value.upper() != "UNAVAILABLE":
        return SkippedRecord(position, "AVAILABLE: execution gives the state")
    state = value.lower() if value.lower() in OWN_STATES else None
    state = state or mtconnect.EXECUTION_STATES.get(value.upper())
    if state is None:
        known = ", ".join([*OWN_STATES, *mtconnect.EXECUTION_STATES])
        return BadRecord(position, f"unknown {tag} value {value!r}; known: {known}", raw)
    items = list(mtconnect.start_state(device, position, moment, state, str(reason or value)))
    return items[0]


def _reading(
    place: Place, position: str, tag: str, fields: dict[str, Any], moment: datetime
) -> Item:
    value = fields.get("value")
    if value is None:
        return SkippedRecord(position, "no value (null)")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return BadRecord(position, f"{tag}: a reading must be a number, got {value!r}", fields)
    props: dict[str, Any] = {
        "reading_id": f"{place.machine}/{tag}/{moment.isoformat()}",
        "parameter": tag,
        "value": float(value),
        "measured_at": moment,
    }
    for limit in ("lower_limit", "upper_limit"):
        bound = fields.get(limit)
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                return BadRecord(position, f"{limit} must be a number, got {bound!r}", fields)
            props[limit] = float(bound)
    if "lower_limit" in props or "upper_limit" in props:
        props["out_of_spec"] = props["value"] < props.get("lower_limit", float("-inf")) or props[
            "value"
        ] > props.get("upper_limit", float("inf"))
    if isinstance(fields.get("unit"), str):
        props["unit"] = fields["unit"]
    return Record(
        position,
        [
            NodeRow("ProcessReading", props),
            RelRow("Machine", "MEASURED", "ProcessReading", place.machine, props["reading_id"]),
        ],
        fields,
    )


def parse_json_message(
    tracker: Tracker, topic: str, payload: bytes, received: datetime | None = None
) -> Iterator[Item]:
    """One UNS message (ISA-95 topic, JSON payload) as records."""
    received = received or datetime.now(UTC)
    levels = topic.split("/")
    if len(levels) < 6 or not all(levels):
        yield BadRecord(
            topic,
            "topic must be enterprise/site/area/line/machine/<tag> (ISA-95 levels)",
            _text(payload),
        )
        return
    _, site, area, line, machine, *tag_levels = levels
    try:
        text = payload.decode().strip()
    except UnicodeDecodeError:
        yield BadRecord(topic, "payload is neither JSON nor text (not UTF-8)", _text(payload))
        return
    try:
        decoded = json.loads(text) if text else None
    except ValueError:
        decoded = text  # a bare value, as many UNS publishers send: ACTIVE, 61.5
    fields = decoded if isinstance(decoded, dict) else {"value": decoded}
    try:
        moment = _moment(fields.get("timestamp"), received)
    except ValueError as error:
        yield BadRecord(topic, str(error), fields)
        return
    yield _observe(
        tracker, Place(machine, site, area, line), topic, "/".join(tag_levels), fields, moment
    )


class SparkplugSession:
    """Metric aliases declared by births, per edge node and device, for the data that
    follows (Sparkplug lets data messages carry only the alias)."""

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, ...], dict[int, str]] = {}
        self.devices: dict[tuple[str, str], set[str]] = {}


def _metric_value(metric: Any) -> Any:
    kind = metric.datatype
    if metric.is_null:
        return None
    if kind in _INT_TYPES:
        return metric.long_value if kind in (4, 8) else metric.int_value
    if kind in _FLOAT_TYPES:
        return metric.float_value if kind == 9 else metric.double_value
    if kind == _BOOLEAN:
        return metric.boolean_value
    if kind in _STRING_TYPES:
        return metric.string_value
    if kind == _DATETIME:
        return metric.long_value
    return None  # datasets, templates, arrays: not observations opsgraph maps


def parse_sparkplug_message(
    tracker: Tracker,
    session: SparkplugSession,
    topic: str,
    payload: bytes,
    received: datetime | None = None,
) -> Iterator[Item]:
    """One Sparkplug B message as records (births and data map alike; deaths mark the
    machine unavailable; commands and host state are not plant observations)."""
    received = received or datetime.now(UTC)
    levels = topic.split("/")
    if len(levels) < 4 or levels[0] != SPARKPLUG_NAMESPACE:
        yield BadRecord(topic, "not a Sparkplug B topic (spBv1.0/group/type/edge_node[/device])")
        return
    group, kind, edge = levels[1], levels[2], levels[3]
    device = levels[4] if len(levels) > 4 else None
    if kind not in ("NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH"):
        yield SkippedRecord(topic, f"{kind} messages carry no plant observations")
        return
    try:
        message = spb.Payload.FromString(payload)
    except DecodeError as error:
        yield BadRecord(topic, f"payload is not a Sparkplug B protobuf: {error}", _text(payload))
        return
    place = Place(device, group, None, edge) if device else Place(edge, group)
    moment = (
        datetime.fromtimestamp(message.timestamp / 1000, UTC)
        if message.HasField("timestamp")
        else received
    )
    scope = (group, edge, device) if device else (group, edge)
    if device:
        session.devices.setdefault((group, edge), set()).add(device)
    if kind.endswith("DEATH"):
        machines = [place]
        if kind == "NDEATH":  # the edge node's devices go offline with it
            machines += [
                Place(d, group, None, edge) for d in sorted(session.devices.get((group, edge), ()))
            ]
        for target in machines:
            fields = {"value": "UNAVAILABLE"}
            yield _observe(tracker, target, topic, "availability", fields, moment)
        return
    aliases = session.aliases.setdefault(scope, {})
    if kind.endswith("BIRTH"):
        aliases.clear()
        aliases.update({m.alias: m.name for m in message.metrics if m.HasField("alias")})
    for index, metric in enumerate(message.metrics):
        position = f"{topic} metrics[{index}]"
        name = metric.name or aliases.get(metric.alias)
        if not name:
            yield BadRecord(position, f"metric alias {metric.alias} was never declared by a birth")
            continue
        if name.split("/", 1)[0] in ("Node Control", "Device Control", "Properties", "bdSeq"):
            yield SkippedRecord(position, f"{name}: Sparkplug control metric")
            continue
        when = (
            datetime.fromtimestamp(metric.timestamp / 1000, UTC)
            if metric.HasField("timestamp")
            else moment
        )
        value = _metric_value(metric)
        fields = _metric_fields(name, value)
        if fields is None:
            yield SkippedRecord(position, f"{name}: a {type(value).__name__} is not mapped")
            continue
        yield _observe(tracker, place, position, name, fields, when)


def _metric_fields(name: str, value: Any) -> dict[str, Any] | None:
    """A metric's value in the shape of a UNS payload, or None if it maps to nothing."""
    head = name.split("/", 1)[0].lower()
    tail = name.rsplit("/", 1)[-1].lower()
    if head in ALARM_TAGS and "/" in name:
        level = ("Fault" if value else "Normal") if isinstance(value, bool) else value
        return {"level": level, "code": name.split("/", 1)[1]}
    if tail in STATE_TAGS:
        return {"value": value}
    if value is None or isinstance(value, int | float) and not isinstance(value, bool):
        return {"value": value}
    return None


def _text(payload: bytes) -> str:
    """A payload as dead-letter text (binary shown as hex)."""
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return payload.hex()
