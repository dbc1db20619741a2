"""What every connection of the graph shares: where a page stands in its list."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Where a page of a connection stands in the whole list.")
class PageInfo:
    end_cursor: str | None = strawberry.field(description="The last edge's cursor; null if none.")
    has_next_page: bool
    has_previous_page: bool = strawberry.field(description="True when paging with `after`.")
    start_cursor: str | None
