"""The server's own page queries: one GraphQL document per page of a usage dashboard.

``billing-page.graphql``, ``metrics-page.graphql`` and ``budgets-page.graphql``
fetch everything a page shows in one request each. ``docs/graphql.md`` shows
them with their answers, the benchmarks time them, and their operation names
are among the few the metrics keep as labels (``meterql.web.instruments``).
"""

from __future__ import annotations

from importlib import resources

PAGES = ("billing-page", "metrics-page", "budgets-page")


def page_query(name: str) -> str:
    """The document of page ``name`` (one of :data:`PAGES`), as shipped."""
    if name not in PAGES:
        raise KeyError(name)
    return (resources.files(__name__) / f"{name}.graphql").read_text("utf-8")
