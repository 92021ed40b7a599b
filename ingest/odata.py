"""Reading SAP OData v2 JSON as exported by S/4HANA APIs: streamed, with its value formats.

A response (or a file saved from one) is ``{"d": {"results": [...], "__next": "..."}}``; a
paged export is several such files. Numbers arrive as decimal strings ("200.000"), dates as
``/Date(1492041600000)/`` (optionally with an offset) or ISO 8601, times as ``PT15H51M04S``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ijson

from opsgraph.schema.base import parse_iso

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


class ODataValueError(ValueError):
    """A field whose value is not in an OData format we know."""


def iter_results(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (index, entity) from ``d.results`` without loading the whole file.

    Malformed JSON raises ijson's error where it is found (earlier entities have been
    yielded by then); a file with no OData envelope at all raises ODataValueError.
    """
    found = False
    with open(path, "rb") as stream:
        for index, entity in enumerate(ijson.items(stream, "d.results.item", use_float=False)):
            found = True
            yield index, entity
    if not found and not _has_envelope(path):
        raise ODataValueError('no OData v2 envelope {"d": {"results": [...]}} in this file')


def _has_envelope(path: Path) -> bool:
    with open(path, "rb") as stream:
        for prefix, event, _ in ijson.parse(stream):
            if prefix == "d.results" and event == "start_array":
                return True
    return False


def number(value: Any, name: str) -> float | None:
    """A decimal field ("200.000", 200, Decimal) as float; empty means absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ODataValueError(f"{name}: expected a number, got {value!r}")
    try:
        return float(Decimal(str(value)))
    except ArithmeticError:
        raise ODataValueError(f"{name}: expected a number, got {value!r}") from None


def text(value: Any) -> str | None:
    """A text field; SAP sends empty strings for unset values."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def odata_date(value: Any, name: str) -> date | datetime | None:
    """``/Date(ms)/`` (UTC midnight for Edm.DateTime dates) or ISO 8601."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ODataValueError(f"{name}: expected an OData date, got {value!r}")
    match = _DATE.match(value)
    if match:
        # The milliseconds are UTC; an Edm.DateTimeOffset's "+0100" only names the sender's zone.
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    try:
        return parse_iso(value, UTC)  # Edm.DateTime carries no zone; SAP sends it as UTC
    except ValueError:
        raise ODataValueError(f"{name}: {value!r} is neither /Date(ms)/ nor ISO 8601") from None


def odata_time(value: Any, name: str) -> time | None:
    """``PT15H51M04S`` (Edm.Time) or ``15:51:04``."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ODataValueError(f"{name}: expected an OData time, got {value!r}")
    match = _DURATION.match(value)
    if match:
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        total = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if total >= timedelta(days=1):
            raise ODataValueError(f"{name}: {value!r} is not a time of day")
        return (datetime.min + total).time()
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ODataValueError(f"{name}: {value!r} is neither PThhHmmMssS nor hh:mm:ss") from None


def moment(
    record: dict[str, Any], date_field: str, time_field: str | None = None
) -> datetime | None:
    """Combine SAP's separate date and time fields into one UTC datetime."""
    day = odata_date(record.get(date_field), date_field)
    if day is None:
        return None
    clock = odata_time(record.get(time_field), time_field) if time_field else None
    if clock is None:
        return day if isinstance(day, datetime) else datetime.combine(day, time(), UTC)
    base = day.date() if isinstance(day, datetime) else day
    return datetime.combine(base, clock, UTC)
