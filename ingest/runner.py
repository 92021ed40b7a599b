"""The ingest runner: detects each file's format, streams its records through the parser,
batches the rows into the bulk writer, stamps provenance, keeps watermarks and writes dead
letters. Parsers only map; everything that touches the store or the disk happens here.
"""

from __future__ import annotations

import gc
import hashlib
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from opsgraph.graph import identity, queries
from opsgraph.graph.identity import Aliases
from opsgraph.graph.store import Rows, Store
from opsgraph.graph.writer import BulkWriter, Rejection
from opsgraph.schema import node_spec, rel_spec
from opsgraph.schema.base import NAIVE_ZONE, as_utc

from . import b2mml, deviations, mtconnect, safetyculture, sap, tables
from . import rows as rows_document
from .odata import ODataValueError
from .parking import Parked, ParkingLot
from .records import (
    BadRecord,
    Item,
    NodeRow,
    Record,
    RelRow,
    SkippedRecord,
    local_name,
    malformed_json,
)


@dataclass(frozen=True)
class SourceFormat:
    """A source format: how to recognise a file and where it goes in the load order
    (``rank``, None if the file is not of this format), its parser and its source system."""

    name: str
    rank: Callable[[Path], int | None]
    parse: Callable[[Path], Iterator[Item]]
    source_system: Callable[[Path], str]


def _ranked(base: int, sub_rank: Callable[[Path], int | None]) -> Callable[[Path], int | None]:
    def rank(path: Path) -> int | None:
        found = sub_rank(path)
        return None if found is None else base + found

    return rank


def _when(base: int, test: Callable[[Path], bool]) -> Callable[[Path], int | None]:
    return lambda path: base if test(path) else None


# Load order: what later sources refer to comes first. ERP orders and operations, then MES
# execution, then worker data; deviation rules run at RULES_RANK, and notes and decision logs,
# which refer to deviations, load after them.
RULES_RANK = 50
TABLE_RANKS = {
    "machine-states": 20,
    "alarms": 20,
    "process-readings": 20,
    "quality-checks": 25,
    "maintenance": 20,
    "changeovers": 20,
    "equipment": 1,
    "shift-roster": 30,
    "skills-matrix": 30,
    "operator-notes": 60,
    "decision-log": 60,
}


def _table_rank(path: Path) -> int | None:
    mapping = tables.builtin_for(path)
    return None if mapping is None else TABLE_RANKS.get(mapping.name, 40)


def _table_parse(path: Path) -> Iterator[Item]:
    mapping = tables.builtin_for(path)
    if mapping is None:
        yield BadRecord("file", "no built-in table layout matches these columns")
        return
    yield from tables.parse_table(path, mapping)


def _table_system(path: Path) -> str:
    mapping = tables.builtin_for(path)
    return mapping.source_system if mapping else "table"


def _fixed(system: str) -> Callable[[Path], str]:
    return lambda _: system


# Adding a format: one module in ingest/ and one entry here.
FORMATS: dict[str, SourceFormat] = {
    f.name: f
    for f in (
        SourceFormat("sap-odata", _ranked(0, sap.load_rank), sap.parse, _fixed(sap.SOURCE_SYSTEM)),
        SourceFormat(
            "rows",
            _when(5, rows_document.looks_like),
            rows_document.parse,
            rows_document.source_system,
        ),
        SourceFormat(
            "b2mml",
            _when(10, b2mml.looks_like),
            b2mml.parse,
            _fixed(b2mml.SOURCE_SYSTEM),
        ),
        SourceFormat(
            "mtconnect",
            _when(20, mtconnect.looks_like),
            mtconnect.parse,
            _fixed(mtconnect.SOURCE_SYSTEM),
        ),
        SourceFormat(
            "safetyculture",
            _ranked(30, safetyculture.load_rank),
            safetyculture.parse,
            _fixed(safetyculture.SOURCE_SYSTEM),
        ),
        SourceFormat("table", _table_rank, _table_parse, _table_system),
    )
}


def mapping_format(mapping: tables.TableMapping, rank: int = 40) -> SourceFormat:
    """A user's TOML-declared table mapping as a source format."""
    return SourceFormat(
        f"mapping:{mapping.name}",
        lambda path: rank if set(mapping.detect) <= tables.header(path) else None,
        lambda path: tables.parse_table(path, mapping),
        _fixed(mapping.source_system),
    )


def unrecognised(path: Path) -> str:
    """Why no parser took a file, said about the file (where it is broken, what it holds)
    rather than about the parsers: a truncated export is to be fixed, not given a format."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if not head:
        return "the file is empty"
    if head[:1] in (b"{", b"["):
        broken = malformed_json(path, lines=path.suffix.lower() in (".jsonl", ".ndjson"))
        if broken:
            return broken
        try:
            next(sap.iter_results(path), None)
        except ODataValueError as error:
            return f"JSON, but not an export opsgraph reads: {error}"
        return "JSON, but not an export opsgraph reads (SAP OData v2, SafetyCulture, rows)"
    if head[:1] == b"<":
        root = None
        try:
            for _, element in ET.iterparse(path, events=("start",)):
                root = root or local_name(element.tag)
        except ET.ParseError as error:
            line, column = error.position
            return f"malformed XML at line {line}, column {column + 1}: {error}"
        return f"XML with root <{root}>, which no parser reads (MTConnectStreams, B2MML)"
    columns = sorted(tables.header(path))
    if columns:
        shown = ", ".join(columns[:12]) + (", …" if len(columns) > 12 else "")
        return (
            f"its columns ({shown}) match no built-in table layout; describe them in a "
            "TOML mapping (opsgraph ingest --mapping FILE)"
        )
    return "no parser recognises this file; name its format explicitly"


@dataclass(frozen=True)
class Stream:
    """Records that arrive without a file (an MQTT message): ``name`` says where they came
    from in reports and dead letters; ``rank`` places them in the load order like a file."""

    name: str
    format: str
    source_system: str
    items: Iterable[Item]
    rank: int = 20


PARKED = " (parked)"  # how records retried from the parking lot appear in reports


class UnknownFormat(ValueError):
    """No parser recognises a file (or the named format does not exist)."""


@dataclass(eq=False)  # identity: the runner keys its bookkeeping by report
class SourceReport:
    """What happened to one file."""

    path: str
    format: str
    system: str = ""  # the source system its records are stamped with
    records: int = 0
    loaded: int = 0
    skipped: int = 0
    rejected: int = 0
    parked: int = 0  # waiting for an entity they name (ingest/parking.py)
    seconds: float = 0.0
    unchanged_since_last_run: bool = False
    broken: bool = False  # the file itself was rejected (one of ``rejected``, no record)

    def settle(self) -> None:
        """Count what loaded: the records that were neither skipped, rejected nor parked."""
        rejected = self.rejected - self.broken
        self.loaded = self.records - self.skipped - rejected - self.parked

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in vars(self).items()}


@dataclass
class IngestReport:
    """The load report of one run: per file, per label/type, and where the dead letters are."""

    run_id: str
    sources: list[SourceReport] = field(default_factory=list)
    writes: dict[str, dict[str, int]] = field(default_factory=dict)
    dead_letters: str | None = None
    rejections: list[dict[str, Any]] = field(default_factory=list)
    new_deviations: list[str] = field(default_factory=list)  # for workflows and subscribers
    repeated_states: int = 0  # observations of the state a machine was already in, folded
    parked: int = 0  # records of this run waiting for an entity they name
    parked_records: list[dict[str, Any]] = field(default_factory=list)  # ... and why
    unparked: int = 0  # records parked by earlier runs that loaded in this one
    aliases: dict[str, Any] | None = None  # what declaring this run's --aliases did
    replayed: dict[str, Any] | None = None  # what --retry-dead-letters read again
    stubbed: dict[str, int] = field(default_factory=dict)  # unresolved nodes created, by label
    waiting: int = 0  # everything parked after this run
    seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def records(self) -> int:
        """Records the sources sent (the deviation rules' findings are counted apart)."""
        return sum(s.records for s in self.sources if s.format != "rules")

    @property
    def findings(self) -> int:
        """Deviations the rules found (new or seen before) in this run."""
        return sum(s.records for s in self.sources if s.format == "rules")

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "records": self.records,
            "findings": self.findings,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
            "records_per_second": round(self.records / self.seconds, 1) if self.seconds else None,
            "sources": [s.as_dict() for s in self.sources],
            "writes": self.writes,
            "dead_letters": self.dead_letters,
            "rejections": self.rejections,
            "new_deviations": self.new_deviations,
            "repeated_states": self.repeated_states,
            "parked": self.parked,
            "unparked": self.unparked,
            "waiting": self.waiting,
            "parked_records": self.parked_records,
            "aliases": self.aliases,
            "replayed": self.replayed,
            "stubbed": self.stubbed,
        }


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; directories contribute their files (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Buffer:
    """Rows waiting for the writer, each remembering the source record it came from."""

    def __init__(self, aliases: Aliases) -> None:
        self.aliases = aliases
        self.nodes: dict[str, list[tuple[dict, int]]] = {}
        self.rels: dict[tuple[str, str, str], list[tuple[dict, int]]] = {}
        self.size = 0

    def add(self, row: NodeRow | RelRow, record: int, origin: dict[str, str]) -> None:
        if isinstance(row, NodeRow):
            key = node_spec(row.label).key
            props = {**origin, **row.props}
            if key in props:
                props[key] = self.aliases(row.label, str(props[key]))
            self.nodes.setdefault(row.label, []).append((props, record))
        else:
            data = {
                **origin,
                **row.props,
                "start": self.aliases(row.start, row.start_key),
                "end": self.aliases(row.end, row.end_key),
            }
            self.rels.setdefault((row.start, row.type, row.end), []).append((data, record))
        self.size += 1

    def without(self, records: set[int]) -> _Buffer:
        """The same rows minus those of the given records."""
        kept = _Buffer(self.aliases)
        kept.nodes = {k: [r for r in v if r[1] not in records] for k, v in self.nodes.items()}
        kept.rels = {k: [r for r in v if r[1] not in records] for k, v in self.rels.items()}
        kept.size = sum(map(len, kept.nodes.values())) + sum(map(len, kept.rels.values()))
        return kept


class _Batch:
    """Records waiting to be written (from one or more files) and the files they finish."""

    def __init__(self, aliases: Aliases, dead: Any, track: bool = False) -> None:
        self.aliases = aliases
        self.dead = dead
        self.rejections: list[dict[str, Any]] = []  # this run's dead letters, without raw
        # label -> keys written, kept across flushes when the rules are to be scoped to them
        self.touched: dict[str, set[str]] | None = {} if track else None
        self.reset()

    def reject(self, source: str, fmt: str, position: str, reason: str, raw: Any) -> None:
        """A dead letter: the record as it came, and why it was not loaded."""
        entry = {"source": source, "format": fmt, "position": position, "reason": reason}
        self.rejections.append(entry)
        self.dead.write(json.dumps({**entry, "raw": raw}, default=str) + "\n")

    def reset(self) -> None:
        self.buffer = _Buffer(self.aliases)
        self.records: list[tuple[SourceReport, Record]] = []
        self.files: list[tuple[Path | None, str, SourceReport]] = []  # None: parked records
        self.systems: dict[SourceReport, str] = {}
        self.rank = 0  # every record of a batch has the same place in the load order


class IngestRunner:
    """Loads files into the store. Re-running the same files changes nothing; files whose
    content has not changed since the last run are skipped unless ``full`` is set."""

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        scope: str = "embedded",
        batch_size: int = 5000,
        on_record: Callable[[str, int], None] | None = None,
        aliases: Aliases | None = None,
        mappings: list[tables.TableMapping] | None = None,
        thresholds: deviations.Thresholds | None = None,
        timezone: tzinfo | None = None,
    ) -> None:
        self.store = store
        self.timezone = timezone  # how to read timestamps that carry no zone; None refuses
        self.state_dir = state_dir
        self.scope = scope
        self.batch_size = batch_size
        # Rows of many labels share a buffer; flushing it in bigger chunks keeps each label's
        # write batches near batch_size instead of a few hundred rows each.
        self.buffer_rows = 10 * batch_size
        self.on_record = on_record
        # declared on this runner (``--aliases FILE``): stored with the first run, then the
        # store's table, read at the start of every run, is what applies
        self.declared = aliases
        self.aliases = Aliases()
        self.formats = [*(mapping_format(m) for m in mappings or ()), *FORMATS.values()]
        self.thresholds = thresholds or deviations.Thresholds()
        self.writer = BulkWriter(store, batch_size=batch_size)
        self.watermark_file = state_dir / "watermarks.json"
        self.parking = ParkingLot(state_dir)
        self._lot: dict[int, Parked] = {}  # what is parked now, by id (kept at every commit)
        self._retrying: dict[int, Parked] = {}  # id(record) -> its entry, while retried
        self._running = threading.Lock()  # one run at a time (webhooks may arrive together)

    # -- watermarks ----------------------------------------------------------------------------

    def _watermarks(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.watermark_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_watermarks(self, files: list[tuple[Path | None, str, SourceReport]]) -> None:
        """Record the files whose rows are all committed (one write per batch, not per file)."""
        if not files:
            return
        marks = self._watermarks()
        now = datetime.now(UTC).isoformat()
        for path, digest, report in files:
            if path is None or report.rejected:
                # parked records have no file to skip; a file with rejected records is read
                # again next run (after a fix, a new --timezone), not skipped as done
                continue
            marks[f"{self.scope}|{path.resolve()}"] = {
                "sha256": digest,
                "records": report.records,
                "run_id": self.writer.run_id,
                "at": now,
            }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.watermark_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(marks, sort_keys=True))
        tmp.replace(self.watermark_file)

    # -- the run -------------------------------------------------------------------------------

    def detect(self, path: Path, name: str | None = None) -> tuple[SourceFormat, int]:
        """The format of a file and its place in the load order."""
        if name is not None:
            chosen = [f for f in self.formats if f.name == name]
            if not chosen:
                known = ", ".join(f.name for f in self.formats)
                raise UnknownFormat(f"unknown format {name!r}; known: {known}")
            return chosen[0], chosen[0].rank(path) or 0
        for fmt in self.formats:
            rank = fmt.rank(path)
            if rank is not None:
                return fmt, rank
        raise UnknownFormat(f"{path.name}: {unrecognised(path)}")

    def run(
        self,
        paths: list[Path],
        format_name: str | None = None,
        full: bool = False,
        dead_letter_path: Path | None = None,
        rules: bool = True,
    ) -> IngestReport:
        """Load every file in dependency order, run the deviation rules once the sources
        they read are in, and report what happened to each file.

        Rows of consecutive files of the same load rank share batches (one audit per file
        must not cost one transaction per file); a file's watermark is saved only once all
        of its rows are committed.
        """
        with self._running, _COLLECTOR.fewer(), self._zone():
            return self._run(paths, format_name, full, dead_letter_path, rules)

    def retry_dead_letters(
        self, letters: list[Path] | None = None, rules: bool = True
    ) -> IngestReport:
        """Replay what earlier runs rejected, after a fix (a ``--timezone``, an alias, a
        mapping, a corrected file): every file or webhook body that a dead letter names is
        read again whole (records that loaded before are unchanged now). ``letters``: the
        dead-letter files to replay, by default all of this home's. Dead letters of messages
        (MQTT) and of the deviation rules name nothing to read again and are reported as
        such. The dead-letter files of this home that were replayed move to ``replayed/``;
        what fails again is in this run's own dead-letter file, with its reason."""
        folder = self.state_dir / "dead-letters"
        given = letters is not None
        letters = list(letters) if given else sorted(folder.glob("*.jsonl"))
        sources: set[Path] = set()
        others: list[dict[str, Any]] = []
        for letter in letters:
            for number, line in enumerate(letter.read_text().splitlines(), start=1):
                try:
                    entry = json.loads(line)
                    named = Path(str(entry["source"]).removesuffix(PARKED))
                except (ValueError, KeyError, TypeError):
                    others.append({"letter": str(letter), "line": number, "why": "unreadable"})
                    continue
                if named.is_file():
                    sources.add(named)
                    continue
                why = {
                    "rules": "a deviation rule's finding (the rules run again anyway)",
                    "uns-json": "an MQTT message (the broker does not send it again)",
                    "sparkplug-b": "an MQTT message (the broker does not send it again)",
                }.get(entry.get("format"), "its file is no longer there")
                others.append(
                    {"source": entry["source"], "position": entry.get("position"), "why": why}
                )
        report = self.run(sorted(sources), full=True, rules=rules)
        done = folder / "replayed"
        moved = []
        for letter in letters:
            if letter.parent.resolve() == folder.resolve():
                done.mkdir(exist_ok=True)
                letter.replace(done / letter.name)
                moved.append(str(done / letter.name))
        report.replayed = {
            "dead_letter_files": [str(x) for x in letters],
            "sources": [str(x) for x in sorted(sources)],
            "not_replayable": others,
            "moved_to": moved,
        }
        return report

    def run_streams(
        self, streams: list[Stream], dead_letter_path: Path | None = None, rules: bool = True
    ) -> IngestReport:
        """Load records that came without files (live messages) as one run: in load order,
        shared batches, dead letters as for files; then the deviation rules, only over what
        these records wrote. Raises if the store fails, so the caller can retry and nothing
        unacknowledged is lost."""
        with (
            self._running,
            _COLLECTOR.fewer(),
            self._zone(),
            self._session(dead_letter_path, track=True) as (report, batch),
        ):
            current_rank: int | None = None
            sources = []
            parked = self._unpark()
            for stream in sorted([*streams, *parked], key=lambda s: (s.rank, s in parked)):
                if stream.rank != current_rank:
                    self._flush(batch, report)
                    current_rank = batch.rank = stream.rank
                if rules and batch.touched and stream.rank >= RULES_RANK:
                    report.sources.append(self._detect_deviations(batch, report, batch.touched))
                    rules = False
                source = SourceReport(stream.name, stream.format)
                report.sources.append(source)
                sources.append(source)
                self._stream(
                    iter(stream.items), source, stream.name, stream.source_system, batch, report
                )
            self._flush(batch, report)
            for source in sources:
                source.settle()
            if rules and batch.touched:
                report.sources.append(self._detect_deviations(batch, report, batch.touched))
        return report

    def file_stream(self, path: Path, format_name: str | None = None) -> Stream:
        """A file as a stream, for live batches that mix files with messages."""
        fmt, rank = self.detect(path, format_name)
        return Stream(str(path), fmt.name, fmt.source_system(path), fmt.parse(path), rank)

    @contextmanager
    def _zone(self) -> Iterator[None]:
        """Parsers read naive timestamps in the run's zone (they run lazily, within it)."""
        token = NAIVE_ZONE.set(self.timezone)
        try:
            yield
        finally:
            NAIVE_ZONE.reset(token)

    @contextmanager
    def _session(
        self, dead_letter_path: Path | None, track: bool = False
    ) -> Iterator[tuple[IngestReport, _Batch]]:
        """A run's report and batch, with its dead-letter file (appended to: a watcher or a
        live runner makes many runs under one run id) removed again if nothing went there.

        A live run (``track``) that fails is retried whole by its caller, so its dead letters
        are taken back rather than written again on every attempt."""
        started = time.perf_counter()
        report = IngestReport(self.writer.run_id)
        dead_path = (
            dead_letter_path or self.state_dir / "dead-letters" / f"{self.writer.run_id}.jsonl"
        )
        dead_path.parent.mkdir(parents=True, exist_ok=True)
        with open(dead_path, "a") as dead:
            before = dead.tell()
            if self.declared:
                declared = identity.declare(self.store, self.declared.entries, self.declared.source)
                report.aliases = declared.as_dict()
                self.declared = None
            self.aliases = identity.load(self.store)
            batch = _Batch(self.aliases, dead, track)
            try:
                yield report, batch
            except BaseException:
                if track:
                    dead.truncate(before)
                raise
            wrote = dead.tell() > before
        report.rejections = batch.rejections
        report.seconds = time.perf_counter() - started
        if wrote:
            report.dead_letters = str(dead_path)
        elif dead_path.stat().st_size == 0:
            dead_path.unlink()

    def _run(
        self,
        paths: list[Path],
        format_name: str | None,
        full: bool,
        dead_letter_path: Path | None,
        rules: bool,
    ) -> IngestReport:
        plan = []
        with self._session(dead_letter_path) as (report, batch):
            for path in expand(paths):
                try:
                    fmt, rank = self.detect(path, format_name)
                except UnknownFormat as error:
                    report.sources.append(SourceReport(str(path), "unknown", rejected=1))
                    batch.reject(str(path), "unknown", "file", str(error), None)
                    continue
                plan.append((rank, 0, str(path), (path, fmt)))
            # records parked by earlier runs, after the new files of their rank
            plan += [(st.rank, 1, st.name, st) for st in self._unpark()]
            marks = self._watermarks()
            loaded_any = False
            current_rank: int | None = None
            for rank, _, _, entry in sorted(plan, key=lambda item: item[:3]):
                if rank != current_rank:
                    self._flush(batch, report)
                    current_rank = batch.rank = rank
                if rules and loaded_any and rank >= RULES_RANK:
                    report.sources.append(self._detect_deviations(batch, report))
                    rules = False
                if isinstance(entry, Stream):
                    source = SourceReport(entry.name, entry.format)
                    report.sources.append(source)
                    short = Path(entry.name.removesuffix(PARKED)).name
                    self._stream(
                        iter(entry.items), source, short, entry.source_system, batch, report
                    )
                    batch.files.append((None, "", source))
                    loaded_any = True
                    continue
                path, fmt = entry
                digest = _sha256(path)
                mark = marks.get(f"{self.scope}|{path.resolve()}")
                if not full and mark and mark["sha256"] == digest:
                    report.sources.append(
                        SourceReport(
                            str(path),
                            fmt.name,
                            fmt.source_system(path),
                            unchanged_since_last_run=True,
                        )
                    )
                    continue
                source = SourceReport(str(path), fmt.name)
                report.sources.append(source)
                self._stream(
                    fmt.parse(path), source, path.name, fmt.source_system(path), batch, report
                )
                batch.files.append((path, digest, source))
                loaded_any = True
            self._flush(batch, report)
            if rules and loaded_any:
                report.sources.append(self._detect_deviations(batch, report))
        return report

    def _unpark(self) -> list[Stream]:
        """Everything parked, as one stream per source and place in the load order."""
        entries = self.parking.read()
        self._lot = {id(e): e for e in entries}
        self._retrying = {}
        groups: dict[tuple, list[Record]] = {}
        for entry in entries:
            record = entry.record()
            self._retrying[id(record)] = entry
            key = (entry.rank, entry.source, entry.format, entry.source_system)
            groups.setdefault(key, []).append(record)
        return [
            Stream(source + PARKED, fmt, system, records, rank)
            for (rank, source, fmt, system), records in groups.items()
        ]

    def watch(
        self,
        directory: Path,
        interval: float = 2.0,
        cycles: int | None = None,
        on_report: Callable[[IngestReport], None] | None = None,
    ) -> int:
        """Load files as they land in ``directory``: every ``interval`` seconds, files new or
        changed since their watermark and not still being written (same size and age as one
        poll ago) are ingested like any run. Stops after ``cycles`` polls (None: never).
        Returns how many files were loaded."""
        sizes: dict[Path, int] = {}
        refused: dict[Path, str] = {}  # files no parser knows: reported once, not every poll
        loaded = 0
        polls = 0
        while cycles is None or polls < cycles:
            polls += 1
            current = {p: p.stat().st_size for p in expand([directory])}
            settled = [p for p, size in current.items() if sizes.get(p) == size]
            sizes = current
            marks = self._watermarks()
            digests = {p: _sha256(p) for p in settled}
            fresh = [
                p
                for p in settled
                if marks.get(f"{self.scope}|{p.resolve()}", {}).get("sha256") != digests[p]
                and refused.get(p) != digests[p]
            ]
            if fresh:
                report = self.run(fresh)
                for source in report.sources:
                    if source.format == "unknown":
                        refused[Path(source.path)] = digests[Path(source.path)]
                loaded += sum(1 for s in report.sources if s.format not in ("rules", "unknown"))
                if on_report is not None:
                    on_report(report)
            if cycles is None or polls < cycles:
                time.sleep(interval)
        return loaded

    def _detect_deviations(
        self, batch: _Batch, report: IngestReport, scope: deviations.Scope | None = None
    ) -> SourceReport:
        source = SourceReport("deviation rules", "rules")
        self._stream(
            deviations.detect(self.store, self.thresholds, scope),
            source,
            "rules",
            deviations.SOURCE_SYSTEM,
            batch,
            report,
        )
        self._flush(batch, report)
        return source

    def _stream(
        self,
        items: Iterator[Item],
        source: SourceReport,
        short_name: str,
        source_system: str,
        batch: _Batch,
        report: IngestReport,
    ) -> None:
        """Feed a parser's items into the shared batch, flushing whenever it is full."""
        started = time.perf_counter()
        flushing = 0.0
        source.system = source_system
        for item in items:
            if isinstance(item, BadRecord):
                source.records += item.position != "file"
                source.broken |= item.position == "file"
                source.rejected += 1
                batch.reject(source.path, source.format, item.position, item.reason, item.raw)
            elif isinstance(item, SkippedRecord):
                source.records += 1
                source.skipped += 1
            else:
                source.records += 1
                origin = {
                    "source_system": source_system,
                    "source_record": f"{short_name}:{item.position}",
                }
                batch.records.append((source, item))
                batch.systems[source] = source_system
                for row in item.rows:
                    batch.buffer.add(row, len(batch.records) - 1, origin)
                if batch.buffer.size >= self.buffer_rows:
                    flushing += self._flush(batch, report)
            if self.on_record is not None:
                self.on_record(source.path, source.records)
        source.seconds += time.perf_counter() - started - flushing

    def _flush(self, batch: _Batch, report: IngestReport) -> float:
        """Write the batch, dead-letter the records that failed, then mark finished files.

        The write time is shared out to the sources by their records in the batch, so each
        source's ``seconds`` is its parse time plus its part of the writing.
        """
        started = time.perf_counter()
        if batch.records:
            self._write(batch, report)
        for _, _, source in batch.files:
            source.settle()
        self._save_watermarks(batch.files)
        elapsed = time.perf_counter() - started
        for source, count in Counter(source for source, _ in batch.records).items():
            source.seconds += elapsed * count / len(batch.records)
        batch.reset()
        report.write_seconds += elapsed
        return elapsed

    def _write(self, batch: _Batch, report: IngestReport) -> None:
        """Write nodes before relationships; records with a rejected row go to dead letters.

        A record whose relationship names a node that neither this batch nor the store has
        is parked whole before anything is written (no record is left half-loaded), to be
        tried again when that node may have arrived.
        """
        buffer = batch.buffer
        waiting = self._dangling(buffer)
        if waiting:
            buffer = buffer.without(set(waiting))
        failed: dict[int, list[str]] = {}
        if batch.touched is not None:
            _touch(batch.touched, buffer)
        # Labels are independent, so node groups are written two at a time (the store then
        # uses both cores). Relationship groups run in parallel only when they share no label:
        # two writers adding edges to one hub node (a machine) conflict and back off.
        with ThreadPoolExecutor(max_workers=2) as pool:
            node_results = list(pool.map(self._write_nodes, buffer.nodes.items()))
            fresh = {label: result.created_keys for label, _, result in node_results}
            report.new_deviations += sorted(fresh.get("Deviation", ()))
            results = list(node_results)
            for wave in _waves(list(buffer.rels.items())):
                results += pool.map(lambda group: self._write_rels(group, fresh), wave)
        self._chain_states(buffer, batch, report)
        self._chain_alarms(buffer, batch)
        for target, rows, result in results:
            counts = report.writes.setdefault(
                target, {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
            )
            counts["created"] += result.created
            counts["updated"] += result.updated
            counts["unchanged"] += result.unchanged
            counts["rejected"] += len(result.rejected)
            if result.stubbed:
                report.stubbed[target] = report.stubbed.get(target, 0) + result.stubbed
            for rejection in result.rejected:
                failed.setdefault(rows[rejection.position][1], []).append(_describe(rejection))
        for index, reasons in sorted(failed.items()):
            source, record = batch.records[index]
            source.rejected += 1
            batch.reject(
                source.path.removesuffix(PARKED),
                source.format,
                record.position,
                "; ".join(reasons),
                record.raw,
            )
        self._park(batch, report, waiting, failed)

    def _park(
        self,
        batch: _Batch,
        report: IngestReport,
        waiting: dict[int, list[str]],
        failed: dict[int, list[str]],
    ) -> None:
        """Keep the records that name what is not loaded yet; let go of the parked ones that
        loaded (or failed for another reason, now in the dead letters). The parking file is
        rewritten only when this batch changed what is parked."""
        changed = bool(waiting)
        for index, (source, record) in enumerate(batch.records):
            entry = self._retrying.get(id(record))
            reasons = waiting.get(index)
            if reasons is None:
                if entry is not None:
                    changed = True
                    report.unparked += index not in failed  # else: a dead letter now
                    del self._lot[id(entry)]
                continue
            source.parked += 1
            report.parked_records.append(
                {"source": source.path, "position": record.position, "reason": "; ".join(reasons)}
            )
            if entry is not None:
                entry.attempts += 1
                entry.reason = "; ".join(reasons)
                continue
            report.parked += 1
            entry = Parked(
                source.path,
                source.format,
                batch.systems.get(source, ""),
                batch.rank,
                record.position,
                "; ".join(reasons),
                record.rows,
                record.raw,
            )
            self._lot[id(entry)] = entry
        if changed:
            self.parking.write(list(self._lot.values()))
        report.waiting = len(self._lot)

    def _chain_states(self, buffer: _Buffer, batch: _Batch, report: IngestReport) -> None:
        """Close the intervals of the machines whose states this batch wrote; states closed
        this way are in scope for the live runs' deviation rules, like those written."""
        since, machines = _timeline(buffer, "MachineState", "HAD_STATE", ("start",))
        if since is None or not machines:
            return
        closed, repeated = self.writer.chain_states(machines, since)
        report.repeated_states += repeated
        if batch.touched is not None:
            batch.touched.setdefault("MachineState", set()).update(closed)
            batch.touched.setdefault("Machine", set()).update(machines)

    def _chain_alarms(self, buffer: _Buffer, batch: _Batch) -> None:
        """Clear alarms across files and runs, for the machines whose alarms (raised,
        cleared, or a condition's return to Normal) this batch wrote."""
        since, machines = _timeline(buffer, "Alarm", "RAISED", ("raised_at", "cleared_at"))
        if since is None or not machines:
            return
        cleared = self.writer.chain_alarms(machines, since)
        if batch.touched is not None:
            batch.touched.setdefault("Alarm", set()).update(cleared)

    def _write_nodes(self, group: tuple[str, list[tuple[dict, int]]]) -> tuple:
        label, rows = group
        return label, rows, self.writer.upsert_nodes(label, [data for data, _ in rows])

    def _write_rels(
        self, group: tuple[tuple[str, str, str], list[tuple[dict, int]]], fresh: dict[str, set[str]]
    ) -> tuple:
        (start, rel_type, end), rows = group
        spec = rel_spec(start, rel_type, end)
        result = self.writer.upsert_relationships(
            spec, [data for data, _ in rows], fresh.get(start, ()), fresh.get(end, ())
        )
        return spec.name, rows, result

    def _dangling(self, buffer: _Buffer) -> dict[int, list[str]]:
        """Records whose relationships point at keys that exist nowhere."""
        wanted: dict[str, set[str]] = {}
        for (start, _, end), rows in buffer.rels.items():
            for data, _ in rows:
                wanted.setdefault(start, set()).add(data["start"])
                wanted.setdefault(end, set()).add(data["end"])
        absent: dict[str, set[str]] = {}
        for label, keys in wanted.items():
            spec = node_spec(label)
            keys -= {str(props.get(spec.key)) for props, _ in buffer.nodes.get(label, [])}
            if keys:
                query = queries.missing_keys(spec.label, spec.key)
                found = {r["key"] for r in self.store.read(query, keys=Rows(sorted(keys)))}
                if found:
                    absent[label] = found
        failed: dict[int, list[str]] = {}
        for (start, rel_type, end), rows in buffer.rels.items():
            for data, record in rows:
                for label, key in ((start, data["start"]), (end, data["end"])):
                    if key in absent.get(label, ()):
                        spec = node_spec(label)
                        failed.setdefault(record, []).append(
                            f"({start})-[:{rel_type}]->({end}): unknown {label} {spec.key}={key!r}"
                        )
        return failed


class _Collector:
    """Runs collect young objects every 50,000 allocations instead of Python's 700: a run
    keeps ~10^5 rows, records and dicts alive per batch, and the default collected them over
    and over while they were still needed (a third of a run's Python time; scale-8 A/B
    3,752-4,161 -> 4,070-5,026 records/s, more at scale 25). Garbage cycles are still
    collected. Runners in other threads (the API's webhook and MQTT ingest) may overlap: the
    process's own thresholds come back when the last of them ends."""

    YOUNG = 50_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0
        self.before = gc.get_threshold()

    @contextmanager
    def fewer(self) -> Iterator[None]:
        with self.lock:
            if self.runs == 0:
                self.before = gc.get_threshold()
                gc.set_threshold(max(self.YOUNG, self.before[0]), 20, 20)
            self.runs += 1
        try:
            yield
        finally:
            with self.lock:
                self.runs -= 1
                if self.runs == 0:
                    gc.set_threshold(*self.before)


_COLLECTOR = _Collector()


def _waves(groups: list[tuple[tuple[str, str, str], Any]]) -> list[list]:
    """Split relationship groups into waves whose groups touch disjoint labels."""
    waves: list[tuple[set[str], list]] = []
    for group in sorted(groups, key=lambda g: -len(g[1])):
        labels = {group[0][0], group[0][2]}
        for used, members in waves:
            if len(members) < 2 and not used & labels:
                used |= labels
                members.append(group)
                break
        else:
            waves.append((set(labels), [group]))
    return [members for _, members in waves]


def _timeline(
    buffer: _Buffer, label: str, rel_type: str, fields: tuple[str, ...]
) -> tuple[datetime | None, set[str]]:
    """The earliest time a buffer's events of a label carry (the first of ``fields`` each
    has) and the machines they belong to: what the interval chaining re-reads."""
    times = []
    for props, _ in buffer.nodes.get(label, ()):
        try:
            times.append(as_utc(next((props[f] for f in fields if props.get(f)), None)))
        except ValueError:
            continue  # the writer rejected it with the reason
    machines = {data["start"] for data, _ in buffer.rels.get(("Machine", rel_type, label), ())}
    return min((t for t in times if t is not None), default=None), machines


def _touch(touched: dict[str, set[str]], buffer: _Buffer) -> None:
    """Note the keys a buffer writes (node rows and relationship ends), per label."""
    for label, rows in buffer.nodes.items():
        key = node_spec(label).key
        touched.setdefault(label, set()).update(str(p[key]) for p, _ in rows if key in p)
    for (start, _, end), rows in buffer.rels.items():
        touched.setdefault(start, set()).update(data["start"] for data, _ in rows)
        touched.setdefault(end, set()).update(data["end"] for data, _ in rows)


def _describe(rejection: Rejection) -> str:
    return f"{rejection.target}: {rejection.reason}"
