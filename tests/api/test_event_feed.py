"""The event feed and the webhook fan-out lose nothing when workers commit out of order: event ids are handed
out at INSERT, so a transaction can commit a lower id after another has committed a higher one. Paging by
id skipped such an event for good; the feed now serves only what lies below the visibility horizon, in
transaction order (selectors/feed.py)."""

import time

import psycopg
import pytest
from django.db import connection

from migrations_app.models import Event, WebhookDelivery
from migrations_app.services.webhooks import webhook_create, webhooks_fan_out
from tests.webhook_receiver import allow_receiver

SECRET = "whsec_0123456789abcdefghijklmnop"


def _connect() -> psycopg.Connection:
    """A second session on the test database, as a worker process would have."""
    s = connection.settings_dict
    return psycopg.connect(
        dbname=s["NAME"], user=s["USER"], password=s["PASSWORD"], host=s["HOST"], port=s["PORT"] or 5432
    )


def _insert_event(session: psycopg.Connection, action: str, organisation_id: int) -> int:
    """What services.events.event_record sends, inside the session's open transaction."""
    return session.execute(
        "INSERT INTO migrations_app_event"
        " (created_at, action, organisation_id, subject, from_state, to_state, message, data)"
        " VALUES (now(), %s, %s, '', '', '', '', '{}') RETURNING id",
        [action, organisation_id],
    ).fetchone()[0]


class Consumer:
    """A script following /api/v1/events the documented way: keep `after` from each answer."""

    def __init__(self, client, after: int):
        self.client, self.after, self.seen = client, after, []

    def poll(self) -> list[str]:
        got = []
        while True:
            body = self.client.get(f"/api/v1/events/?after={self.after}&page_size=2").json()
            got += [e["action"] for e in body["results"]]
            self.after = body["after"]
            if not body["results"]:
                break
        self.seen += got
        return got

    def poll_until(self, count: int, timeout: float = 10) -> list[str]:
        """Poll until `count` events came. The horizon is cluster-wide: a neighbour's transaction that ends
        between our snapshot and our look at pg_stat_activity holds it back for a moment (never loses)."""
        got, deadline = self.poll(), time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            got += self.poll()
        return got


def fan_out_until(count: int, timeout: float = 10) -> int:
    made, deadline = webhooks_fan_out(), time.monotonic() + timeout
    while made < count and time.monotonic() < deadline:
        time.sleep(0.05)
        made += webhooks_fan_out()
    return made


@pytest.mark.django_db(transaction=True)
def test_events_committed_out_of_order_reach_the_feed_and_the_webhooks_exactly_once(
    postgres, api, officer, admin_a, org_a, settings
):
    allow_receiver(settings, "http://127.0.0.1:9/")
    consumer = Consumer(api(officer), after=0)
    webhook_create(
        actor=admin_a, organisation=org_a, url="http://127.0.0.1:9/", secret=SECRET, event_types=[]
    )
    assert consumer.poll_until(2) == ["api_token.created", "webhook.created"]
    a, b, c = _connect(), _connect(), _connect()
    try:
        a.execute("SELECT pg_current_xact_id()")  # worker A's transaction began first ...
        b_id = _insert_event(b, "b.first-id", org_a.pk)  # ... B takes the lowest id ...
        c_id = _insert_event(c, "c.committed-first", org_a.pk)
        c.commit()  # ... and C, with a higher id, commits first

        # paging by id would hand out C now, move the cursor past B's id, and never serve B
        assert consumer.poll() == []
        assert webhooks_fan_out() == 0

        a_id = _insert_event(a, "a.highest-id", org_a.pk)
        a.commit()  # A (begun first) commits: nothing still running can fall behind it
        assert consumer.poll_until(1) == ["a.highest-id"]
        assert fan_out_until(1) == 1

        b.commit()
        assert consumer.poll_until(2) == ["b.first-id", "c.committed-first"]
        assert fan_out_until(2) == 2
    finally:
        for session in (a, b, c):
            session.close()

    assert b_id < c_id < a_id
    assert consumer.poll() == [] and webhooks_fan_out() == 0
    assert sorted(consumer.seen) == sorted(
        ["api_token.created", "webhook.created", "a.highest-id", "b.first-id", "c.committed-first"]
    )
    delivered = WebhookDelivery.objects.filter(kind="event").values_list("event_id", flat=True)
    assert sorted(delivered) == sorted([a_id, b_id, c_id])


@pytest.mark.django_db(transaction=True)
def test_a_transaction_in_another_database_does_not_hold_the_feed_back(postgres, api, officer, org_a):
    """Transaction ids are shared by the whole cluster; only this database's transactions can add events."""
    consumer = Consumer(api(officer), after=0)
    assert consumer.poll_until(1) == ["api_token.created"]
    s = connection.settings_dict
    with psycopg.connect(dbname="postgres", user=s["USER"], password=s["PASSWORD"], host=s["HOST"]) as other:
        other.execute("SELECT pg_current_xact_id()")  # a long write transaction next door
        Event.objects.create(action="mailbox.migrated", organisation=org_a)
        assert consumer.poll_until(1) == ["mailbox.migrated"]
        other.rollback()


def test_an_unknown_cursor_resumes_after_the_events_below_it(api, officer, org_a):
    client = api(officer)  # (making a token records an event)
    first = Event.objects.create(action="first", organisation=org_a)
    second = Event.objects.create(action="second", organisation=org_a)
    body = client.get(f"/api/v1/events/?after={first.pk}").json()
    assert [e["id"] for e in body["results"]] == [second.pk]
    body = client.get(f"/api/v1/events/?after={second.pk + 1000}").json()
    assert body["results"] == [] and body["after"] == second.pk + 1000


@pytest.mark.parametrize("after", [str(2**63), str(-(2**63)), "19904870423465637909102592"])
def test_a_cursor_no_event_can_have_is_a_clear_400(api, officer, after):
    """Found by the schema fuzzing: a number past a bigint reached the database (a 500 on SQLite)."""
    response = api(officer).get(f"/api/v1/events/?after={after}")
    assert response.status_code == 400
    assert "Send the id of the last event you have" in str(response.json())
