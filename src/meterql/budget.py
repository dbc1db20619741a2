"""A request's budget of series points: what keeps one query from asking for gigabytes.

``usage`` answers any grain over up to 366 days, by group, and can be
selected under every instance of a page and under aliases. Each is fine
alone; together, a year of hours for 50 instances under 50 aliases would be
hundreds of millions of objects. The depth, alias and token limits bound
the shape of a query, not the size of its answers: this bounds the size.

A point is one bucket of one group (or one bucket, ungrouped). The budget is
per request (``Context.points``), spent by every ``usage`` answer before its
objects are built; the refusal is ``BAD_USER_INPUT`` and names the ways out
(a shorter range, a coarser grain, fewer groups, or the CSV export, which
streams in chunks and has no such bound).
"""

from __future__ import annotations

from dataclasses import dataclass

from meterql.errors import InvalidInput

DEFAULT_POINTS = 200_000


@dataclass(slots=True)
class PointBudget:
    left: int = DEFAULT_POINTS

    def check(self, points: int) -> None:
        """Refuse now if ``points`` alone is over what is left (before any query)."""
        if points > self.left:
            raise _refusal(points, self.left)

    def spend(self, points: int) -> None:
        self.check(points)
        self.left -= points


def _refusal(points: int, left: int) -> InvalidInput:
    message = (
        f"This request asks for more usage points than it may ({points:,} more, {left:,} "
        "left of the request's budget): use a shorter range, a coarser granularity or "
        "fewer groups, or GET /v1/export/usage.csv, which streams"
    )
    return InvalidInput(
        message, [{"type": "too_many_points", "loc": ["usage"], "msg": message, "input": points}]
    )
