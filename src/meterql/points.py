"""A request's budget of series points: what keeps one query from asking for gigabytes.

``usage`` answers any grain over up to 366 days, by group, and can be
selected under every instance of a page and under aliases. Each is fine
alone; together, a year of hours for 50 instances under 50 aliases would be
hundreds of millions of objects. The depth, alias and token limits bound
the shape of a query, not the size of its answers: this bounds the size.

A point is one bucket of one group (or one bucket, ungrouped). The budget is
per request (``Context.points``). Every ``usage`` answer is charged *before*
its statement runs, with the most it could return: its buckets (known from
the arguments) times the most groups it could have (the account's
instances or models with usage around the range, from a small count, or 1
when ungrouped or when the node is itself the group). So a query whose
answers could not fit is refused without reading its usage or building
its objects. Nothing is given back when an answer holds less than its
bound: whether a query fits then depends on its arguments and the data,
never on the order in which its fields happen to be read.

The refusal is ``BAD_USER_INPUT`` and names the ways out (a shorter range,
a coarser grain, fewer groups, or the CSV export, which streams in chunks
and has no such bound). Once any ``usage`` of a request has been refused,
the request's batched usage reads are skipped (``refused``): the answer is
an error anyway, and its siblings' statements would only cost time. A
skipped read answers with that first refusal, so the error a client sees is
the refusal whichever field's error nulls the answer first.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterql.errors import InvalidInput

DEFAULT_POINTS = 200_000


@dataclass(slots=True)
class PointBudget:
    left: int = DEFAULT_POINTS
    # The first refusal's points asked and points left, once there was one.
    refused_at: tuple[int, int] | None = None

    @property
    def refused(self) -> bool:
        return self.refused_at is not None

    def check(self, points: int) -> None:
        """Refuse the request now if ``points`` alone is over what is left."""
        if points > self.left:
            if self.refused_at is None:
                self.refused_at = (points, self.left)
            raise _refusal(points, self.left)

    def refusal(self) -> InvalidInput:
        """The request's first refusal, again: what a ``usage`` whose read was
        skipped after it answers, whichever field's error reaches the client."""
        assert self.refused_at is not None
        return _refusal(*self.refused_at)

    def charge(self, points: int) -> None:
        """Take ``points`` from what is left, or refuse the request (nothing taken)."""
        self.check(points)
        self.left -= points


def _refusal(points: int, left: int) -> InvalidInput:
    message = (
        f"This request asks for more usage points than it may (up to {points:,} more, "
        f"{left:,} left of the request's budget): use a shorter range, a coarser granularity "
        "or fewer groups, or GET /v1/export/usage.csv, which streams"
    )
    return InvalidInput(
        message, [{"type": "too_many_points", "loc": ["usage"], "msg": message, "input": points}]
    )
