"""The graph model: labels, business keys, properties and relationships, declared once."""

from . import model
from .base import MANAGED_PROPERTIES, InferredCause, OpsNode, SourceRel
from .registry import NodeSpec, RelSpec, SchemaError, node_spec, node_specs, rel_spec, rel_specs

__all__ = [
    "MANAGED_PROPERTIES",
    "InferredCause",
    "NodeSpec",
    "OpsNode",
    "RelSpec",
    "SchemaError",
    "SourceRel",
    "model",
    "node_spec",
    "node_specs",
    "rel_spec",
    "rel_specs",
]
