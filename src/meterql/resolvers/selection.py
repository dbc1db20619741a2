"""What a field's selection asks for, read from the operation's nodes.

A resolver that can answer more cheaply when part of its type is not asked
for looks here first: ``usage`` reads a range as one bucket when no
``series`` is selected, ``billingUsage`` reads no instance's sums unless
``byInstance`` is. A field under ``@skip`` or ``@include`` counts as
selected: the answer is then only slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry import Info

from meterql.context import Context


def raw(info: Info[Context, Any]) -> GraphQLResolveInfo[Context]:
    """graphql-core's info behind Strawberry's (what the helpers here, and ``answer``, read)."""
    found: GraphQLResolveInfo[Context] = info._raw_info
    return found


def selects(info: GraphQLResolveInfo[Any], name: str) -> bool:
    """Whether the resolved field's selection has a field ``name``, through fragments."""
    return selects_in(info.field_nodes, info.fragments, name)


def selects_in(
    fields: Sequence[FieldNode], fragments: Mapping[str, FragmentDefinitionNode], name: str
) -> bool:
    """Whether the selection of any of ``fields`` (one response key's) has a field ``name``."""
    return any(_selects(field.selection_set, fragments, name, set()) for field in fields)


def _selects(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    name: str,
    seen: set[str],
) -> bool:
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            if selection.name.value == name:
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _selects(selection.selection_set, fragments, name, seen):
                return True
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            fragment = fragments.get(selection.name.value)
            if fragment is not None and _selects(fragment.selection_set, fragments, name, seen):
                return True
    return False
