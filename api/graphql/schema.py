"""GraphQL types generated from the model classes, so a property or relationship added to the
model appears in the API without a second list. Resolvers are thin: they call graph/read.py
through per-request DataLoaders, so following a relationship for 100 parents is one query.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncGenerator, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

import strawberry
from graphql import GraphQLError
from neomodel import BooleanProperty, FloatProperty, IntegerProperty, JSONProperty
from strawberry.dataloader import DataLoader
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.fastapi import BaseContext
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext, Info
from strawberry.utils.logging import StrawberryLogger

from opsgraph.graph import decisions, read
from opsgraph.graph.decisions import DecisionError
from opsgraph.graph.memory import DecisionMemory, DecisionMemoryError, Filters
from opsgraph.graph.rca import CLEAR, RcaError, RootCauseAnalyzer
from opsgraph.graph.risk import RiskModel
from opsgraph.graph.store import AsyncStore, Store
from opsgraph.ingest.live import Changes
from opsgraph.schema import NodeSpec, RelSpec, SchemaError, node_spec, node_specs, rel_specs
from opsgraph.schema.base import (
    MANAGED_PROPERTIES,
    PROVENANCE_PROPERTIES,
    UtcDateTimeProperty,
    as_utc,
)

from .cost import QueryCost
from .execution import LeanExecutor, Recent, ValidatedTexts

log = logging.getLogger(__name__)

MAX_PAGE = 100
MAX_DEPTH = 8
NEIGHBOURS, MAX_NEIGHBOURS = 100, 1000  # related nodes per field: default and cap
MAX_COST = 200_000  # estimated objects in a response, see cost.py

T = TypeVar("T")


class Context(BaseContext):
    """Per request: the store (and the serving loop's async reads, if any), the caller's
    role and the DataLoaders (never shared)."""

    def __init__(
        self,
        store: Store,
        role: str = "reader",
        memory: DecisionMemory | None = None,
        changes: Changes | None = None,
        reads: AsyncStore | None = None,
    ):
        super().__init__()
        self.store = store
        self.role = role
        self.memory = memory
        self.changes = changes
        self.reads = reads
        self.loaders: dict[Any, DataLoader] = {}

    async def fetch(self, query: read.Read[T]) -> T:
        return await _fetch(query, self.reads, self.store)

    def loader(self, batched: Batched) -> DataLoader:
        """This request's DataLoader for ``batched``: the keys asked of it in one turn of
        the loop go to the store in one read."""
        loader = self.loaders.get(batched.key)
        if loader is None:
            # the batch function holds the store, not the context (which keeps the loader):
            # no reference cycle, so the request's objects go when it ends instead of
            # waiting for Python's cycle collector
            query, reads, store = batched.query, self.reads, self.store

            async def batch(keys: list[str]) -> list[Any]:
                found = await _fetch(query(keys), reads, store)
                return [found.get(k) for k in keys]

            loader = self.loaders[batched.key] = DataLoader(load_fn=batch)
        return loader


class Batched(NamedTuple):
    """A read made for many keys at once: ``query(keys)`` answers a mapping by key."""

    key: Any  # names the request's DataLoader
    query: Callable[[list[str]], read.Read[dict[str, Any]]]


async def _fetch(query: read.Read[T], reads: AsyncStore | None, store: Store) -> T:
    """Run a read on the server's event loop (its ``AsyncStore``), else on a thread."""
    if reads is not None:
        return await query.run_async(reads)
    return await asyncio.to_thread(query.run, store)


@strawberry.interface
class Node:
    """Anything in the graph, refetchable by its global ``id`` ("Label:businessKey")."""

    id: strawberry.ID

    @classmethod
    def resolve_type(cls, obj: Any, info: Any, abstract: Any) -> str:
        """Every node type is a class named after its label: strawberry's own resolver
        first searches the interface's ~30 possible types for casts, once per node."""
        return type(obj).__name__


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def _python_type(prop: Any) -> Any:
    if isinstance(prop, UtcDateTimeProperty):
        return datetime
    if isinstance(prop, FloatProperty):
        return float
    if isinstance(prop, IntegerProperty):
        return int
    if isinstance(prop, BooleanProperty):
        return bool
    if isinstance(prop, JSONProperty):
        return JSON
    return str


def _check_first(first: int, limit: int = MAX_PAGE) -> None:
    if not 1 <= first <= limit:
        raise GraphQLError(f"first must be between 1 and {limit}")


def _cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _uncursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise GraphQLError(f"invalid cursor {cursor!r}") from None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _related_field(
    batched: Batched,
    key: str,
    convert: Callable[[Any], Any],
    returns: Any,
    description: str,
    first_default: int = NEIGHBOURS,
) -> Any:
    """A list field whose values come from one batched read per request: each parent
    ``load``s its ``key``; the DataLoader sends the keys of all parents in one query."""

    async def resolve(root: Any, info: Info, first: int = first_default) -> list[Any]:
        _check_first(first, MAX_NEIGHBOURS)
        rows = await info.context.loader(batched).load(str(getattr(root, key)))
        return [convert(row) for row in (rows or ())[:first]]

    resolve.__annotations__ = {"root": Any, "info": Info, "first": int, "return": returns}
    return strawberry.field(resolver=resolve, description=description)


class _Types:
    """Builds one GraphQL type per label, with its relationships as fields."""

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self.related: dict[str, dict[str, Batched]] = {}  # label -> python field name -> read
        self._asked: Recent[tuple[Any, list[Batched]]] = Recent()  # see ``asked``
        self.specs = node_specs()
        for spec in self.specs.values():
            self.classes[spec.label] = self._node_class(spec)
        for rel in rel_specs():
            self._relationship_field(rel, outgoing=True)
            self._relationship_field(rel, outgoing=False)
        for owner, kinds in read.WINDOWS.items():
            for kind, label in kinds.items():
                self._window_field(owner, kind, label)
        self._causes_field()
        self.types = {label: strawberry.type(cls) for label, cls in self.classes.items()}
        self.by_key = {
            label: Batched(("node", label), partial(read.query_nodes_by_key, label))
            for label in self.classes
        }

    def _relate(self, owner: str, name: str, batched: Batched, *field: Any, **options: Any) -> None:
        """``owner``'s field ``name``: related values read through ``batched``."""
        setattr(self.classes[owner], name, _related_field(batched, *field, **options))
        self.related.setdefault(owner, {})[name] = batched

    def _causes_field(self) -> None:
        """``Deviation.causes``: what the last analysis stored, with scores and evidence
        (the ``causedBy*`` fields give the nodes alone; ``rootCauses`` analyses anew)."""
        self._relate(
            "Deviation",
            "causes",
            Batched("stored causes", read.query_stored_causes),
            "deviation_id",
            _stored_cause,
            list[StoredCause],
            "Causes stored by the last root-cause analysis (`opsgraph rca`, "
            "runRootCauseAnalysis), best first, with scores and evidence paths; empty until "
            "one ran.",
            first_default=10,
        )

    def _window_field(self, owner: str, kind: str, label: str) -> None:
        """``alarmsDuring`` / ``statesDuring``: the machine's events while the work ran."""
        make = self.make
        self._relate(
            owner,
            f"{kind}_during",
            Batched(("during", owner, kind), partial(read.query_events_during, owner, kind)),
            self.specs[owner].key,
            lambda row: make(label, row),
            list[self.classes[label]],
            f"the machine's {label} records while this {owner} ran (actual times, else planned)",
        )

    def _node_class(self, spec: NodeSpec) -> type:
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {"__doc__": (spec.cls.__doc__ or f"A {spec.label}.").strip()}
        for name, prop in spec.properties.items():
            if name in read.HIDDEN:
                continue
            annotations[name] = _python_type(prop) | None
            namespace[name] = None
        namespace["__annotations__"] = annotations
        return type(spec.label, (Node,), namespace)

    def _relationship_field(self, rel: RelSpec, outgoing: bool) -> None:
        owner = self.classes[rel.start.label if outgoing else rel.end.label]
        other = rel.end if outgoing else rel.start
        if outgoing:
            name = rel.attribute
        else:
            name = f"{other.label[0].lower()}{other.label[1:]}s_{rel.type.lower()}"
            name = _camel(name)
        if name in getattr(owner, "__annotations__", {}) or hasattr(owner, name):
            return
        make = self.make
        direction = "->" if outgoing else "<-"
        self._relate(
            owner.__name__,
            name,
            Batched((rel.name, outgoing), lambda keys: read.query_neighbours(rel, keys, outgoing)),
            (rel.start if outgoing else rel.end).key,
            lambda row: make(other.label, row),
            list[self.classes[other.label]],
            f"{direction} [:{rel.type}] {other.label}",
        )
        if set(rel.properties) - PROVENANCE_PROPERTIES - MANAGED_PROPERTIES:
            self._edges_field(rel, outgoing, owner, name)

    def _edges_field(self, rel: RelSpec, outgoing: bool, owner: type, name: str) -> None:
        """``<field>Edges``: the same related nodes, each with the properties of the
        relationship that leads to it (a skill's level and certification, the quantity of a
        lot consumed), for relationships whose model declares more than provenance."""
        other = rel.end if outgoing else rel.start
        own = rel.start if outgoing else rel.end
        make = self.make
        field = _camel(name)
        edge_name = f"{owner.__name__}{field[0].upper()}{field[1:]}Edge"
        annotations: dict[str, Any] = {
            prop: _python_type(kind) | None for prop, kind in rel.properties.items()
        }
        annotations["node"] = self.classes[other.label]
        namespace: dict[str, Any] = {prop: None for prop in rel.properties}
        namespace["__annotations__"] = annotations
        namespace["__doc__"] = f"A [:{rel.type}] relationship and the {other.label} it leads to."
        edge = strawberry.type(type(edge_name, (), namespace))
        temporal, documents = (
            rel.temporal,
            {prop for prop, kind in rel.properties.items() if isinstance(kind, JSONProperty)},
        )

        def value(prop: str, stored: Any) -> Any:
            if stored is None:
                return None
            if prop in temporal:
                return as_utc(stored)
            return json.loads(stored) if prop in documents and isinstance(stored, str) else stored

        def convert(row: tuple[dict[str, Any], dict[str, Any]]) -> Any:
            props, link = row
            values = {prop: value(prop, link.get(prop)) for prop in rel.properties}
            return edge(node=make(other.label, props), **values)

        direction = "->" if outgoing else "<-"
        self._relate(
            owner.__name__,
            f"{name}_edges",
            Batched(
                (rel.name, outgoing, "edges"), lambda keys: read.query_links(rel, keys, outgoing)
            ),
            own.key,
            convert,
            list[edge],
            f"{direction} [:{rel.type}] {other.label}, with the relationship's properties",
        )

    def asked(self, info: Info, label: str) -> list[Batched]:
        """The related values of a ``label`` node that the query asks of the field being
        resolved (directly or through fragments on the label or on Node), found once per
        query text: the parser cache hands every request of a text the same syntax tree.
        Read from graphql-core's field nodes: strawberry's ``info.selected_fields`` converts
        the whole selection below the field on every call, which cost more than the round
        trip it saved."""
        raw = info._raw_info  # strawberry's Info wraps graphql-core's resolve info
        first = raw.field_nodes[0]
        remembered = self._asked.get((id(first), label))
        if remembered is not None and remembered[0] is first:  # not an id reused
            return remembered[1]
        name = info.schema.config.name_converter.apply_naming_config
        related = {name(field): batched for field, batched in self.related[label].items()}
        found: list[Batched] = []
        for node in raw.field_nodes:
            if node.selection_set is not None:
                for asked in _names(node.selection_set.selections, label, raw.fragments):
                    if asked in related and related[asked] not in found:
                        found.append(related[asked])
        self._asked.put((id(first), label), (first, found))
        return found

    def make(self, label: str, props: dict[str, Any]) -> Any:
        spec = self.specs[label]
        values = {}
        for name, prop in spec.properties.items():
            if name in read.HIDDEN:
                continue
            value = props.get(name)
            if value is not None and isinstance(prop, UtcDateTimeProperty):
                value = as_utc(value)
            values[name] = value
        return self.types[label](id=f"{label}:{props.get(spec.key)}", **values)


def _names(selections: Any, label: str, fragments: Any) -> Iterator[str]:
    """The names of the fields selected of a ``label`` node, through fragments."""
    for selection in selections:
        kind = selection.kind
        if kind == "field":
            yield selection.name.value
        elif kind == "inline_fragment":
            condition = selection.type_condition
            if condition is None or condition.name.value in (label, "Node"):
                yield from _names(selection.selection_set.selections, label, fragments)
        elif kind == "fragment_spread":
            fragment = fragments.get(selection.name.value)
            if fragment is not None and fragment.type_condition.name.value in (label, "Node"):
                yield from _names(fragment.selection_set.selections, label, fragments)


def _ahead(loading: asyncio.Future) -> None:
    """A value loaded ahead is awaited by its field; when that field never runs (no such
    node), a failure to load it is not left to be reported as never retrieved."""
    loading.add_done_callback(lambda done: done.cancelled() or done.exception())


TYPES: _Types | None = None


def _types() -> _Types:
    global TYPES
    if TYPES is None:
        TYPES = _Types()
    return TYPES


def _connection(spec: NodeSpec, node_type: type) -> tuple[type, type]:
    edge = strawberry.type(
        type(
            f"{spec.label}Edge",
            (),
            {
                "__annotations__": {"cursor": str, "node": node_type},
            },
        )
    )
    connection = strawberry.type(
        type(
            f"{spec.label}Connection",
            (),
            {
                "__annotations__": {
                    "edges": list[edge],
                    "nodes": list[node_type],
                    "page_info": PageInfo,
                },
            },
        )
    )
    return edge, connection


def _filter_input(spec: NodeSpec) -> type | None:
    fields: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for name, prop in spec.properties.items():
        indexed = getattr(prop, "index", False) or getattr(prop, "unique_index", False)
        if indexed and not isinstance(prop, UtcDateTimeProperty):
            fields[name] = _python_type(prop) | None
            namespace[name] = None
    if spec.temporal:
        fields["since"] = datetime | None
        fields["until"] = datetime | None
        namespace.update(since=None, until=None)
    if not fields:
        return None
    namespace["__annotations__"] = fields
    return strawberry.input(type(f"{spec.label}Filter", (), namespace))


def _list_field(spec: NodeSpec) -> Any:
    types = _types()
    node_type = types.types[spec.label]
    edge, connection = _connection(spec, node_type)
    filter_type = _filter_input(spec)

    async def resolve(
        info: Info, first: int = 20, after: str | None = None, filter: Any = None
    ) -> Any:
        _check_first(first)
        criteria = {k: v for k, v in vars(filter).items()} if filter is not None else {}
        since, until = criteria.pop("since", None), criteria.pop("until", None)
        query = read.query_page(spec.label, first, _uncursor(after), criteria, since, until)
        rows, more = await info.context.fetch(query)
        nodes = [types.make(spec.label, row) for row in rows]
        edges = [
            edge(cursor=_cursor(str(row[spec.key])), node=node)
            for row, node in zip(rows, nodes, strict=True)
        ]
        return connection(
            edges=edges,
            nodes=nodes,
            page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
        )

    if filter_type is None:  # every label has an indexed property (source_system)
        raise SchemaError(f"{spec.label} has no indexed property to filter on")
    resolve.__annotations__ = {
        "info": Info,
        "first": int,
        "after": str | None,
        "filter": filter_type | None,
        "return": connection,
    }
    return strawberry.field(resolver=resolve, description=f"{spec.label} nodes, by business key")


def _plural(label: str) -> str:
    name = label[0].lower() + label[1:]
    if name.endswith("y"):
        return name[:-1] + "ies"
    return name + ("es" if name.endswith("s") else "s")


def build_schema(production: bool = False) -> strawberry.Schema:
    """The whole schema: one list field per label, node(id), root causes and search.
    ``production``: no introspection, and errors without "Did you mean …" suggestions, which
    spell out the schema to whoever probes it."""
    types = _types()
    namespace: dict[str, Any] = {}
    for spec in types.specs.values():
        namespace[_plural(spec.label)] = _list_field(spec)

    async def node(info: Info, id: strawberry.ID) -> Node | None:  # noqa: A002
        """The node, and in the same round trip the related values the query asks of it:
        their key is in the id, so they need not wait for the node. The deep query makes
        two round trips instead of three (with up to three reads a statement): 6-10 %
        faster from one client, 10 % more requests a second from 16 (three server
        processes each way, fed alternately)."""
        label, _, key = str(id).partition(":")
        try:
            spec = node_spec(label)
        except SchemaError:
            raise GraphQLError(f"unknown id {id!r}: expected 'Label:key'") from None
        context: Context = info.context
        for batched in types.asked(info, spec.label):
            _ahead(context.loader(batched).load(key))
        found = await context.loader(types.by_key[spec.label]).load(key)
        return types.make(spec.label, found) if found is not None else None

    async def root_causes(info: Info, deviation: str, top: int = 5) -> RootCauses:
        def analyse() -> Any:
            return _root_causes(RootCauseAnalyzer(info.context.store, top=top).analyze(deviation))

        try:
            return await asyncio.to_thread(analyse)
        except RcaError as error:
            raise GraphQLError(str(error)) from None

    async def search_notes(
        info: Info,
        query: str,
        first: int = 5,
        machine: str | None = None,
        line: str | None = None,
        deviation_type: str | None = None,
    ) -> list[NoteHit]:
        _check_first(first)
        memory = info.context.memory or DecisionMemory(info.context.store)
        filters = Filters(machine=machine, line=line, deviation_type=deviation_type)
        return _hits(await asyncio.to_thread(memory.search, query, filters, (), None, first))

    async def similar_decisions(info: Info, deviation: str, first: int = 5) -> list[NoteHit]:
        _check_first(first)
        memory = info.context.memory or DecisionMemory(info.context.store)
        return _hits(await asyncio.to_thread(memory.similar_decisions, deviation, first))

    namespace["similar_decisions"] = strawberry.field(
        resolver=similar_decisions,
        description="Past notes and decisions about situations like this deviation.",
    )

    async def timeline(
        info: Info,
        id: strawberry.ID,
        since: datetime | None = None,  # noqa: A002
        until: datetime | None = None,
        first: int = 100,
    ) -> list[TimelineEvent]:
        _check_first(first, 1000)
        label, _, key = str(id).partition(":")
        events = await asyncio.to_thread(
            read.timeline, info.context.store, label, key, since, until, first
        )
        return [TimelineEvent(id=f"{e['label']}:{e['key']}", **e) for e in events]

    async def orders_at_risk(
        info: Info, as_of: datetime | None = None, horizon_days: float = 14.0, first: int = 20
    ) -> list[OrderAtRisk]:
        _check_first(first)
        moment = as_utc(as_of) or datetime.now(UTC)

        def score() -> list[Any]:
            model = RiskModel(info.context.store).fit(moment)
            return model.score(moment, horizon_days=horizon_days)[:first]

        return [
            OrderAtRisk(
                order=r.order,
                risk=r.risk,
                operations=r.operations,
                reasons=[
                    RiskReason(
                        label=x.label,
                        key=x.key,
                        cause_type=x.cause_type,
                        excess=x.excess,
                        deviating=x.deviating,
                        exposed=x.exposed,
                        path=[_step(step) for step in x.path],
                    )
                    for x in r.reasons
                ],
            )
            for r in await asyncio.to_thread(score)
        ]

    namespace["orders_at_risk"] = strawberry.field(
        resolver=orders_at_risk,
        description="Orders about to run, scored by their links to what preceded past "
        "deviations, with the reasons as graph paths.",
    )
    namespace["timeline"] = strawberry.field(
        resolver=timeline,
        description="Everything that happened around an entity (states, alarms, readings, "
        "maintenance, changeovers, operations, deviations, decisions), in time order.",
    )
    namespace["node"] = strawberry.field(resolver=node, description="Refetch anything by id.")
    namespace["root_causes"] = strawberry.field(
        resolver=root_causes, description="Ranked likely causes of a deviation, with evidence."
    )
    namespace["search_notes"] = strawberry.field(
        resolver=search_notes, description="Notes and decisions by meaning, with graph filters."
    )
    query = strawberry.type(type("Query", (), namespace))
    mutation = _mutations()
    subscription = _subscriptions(types)
    # The limit rules are made once, not per request: the validation cache is keyed by the
    # query text and the rule classes, so fresh rule classes per request would never hit it.
    # Parsing, validating and costing a deep query cost more CPU than resolving it; clients
    # send the same few query texts, so all three are remembered per text (bounded LRU;
    # results are never cached).
    rules = [
        QueryDepthLimiter(max_depth=MAX_DEPTH),
        MaxAliasesLimiter(max_alias_count=30),
    ]
    if production:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        rules.append(AddValidationRules([NoSchemaIntrospectionCustomRule]))
    validated: Recent[list[Any]] = Recent()
    within: Recent[bool] = Recent()
    extensions: list[Any] = [
        *(lambda rule=rule: rule for rule in rules),
        lambda: ParserCache(maxsize=256),
        lambda: ValidatedTexts(validated),
        lambda: QueryCost(MAX_COST, within),  # after validation: it needs a valid document
        lambda: MaskErrors(should_mask_error=_internal),
        *([HideSuggestions] if production else []),
    ]
    return _Schema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=list(types.types.values()),
        extensions=extensions,
        execution_context_class=LeanExecutor,
    )


def _subscriptions(types: _Types) -> type:
    async def new_deviations(info: Info, poll_seconds: float = 1.0) -> AsyncGenerator[Any, None]:
        """Deviations as ingest writes them: at once when this server's live ingest (webhook,
        MQTT) wrote them, and every ``poll_seconds`` for other writers (the CLI)."""
        seen = datetime.now(UTC)
        changes = info.context.changes
        while True:
            rows = await asyncio.to_thread(read.deviations_since, info.context.store, seen)
            for props, written in rows:
                seen = max(seen, written)
                yield types.make("Deviation", props)
            if changes is None:
                await asyncio.sleep(max(0.2, poll_seconds))
            else:
                await changes.wait(max(0.2, poll_seconds))

    deviation = types.types["Deviation"]
    new_deviations.__annotations__["return"] = AsyncGenerator[deviation, None]
    namespace = {"new_deviations": strawberry.subscription(resolver=new_deviations)}
    return strawberry.type(type("Subscription", (), namespace))


class HideSuggestions(SchemaExtension):
    """Drops graphql-core's "Did you mean …?" from error messages (production)."""

    SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in (result.errors if result else None) or ():
            error.message = self.SUGGESTION.sub("", error.message)


class _Schema(strawberry.Schema):
    """Logs what a client got wrong (an unknown field, a reader's mutation, a bad argument)
    as one line; only unexpected failures get strawberry's traceback."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if _internal(error):
                StrawberryLogger.error(error, execution_context)
            else:
                where = ".".join(str(p) for p in error.path or ()) or "request"
                log.info("GraphQL client error at %s: %s", where, error.message)


def _internal(error: GraphQLError) -> bool:
    """Mask unexpected failures (they may carry internals); say what a client got wrong."""
    original = getattr(error, "original_error", None)
    return original is not None and not isinstance(
        original,
        GraphQLError | DecisionError | SchemaError | RcaError | DecisionMemoryError | ValueError,
    )


@strawberry.type
class EvidenceStep:
    """One step of an evidence path: a node (label, key) or a relationship (type, direction)."""

    label: str | None = None
    key: str | None = None
    type: str | None = None
    direction: str | None = None
    at: datetime | None = None


@strawberry.type
class RankedCause:
    label: str
    key: str
    cause_type: str
    score: float
    confidence: float = strawberry.field(
        description="Posterior probability that this candidate acted in this deviation "
        f"(the joint model's share of it); the first cause stands out from {CLEAR} on."
    )
    deviating: int
    exposed: int
    base_rate: float
    explanation: str
    evidence: list[list[EvidenceStep]]


@strawberry.type
class StoredCause:
    """A cause a root-cause analysis stored for a deviation: CAUSED_BY for the best,
    CONTRIBUTED_TO for the rest."""

    rank: int
    relationship: str
    label: str
    key: str
    score: float
    cause_type: str | None
    explanation: str | None
    method: str | None
    run_id: str | None
    computed_at: datetime | None
    evidence: list[list[EvidenceStep]]

    # the cause node's properties, read with the cause (None for a label the model lacks,
    # e.g. an edge drawn by hand in Browser)
    props: strawberry.Private[dict[str, Any] | None]

    @strawberry.field(description="The cause itself, with its fields and relationships.")
    def node(self) -> Node | None:
        return _types().make(self.label, self.props) if self.props is not None else None


def _stored_cause(cause: dict[str, Any]) -> StoredCause:
    return StoredCause(
        rank=cause["rank"],
        relationship=cause["relationship"],
        label=cause["label"],
        key=str(cause["target"]),
        score=cause["score"],
        cause_type=cause["cause_type"],
        explanation=cause["explanation"],
        method=cause["method"],
        run_id=cause["run_id"],
        computed_at=as_utc(cause["computed_at"]),
        evidence=[[_step(step) for step in path] for path in cause["evidence"]],
        props=cause["props"],
    )


@strawberry.type
class Subjects:
    operations: list[str]
    orders: list[str]
    machines: list[str]
    lots: list[str]


@strawberry.type
class RootCauses:
    deviation: str
    deviation_type: str | None
    description: str
    method: str
    subjects: Subjects
    verdict: str = strawberry.field(
        description='"cause" when the first cause stands out, else "no clear cause".'
    )
    causes: list[RankedCause] = strawberry.field(
        description="Candidates whose work deviated more often than the rest of the plant, "
        "best first."
    )
    nearest_candidates: list[RankedCause] = strawberry.field(
        description="The candidates that did not stand out, nearest first (at most three)."
    )
    notes: list[str]


@strawberry.type
class DecisionSummary:
    decision: str
    summary: str | None
    decision_type: str | None
    deviation: str | None
    deviation_type: str | None
    outcome: str | None
    outcome_description: str | None


@strawberry.type
class NoteHit:
    note: str
    text: str
    kind: str | None
    written_at: datetime | None
    author: str | None
    similarity: float
    score: float
    context: JSON
    decisions: list[DecisionSummary]


def _ranked(cause: Any) -> RankedCause:
    return RankedCause(
        label=cause.label,
        key=cause.key,
        cause_type=cause.cause_type,
        score=cause.score,
        confidence=cause.confidence,
        deviating=cause.deviating,
        exposed=cause.exposed,
        base_rate=cause.base_rate,
        explanation=cause.explanation,
        evidence=[[_step(step) for step in path] for path in cause.evidence],
    )


def _root_causes(result: Any) -> RootCauses:
    return RootCauses(
        deviation=result.deviation,
        deviation_type=result.deviation_type,
        description=result.description,
        method=result.method,
        subjects=Subjects(**result.subjects),
        verdict=result.verdict,
        causes=[_ranked(c) for c in result.causes],
        nearest_candidates=[_ranked(c) for c in result.candidates[:3]],
        notes=result.notes,
    )


def _step(step: dict[str, Any]) -> EvidenceStep:
    at = step.get("at")
    return EvidenceStep(
        label=step.get("label"),
        key=step.get("key"),
        type=step.get("type"),
        direction=step.get("direction"),
        at=datetime.fromisoformat(at) if at else None,
    )


def _hits(hits: list[Any]) -> list[NoteHit]:
    return [
        NoteHit(
            note=h.note,
            text=h.text,
            kind=h.kind,
            written_at=h.written_at,
            author=h.author,
            similarity=h.similarity,
            score=h.score,
            context=h.context,
            decisions=[DecisionSummary(**d) for d in h.decisions],
        )
        for h in hits
    ]


@strawberry.type
class RiskReason:
    label: str
    key: str
    cause_type: str
    excess: float
    deviating: int
    exposed: int
    path: list[EvidenceStep]


@strawberry.type
class OrderAtRisk:
    order: str
    risk: float
    operations: list[str]
    reasons: list[RiskReason]


@strawberry.type
class TimelineEvent:
    at: datetime
    id: strawberry.ID
    label: str
    key: str
    relationship: str
    summary: str


@strawberry.input
class EntityRef:
    """An entity a decision is about: its label and its source-system key."""

    label: str
    key: str


@strawberry.type
class DecisionResult:
    decision_id: str
    created: bool


def _writer(info: Info) -> None:
    if info.context.role != "writer":
        raise GraphQLError("this API key may only read; ask for a writer key to change data")


def _mutations() -> type:
    async def record_decision(
        info: Info,
        client_id: str,
        decided_by: str,
        decision_type: str,
        summary: str,
        about: list[EntityRef],
        rationale: str | None = None,
        action_id: str | None = None,
    ) -> DecisionResult:
        """Record a decision (idempotent per client_id: a retry changes nothing); with
        ``actionId``, the decision an action (e.g. a workflow's) resulted in."""
        _writer(info)
        refs = [(ref.label, ref.key) for ref in about]
        recorded = await asyncio.to_thread(
            decisions.record_decision,
            info.context.store,
            client_id,
            decided_by,
            decision_type,
            summary,
            refs,
            rationale,
            None,
            action_id,
        )
        return DecisionResult(decision_id=recorded.decision_id, created=recorded.created)

    async def record_outcome(
        info: Info, decision_id: str, result: str, description: str | None = None
    ) -> str:
        """Say how a decision turned out: effective, partially_effective or ineffective."""
        _writer(info)
        return await asyncio.to_thread(
            decisions.record_outcome, info.context.store, decision_id, result, description
        )

    async def acknowledge_deviation(info: Info, deviation_id: str) -> bool:
        """Mark a deviation as acknowledged."""
        _writer(info)
        await asyncio.to_thread(decisions.acknowledge_deviation, info.context.store, deviation_id)
        return True

    async def run_root_cause_analysis(info: Info, deviation_id: str) -> RootCauses:
        """Analyse a deviation now and store its CAUSED_BY / CONTRIBUTED_TO edges."""
        _writer(info)

        def run() -> Any:
            analyzer = RootCauseAnalyzer(info.context.store)
            result = analyzer.analyze(deviation_id)
            analyzer.persist(result)
            return _root_causes(result)

        try:
            return await asyncio.to_thread(run)
        except RcaError as error:
            raise GraphQLError(str(error)) from None

    namespace = {
        name: strawberry.mutation(resolver=fn)
        for name, fn in (
            ("record_decision", record_decision),
            ("record_outcome", record_outcome),
            ("acknowledge_deviation", acknowledge_deviation),
            ("run_root_cause_analysis", run_root_cause_analysis),
        )
    }
    return strawberry.type(type("Mutation", (), namespace))
