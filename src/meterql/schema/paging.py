"""What every connection of the graph shares: where a page stands in its list."""

from __future__ import annotations

from collections.abc import Sequence

import strawberry


@strawberry.type(description="Where a page of a connection stands in the whole list.")
class PageInfo:
    end_cursor: str | None = strawberry.field(description="The last edge's cursor; null if none.")
    has_next_page: bool
    has_previous_page: bool = strawberry.field(description="True when paging with `after`.")
    start_cursor: str | None


def page_info(cursors: Sequence[str], more: bool, after: str | None) -> PageInfo:
    """A keyset page's info: its edges' cursors, whether a row follows it, and the
    ``after`` it was asked with."""
    return PageInfo(end_cursor=cursors[-1] if cursors else None, has_next_page=more,
                    has_previous_page=after is not None,
                    start_cursor=cursors[0] if cursors else None)
