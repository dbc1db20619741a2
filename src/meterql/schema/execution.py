"""A graphql-core executor that completes all-leaf objects in one loop.

Most of an answer here is lists of small objects whose fields are plain
attributes holding scalars: the 90 points of a daily series, an instance per
row. graphql-core completes each such field on its own (resolve info, path,
resolver call, non-null check, coercion), which costs more than the database
read behind the whole list. For an object whose selected fields are all
argument-free leaves with Strawberry's plain attribute resolver, this reads
each attribute and coerces it directly. The same holds one level up and
more: an object whose fields are such leaves, or plain attributes holding
objects or lists of objects that are themselves completed so (a series'
buckets, each with a list of groups), is completed in one loop too. And in
an object that has no such plan as a whole (an instance, whose ``usage``
takes arguments), each field that would fit one is still completed so, one
by one; only the others take graphql-core's path. A method of the object
that takes nothing but the object counts as a plain value: ``Usage.totals``
is built when asked for, and asked for seventy times on a page.

Anything unusual on the way (a null, a value the scalar refuses) abandons the
shortcut for that object and runs graphql-core's own path, which then raises
the error it always would: answers and errors are the same either way.

Which subfields a selection collects is worked out once per document, not
once per request: graphql-core walks the selection sets again for every
operation it executes (fragments, type conditions, ``@include``), a tenth of
the CPU time of a ``/v1`` answer, and the fixed ``/v1`` documents and the
queries the parser cache keeps are the same nodes every time.

It also takes variables the caller has already validated in-process
(:class:`Prevalidated`): the REST layer checks an ingest body with the same
pydantic models the resolver would, and graphql-core coercing a thousand
events again, field by field, cost as much as writing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetailsList,
    FragmentDetails,
    GroupedFieldSet,
)
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


@dataclass(frozen=True)
class Prevalidated:
    """A variable value checked by the caller, given to resolvers as is.

    graphql-core coerces ``placeholder`` in its place, so the operation's
    variable definitions are still checked; then the resolver receives this
    object, and must recognise it. Only in-process callers can make one: a
    variable decoded from a request's JSON never is.
    """

    value: Any
    placeholder: Any = field(default_factory=list)


# (response key, how the value is read from its object, how it is completed:
# the leaf type's output coercion or a plan of its own, nullable)
_Entry = tuple[str, Callable[[Any], Any], Any, bool]
_Plan = tuple[_Entry, ...]


class LeafFastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per operation, keyed by identity like graphql-core's own memo of
        # collected subfields (which hands us the same field set for every
        # item of a list); the field set is kept alive beside its plan.
        self._leaf_plans: dict[tuple[str, int], tuple[GroupedFieldSet, _Plan | None]] = {}
        self._collecting: _Collecting | None = _collecting(self.operation, self.fragments)
        self._directive_values: tuple[Any, ...] | None = None
        # Field middleware (Strawberry's extensions with a ``resolve`` hook)
        # must see every field: then there is no shortcut.
        self._middleware = bool(getattr(self.middleware_manager, "middlewares", None))
        # Per field (parent type, field list's identity, kept alive): its entry, if any.
        self._entries: dict[tuple[str, int], tuple[FieldDetailsList, _Entry | None]] = {}

    @classmethod
    def build(
        cls,
        schema: Any,
        document: Any,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[GraphQLError] | LeafFastExecutionContext:
        prevalidated = {
            name: value
            for name, value in (raw_variable_values or {}).items()
            if isinstance(value, Prevalidated)
        }
        if prevalidated:
            assert raw_variable_values is not None
            raw_variable_values = {
                **raw_variable_values,
                **{name: value.placeholder for name, value in prevalidated.items()},
            }
        built = super().build(
            schema, document, root_value, context_value, raw_variable_values, *args, **kwargs
        )
        if prevalidated and not isinstance(built, list):
            built.variable_values.coerced.update(prevalidated)
        return built  # type: ignore[return-value]

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plan(parent_type, grouped_field_set)
        if plan is not None:
            completed = _complete(plan, source_value)
            if completed is not None:
                return completed
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> AwaitableOrValue[Any]:
        # A field of an object that has no plan as a whole (an instance, whose
        # ``usage`` takes arguments) may still be a plain value: read and
        # completed here, as ``_complete`` does each field of a plan, and the
        # object's other fields go graphql-core's way.
        entry = self._entry(parent_type, str(path.key), field_details_list)
        if entry is not None:
            _, read, complete, nullable = entry
            try:
                value = read(source)
                if value is None:
                    if nullable:
                        return None
                else:
                    completed = complete(value)
                    if completed is not None and completed is not Undefined:
                        return completed
            except Exception:  # graphql-core's path gives the error, if any
                pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context)

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        # A list of all-leaf objects (a page's rows, a series' buckets) in one
        # loop, rather than each item through graphql-core's completion.
        item_type = return_type.of_type
        if is_non_null_type(item_type):
            item_type = item_type.of_type
        if (
            isinstance(result, list)
            and isinstance(item_type, GraphQLObjectType)
            and not item_type.is_type_of
            and self.get_stream_usage(field_details_list, path) is None
        ):
            fields, defers, _ = self.collect_subfields(item_type, field_details_list)
            plan = None if defers else self._plan(item_type, fields)
            completed = None if plan is None else _complete_each(plan, result)
            if completed is not None:
                return completed
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        # This operation's own memo first, as graphql-core's: every item of a
        # list asks again for the same field nodes.
        memo = self._relevant_sub_fields
        found = memo.get((return_type, id(field_details_list)))
        if found is None:
            shared = self._shared_key(return_type, field_details_list)
            if shared is None:
                return super().collect_subfields(return_type, field_details_list)
            found = _SHARED_SUBFIELDS.get(shared)
            if found is None:
                if len(_SHARED_SUBFIELDS) >= _SHARED_SUBFIELDS_LIMIT:
                    _SHARED_SUBFIELDS.clear()
                    _SHARED_SET_PLANS.clear()
                collected = super().collect_subfields(return_type, field_details_list)
                found = _SHARED_SUBFIELDS[shared] = (field_details_list, collected)
                fields = collected.grouped_field_set
                _SHARED_SET_PLANS[id(fields)] = (return_type, fields, _UNPLANNED)
            # Kept alive beside its collection, as graphql-core's memo does,
            # so that no other list of this operation can take its identity.
            found = memo[(return_type, id(field_details_list))] = (field_details_list, found[1])
        return found[1]

    def _shared_key(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> tuple[Any, ...] | None:
        """The key of a collection shared between operations; None if it cannot be shared."""
        if self._collecting is None:
            return None
        if self._directive_values is None:
            coerced = self.variable_values.coerced
            values = tuple(coerced.get(name) for name in self._collecting)
            try:
                hash(values)
            except TypeError:  # a variable's value that cannot be a key
                self._collecting = None
                return None
            self._directive_values = values
        return (return_type, self._directive_values,
                *(id(details.node) for details in field_details_list))

    def _plan(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> _Plan | None:
        key = (parent_type.name, id(fields))
        cached = self._leaf_plans.get(key)
        if cached is None:
            if self._middleware:
                plan = None
            else:
                # A shared collection's fields have their plan beside them,
                # made by the first operation that completes them.
                known = _SHARED_SET_PLANS.get(id(fields))
                if known is not None and (known[0] is not parent_type or known[1] is not fields):
                    known = None
                if known is not None and known[2] is not _UNPLANNED:
                    plan = known[2]
                else:
                    plan = self._new_plan(parent_type, fields)
                    if known is not None and _SHARED_SET_PLANS.get(id(fields)) is known:
                        _SHARED_SET_PLANS[id(fields)] = (parent_type, fields, plan)
            cached = (fields, plan)
            self._leaf_plans[key] = cached
        return cached[1]

    def _new_plan(self, parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> _Plan | None:
        # All leaves: one plan for every operation with these field nodes.
        return _shared_plan(parent_type, fields) or self._nested_plan(parent_type, fields)

    def _nested_plan(
        self, parent_type: GraphQLObjectType, fields: GroupedFieldSet
    ) -> _Plan | None:
        """A plan whose fields are leaves, or objects and lists of objects with plans
        of their own (a series' buckets, each with its groups).

        Their subfields are this operation's collection, which follows its
        ``@skip``/``@include`` values: the plan is kept only beside a
        collection shared under those same values, or for this operation.
        """
        plan = []
        for response_name, details in fields.items():
            entry = self._entry(parent_type, response_name, details)
            if entry is None:
                return None
            plan.append(entry)
        return tuple(plan)

    def _entry(
        self, parent_type: GraphQLObjectType, response_name: str, details: FieldDetailsList
    ) -> _Entry | None:
        """How to complete one field without graphql-core, if it can be; made once per
        operation (a plan asks for it, and so does each of its object's executions)."""
        key = (parent_type.name, id(details))
        found = self._entries.get(key)
        if found is None:
            if self._middleware:
                found = (details, None)
            else:
                found = (details, self._shared_entry(parent_type, response_name, details))
            self._entries[key] = found
        return found[1]

    def _shared_entry(
        self, parent_type: GraphQLObjectType, response_name: str, details: FieldDetailsList
    ) -> _Entry | None:
        """The field's entry as every operation with the same nodes (and the same
        ``@skip``/``@include`` values) has it: made by the first one, as plans are.

        An entry of an object or a list of objects holds the plan of its
        subfields, which follows those values; an operation whose collection
        cannot be shared makes its own.
        """
        shared = self._shared_key(parent_type, details)
        if shared is None:
            return self._new_entry(parent_type, response_name, details)
        key = (response_name, *shared)
        found = _SHARED_ENTRIES.get(key)
        if found is None:
            if len(_SHARED_ENTRIES) >= _SHARED_SUBFIELDS_LIMIT:
                _SHARED_ENTRIES.clear()
            entry = self._new_entry(parent_type, response_name, details)
            # Kept alive beside the entry, so that no node's identity is reused.
            found = _SHARED_ENTRIES[key] = (details, entry)
        return found[1]

    def _new_entry(
        self, parent_type: GraphQLObjectType, response_name: str, details: FieldDetailsList
    ) -> _Entry | None:
        """A plain value (an attribute, or a method taking nothing but its object) that
        is a leaf, or an object or a list of objects with a plan; None otherwise."""
        plain = None if any(_directed(d.node) for d in details) else _plain_field(
            parent_type, details)
        if plain is None:
            return None
        field, read = plain
        value_type = get_nullable_type(field.type)
        if is_leaf_type(value_type):
            complete = value_type.coerce_output_value
        else:
            many = isinstance(value_type, GraphQLList)
            item_type = (get_nullable_type(value_type.of_type)
                         if isinstance(value_type, GraphQLList) else value_type)
            if not isinstance(item_type, GraphQLObjectType) or item_type.is_type_of:
                return None
            subfields, defers, _ = self.collect_subfields(item_type, details)
            subplan = None if defers else self._plan(item_type, subfields)
            if subplan is None:
                return None
            complete = _each(subplan) if many else partial(_complete, subplan)
        return (response_name, read, complete, not is_non_null_type(field.type))


# The variables whose values say which subfields an operation collects (those
# of its ``@skip`` and ``@include``), or None when its collection cannot be
# shared between operations (another directive, such as ``@defer``, is used,
# or a fragment takes arguments).
_Collecting = tuple[str, ...]
_COLLECTING: dict[int, tuple[OperationDefinitionNode, _Collecting | None]] = {}

# Collected subfields, shared by every operation of a document: keyed by the
# return type, the values of the variables its directives read and the field
# nodes' identities, which the entry keeps alive; bounded like the plans.
_SHARED_SUBFIELDS: dict[tuple[Any, ...], tuple[FieldDetailsList, CollectedFields]] = {}
_SHARED_SUBFIELDS_LIMIT = 4_096
# The plan of each shared collection's fields, by the fields' identity (kept
# alive here, and emptied with the collections); ``_UNPLANNED`` until an
# operation first completes them.
_UNPLANNED: Any = object()
_SHARED_SET_PLANS: dict[int, tuple[GraphQLObjectType, GroupedFieldSet, _Plan | None]] = {}
# Each field's entry (``_entry``), shared the same way: keyed by the response
# name and a shared collection's key, with the field's nodes kept alive.
_SHARED_ENTRIES: dict[tuple[Any, ...], tuple[FieldDetailsList, _Entry | None]] = {}


def _collecting(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDetails]
) -> _Collecting | None:
    """What collecting ``operation``'s subfields depends on beside its nodes (once per operation).

    Fragments come with the operation's document: the same operation node
    always has the same ones.
    """
    found = _COLLECTING.get(id(operation))
    if found is None:
        if len(_COLLECTING) >= _SHARED_SUBFIELDS_LIMIT:
            _COLLECTING.clear()
        collecting = None
        if not any(fragment.variable_signatures for fragment in fragments.values()):
            collecting = _directive_variables(
                [operation.selection_set,
                 *(fragment.definition.selection_set for fragment in fragments.values())])
        found = _COLLECTING[id(operation)] = (operation, collecting)
    return found[1]


def _directive_variables(sets: list[SelectionSetNode]) -> _Collecting | None:
    """The variables that ``@skip`` and ``@include`` read in ``sets``; None if another
    directive is used there."""
    names: set[str] = set()
    while sets:
        for selection in sets.pop().selections:
            for directive in selection.directives or ():
                if directive.name.value not in ("skip", "include"):
                    return None
                names.update(argument.value.name.value for argument in directive.arguments or ()
                             if isinstance(argument.value, VariableNode))
            selection_set = getattr(selection, "selection_set", None)
            if selection_set is not None:
                sets.append(selection_set)
    return tuple(sorted(names))


# Plans outlive operations: a fixed /v1 document, or a query the parser cache
# keeps, hands graphql-core the very same field nodes request after request.
# Keyed by the parent type and those nodes' identities, which the entry keeps
# alive (so no identity is reused while its plan is kept); bounded.
_SHARED_PLANS: dict[tuple[Any, ...], tuple[list[Any], _Plan | None]] = {}
_SHARED_PLANS_LIMIT = 4_096


def _shared_plan(parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> _Plan | None:
    key = (parent_type, *(
        (name, *(id(details.node) for details in field_details))
        for name, field_details in fields.items()
    ))
    found = _SHARED_PLANS.get(key)
    if found is None:
        if len(_SHARED_PLANS) >= _SHARED_PLANS_LIMIT:
            _SHARED_PLANS.clear()
        nodes = [details.node for field_details in fields.values() for details in field_details]
        found = _SHARED_PLANS[key] = (nodes, _leaf_plan(parent_type, fields))
    return found[1]


def _leaf_plan(parent_type: GraphQLObjectType, fields: GroupedFieldSet) -> _Plan | None:
    plan = []
    for response_name, details in fields.items():
        plain = _plain_field(parent_type, details)
        if plain is None:
            return None
        field, read = plain
        leaf = get_nullable_type(field.type)
        if not is_leaf_type(leaf):
            return None
        plan.append((
            response_name,
            read,
            leaf.coerce_output_value,
            not is_non_null_type(field.type),
        ))
    return tuple(plan)


def _plain_field(
    parent_type: GraphQLObjectType, details: FieldDetailsList
) -> tuple[GraphQLField, Callable[[Any], Any]] | None:
    """The field ``details`` select and how its value is read, if it takes no
    arguments and its value can be read without graphql-core."""
    field = parent_type.fields.get(details[0].node.name.value)
    if field is None or any(d.node.arguments for d in details):
        return None
    read = _reader(field)
    return None if read is None else (field, read)


def _reader(field: GraphQLField) -> Callable[[Any], Any] | None:
    """How a field's value is read from its object without graphql-core, if it can be.

    Strawberry marks the resolver it gives a field without one of its own
    (an attribute); the schema marks a method that takes nothing but its
    object. Any other resolver (arguments, ``Info``, awaitables) has none.
    """
    strawberry_field = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if strawberry_field is None:
        return None
    if getattr(field.resolve, "_is_default", False):
        return attrgetter(strawberry_field.python_name)
    method: Callable[[Any], Any] | None = getattr(field.resolve, "plain_method", None)
    return method


def _directed(node: FieldNode) -> bool:
    """A directive besides ``@skip``/``@include`` (which collecting has applied) is on it."""
    return any(d.name.value not in ("skip", "include") for d in node.directives or ())


def _each(plan: _Plan) -> Callable[[Any], list[dict[str, Any]] | None]:
    """Completes a list of objects by ``plan``: None (take graphql-core's path) if one fails."""

    def complete(values: Any) -> list[dict[str, Any]] | None:
        return _complete_each(plan, values) if isinstance(values, list) else None

    return complete


def _complete_each(plan: _Plan, values: list[Any]) -> list[dict[str, Any]] | None:
    completed = [_complete(plan, value) for value in values]
    return None if None in completed else completed  # type: ignore[return-value]


def _complete(plan: _Plan, source: Any) -> dict[str, Any] | None:
    result: dict[str, Any] = {}
    try:
        for response_name, read, coerce, nullable in plan:
            value = read(source)
            if value is None:
                if not nullable:
                    return None
                result[response_name] = None
                continue
            coerced = coerce(value)
            if coerced is None or coerced is Undefined:
                return None
            result[response_name] = coerced
    except Exception:
        return None
    return result
