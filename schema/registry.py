"""Reads the model classes once and answers the questions the writer and the API ask.

Everything that needs a label, a business key or a relationship type gets it from here, so
no label or type ever comes from input data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property

from neomodel import StructuredNode, StructuredRel
from neomodel.properties import Property

from . import model
from .base import MANAGED_PROPERTIES, OpsNode, UtcDateTimeProperty

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SchemaError(LookupError):
    """A label, relationship or property that the model does not declare."""


@dataclass(frozen=True)
class NodeSpec:
    """One label of the model: its class, business key and writable properties."""

    label: str
    cls: type[OpsNode]
    key: str
    properties: Mapping[str, Property]

    @cached_property
    def temporal(self) -> frozenset[str]:
        return _temporal(self.properties)


@dataclass(frozen=True)
class RelSpec:
    """One declared relationship: (start label)-[TYPE]->(end label) and its properties."""

    start: NodeSpec
    type: str
    end: NodeSpec
    model: type[StructuredRel]
    properties: Mapping[str, Property]
    attribute: str = ""  # the relationship's name on the start class (e.g. "operations")

    @property
    def name(self) -> str:
        return f"({self.start.label})-[:{self.type}]->({self.end.label})"

    @cached_property
    def temporal(self) -> frozenset[str]:
        return _temporal(self.properties)


def _temporal(properties: Mapping[str, Property]) -> frozenset[str]:
    """Names of the timestamp properties (writers send them differently)."""
    return frozenset(n for n, p in properties.items() if isinstance(p, UtcDateTimeProperty))


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise SchemaError(f"{what} {name!r} is not a plain identifier")
    return name


def _writable(props: Mapping[str, Property]) -> dict[str, Property]:
    return {
        _check_identifier(name, "property"): prop
        for name, prop in props.items()
        if name not in MANAGED_PROPERTIES
    }


def _concrete_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        if "__abstract_node__" not in vars(sub) or not vars(sub)["__abstract_node__"]:
            found.append(sub)
        found.extend(_concrete_subclasses(sub))
    return found


@cache
def node_specs() -> dict[str, NodeSpec]:
    """All labels of the model, by label; fails loudly if a class breaks the key rule."""
    specs: dict[str, NodeSpec] = {}
    for cls in _concrete_subclasses(OpsNode):
        if cls.__module__ != model.__name__:
            continue
        label = _check_identifier(cls.__label__, "label")
        props = cls.defined_properties(aliases=False, rels=False)
        keys = [name for name, prop in props.items() if prop.unique_index]
        if len(keys) != 1:
            raise SchemaError(f"{label} must declare exactly one unique_index key, has {keys}")
        specs[label] = NodeSpec(label, cls, keys[0], _writable(props))
    return specs


@cache
def rel_specs() -> tuple[RelSpec, ...]:
    """Every relationship the model declares, as (start, type, end)."""
    nodes = node_specs()
    found: list[RelSpec] = []
    for spec in nodes.values():
        rels = spec.cls.defined_properties(aliases=False, properties=False, rels=True)
        for attribute, rel in rels.items():
            rel.lookup_node_class()
            end_cls = rel.definition["node_class"]
            rel_model = rel.definition["model"]
            found.append(
                RelSpec(
                    start=spec,
                    type=_check_identifier(rel.definition["relation_type"], "relationship type"),
                    end=nodes[end_cls.__label__],
                    model=rel_model,
                    properties=_writable(rel_model.defined_properties(aliases=False)),
                    attribute=attribute,
                )
            )
    return tuple(found)


def node_spec(label: str | type[StructuredNode] | NodeSpec) -> NodeSpec:
    """The spec for a label or class; a clear error names the labels that exist."""
    if isinstance(label, NodeSpec):
        return label
    name = label if isinstance(label, str) else label.__label__
    try:
        return node_specs()[name]
    except KeyError:
        known = ", ".join(sorted(node_specs()))
        raise SchemaError(f"unknown label {name!r}; the model has: {known}") from None


def rel_spec(
    start: str | type[StructuredNode], rel_type: str, end: str | type[StructuredNode]
) -> RelSpec:
    """The declared relationship between two labels; errors list what is declared instead."""
    start_spec, end_spec = node_spec(start), node_spec(end)
    for spec in rel_specs():
        if spec.start is start_spec and spec.type == rel_type and spec.end is end_spec:
            return spec
    options = sorted(s.name for s in rel_specs() if s.start is start_spec)
    raise SchemaError(
        f"the model declares no relationship ({start_spec.label})-[:{rel_type}]->"
        f"({end_spec.label}); from {start_spec.label} it declares: {', '.join(options)}"
    )
