"""Parked records: what a source sent before the entity it names was loaded.

Real feeds arrive out of order (inspection items before their inspection, confirmations
before their order), so a record whose relationship names a node that exists nowhere yet is
not a bad record: it is kept, with its mapped rows and provenance, in ``parked.jsonl`` under
the runner's state directory, and retried at its place in the load order of every later run
(files, ``--watch``, webhook, MQTT) until its parent arrives. ``opsgraph ingest --pending``
lists what waits and why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .records import NodeRow, Record, RelRow

FILE = "parked.jsonl"


def _encode(value: Any) -> Any:
    """Row values as JSON, keeping the types the writer checks (datetimes stay datetimes)."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        if set(value) == {"$date"}:
            return date.fromisoformat(value["$date"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


@dataclass
class Parked:
    """One record waiting for the entities it names."""

    source: str  # the file or stream it came from
    format: str
    source_system: str
    rank: int  # its place in the load order
    position: str
    reason: str
    rows: list[NodeRow | RelRow]
    raw: Any = None
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    attempts: int = 1

    def record(self) -> Record:
        return Record(self.position, self.rows, self.raw)

    def to_json(self) -> str:
        rows = [
            {"node": r.label, "props": _encode(r.props)}
            if isinstance(r, NodeRow)
            else {
                "rel": [r.start, r.type, r.end],
                "keys": [r.start_key, r.end_key],
                "props": _encode(r.props),
            }
            for r in self.rows
        ]
        entry = {**vars(self), "rows": rows, "raw": _encode(self.raw)}
        return json.dumps(entry, default=str)

    @classmethod
    def from_json(cls, line: str) -> Parked:
        entry = json.loads(line)
        rows: list[NodeRow | RelRow] = []
        for r in entry.pop("rows"):
            if "node" in r:
                rows.append(NodeRow(r["node"], _decode(r["props"])))
            else:
                rows.append(RelRow(*r["rel"], *r["keys"], _decode(r["props"])))
        return cls(**{**entry, "rows": rows, "raw": _decode(entry.get("raw"))})


class ParkingLot:
    """The parked records of one state directory. A run takes them all out to retry them
    and writes back, at every commit, those not yet retried plus those parked (again) so far,
    so a run that dies keeps everything it had not finished with."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE

    def read(self) -> list[Parked]:
        """Everything parked, oldest first; an unreadable line is kept out, not fatal."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            try:
                found.append(Parked.from_json(line))
            except (ValueError, TypeError, KeyError):
                continue
        return found

    def write(self, entries: list[Parked]) -> None:
        """Replace the parked records atomically (a reader never sees half a file)."""
        if not entries and not self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text("".join(e.to_json() + "\n" for e in entries), encoding="utf-8")
        os.replace(partial, self.path)
