"""The legacy ``/v1`` REST API, as fixed GraphQL documents over the one schema.

No SQL and no arithmetic here: a route table, its documents, query-string
coercion and the mapping of errors to HTTP statuses.
"""
