"""Logging filters (settings.LOGGING); imported while logging is configured, before the apps are ready."""


class QuietClientErrors:
    """A logging filter: a 403 or 404 is the portal working as intended, so it is logged as one line, without the
    traceback of the PermissionDenied or Http404 that produced it."""

    def filter(self, record) -> bool:
        if getattr(record, "status_code", None) in (403, 404):
            record.exc_info = None
            record.exc_text = None
        return True
