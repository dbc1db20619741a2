"""Bounds on what one GraphQL request may ask, as Strawberry extensions.

Checked while validating, before any resolver runs: a query too deep (its
fragments followed), with too many aliases (counted through fragments) or
too many tokens is refused whole with a GraphQL error. The fixed /v1
documents do not pass through here: they are ours, and validated once at
start-up.

Depth and aliases are measured in one walk of the document that visits
each fragment definition once and remembers what it found (``_Shape``).
Following every spread afresh, as a naive crawler does, costs time
exponential in the document: ``fragment F0 on Viewer {...F1 ...F1}`` and
twenty more like it fit in a kilobyte and spread the last fragment a
million times. Memoised, the cost is linear in the document's size,
whatever its shape; the counts themselves may still be astronomically
large, which is exactly what gets them refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OverlappingFieldsCanBeMergedRule,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension

from meterql.config import Settings
from meterql.schema.overlap import OverlappingFieldsCanBeMergedLinear


@dataclass(frozen=True)
class GraphQLLimits:
    max_depth: int = 10
    max_aliases: int = 50
    max_tokens: int = 2_000
    introspection: bool = True
    # Operations per batched POST; 0 is no batching.
    max_batch: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphQLLimits:
        return cls(
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_tokens=settings.graphql_max_tokens,
            introspection=settings.introspection,
            max_batch=settings.graphql_max_batch,
        )

    def extensions(self) -> list[Callable[[], SchemaExtension]]:
        """Factories, so every operation gets fresh extension instances.

        The rule classes are made once, here: Strawberry's validation cache
        keys on them, and a class made per operation would never hit it.
        """
        rules: list[type[ASTValidationRule]] = [shape_rule(self.max_depth, self.max_aliases)]
        if not self.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        return [
            lambda: _ValidationRules(rules),
            lambda: MaxTokensLimiter(max_token_count=self.max_tokens),
        ]


class _ValidationRules(AddValidationRules):
    """Our rules added, and graphql-core's field-merging rule replaced by a linear one.

    graphql-core's ``OverlappingFieldsCanBeMergedRule`` compares every pair
    of fields sharing a response name: a few hundred repeated fields, inside
    the token limit, took up to a second (``schema/overlap.py``).
    """

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = tuple(
            OverlappingFieldsCanBeMergedLinear
            if rule is OverlappingFieldsCanBeMergedRule else rule
            for rule in self.execution_context.validation_rules
        ) + tuple(self.validation_rules)
        yield


class _Shape:
    """Depth and alias count of selection sets, each fragment measured once.

    Depth is the number of nested selection sets below the operation: a
    leaf field adds nothing, a field with a selection set adds one.
    Introspection fields (``__schema``, ``__type``) add no depth: the
    explorer's own query is deep, and introspection can be turned off.
    Aliases are counted once per place they would appear in the answer,
    so a fragment spread twice counts twice. A fragment spread inside
    itself (refused by graphql-core's ``NoFragmentCycles``) and an unknown
    fragment (``KnownFragmentNames``) count nothing here.
    """

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._measured: dict[str, tuple[int, int]] = {}
        self._measuring: set[str] = set()

    def of(self, selection_set: SelectionSetNode | None) -> tuple[int, int]:
        """(depth, aliases) of a selection set."""
        depth = aliases = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                if selection.selection_set is not None:
                    below, inner = self.of(selection.selection_set)
                    aliases += inner
                    if not selection.name.value.startswith("__"):
                        depth = max(depth, 1 + below)
            elif isinstance(selection, InlineFragmentNode):
                below, inner = self.of(selection.selection_set)
                depth, aliases = max(depth, below), aliases + inner
            elif isinstance(selection, FragmentSpreadNode):
                below, inner = self._fragment(selection.name.value)
                depth, aliases = max(depth, below), aliases + inner
        return depth, aliases

    def _fragment(self, name: str) -> tuple[int, int]:
        known = self._measured.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        if fragment is None or name in self._measuring:
            return 0, 0
        self._measuring.add(name)
        measured = self._measured[name] = self.of(fragment.selection_set)
        self._measuring.discard(name)
        return measured


def shape_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    """A rule refusing operations deeper than ``max_depth`` or with more than ``max_aliases``.

    The messages are those of Strawberry's ``QueryDepthLimiter`` and
    ``MaxAliasesLimiter``, whose semantics this keeps (aliases are summed
    over the document's operations), in time linear in the document.
    """

    class ShapeLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            shape = _Shape({
                d.name.value: d for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            })
            total_aliases = 0
            for operation in document.definitions:
                if not isinstance(operation, OperationDefinitionNode):
                    continue
                depth, aliases = shape.of(operation.selection_set)
                total_aliases += aliases
                if depth > max_depth:
                    name = operation.name.value if operation.name else "anonymous"
                    context.report_error(GraphQLError(
                        f"'{name}' exceeds maximum operation depth of {max_depth}", operation,
                    ))
            if total_aliases > max_aliases:
                context.report_error(
                    GraphQLError(f"{total_aliases} aliases found. Allowed: {max_aliases}")
                )

    return ShapeLimits
