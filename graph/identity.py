"""Identity across systems: one entity, one node, whatever each system calls it.

The worker app names a machine "DMU65-A" where SAP says "M-101", and its users "user_…"
where SAP has personnel numbers. Aliases are data in the graph (``Alias`` nodes, with
provenance), not options of one command line, so every path that writes (files, ``--watch``,
webhooks, MQTT, GraphQL mutations) maps them the same way and exports map them back to the
ID the target system knows. Declaring an alias after both nodes exist merges them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neo4j import ManagedTransaction

from opsgraph.schema import NodeSpec, SchemaError, node_spec, node_specs, rel_specs
from opsgraph.schema.base import WRITER_FLAGS

from . import queries
from .store import Rows, Store
from .writer import BulkWriter

SOURCE_SYSTEM = "opsgraph aliases"


class AliasError(ValueError):
    """An alias that cannot be declared as given (the message says which and why)."""


@dataclass(frozen=True)
class Alias:
    """``alias`` is what ``system`` calls the entity whose business key is ``key``."""

    label: str
    alias: str
    key: str
    system: str = ""  # "" when the file does not say which system uses it

    @property
    def alias_id(self) -> str:
        return "|".join(
            (self.label, self.alias, self.system) if self.system else (self.label, self.alias)
        )


class Aliases:
    """The alias table: other systems' IDs to business keys, and back per system.

    Read from TOML, one table per label; a sub-table names the system that uses the IDs,
    which is what lets exports translate back::

        [Machine]
        "DMU65-A" = "M-101"
        [Person.safetyculture]
        "user_623d74253aae4857aefb995d157e70e4" = "00004711"
    """

    def __init__(self, entries: Iterable[Alias] = (), source: str = "aliases") -> None:
        self.entries = list(entries)
        self.source = source  # where they were declared (provenance of the Alias nodes)
        self.forward: dict[str, dict[str, str]] = {}
        self.back: dict[tuple[str, str], dict[str, str]] = {}
        for entry in self.entries:
            self.forward.setdefault(entry.label, {})[entry.alias] = entry.key
            if entry.system:
                self.back.setdefault((entry.label, entry.system.casefold()), {}).setdefault(
                    entry.key, entry.alias
                )

    @classmethod
    def parse(cls, text: str, where: str = "aliases") -> Aliases:
        """The aliases of a TOML text; an error names the file, the entry and the reason."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise AliasError(f"{where}: malformed TOML: {error}") from None
        entries: list[Alias] = []
        for label, table in data.items():
            try:
                node_spec(label)
            except SchemaError as error:
                raise AliasError(f"{where}: [{label}]: {error}") from None
            if not isinstance(table, dict):
                raise AliasError(f"{where}: {label} must be a table of alias = key entries")
            for alias, value in table.items():
                if isinstance(value, dict):
                    for other, key in value.items():
                        entries.append(_entry(where, label, other, key, system=alias))
                else:
                    entries.append(_entry(where, label, alias, value))
        found: dict[tuple[str, str], str] = {}
        for entry in entries:
            first = found.setdefault((entry.label, entry.alias), entry.key)
            if first != entry.key:
                raise AliasError(
                    f"{where}: {entry.label} {entry.alias!r} stands for both {first!r} and "
                    f"{entry.key!r}"
                )
        return cls(entries, where)

    @classmethod
    def load(cls, path: Path | None) -> Aliases:
        if path is None:
            return cls()
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise AliasError(f"{path}: cannot be read ({error.strerror})") from None
        return cls.parse(text, str(path))

    def __call__(self, label: str, key: str) -> str:
        """The business key for what another system calls ``key`` (itself if no alias)."""
        return self.forward.get(label, {}).get(key, key)

    def __len__(self) -> int:
        return len(self.entries)

    def theirs(self, label: str, key: str, system: str) -> str:
        """The ID ``system`` knows our entity by (our key if no alias says so)."""
        return self.back.get((label, system.casefold()), {}).get(key, key)


def _entry(where: str, label: str, alias: str, key: Any, system: str = "") -> Alias:
    if not isinstance(key, str) or not key.strip():
        raise AliasError(f"{where}: {label} {alias!r}: the business key must be text")
    if not alias.strip():
        raise AliasError(f"{where}: {label}: an empty alias for {key!r}")
    return Alias(label, alias, key, system)


def load(store: Store) -> Aliases:
    """The aliases stored in the graph (cheap: one read, done at the start of every run)."""
    return Aliases(
        Alias(r["label"], r["alias"], r["key"], r["system"]) for r in store.read(queries.ALIASES)
    )


def listing(store: Store) -> list[dict[str, Any]]:
    """Every stored alias with where it was declared, for ``opsgraph aliases list``."""
    return store.read(queries.ALIASES)


@dataclass
class Declared:
    """What declaring aliases did: new ones, and the nodes they merged or renamed."""

    added: int = 0
    unchanged: int = 0
    merged: list[str] = field(default_factory=list)  # "Machine 'MILL-101' -> 'M-101'"
    renamed: list[str] = field(default_factory=list)
    relationships_moved: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "merged": self.merged,
            "renamed": self.renamed,
            "relationships_moved": self.relationships_moved,
        }


def declare(store: Store, aliases: Iterable[Alias], source: str) -> Declared:
    """Store aliases (provenance: ``source``) and merge the nodes they name into the nodes of
    the business keys. All are checked before any is written: an alias that already stands
    for another key, or a key others stand for, is refused with the reason. Idempotent."""
    current = load(store)
    table = {label: dict(keys) for label, keys in current.forward.items()}
    wanted: list[Alias] = []
    for entry in aliases:
        known = table.setdefault(entry.label, {})
        key = known.get(entry.key, entry.key)  # a key that is itself an alias: its target
        given = known.get(entry.alias)
        if key == entry.alias:
            raise AliasError(f"{entry.label} {entry.alias!r} cannot be an alias of itself")
        if given is not None and given != key:
            raise AliasError(
                f"{entry.label} {entry.alias!r} already stands for {given!r}; remove it first "
                f"(opsgraph aliases remove {entry.label} {entry.alias})"
            )
        if entry.alias in known.values():
            raise AliasError(
                f"{entry.label} {entry.alias!r} is the business key other aliases stand for; "
                "declare those aliases for the new key instead"
            )
        known[entry.alias] = key
        wanted.append(Alias(entry.label, entry.alias, key, entry.system))
    stored = {(e.label, e.alias, e.system) for e in current.entries}
    fresh = [e for e in wanted if (e.label, e.alias, e.system) not in stored]
    report = Declared(added=len(fresh), unchanged=len(wanted) - len(fresh))
    if fresh:
        rows = [
            {
                "alias_id": e.alias_id,
                "entity_label": e.label,
                "other_id": e.alias,
                "business_key": e.key,
                "system": e.system or None,
                "source_system": SOURCE_SYSTEM,
                "source_record": f"{source}:{e.label}.{e.alias}",
            }
            for e in fresh
        ]
        written = BulkWriter(store).upsert_nodes("Alias", rows)
        if written.rejected:
            raise AliasError("; ".join(r.reason for r in written.rejected))
    merged_machines: set[str] = set()
    for label in sorted({e.label for e in wanted}):
        spec = node_spec(label)
        pairs = {e.alias: e.key for e in wanted if e.label == label}
        query = queries.existing_nodes(spec.label, spec.key)
        present = store.read(query, keys=Rows(sorted(pairs)), names=Rows(), times=Rows())
        for alias in sorted(r["key"] for r in present):
            key = pairs[alias]
            moved = store.transaction(lambda tx, s=spec, a=alias, k=key: _merge(tx, s, a, k))
            what = f"{label} {alias!r} -> {key!r}"
            if moved is None:
                report.renamed.append(what)
            else:
                report.merged.append(what)
                report.relationships_moved += moved
                if label == "Machine":
                    merged_machines.add(key)
    if merged_machines:  # two timelines became one: close its intervals again, in time order
        BulkWriter(store).chain_states(merged_machines, datetime(1970, 1, 1, tzinfo=UTC))
    return report


def _merge(tx: ManagedTransaction, spec: NodeSpec, alias: str, key: str) -> int | None:
    """Fold the node ``alias`` into the node ``key`` in one transaction (nothing is half
    merged): its values where ``key`` has none, its relationships moved. Without a node
    ``key`` it is renamed instead (None)."""
    params = {"alias": alias, "key": key}
    target = tx.run(
        queries.existing_nodes(spec.label, spec.key), keys=[key], names=[], times=[]
    ).single()
    if target is None:
        tx.run(queries.rename_node(spec.label, spec.key), **params).consume()
        return None
    names = [n for n in spec.properties if n != spec.key and n not in WRITER_FLAGS]
    tx.run(queries.merge_properties(spec.label, spec.key, names), **params).consume()
    moved = 0
    for rel in rel_specs():
        for outgoing, other in ((True, rel.end), (False, rel.start)):
            if (rel.start if outgoing else rel.end).label != spec.label:
                continue
            query = queries.move_relationships(
                spec.label, spec.key, rel.type, other.label, outgoing
            )
            moved += tx.run(query, **params).single()["moved"]
    tx.run(queries.delete_node(spec.label, spec.key), **params).consume()
    return moved


def remove(store: Store, label: str, alias: str, system: str = "") -> bool:
    """Forget an alias (later records with that ID make a node of their own again); nodes
    it already merged stay merged. False if no such alias was stored."""
    node_spec(label)
    found = store.write(queries.REMOVE_ALIAS, id=Alias(label, alias, "", system).alias_id)
    return bool(found[0]["removed"])


@dataclass(frozen=True)
class Suggestion:
    """Two nodes that look like one entity: declare ``alias`` for ``key`` if they are."""

    label: str
    alias: str
    key: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return vars(self).copy()


def _plain(text: str) -> str:
    """Text compared without case, punctuation, spaces or leading zeros of numbers."""
    words = re.findall(r"[0-9a-z]+", text.casefold())
    return "".join(w.lstrip("0") or "0" if w.isdigit() else w for w in words)


def suggest(store: Store, labels: Iterable[str] | None = None) -> list[Suggestion]:
    """Likely duplicates for a human to confirm: same name, keys that differ only in case,
    punctuation or leading zeros, or a node only named by other records whose key is another
    node's name (a worker app naming the machine by its tag). Only labels with a name or
    with nodes created from references are compared: events have no such duplicates."""
    chosen = [node_spec(label) for label in labels] if labels else list(node_specs().values())
    found: list[Suggestion] = []
    for spec in chosen:
        if spec.label == "Alias":
            continue
        named = "name" in spec.properties
        nodes = store.read(queries.identities(spec.label, spec.key, named))
        if not named and not any(n["unresolved"] for n in nodes):
            continue
        found += _duplicates(spec.label, nodes)
    return found


def _duplicates(label: str, nodes: list[dict[str, Any]]) -> list[Suggestion]:
    """Pairs within one label, each node named once as an alias (the unresolved one, or
    else the later key), so that accepting every suggestion leaves one node per entity."""
    by: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by.setdefault("key:" + _plain(str(node["key"])), []).append(node)
        if node["name"]:
            by.setdefault("name:" + _plain(str(node["name"])), []).append(node)
        elif node["unresolved"]:  # named only by another system: perhaps by the name we know
            by.setdefault("name:" + _plain(str(node["key"])), []).append(node)
    found: dict[str, Suggestion] = {}
    for group, members in sorted(by.items()):
        if len({m["key"] for m in members}) < 2:
            continue
        members = sorted(members, key=lambda m: (bool(m["unresolved"]), str(m["key"])))
        keeper = members[0]
        for other in members[1:]:
            if other["key"] == keeper["key"] or other["key"] in found:
                continue
            kind, value = group.split(":", 1)
            if kind == "name" and keeper["name"] and other["name"]:
                reason = f"same name {keeper['name']!r}"
            elif kind == "name":
                reason = f"its key is the name of {label} {keeper['key']!r}"
            else:
                reason = "the keys differ only in case, punctuation or leading zeros"
            if other["unresolved"]:
                reason += "; known only from records that name it"
            found[other["key"]] = Suggestion(label, str(other["key"]), str(keeper["key"]), reason)
    return sorted(found.values(), key=lambda s: (s.label, s.alias))
