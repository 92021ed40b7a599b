"""What a source parser yields: one Record per source record, holding the schema rows it maps
to, or a BadRecord saying why it could not be mapped. Parsers never write and never raise
for a bad record; the runner owns batching, provenance and dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NodeRow:
    label: str
    props: dict[str, Any]


@dataclass(frozen=True)
class RelRow:
    start: str
    type: str
    end: str
    start_key: str
    end_key: str
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """The rows mapped from one source record at ``position`` (e.g. ``d.results[17]``)."""

    position: str
    rows: list[NodeRow | RelRow]
    raw: Any = None


@dataclass(frozen=True)
class BadRecord:
    """A source record that could not be mapped, with the reason in plain words."""

    position: str
    reason: str
    raw: Any = None


@dataclass(frozen=True)
class SkippedRecord:
    """A well-formed record that deliberately maps to nothing (e.g. a reversed confirmation)."""

    position: str
    reason: str


Item = Record | BadRecord | SkippedRecord


def present(props: dict[str, Any]) -> dict[str, Any]:
    """The properties a source actually gave (exports write empty strings for unset fields)."""
    return {k: v for k, v in props.items() if v is not None and v != ""}


def local_name(tag: str) -> str:
    """An XML tag without its namespace, so any B2MML or MTConnect version reads alike."""
    return tag.rsplit("}", 1)[-1]


def malformed_json(path: Path, lines: bool = False) -> str | None:
    """Where a JSON (or, ``lines``, JSON-lines) file is broken, in words a person can act on
    ("malformed JSON at line 4, column 44 (byte 214): Unterminated string"), or None if it
    parses; streaming parsers only know that it broke."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        return f"not UTF-8 text (byte {error.start})"
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    for number, chunk in enumerate(text.splitlines() if lines else [text], start=1):
        try:
            if chunk.strip():
                json.loads(chunk)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno} (byte {error.pos})"
            if lines:
                where = f"line {number}, column {error.colno}"
            cut = " (the file ends there: cut short?)" if error.pos >= len(chunk.rstrip()) else ""
            message = error.msg.removesuffix(" at")  # json says "... at" before a position
            return f"malformed JSON at {where}: {message}{cut}"
    return None
