"""MTConnect Streams documents (an agent's ``/current`` or ``/sample`` response, any 1.x–2.x
namespace): machine availability and execution as state intervals, conditions as alarms,
samples as process readings.

The agent's own device (MTConnect 1.7+ lists an ``Agent`` device) is skipped; ``UNAVAILABLE``
observations mean "no data", not a value, except for availability and execution where they
start an ``unavailable`` interval. A Warning or Fault opens an alarm that the next Normal of
the same data item clears.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from opsgraph.schema.base import parse_iso

from .records import BadRecord, Item, NodeRow, Record, RelRow, SkippedRecord, local_name

SOURCE_SYSTEM = "MTConnect"

# MTConnect Execution values -> our machine states (reason_code keeps the original value).
EXECUTION_STATES = {
    "ACTIVE": "running",
    "READY": "idle",
    "WAIT": "idle",
    "PROGRAM_COMPLETED": "idle",
    "FEED_HOLD": "idle",
    "OPTIONAL_STOP": "idle",
    "PROGRAM_OPTIONAL_STOP": "idle",
    "PROGRAM_STOPPED": "idle",
    "INTERRUPTED": "down",
    "STOPPED": "down",
    "UNAVAILABLE": "unavailable",
}
CONDITION_LEVELS = ("Warning", "Fault")


def _time(value: str | None) -> datetime:
    if not value:
        raise ValueError("observation without a timestamp")
    return parse_iso(value, UTC)  # MTConnect timestamps are UTC by the standard


def looks_like(path: Path) -> bool:
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return local_name(element.tag) == "MTConnectStreams"
    except (ET.ParseError, OSError):
        return False
    return False


class Device:
    """The state and open alarms of one device while its stream is read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state: tuple[str, str] | None = None  # the state it is in, and its reason
        self.open_alarms: dict[str, list[tuple[str, datetime]]] = {}
        self.normals: set[str] = set()  # data items this stream saw return to Normal


def state_rows(device: Device, state_id: str, props: dict) -> list[NodeRow | RelRow]:
    return [
        NodeRow("MachineState", {"state_id": state_id, **props}),
        NodeRow("Machine", {"machine_id": device.name}),
        RelRow("Machine", "HAD_STATE", "MachineState", device.name, state_id),
    ]


def parse(path: Path) -> Iterator[Item]:
    """Stream observations out of a Streams document, one Record per observation."""
    device: Device | None = None
    devices: list[Device] = []
    section = ""
    component = ""
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            tag = local_name(element.tag)
            if event == "start":
                if tag == "MTConnectError":
                    yield BadRecord("file", "the agent answered with an MTConnectError document")
                    return
                if tag == "DeviceStream":
                    device = Device(element.get("name") or element.get("uuid") or "")
                    devices.append(device)
                elif tag == "ComponentStream":
                    component = element.get("component", "")
                    if component == "Agent" and device is not None:
                        device.name = ""  # the agent's own device: nothing to load
                elif tag in ("Samples", "Events", "Condition"):
                    section = tag
                continue
            if tag in ("Samples", "Events", "Condition"):
                section = ""
            elif tag == "DeviceStream":
                device = None
            elif section and device is not None and device.name and element.get("dataItemId"):
                yield from _observation(device, section, tag, element)
            if tag not in ("MTConnectStreams", "Streams"):
                element.clear()
    except ET.ParseError as error:
        yield BadRecord("file", f"malformed XML: {error}")


def _observation(device: Device, section: str, tag: str, element: ET.Element) -> Iterator[Item]:
    item_id = element.get("dataItemId", "")
    position = f"{device.name}/{item_id}@{element.get('sequence', '?')}"
    value = (element.text or "").strip()
    try:
        moment = _time(element.get("timestamp"))
    except ValueError as error:
        yield BadRecord(position, str(error), ET.tostring(element, encoding="unicode"))
        return
    if section == "Events" and tag in ("Execution", "Availability"):
        if tag == "Availability" and value != "UNAVAILABLE":
            yield SkippedRecord(position, "AVAILABLE: execution gives the state")
            return
        state = EXECUTION_STATES.get(value)
        if state is None:
            yield BadRecord(position, f"unknown {tag} value {value!r}", value)
            return
        yield from start_state(device, position, moment, state, value)
    elif section == "Condition":
        yield from _condition(device, position, tag, element, moment)
    elif section == "Samples":
        if value == "UNAVAILABLE" or not value:
            yield SkippedRecord(position, "UNAVAILABLE sample")
            return
        try:
            number = float(value.split()[0])
        except ValueError:
            yield BadRecord(position, f"sample {item_id}: {value!r} is not a number", value)
            return
        reading_id = f"{device.name}/{item_id}/{moment.isoformat()}"
        props = {
            "reading_id": reading_id,
            "parameter": element.get("name") or item_id,
            "value": number,
            "measured_at": moment,
        }
        yield Record(
            position,
            [
                NodeRow("ProcessReading", props),
                NodeRow("Machine", {"machine_id": device.name}),
                RelRow("Machine", "MEASURED", "ProcessReading", device.name, reading_id),
            ],
            value,
        )
    else:
        yield SkippedRecord(position, f"{tag} events are not mapped")


def start_state(
    device: Device, position: str, moment: datetime, state: str, reason: str
) -> Iterator[Item]:
    """A machine enters a state; it ends where the machine's next state begins, which the
    runner works out from everything stored (the next one may come from another file)."""
    if device.state == (state, reason):
        yield SkippedRecord(position, "state unchanged")
        return
    state_id = f"{device.name}/{moment.isoformat()}"
    rows = state_rows(device, state_id, {"state": state, "reason_code": reason, "start": moment})
    device.state = (state, reason)
    yield Record(position, rows, reason)


def _condition(
    device: Device, position: str, level: str, element: ET.Element, moment: datetime
) -> Iterator[Item]:
    item_id = element.get("dataItemId", "")
    if level in CONDITION_LEVELS:
        code = element.get("nativeCode") or element.get("type") or item_id
        message = (element.text or "").strip() or None
        yield raise_alarm(device, position, item_id, code, level, message, moment, element.text)
    else:
        yield clear_alarms(device, position, item_id, level, moment, carry=True)


def raise_alarm(
    device: Device,
    position: str,
    item_id: str,
    code: str,
    level: str,
    message: str | None,
    moment: datetime,
    raw: object = None,
) -> Record:
    """A Warning or Fault on a data item opens an alarm, kept open until a Normal clears it."""
    alarm_id = f"{device.name}/{code}/{moment.isoformat()}"
    item = {"data_item": item_id} if item_id else {}
    props = {
        "alarm_id": alarm_id,
        "code": code,
        "level": level,
        "message": message,
        "raised_at": moment,
    }
    device.open_alarms.setdefault(item_id, []).append((alarm_id, moment))
    return Record(
        position,
        [
            NodeRow("Alarm", {k: v for k, v in props.items() if v is not None} | item),
            NodeRow("Machine", {"machine_id": device.name}),
            RelRow("Machine", "RAISED", "Alarm", device.name, alarm_id),
        ],
        raw,
    )


def clear_alarms(
    device: Device,
    position: str,
    item_id: str,
    level: str,
    moment: datetime,
    carry: bool = False,
) -> Record | SkippedRecord:
    """A Normal clears the alarms open on the same data item. With ``carry``, a Normal with
    nothing open on its item in this stream is kept (an Alarm of level Normal, once per item
    and stream), so that the runner can clear what another file raised before it, whichever
    of them loads first (an alarm this stream cleared says as much by its ``cleared_at``)."""
    if level != "Normal":
        return SkippedRecord(position, f"{level} condition with nothing to clear")
    if device.open_alarms.get(item_id):
        cleared = device.open_alarms.pop(item_id)
        rows: list[NodeRow | RelRow] = [NodeRow("Machine", {"machine_id": device.name})]
        for alarm_id, _ in cleared:  # the machine named again: its other files' alarms chain
            rows.append(NodeRow("Alarm", {"alarm_id": alarm_id, "cleared_at": moment}))
            rows.append(RelRow("Machine", "RAISED", "Alarm", device.name, alarm_id))
        return Record(position, rows)
    if not carry or not item_id or item_id in device.normals:
        return SkippedRecord(position, "Normal condition with nothing to clear")
    device.normals.add(item_id)
    alarm_id = f"{device.name}/{item_id}/Normal/{moment.isoformat()}"
    props = {"alarm_id": alarm_id, "code": item_id, "level": "Normal", "data_item": item_id}
    return Record(
        position,
        [
            NodeRow("Alarm", {**props, "raised_at": moment, "cleared_at": moment}),
            NodeRow("Machine", {"machine_id": device.name}),
            RelRow("Machine", "RAISED", "Alarm", device.name, alarm_id),
        ],
    )
