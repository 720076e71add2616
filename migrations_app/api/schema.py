"""drf-spectacular hooks."""


def drop_duplicate_routes(endpoints):
    """The bulk upsert is served with and without the router's trailing slash; document the issue's spelling
    (no slash) only."""
    return [e for e in endpoints if not e[0].endswith("/mailboxes/bulk/")]
