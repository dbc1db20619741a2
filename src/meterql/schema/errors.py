"""Which GraphQL errors a client may read, and what it reads instead of the rest.

Expected failures (ours, GraphQL's own syntax, validation and variable
errors, and a scalar refusing a value written into the document) are
answers. Anything else is a bug: it is logged with its
traceback and the request id, and the client gets a generic message with
that id, never the exception's text, which could hold SQL or paths.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from meterql.errors import MeterqlError
from meterql.schema.scalars import ScalarInputError

logger = logging.getLogger("meterql.graphql")

MASKED_MESSAGE = "Internal server error"
# graphql-core appends suggestions to several messages: unknown fields,
# arguments, types, enum values and input fields (in variables too).
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def is_expected(error: GraphQLError) -> bool:
    """Errors a client may see: our own, and GraphQL's own (syntax, validation, variables)."""
    original = error.original_error
    return original is None or isinstance(
        original, MeterqlError | GraphQLError | ScalarInputError
    ) or (
        # Variable coercion happens before execution: its errors describe the
        # client's input (a scalar's parser refusing it), never our internals.
        error.path is None and error.message.startswith("Variable '$")
    )


def request_id_of(execution_context: ExecutionContext | None) -> str:
    context: Any = getattr(execution_context, "context", None)
    return str(getattr(context, "request_id", "") or "")


def log_unexpected(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    # Expected failures are answers, not incidents: log only the rest,
    # with their tracebacks, before masking hides them from the client.
    for error in errors:
        if not is_expected(error):
            logger.error(
                "unexpected error in GraphQL execution (request id %s)",
                request_id_of(execution_context) or "-",
                exc_info=error.original_error,
            )


def hide_suggestions(errors: list[GraphQLError]) -> None:
    """Strip "Did you mean ...?" from messages: they would spell out the schema."""
    for error in errors:
        error.message = _SUGGESTION.sub("", error.message)


class MaskUnexpected(MaskErrors):
    """Strawberry's ``MaskErrors`` for unexpected errors, naming the request."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda error: not is_expected(error),
                         error_message=MASKED_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        extensions = {"code": MeterqlError.code}
        rid = request_id_of(self.execution_context)
        if rid:
            extensions["requestId"] = rid
        return GraphQLError(
            message=self.error_message, nodes=error.nodes, source=error.source,
            positions=error.positions, path=error.path, original_error=None,
            extensions=extensions,
        )
