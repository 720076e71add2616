from django.core.cache import cache

from migrations_app.tasks import worker_heartbeat


def test_it_tells_anonymous_callers_only_up_or_down(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_it_reports_database_and_broker_as_json_to_the_programme_office(client, officer):
    client.force_login(officer)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] in {"sqlite", "postgresql"}
    assert body["broker"]["ok"] is True
    assert body["broker"]["transport"]


def test_it_needs_no_sign_in(client, db):
    assert client.get("/healthz").status_code == 200


def test_it_answers_503_when_the_broker_is_unreachable(client, officer, monkeypatch):
    from portal.celery import app

    unreachable = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    # Celery gives the CELERY_BROKER_URL environment variable precedence over its configuration (CI sets it)
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)
    monkeypatch.setitem(app.conf, "broker_url", unreachable)
    assert client.get("/healthz").json() == {"status": "unavailable"}
    client.force_login(officer)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


def test_it_shows_when_a_worker_last_ran(client, officer):
    client.force_login(officer)
    cache.delete("portal:worker-heartbeat")
    assert client.get("/healthz").json()["worker"]["last_seen"] is None
    worker_heartbeat()
    assert client.get("/healthz").json()["worker"]["seconds_ago"] <= 1
