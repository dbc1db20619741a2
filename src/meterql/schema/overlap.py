"""Field selection merging in near-linear time: a drop-in for graphql-core's rule.

graphql-core's ``OverlappingFieldsCanBeMergedRule`` (the spec's "Field Selection Merging")
compares every pair of fields that share a response name, and every pair of fragments
spread side by side, recursing into the sub-selections of each pair: a few hundred
repeated fields, well inside our token limit, block the event loop for 0.3-1 s.
``OverlappingFieldsCanBeMergedLinear`` enforces the same rule with the algorithm of XING's
"GraphQL Overlapping Fields Can Be Merged Fast" (Simon Adameit), which graphql-java's rule
also follows.

The algorithm. What the rule asks of two fields is an equivalence: the same response shape
(the same list and non-null wrapping around the same leaf type, or around any composite
type), and the same field name and arguments. So each field of a response name is compared
with one representative instead of with all the others, and the sub-selections of all those
fields are merged, fragments expanded once each, and checked alike, recursively. Shape is
compared across all fields of a name. Name and arguments only matter for fields that can
meet on one object: fields whose parents are different object types never do, nor do any
fields below them. So fields are kept in branches, one per path of parent types (a parent
that is an interface, a union or unknown is a wildcard, meeting any type): each field is
compared with its branch's representative, and the representatives of branches that meet
with each other.

Like graphql-core, the rule visits every selection set of the document (of operations, of
fragment definitions, used or not, and of fields; an inline fragment's selections count as
its parent's), and looks there only for conflicts between two of its own fields, or
between different fragments it spreads, down through their merged sub-selections: what
conflicts below a single field, or within a single fragment, is found and reported where
that field's selection set or that fragment is visited. That is what keeps the work linear
in the document: a name that only one field or fragment contributes to a merge is not
looked into (nor iterated, when that one is the largest contributor); the fields of one
name that a fragment brings are compared as one and their sub-selections merged once
("bundles"); a fragment is expanded once per merge, however many paths lead to it; and a
merge of the same contents as one already checked is not checked again.

Differences from graphql-core. The verdict (valid or not) is the same but for the last
four points. Messages and locations are made as graphql-core makes them (its own tests of
its rule give the very same errors here), but an invalid document can get other errors:

* Where several fields conflict, graphql-core reports every conflicting pair, this rule
  each field against a representative: n differing fields give n - 1 errors, not
  n (n - 1) / 2, and the pairs can differ. A conflict found again through another
  selection set is not reported again, as graphql-core mostly does not. Sub-conflicts
  within one message can come in another order where several fragments each conflict
  with several fields.
* graphql-core aborts validation when its comparisons exceed a complexity budget
  (``MAX_COMPLEXITY_BUDGET``), refusing valid documents that are merely big: this rule
  needs no budget.
* Arguments given twice under one name (refused by UniqueArgumentNamesRule) make a field
  differ from every other field here; graphql-core's verdict on them depends on the order
  it compares them in.
* Fields directly inside ``__schema`` or ``__type`` are judged with an unknown parent
  type, as graphql-core judges them against other fields; when graphql-core visits such
  a selection set itself, it knows the introspection type. The two can only disagree
  when a fragment on another object type is spread there (refused by
  PossibleFragmentSpreadsRule).
* With experimental fragment arguments: a cycle of fragments whose spreads pass their own
  variables on (refused by NoFragmentCyclesRule) is cut short here, where graphql-core
  may follow it until it aborts; and once two uses of one fragment with different
  arguments are reported, the later one is not compared with anything else.

Cost. Linear in the document, except: fields of one response name under different object
types and wildcards at several levels make branches that meet pairwise, quadratic in their
number at worst (an exact rule cannot do much better: the question encodes the orthogonal
vectors problem); a chain of fragments that each add a field beside a spread of the next
is quadratic in its length (at most 200, graphql-core's nesting limit), as in graphql-core;
and documents with fragment variables compare spreads pairwise, as graphql-core does.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Hashable, Iterator, Sequence
from typing import Any, NamedTuple, TypeAlias

from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentArgumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NameNode,
    NullValueNode,
    ObjectValueNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    is_interface_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    print_ast,
    type_from_ast,
)
from graphql.language.parser import MAX_NESTING_DEPTH
from graphql.utilities.type_info import FragmentSignature

__all__ = ["OverlappingFieldsCanBeMergedLinear"]

# graphql-core's bounds on what one error describes, kept so messages stay identical.
MAX_CONFLICT_DETAIL_LENGTH = 1000
MAX_CONFLICT_NODES = 20
MAX_FRAGMENT_ARGUMENT_SIZE = 256

# The tag of the visited selection set's own fields, of which each gets a tag of its own:
# each must be compared with the others.
OWN_FIELDS = 0

Ordinal: TypeAlias = tuple[int, int, int]  # piece, name within the piece, field of the name
Arguments: TypeAlias = "Sequence[ArgumentNode] | Sequence[FragmentArgumentNode] | None"


class _Scope:
    """The variables of one use of a fragment with (experimental) fragment arguments.

    Compared by identity, like graphql-core's ``VariableScope``: uses of a fragment that
    pass the same arguments share a scope, so equal argument expressions in them mean
    the same; a variable of an operation is never in a scope.
    """

    __slots__ = ("variables",)

    def __init__(self, variables: Collection[str]) -> None:
        self.variables = variables


Scope: TypeAlias = "_Scope | None"


class _Value(NamedTuple):
    """A value node as graphql-core compares it: printed canonically, with its variables."""

    key: str
    variables: list[str]


class _SpreadInfo:
    """What equal fragment spreads (same fragment, same arguments) have in common."""

    __slots__ = ("by_scope", "signature", "values")

    def __init__(self, signature: FragmentSignature | None, values: list[_Value]) -> None:
        self.signature = signature
        self.values = values  # argument values that mention variables
        self.by_scope: dict[int, Scope] = {}  # the use's scope, by id of enclosing scope


class _Field:
    """A field selection in its parent type and scope; compared through lazy keys."""

    __slots__ = (
        "arguments",
        "definition",
        "label",
        "name",
        "node",
        "response_name",
        "scope",
        "shape",
        "stream",
        "stream_arguments",
        "sub_source",
    )

    def __init__(
        self,
        node: FieldNode,
        parent_type: GraphQLNamedType | None,
        definition: GraphQLField | None,
        scope: Scope,
    ) -> None:
        self.node = node
        self.name = node.name.value
        self.response_name = node.alias.value if node.alias else self.name
        self.definition = definition
        self.scope = scope
        # Parents that are different object types never meet; any other parent might be
        # any object type, so it is a wildcard (None).
        self.label: GraphQLObjectType | None = parent_type if is_object_type(parent_type) else None
        self.stream = next((d for d in node.directives or () if d.name.value == "stream"), None)
        self.arguments: object = None  # filled in when first compared
        self.stream_arguments: object = None
        self.shape: tuple[object, ...] | None = None
        self.sub_source: _Source | None = None


class _Use:
    """A distinct fragment spread of a selection set: fragment and scope."""

    __slots__ = ("definition", "local", "node", "scope", "source")

    def __init__(
        self,
        definition: FragmentDefinitionNode | None,
        scope: Scope,
        local: bool,
        node: FragmentSpreadNode,
    ) -> None:
        self.definition = definition
        self.scope = scope
        self.local = local  # its arguments use the enclosing fragment's variables
        self.node = node
        self.source: _Source | None = None


# Two spreads to compare, with the fragments followed down to each.
_SpreadPair: TypeAlias = tuple[_Use, _Use, tuple[int, ...], tuple[int, ...]]


class _Collected(NamedTuple):
    """The fields (inline fragments flattened) and spreads of a selection set."""

    fields: dict[str, list[tuple[FieldNode, GraphQLNamedType | None, GraphQLField | None]]]
    spreads: list[FragmentSpreadNode]


class _Source:
    """A selection set collected in a parent type and a scope; shared by every visit.

    Or the sub-selections of a bundle's fields merged (see ``_Bundle``): then ``owners``
    tells which of its fields each field and spread is below, by index.
    """

    __slots__ = ("fields", "keep", "owners", "positions", "uses")

    def __init__(
        self,
        fields: dict[str, list[_Field]],
        uses: list[_Use],
        keep: object,
        owners: dict[int, int] | None = None,
    ) -> None:
        self.fields = fields
        self.positions = {name: i for i, name in enumerate(fields)}
        self.uses = uses
        self.keep = keep  # the objects whose ids key this source stay alive with it
        self.owners = owners


class _Bundle:
    """Fields of one name, parent type and source, stood for by the first of them.

    Comparing them with each other is their source's business, so elsewhere they only
    need to be compared as one, and their sub-selections merged once (``merged``), not
    again at every place the source is spread.
    """

    __slots__ = ("fields", "indexes", "merged", "selects")

    def __init__(self) -> None:
        self.fields: list[_Field] = []
        self.indexes: list[int] = []  # of the fields in their source's list for the name
        self.merged: _Source | None = None
        self.selects = False  # whether any of the fields has a sub-selection

    def add(self, field: _Field, index: int) -> None:
        self.fields.append(field)
        self.indexes.append(index)
        self.selects = self.selects or field.node.selection_set is not None


class _Branch:
    """The fields of one response path below one path of parent types (see module doc)."""

    __slots__ = ("children", "label")

    def __init__(self, label: GraphQLObjectType | None) -> None:
        self.label = label
        self.children: dict[str, dict[int, _Branch]] = {}

    def child(self, name: str, label: GraphQLObjectType | None) -> _Branch:
        by_label = self.children.setdefault(name, {})
        branch = by_label.get(id(label))
        if branch is None:
            branch = by_label[id(label)] = _Branch(label)
        return branch


class _Piece(NamedTuple):
    """What one field's sub-selection or one fragment adds to a merged selection set."""

    order: int  # of the piece in its merged selection set
    # Which of the visited selection set's own fields, or of the fragments it spreads, this
    # is below: two fields are the visit's to compare only if their tags differ.
    tag: int
    parent: _Entry | None  # the field whose sub-selection this is, None at the top
    source: _Source
    spread: bool  # reached through a fragment spread, rather than selected directly


class _Merge:
    """The pieces of one merged selection set, as they are gathered."""

    __slots__ = ("pieces", "skip", "sources")

    def __init__(self, skip: set[int]) -> None:
        self.pieces: list[_Piece] = []
        self.sources: set[int] = set()
        self.skip = skip  # spreads in conflict with another use of their fragment

    def add(self, tag: int, parent: _Entry | None, source: _Source, spread: bool) -> bool:
        if id(source) in self.sources:
            return False
        self.sources.add(id(source))
        self.pieces.append(_Piece(len(self.pieces), tag, parent, source, spread))
        return True


class _Entry:
    """A field (or a bundle of fields) at one place of a visit's merged response tree."""

    __slots__ = ("branch", "bundle", "field", "members", "ordinal", "parent", "piece", "tag")

    def __init__(
        self,
        field: _Field,
        piece: _Piece,
        parent: _Entry | None,
        ordinal: Ordinal,
        tag: int,
        branch: _Branch,
        bundle: _Bundle | None = None,
    ) -> None:
        self.field = field
        self.piece = piece
        self.parent = parent
        self.ordinal = ordinal
        self.tag = tag
        self.branch = branch
        self.bundle = bundle
        self.members: dict[int, _Entry] = {}

    def member(self, index: int) -> _Entry:
        """The entry of one field of this entry's bundle, made when a conflict needs it."""
        if index == 0 or self.bundle is None:
            return self
        entry = self.members.get(index)
        if entry is None:
            piece, (order, position, _i) = self.piece, self.ordinal
            ordinal = (order, position, self.bundle.indexes[index])
            field = self.bundle.fields[index]
            parent, owners = self.parent, piece.source.owners
            if piece.parent and owners:  # below a bundle too: below one of its fields
                parent = piece.parent.member(owners[id(field)])
            entry = _Entry(field, piece, parent, ordinal, self.tag, self.branch)
            self.members[index] = entry
        return entry


class _Group(NamedTuple):
    """The fields of one response name in a merged selection set, with branch pairs."""

    entries: list[_Entry]
    pairs: list[tuple[_Branch, _Branch]]  # distinct branches whose fields can meet


class _PairNode:
    """Two fields on the way down to a conflict, and what conflicts below them."""

    __slots__ = ("children", "first", "second")

    def __init__(self, first: _Entry, second: _Entry) -> None:
        self.first = first
        self.second = second
        self.children: dict[tuple[int, int], _PairNode] = {}


class _Visit:
    """The state of checking one selection set."""

    __slots__ = ("conflicts", "last_tag", "root", "spread_errors")

    def __init__(self) -> None:
        self.root = _Branch(None)
        self.last_tag = OWN_FIELDS
        self.conflicts: dict[tuple[int, int], tuple[_Entry, _Entry]] = {}
        self.spread_errors: list[GraphQLError] = []

    def new_tag(self) -> int:
        self.last_tag += 1
        return self.last_tag


class OverlappingFieldsCanBeMergedLinear(ValidationRule):
    """Overlapping fields can be merged, checked in near-linear time.

    The same rule as graphql-core's ``OverlappingFieldsCanBeMergedRule``, see the module
    docstring. ``comparisons`` counts the field comparisons made and ``steps`` the fields
    and fragments gathered, for tests of the work done.
    """

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.comparisons = 0
        self.steps = 0
        self._scope: Scope = None  # of the fragment definition being visited
        self._fragment_variables = False  # whether any fragment has (experimental) ones
        self._collected: dict[tuple[int, int], _Collected] = {}
        self._sources: dict[tuple[int, int, int], _Source] = {}
        self._values: dict[int, _Value] = {}
        self._spreads: dict[int, _SpreadInfo] = {}
        self._spreads_by_key: dict[str, _SpreadInfo] = {}
        self._reported: set[tuple[int, int]] = set()  # field pairs of earlier visits
        self._reported_spreads: set[tuple[int, frozenset[int]]] = set()
        self._checked: set[Hashable] = set()  # contents of merges checked
        self._bundled: dict[int, tuple[list[_Field], list[_Bundle]]] = {}  # by id of the list

    # Visitor hooks, as graphql-core's rule: every selection set, in its parent type.

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        self._fragment_variables = any(
            isinstance(definition, FragmentDefinitionNode) and definition.variable_definitions
            for definition in node.definitions
        )

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_args: Any) -> None:
        signature = self.context.get_fragment_signature_by_name()(node.name.value)
        self._scope = _new_scope(signature)

    def leave_fragment_definition(self, *_args: Any) -> None:
        self._scope = None

    def enter_selection_set(
        self, node: SelectionSetNode, _key: Any, parent: Any, *_args: Any
    ) -> None:
        if isinstance(parent, InlineFragmentNode):
            return  # its selections are part of the enclosing selection set
        selections = node.selections
        if len(selections) <= 1 and not (
            selections and isinstance(selections[0], InlineFragmentNode)
        ):
            return  # a single field or spread has nothing to merge with
        for error in self._check(self.context.get_parent_type(), node, self._scope):
            self.report_error(error)

    # Checking one selection set.

    def _check(
        self, parent_type: GraphQLNamedType | None, selection_set: SelectionSetNode, scope: Scope
    ) -> Iterator[GraphQLError]:
        """The errors of one visited selection set.

        Its own fields and the fragments it spreads are merged, and each response name that
        two of them share is compared, then its fields' sub-selections merged, and so on.
        """
        source = self._source(selection_set, parent_type, scope)
        if not source.uses and all(len(fields) < 2 for fields in source.fields.values()):
            return
        if not source.fields and len(source.uses) < 2:
            return  # all of it is one fragment's, checked at its definition
        visit = _Visit()
        tags = [visit.new_tag() for _use in source.uses]
        merge = _Merge(
            self._spread_conflicts(
                visit, [(tag, [use]) for tag, use in zip(tags, source.uses, strict=True)]
            )
        )
        merge.add(OWN_FIELDS, None, source, False)
        for tag, use in zip(tags, source.uses, strict=True):
            self._expand(merge, [use], tag, None)
        stack = [(group, 1) for group in reversed(self._groups(visit, merge.pieces, []))]
        while stack:
            group, depth = stack.pop()
            self._compare(visit, group)
            if depth < MAX_NESTING_DEPTH:  # only a fragment cycle nests deeper
                stack += [(child, depth + 1) for child in reversed(self._merge(visit, group))]
        yield from visit.spread_errors
        yield from self._errors(visit)
        self._reported.update(visit.conflicts)

    def _expand(self, merge: _Merge, uses: list[_Use], tag: int, parent: _Entry | None) -> None:
        """Add the fragments these spreads reach, depth first, each once per merge."""
        stack = [iter(uses)]
        path: list[int] = []  # fragments being expanded
        while stack:
            use = next(stack[-1], None)
            if use is None:
                stack.pop()
                if path:
                    path.pop()
                continue
            definition = use.definition
            self.steps += 1
            if definition is None or id(use) in merge.skip:
                continue  # unknown, or in conflict: reported
            if use.local and id(definition) in path:
                continue  # a cycle giving the variables a new scope at each turn: reported
            if merge.add(tag, parent, self._fragment_source(use), True):
                stack.append(iter(self._fragment_source(use).uses))
                path.append(id(definition))

    def _spread_conflicts(self, visit: _Visit, spreads: list[tuple[int, list[_Use]]]) -> set[int]:
        """Report uses of one fragment with different arguments, as graphql-core finds them.

        graphql-core compares the spreads of every two tags, and follows the spreads of
        two different fragments, depth first; two equal uses of one fragment end that.
        This is quadratic, but only documents with (experimental) fragment variables
        need it. Returns the uses that conflicted with earlier ones.
        """
        conflicting: set[int] = set()
        if not self._fragment_variables:
            return conflicting
        followed: set[tuple[int, int]] = set()
        for i, (tag1, uses1) in enumerate(spreads):
            for tag2, uses2 in spreads[i + 1 :]:
                if tag1 == tag2:
                    continue
                # Each with the fragments followed down to it, to end cycles as _expand does.
                top: tuple[int, ...] = ()
                stack: list[_SpreadPair] = [
                    (one, other, top, top) for one in uses1 for other in uses2
                ][::-1]
                while stack:
                    one, other, path1, path2 = stack.pop()
                    self.steps += 1
                    if one.definition is None or other.definition is None:
                        continue
                    if (one.local and id(one.definition) in path1) or (
                        other.local and id(other.definition) in path2
                    ):
                        continue
                    if one.definition is other.definition and one.scope is other.scope:
                        continue
                    source1, source2 = self._fragment_source(one), self._fragment_source(other)
                    pair = (id(source1), id(source2))
                    if pair in followed or pair[::-1] in followed:
                        continue
                    followed.add(pair)
                    if one.definition is other.definition:
                        self._spread_conflict(visit, one, other)
                        conflicting.add(id(other))
                        continue
                    down1, down2 = (*path1, id(one.definition)), (*path2, id(other.definition))
                    below: list[_SpreadPair] = [(one, use, path1, down2) for use in source2.uses]
                    below += [(use, other, down1, path2) for use in source1.uses]
                    stack += below[::-1]
        return conflicting

    def _groups(
        self,
        visit: _Visit,
        pieces: list[_Piece],
        parent_pairs: list[tuple[_Branch, _Branch]],
    ) -> list[_Group]:
        """Group the fields of a merged selection set by response name, where it matters.

        A name matters if fields of two tags have it. Names that only the largest piece
        has cannot, so that piece is looked up rather than iterated.
        """
        candidates = [piece for piece in pieces if piece.tag != OWN_FIELDS]
        largest = max(candidates, key=lambda piece: len(piece.source.fields), default=None)
        found: dict[str, list[tuple[_Piece, list[_Field]]]] = {}
        for piece in pieces:
            if piece is not largest:
                self.steps += len(piece.source.fields)
                for name, fields in piece.source.fields.items():
                    found.setdefault(name, []).append((piece, fields))
        groups: list[tuple[Ordinal, list[_Entry]]] = []
        for name, contributions in found.items():
            more = largest.source.fields.get(name) if largest else None
            if largest and more:
                contributions.append((largest, more))
                contributions.sort(key=lambda contribution: contribution[0].order)
            tags = {piece.tag for piece, _fields in contributions}
            if len(tags) == 1 and (OWN_FIELDS not in tags or len(contributions[0][1]) == 1):
                continue  # only one field or one fragment has the name: its own business
            entries: list[_Entry] = []
            for piece, fields in contributions:
                entries += self._entries(visit, name, piece, fields)
            groups.append((entries[0].ordinal, entries))
        groups.sort(key=lambda group: group[0])
        return [
            _Group(entries, self._branch_pairs(visit, entries, parent_pairs))
            for _ordinal, entries in groups
        ]

    def _entries(
        self, visit: _Visit, name: str, piece: _Piece, fields: list[_Field]
    ) -> list[_Entry]:
        position = piece.source.positions[name]
        owners = piece.source.owners
        parent = piece.parent
        parent_branch = parent.branch if parent else visit.root
        entries: list[_Entry] = []
        if piece.tag == OWN_FIELDS:  # each compared with the others, here
            for i, field in enumerate(fields):
                branch = parent_branch.child(name, field.label)
                ordinal = (piece.order, position, i)
                entries.append(_Entry(field, piece, None, ordinal, visit.new_tag(), branch))
        else:
            for bundle in self._bundles(fields):
                field, i = bundle.fields[0], bundle.indexes[0]
                # Below a bundle, each field is below one of the bundle's fields.
                above = parent.member(owners[id(field)]) if parent and owners else parent
                branch = parent_branch.child(name, field.label)
                ordinal = (piece.order, position, i)
                many = bundle if len(bundle.fields) > 1 else None
                entries.append(_Entry(field, piece, above, ordinal, piece.tag, branch, many))
        self.steps += len(entries)
        return entries

    def _bundles(self, fields: list[_Field]) -> list[_Bundle]:
        """The fields of one name in one source, bundled by parent type."""
        bundled = self._bundled.get(id(fields))
        if bundled is None:
            by_label: dict[int, _Bundle] = {}
            for i, field in enumerate(fields):
                # A streamed field conflicts with its equals, so it stands for itself.
                key = id(field) if field.stream else id(field.label)
                by_label.setdefault(key, _Bundle()).add(field, i)
            bundled = self._bundled[id(fields)] = (fields, list(by_label.values()))
        return bundled[1]

    def _branch_pairs(
        self,
        visit: _Visit,
        entries: list[_Entry],
        parent_pairs: list[tuple[_Branch, _Branch]],
    ) -> list[tuple[_Branch, _Branch]]:
        """The distinct branches of these fields whose fields can meet on one object.

        Two branches meet if their parent branches are one or meet, and their own parent
        types are equal or either is a wildcard.
        """
        name = entries[0].field.response_name
        parents: dict[int, _Branch] = {}
        for entry in entries:
            parent = entry.parent.branch if entry.parent else visit.root
            parents.setdefault(id(parent), parent)
        pairs: list[tuple[_Branch, _Branch]] = []
        for parent in parents.values():
            siblings = parent.children[name]
            wildcard = siblings.get(id(None))
            if wildcard is not None and len(siblings) > 1:
                pairs += [(wildcard, other) for other in siblings.values() if other is not wildcard]
        for parent1, parent2 in parent_pairs:
            children1 = parent1.children.get(name, {})
            children2 = parent2.children.get(name, {})
            for child1 in children1.values():
                if child1.label is None:
                    pairs += [(child1, child2) for child2 in children2.values()]
                    continue
                for child2 in (children2.get(id(child1.label)), children2.get(id(None))):
                    if child2 is not None:
                        pairs.append((child1, child2))
        return pairs

    def _compare(self, visit: _Visit, group: _Group) -> None:
        """Compare the fields of one response name, each with a representative."""
        entries = group.entries
        first = entries[0]
        if any(entry.field.stream for entry in entries):
            # graphql-core refuses any overlap with a streamed field, whatever the parents.
            for entry in entries[1:]:
                self.comparisons += 1
                if first.field.stream or entry.field.stream:
                    self._record(visit, first, entry)
        # Shape: fields of unknown type match any, so only those of known types count.
        typed = [known for known in map(_typed, entries) if known is not None]
        for entry in typed[1:]:
            self.comparisons += 1
            if self._shape(entry.field) != self._shape(typed[0].field):
                self._record(visit, *sorted((typed[0], entry), key=lambda entry: entry.ordinal))
        # Name and arguments: within each branch, then between branches that meet.
        representatives: dict[int, _Entry] = {}
        for entry in entries:
            representative = representatives.setdefault(id(entry.branch), entry)
            if representative is not entry:
                self._compare_strictly(visit, representative, entry)
        for branch1, branch2 in group.pairs:
            one, other = representatives[id(branch1)], representatives[id(branch2)]
            self._compare_strictly(visit, *sorted((one, other), key=lambda entry: entry.ordinal))

    def _compare_strictly(self, visit: _Visit, first: _Entry, second: _Entry) -> None:
        self.comparisons += 1
        if self._strict_reason(first.field, second.field) is not None:
            self._record(visit, first, second)

    def _record(self, visit: _Visit, first: _Entry, second: _Entry) -> None:
        """Note two fields in conflict; why is worked out when reporting."""
        if first.tag == second.tag or first.field is second.field:
            # Below one field, or inside one fragment: reported where that is visited.
            return
        a, b = id(first.field), id(second.field)
        key = (a, b) if a < b else (b, a)
        if key not in self._reported:  # else found through another selection set before
            visit.conflicts.setdefault(key, (first, second))

    def _merge(self, visit: _Visit, group: _Group) -> list[_Group]:
        """Merge the sub-selections of one response name's fields and group them."""
        entries = [entry for entry in group.entries if _selects(entry)]
        if len({entry.tag for entry in entries}) < 2:
            return []
        sources = [self._merged_source(entry) for entry in entries]
        spreads = [(entry.tag, source.uses) for entry, source in zip(entries, sources, strict=True)]
        merge = _Merge(self._spread_conflicts(visit, spreads))
        for entry, source in zip(entries, sources, strict=True):
            merge.add(entry.tag, entry, source, False)
        for entry, source in zip(entries, sources, strict=True):
            for use in source.uses:
                # In a bundle's merged sub-selections, each spread is below one field.
                parent = entry.member(source.owners[id(use)]) if source.owners else entry
                self._expand(merge, [use], entry.tag, parent)
        pieces = merge.pieces
        contents = _contents(pieces, group.pairs)
        if contents in self._checked:
            return []  # the same merge was checked before: what conflicts was found then
        self._checked.add(contents)
        return self._groups(visit, pieces, group.pairs)

    # Keys under which fields are compared.

    def _reason(self, first: _Entry, second: _Entry) -> str | None:
        """Why two fields conflict themselves, in graphql-core's order, if they do."""
        one, other = first.field, second.field
        reason = self._strict_reason(one, other) if _meet(first, second) else None
        if reason is None and (one.stream or other.stream):
            reason = "they have overlapping stream directives"
            if (
                one.stream
                and other.stream
                and (self._stream_arguments(one) == self._stream_arguments(other))
            ):
                # This was allowed in previous alpha versions of GraphQL.js.
                reason += ". See https://github.com/graphql/defer-stream-wg/discussions/100"
        if (
            reason is None
            and one.definition
            and other.definition
            and self._shape(one) != self._shape(other)
        ):
            reason = (
                "they return conflicting types"
                f" '{one.definition.type}' and '{other.definition.type}'"
            )
        return reason

    def _strict_reason(self, one: _Field, other: _Field) -> str | None:
        if one.name != other.name:
            return f"'{_abbreviate(one.name)}' and '{_abbreviate(other.name)}' are different fields"
        if self._arguments(one) != self._arguments(other):
            return "they have differing arguments"
        return None

    def _arguments(self, field: _Field) -> object:
        if field.arguments is None:
            field.arguments = self._arguments_key(field.node.arguments, field.scope)
        return field.arguments

    def _stream_arguments(self, field: _Field) -> object:
        if field.stream_arguments is None and field.stream:
            field.stream_arguments = self._arguments_key(field.stream.arguments, field.scope)
        return field.stream_arguments

    def _arguments_key(self, arguments: Arguments, scope: Scope) -> object:
        """Equal for argument lists graphql-core deems the same, in any order.

        A value with a variable of the scope also keys on the scope: in two uses of a
        fragment with different arguments, ``$x`` means different things.
        """
        if not arguments:
            return ()
        names = [argument.name.value for argument in arguments]
        if len(set(names)) < len(names):
            return object()  # a name given twice: graphql-core's verdict depends on order
        items = []
        for argument in arguments:
            value = self._value(argument.value)
            items.append((argument.name.value, value.key, id(scope) if _local(value, scope) else 0))
        return tuple(sorted(items))

    def _shape(self, field: _Field) -> tuple[object, ...]:
        """Equal for the return types graphql-core's ``do_types_conflict`` lets merge."""
        if field.shape is None:
            parts: list[object] = []
            type_: Any = field.definition.type if field.definition else None
            while is_list_type(type_) or is_non_null_type(type_):
                parts.append("[]" if is_list_type(type_) else "!")
                type_ = type_.of_type
            parts.append(id(type_) if is_leaf_type(type_) else "composite")
            field.shape = tuple(parts)
        return field.shape

    def _value(self, node: ValueNode) -> _Value:
        value = self._values.get(id(node))
        if value is None:
            variables: list[str] = []
            structure = _value_structure(node, variables)
            key = json.dumps(structure, separators=(",", ":"), ensure_ascii=False)
            value = self._values[id(node)] = _Value(key, variables)
        return value

    # Collecting selection sets, shared by every visit.

    def _source(
        self,
        selection_set: SelectionSetNode,
        parent_type: GraphQLNamedType | None,
        scope: Scope,
    ) -> _Source:
        key = (id(selection_set), id(parent_type), id(scope))
        source = self._sources.get(key)
        if source is None:
            collected = self._collect(selection_set, parent_type)
            fields = {
                name: [
                    _Field(node, parent, definition, scope) for node, parent, definition in found
                ]
                for name, found in collected.fields.items()
            }
            self.steps += len(fields)
            uses: dict[tuple[int, int], _Use] = {}
            for node in collected.spreads:
                definition, use_scope, local = self._resolve(node, scope)
                use = uses.setdefault(
                    (id(use_scope), id(definition)), _Use(definition, use_scope, local, node)
                )
                use.node = node  # graphql-core reports the last of equal spreads
            keep = (selection_set, parent_type, scope)
            source = self._sources[key] = _Source(fields, list(uses.values()), keep)
        return source

    def _collect(
        self, selection_set: SelectionSetNode, parent_type: GraphQLNamedType | None
    ) -> _Collected:
        key = (id(selection_set), id(parent_type))
        collected = self._collected.get(key)
        if collected is None:
            collected = self._collected[key] = _Collected({}, [])
            self._collect_into(collected, selection_set, parent_type)
        return collected

    def _collect_into(
        self,
        collected: _Collected,
        selection_set: SelectionSetNode,
        parent_type: GraphQLNamedType | None,
    ) -> None:
        schema = self.context.schema
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                definition = (
                    parent_type.fields.get(name)
                    if is_object_type(parent_type) or is_interface_type(parent_type)
                    else None
                )
                response_name = selection.alias.value if selection.alias else name
                found = collected.fields.setdefault(response_name, [])
                found.append((selection, parent_type, definition))
            elif isinstance(selection, FragmentSpreadNode):
                collected.spreads.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inline_type = type_from_ast(schema, condition) if condition else parent_type
                self._collect_into(collected, selection.selection_set, inline_type)

    def _sub_source(self, field: _Field) -> _Source:
        if field.sub_source is None:
            selection_set = field.node.selection_set
            assert selection_set is not None
            definition = field.definition
            named_type = get_named_type(definition.type) if definition else None
            field.sub_source = self._source(selection_set, named_type, field.scope)
        return field.sub_source

    def _merged_source(self, entry: _Entry) -> _Source:
        """The sub-selection of an entry's field, or of all the fields of its bundle."""
        bundle = entry.bundle
        if bundle is None:
            return self._sub_source(entry.field)
        if bundle.merged is None:
            fields: dict[str, list[_Field]] = {}
            owners: dict[int, int] = {}
            uses: dict[tuple[int, int], _Use] = {}
            for index, field in enumerate(bundle.fields):
                if not field.node.selection_set:
                    continue
                source = self._sub_source(field)
                self.steps += len(source.fields) + len(source.uses)
                for name, found in source.fields.items():
                    fields.setdefault(name, []).extend(found)
                    owners.update((id(child), index) for child in found)
                for use in source.uses:
                    if uses.setdefault((id(use.definition), id(use.scope)), use) is use:
                        owners[id(use)] = index
            bundle.merged = _Source(fields, list(uses.values()), bundle, owners)
        return bundle.merged

    def _fragment_source(self, use: _Use) -> _Source:
        if use.source is None:
            definition = use.definition
            assert definition is not None
            fragment_type = type_from_ast(self.context.schema, definition.type_condition)
            use.source = self._source(definition.selection_set, fragment_type, use.scope)
        return use.source

    def _resolve(
        self, node: FragmentSpreadNode, enclosing: Scope
    ) -> tuple[FragmentDefinitionNode | None, Scope, bool]:
        """The fragment of a spread and the scope of its variables, as graphql-core has.

        Also whether that scope depends on the enclosing one.
        """
        info = self._spreads.get(id(node))
        if info is None:
            signature = self.context.get_fragment_signature_by_name()(node.name.value)
            parts: list[str] = []
            values: list[_Value] = []
            if signature and node.arguments:
                supplied = {argument.name.value: argument.value for argument in node.arguments}
                declared = signature.variable_definitions
                for name in sorted(name for name in supplied if name in declared):
                    value = self._value(supplied[name])
                    parts += (name, value.key)
                    if value.variables:
                        values.append(value)
            key = json.dumps(
                [signature.definition.name.value if signature else None, parts],
                separators=(",", ":"),
                ensure_ascii=False,
            )
            info = self._spreads_by_key.get(key)
            if info is None:
                info = self._spreads_by_key[key] = _SpreadInfo(signature, values)
            self._spreads[id(node)] = info
        # Arguments that use the enclosing fragment's variables tie the use to that scope.
        local = any(_local(value, enclosing) for value in info.values)
        scope_key = id(enclosing) if local else 0
        if scope_key not in info.by_scope:
            info.by_scope[scope_key] = _new_scope(info.signature)
        signature = info.signature
        return (signature.definition if signature else None), info.by_scope[scope_key], local

    # Reporting.

    def _spread_conflict(self, visit: _Visit, first: _Use, second: _Use) -> None:
        assert first.definition is not None
        key = (id(first.definition), frozenset((id(first.scope), id(second.scope))))
        if key in self._reported_spreads:
            return
        self._reported_spreads.add(key)
        visit.spread_errors.append(
            GraphQLError(
                f"Spreads '{_abbreviate(first.node.name.value)}' conflict because"
                f" {self._describe(first.node)} and {self._describe(second.node)}"
                " have different fragment arguments.",
                [first.node, second.node],
            )
        )

    def _describe(self, node: FragmentSpreadNode) -> str:
        """A spread as graphql-core prints it: without dots and directives."""
        name = _abbreviate(node.name.value)
        size = 1
        for argument in node.arguments or ():
            size += 2 + len(argument.name.value) + len(self._value(argument.value).key)
            if size > MAX_FRAGMENT_ARGUMENT_SIZE:
                return name + "(...)"
        spread = FragmentSpreadNode(name=NameNode(value=name), arguments=node.arguments)
        return print_ast(spread)[3:]

    def _errors(self, visit: _Visit) -> Iterator[GraphQLError]:
        """One error per pair of the visit's own fields (or fragments' fields) in conflict.

        Each conflict lies below two distinct fields of the visited selection set; the
        conflicts below one pair make one error, nested as graphql-core nests them.
        """
        top: dict[tuple[int, int], _PairNode] = {}
        for first, second in visit.conflicts.values():
            chain: list[tuple[_Entry, _Entry]] = []
            one: _Entry | None = first
            other: _Entry | None = second
            while one is not None and other is not None:
                chain.append((one, other))
                one, other = one.parent, other.parent
            level = top
            for one, other in reversed(chain):
                if other.ordinal < one.ordinal:
                    one, other = other, one
                node = level.get((id(one), id(other)))
                if node is None:
                    node = level[id(one), id(other)] = _PairNode(one, other)
                level = node.children
        for node in _ordered(top.values(), None):
            reason, fields1, fields2 = self._render(node)
            yield GraphQLError(
                f"Fields '{_abbreviate(node.first.field.response_name)}' conflict because"
                f" {reason}. Use different aliases on the fields to fetch both"
                " if this was intentional.",
                fields1 + fields2,
            )

    def _render(self, node: _PairNode) -> tuple[str, list[FieldNode], list[FieldNode]]:
        """The reason and the nodes of a pair's conflict, as graphql-core words them.

        Like graphql-core, a pair that conflicts itself is not looked into further.
        """
        node1, node2 = node.first.field.node, node.second.field.node
        reason = self._reason(node.first, node.second)
        if reason is not None or not node.children:
            return reason or "", [node1], [node2]
        below = [(child, self._render(child)) for child in _ordered(node.children.values(), node)]
        message = ""
        for child, (reason, _fields1, _fields2) in below:
            name = _abbreviate(child.first.field.response_name)
            message += f"{' and ' if message else ''}subfields '{name}' conflict because {reason}"
            if len(message) > MAX_CONFLICT_DETAIL_LENGTH:
                break
        fields1 = _conflict_nodes(node1, [fields1 for _child, (_r, fields1, _f) in below])
        fields2 = _conflict_nodes(node2, [fields2 for _child, (_r, _f, fields2) in below])
        return _abbreviate(message), fields1, fields2


def _typed(entry: _Entry) -> _Entry | None:
    """The entry, or the first field of its bundle, whose type is known, if any."""
    if entry.bundle is None:
        return entry if entry.field.definition else None
    for index, field in enumerate(entry.bundle.fields):
        if field.definition:
            return entry.member(index)
    return None


def _selects(entry: _Entry) -> bool:
    """Whether the entry's field, or a field of its bundle, has a sub-selection."""
    return entry.bundle.selects if entry.bundle else entry.field.node.selection_set is not None


def _meet(first: _Entry | None, second: _Entry | None) -> bool:
    """Whether two fields can be selected on one object: no parents of different types."""
    while first is not None and second is not None and first is not second:
        one, other = first.field.label, second.field.label
        if one is not None and other is not None and one is not other:
            return False
        first, second = first.parent, second.parent
    return True


def _contents(pieces: list[_Piece], pairs: list[tuple[_Branch, _Branch]]) -> Hashable:
    """What decides the conflicts below a merge, up to which fields lead to it.

    That is the sources each tag brings and, where the fields leading to it lie in
    several branches, which branch each source hangs from and which of those meet.
    Fragment cycles make merges repeat, so this also ends them.
    """
    branches: dict[int, int] = {}
    tags: dict[int, int] = {}
    layout: list[tuple[int, int, int]] = []
    for piece in pieces:
        assert piece.parent is not None
        branch = branches.setdefault(id(piece.parent.branch), len(branches))
        layout.append((id(piece.source), tags.setdefault(piece.tag, len(tags)), branch))
    if len(branches) == 1:
        by_tag: dict[int, set[int]] = {}
        for source, tag, _branch in layout:
            by_tag.setdefault(tag, set()).add(source)
        return frozenset(frozenset(sources) for sources in by_tag.values())
    meeting = frozenset(
        (min(branches[id(one)], branches[id(other)]), max(branches[id(one)], branches[id(other)]))
        for one, other in pairs
        if id(one) in branches and id(other) in branches
    )
    return tuple(layout), meeting


def _new_scope(signature: FragmentSignature | None) -> Scope:
    if not signature or not signature.variable_definitions:
        return None
    return _Scope(frozenset(signature.variable_definitions))


def _local(value: _Value, scope: Scope) -> bool:
    return scope is not None and any(name in scope.variables for name in value.variables)


_VALUE_KINDS: dict[type[ValueNode], str] = {
    BooleanValueNode: "BooleanValue",
    EnumValueNode: "EnumValue",
    FloatValueNode: "FloatValue",
    IntValueNode: "IntValue",
}


def _value_structure(node: ValueNode, variables: list[str]) -> list[Any]:
    """The value as graphql-core serializes it to compare (GraphQL.js kinds, sorted)."""
    if isinstance(node, VariableNode):
        variables.append(node.name.value)
        return ["Variable", node.name.value]
    if isinstance(node, ObjectValueNode):
        fields = sorted(node.fields, key=lambda field: field.name.value)
        return [
            "ObjectValue",
            [[field.name.value, _value_structure(field.value, variables)] for field in fields],
        ]
    if isinstance(node, ListValueNode):
        return ["ListValue", [_value_structure(value, variables) for value in node.values]]
    if isinstance(node, StringValueNode):
        return ["StringValue", node.value, node.block is True]
    if isinstance(node, NullValueNode):
        return ["NullValue", None]
    return [_VALUE_KINDS[type(node)], getattr(node, "value", None)]


def _ordered(nodes: Collection[_PairNode], parent: _PairNode | None) -> list[_PairNode]:
    """Pairs in graphql-core's order: own fields, own against spread, spread against spread."""

    def key(node: _PairNode) -> tuple[int, int, int, int, Ordinal, Ordinal]:
        one, other = node.first, node.second
        if not other.piece.spread:
            return 0, 0, 0, 0, one.ordinal, other.ordinal
        if not one.piece.spread:
            # Below a pair, the first field's own fields come before the second's.
            side = 0 if parent is None or one.parent is parent.first else 1
            return 1, side, other.piece.order, 0, one.ordinal, other.ordinal
        return 2, 0, one.piece.order, other.piece.order, one.ordinal, other.ordinal

    return sorted(nodes, key=key)


def _conflict_nodes(node: FieldNode, below: list[list[FieldNode]]) -> list[FieldNode]:
    nodes = [node]
    for fields in below:
        # Keep the deepest fields when there are too many, as graphql-core does.
        nodes += fields[-(MAX_CONFLICT_NODES - len(nodes)) :]
        if len(nodes) == MAX_CONFLICT_NODES:
            break
    return nodes


def _abbreviate(text: str) -> str:
    if len(text) > MAX_CONFLICT_DETAIL_LENGTH:
        return text[:MAX_CONFLICT_DETAIL_LENGTH] + "..."
    return text
