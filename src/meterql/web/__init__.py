"""The HTTP plumbing around the schema: the GraphQL view, the pages and static files,
request ids, the access log and metrics, health probes, and error answers.

Nothing here knows money, windows or plans: the domain is in the modules
beside this package, and ``app.py`` assembles both.
"""
