"""GET /healthz: is the database reachable, is the broker reachable, when did a worker last run, are the event
table's partitions in order (PostgreSQL: this and next month made, nothing in the default partition)?

Anonymous callers (load balancers, monitors) get up or down only; the details (database vendor, broker
transport, error class names, worker heartbeat) are for a signed-in programme office: they describe the
deployment to anyone who asks otherwise."""

import time
from datetime import datetime

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from migrations_app.services.event_partitions import event_partitions_status
from migrations_app.tasks import WORKER_HEARTBEAT_KEY
from portal.celery import app as celery_app


def _database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is reported, never raised: this is the health check
        return {"ok": False, "vendor": connection.vendor, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.monotonic() - started) * 1000, 1)}


def _broker() -> dict:
    started = time.monotonic()
    transport = celery_app.conf.broker_url.split("://", 1)[0]
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # reported, not raised
        return {"ok": False, "transport": transport, "error": type(exc).__name__}
    return {"ok": True, "transport": transport, "ms": round((time.monotonic() - started) * 1000, 1)}


def _event_partitions() -> dict:
    try:
        return event_partitions_status()
    except Exception as exc:  # reported, not raised
        return {"ok": False, "error": type(exc).__name__}


def _worker() -> dict:
    seen = cache.get(WORKER_HEARTBEAT_KEY)
    if not seen:
        return {"last_seen": None}
    age = (timezone.now() - datetime.fromisoformat(seen)).total_seconds()
    return {"last_seen": seen, "seconds_ago": round(age)}


@never_cache
@require_GET
def healthz(request):
    database, broker = _database(), _broker()
    healthy = database["ok"] and broker["ok"]
    body = {"status": "ok" if healthy else "unavailable"}
    # not an outage (events are still written and read), but a person must act: said to every monitor as a
    # bare flag, the details only to the programme office
    partitions = _event_partitions() if database["ok"] else {"ok": True}
    if not partitions["ok"]:
        body["attention"] = ["event_partitions"]
    user = request.user
    if user.is_authenticated and user.is_programme_office:
        body.update(database=database, broker=broker, worker=_worker(), event_partitions=partitions)
    return JsonResponse(body, status=200 if healthy else 503)
