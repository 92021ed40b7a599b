"""The GraphQL API: types generated from the graph model, thin resolvers over graph/ services."""

from .schema import Context, build_schema

__all__ = ["Context", "build_schema"]
