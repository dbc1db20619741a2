"""Bounds on what one GraphQL request may ask, as Strawberry extensions.

Checked while validating, before any resolver runs: a query too deep (its
fragments followed, cycles included), with too many aliases (counted through
fragments) or too many tokens is refused whole with a GraphQL error. The
fixed /v1 documents do not pass through here: they are ours, and validated
once at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    NoSchemaIntrospectionCustomRule,
    ValidationContext,
    ValidationRule,
)
from graphql.language import Visitor, visit
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    SchemaExtension,
    max_aliases,
    query_depth_limiter,
)

from meterql.config import Settings


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
        rules: list[type[ASTValidationRule]] = [
            _depth_rule(self.max_depth),
            max_aliases.create_validator(self.max_aliases),
        ]
        if not self.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        return [
            lambda: AddValidationRules(rules),
            lambda: MaxTokensLimiter(max_token_count=self.max_tokens),
        ]


def _depth_rule(max_depth: int) -> type[ValidationRule]:
    """Strawberry's depth limit, for documents whose fragment spreads all resolve.

    Its crawler looks fragments up by name and fails on an unknown one; such a
    document is refused anyway, by graphql-core's KnownFragmentNames, with a
    message a client can act on.
    """
    depth_limit = query_depth_limiter.create_validator(max_depth, None)

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            defined = {
                d.name.value for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            spread: set[str] = set()

            class Spreads(Visitor):
                def enter_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> None:
                    spread.add(node.name.value)

            visit(document, Spreads())
            if spread <= defined:
                depth_limit(context)  # reports through the context as it is made

    return DepthLimit
