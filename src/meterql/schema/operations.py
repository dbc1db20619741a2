"""Tell the request's record which GraphQL operation ran, for its log line and metrics.

An extension because only Strawberry knows the operation once it has
parsed the document: its name comes from ``operationName`` or, for a
document with one operation, from the document itself. The fixed /v1
documents run without extensions: their route already names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

from meterql.web.request_facts import RequestFacts

UNKNOWN_TYPE = "unknown"  # no document, or no operation of that name in it


class RecordOperation(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        # A document that does not parse arrives here as an exception
        # (Strawberry turns it into the answer's error afterwards).
        failed = True
        try:
            yield
            failed = False
        finally:
            self._record(failed)

    def _record(self, failed: bool) -> None:
        execution = self.execution_context
        context: Any = execution.context
        facts = getattr(context, "facts", None)
        if not isinstance(facts, RequestFacts):
            return
        try:
            kind = execution.operation_type.value
        except RuntimeError:  # the document did not parse, or names no such operation
            kind = UNKNOWN_TYPE
        result = execution.result
        errors = failed or bool(execution.pre_execution_errors) or bool(result and result.errors)
        facts.operation(execution.operation_name, kind, errors)
