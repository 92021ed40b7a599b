"""Query cost: how many objects a response could hold, checked before anything runs.

Depth and alias limits do not bound width: ``productionOrders(first: 100) { nodes {
operations(first: 1000) { machine { alarms(first: 1000) { … } } } } }`` is five levels deep
yet could return millions of objects. Each object-valued field counts the objects it can
return: a connection its page (``first`` as given, from a variable too, else its default), a
list of related nodes the ``first`` asked for or, if none, ``typical`` (related lists are
usually short; their hard cap applies at run time), a connection's ``nodes``/``edges`` one
per counted element, a single object one. Counts multiply down the tree and add up across
it; above ``limit`` the query is refused with the figure. Scalars are not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from strawberry.extensions import SchemaExtension

from .execution import Recent


class QueryCost(SchemaExtension):
    """Refuses operations whose estimated result size exceeds ``limit`` objects."""

    def __init__(self, limit: int, within: Recent[bool], typical: int = 10) -> None:
        """``within``: the query texts found within the limit whatever their variables,
        shared between requests (computing the figure took ~0.1 ms of a deep query's ~1 ms
        of GraphQL work)."""
        super().__init__()
        self.limit = limit
        self.within = within
        self.typical = typical
        self.variable_pages = False  # a ``first`` came from a variable: the figure varies

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            if self.within.get(context.query):
                yield
                return
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            schema = context.schema._schema
            for definition in document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                root = schema.get_root_type(definition.operation)
                if root is None:
                    continue
                cost = self._cost(
                    definition.selection_set, root, 1, fragments, context.variables or {}, schema
                )
                if cost > self.limit:
                    context.pre_execution_errors = [
                        GraphQLError(
                            f"query too costly: up to {cost:,} objects (limit {self.limit:,}); "
                            "ask for smaller pages (first) or fewer nested lists",
                            definition,
                        )
                    ]
                    break
            else:
                if not self.variable_pages:
                    self.within.put(context.query, True)
        yield

    def _size(self, field: FieldNode, definition: Any, variables: dict[str, Any]) -> int:
        """How many objects one occurrence of ``field`` can return."""
        for given in field.arguments or ():
            if given.name.value == "first":
                if isinstance(given.value, IntValueNode):
                    return max(int(given.value.value), 1)
                if isinstance(given.value, VariableNode):
                    self.variable_pages = True
                    value = variables.get(given.value.name.value)
                    if isinstance(value, int):
                        return max(value, 1)
        returns = get_nullable_type(definition.type)
        argument = definition.args.get("first")
        if argument is not None and get_named_type(returns).name.endswith("Connection"):
            default = argument.default_value
            return default if isinstance(default, int) else 1
        return self.typical if is_list_type(returns) else 1

    def _cost(
        self,
        selection_set: SelectionSetNode,
        parent: Any,
        multiplier: int,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        schema: Any,
        seen: frozenset[str] = frozenset(),
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                fields = getattr(parent, "fields", {})
                definition = fields.get(selection.name.value)
                if definition is None or selection.selection_set is None:
                    continue  # scalars, __typename, unknown fields (other rules report those)
                page = isinstance(parent, GraphQLObjectType) and parent.name.endswith("Connection")
                count = multiplier * (1 if page else self._size(selection, definition, variables))
                total += count
                inner = get_named_type(definition.type)
                total += self._cost(
                    selection.selection_set, inner, count, fragments, variables, schema, seen
                )
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = schema.get_type(condition.name.value) if condition else parent
                total += self._cost(
                    selection.selection_set, inner, multiplier, fragments, variables, schema, seen
                )
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in seen:  # unknown or cyclic: other rules report
                    continue
                inner = schema.get_type(fragment.type_condition.name.value)
                total += self._cost(
                    fragment.selection_set,
                    inner,
                    multiplier,
                    fragments,
                    variables,
                    schema,
                    seen | {name},
                )
        return total
