"""The Graph client's limits on their own: the upload window, back-off without Retry-After, and the tenant."""

import time

import pytest

from migrations_app.engines import SERVER_BUSY, PermanentError, RetryableError
from migrations_app.engines.graph_client import GraphClient, authority_for
from tests.engines.graph_fixtures import fake, graph_endpoint  # noqa: F401 - fixture


def test_uploads_wait_for_room_in_the_window_however_long_the_wait(fake):  # noqa: F811
    client = GraphClient(graph_endpoint(fake), "u@x", upload_budget_bytes=1000, upload_window=1.0, max_wait=5)
    client.upload_done(client.reserve_upload(600))
    started = time.monotonic()
    client.upload_done(client.reserve_upload(600))  # waits until the first leaves the 1 s window
    assert 0.8 <= time.monotonic() - started < 3

    # Longer than max_wait (the Retry-After we sit out in-line): still pacing, never an error (issue 12).
    strict = GraphClient(
        graph_endpoint(fake), "u@x", upload_budget_bytes=1000, upload_window=2.0, max_wait=0.1
    )
    strict.upload_done(strict.reserve_upload(900))
    started = time.monotonic()
    strict.upload_done(strict.reserve_upload(900))
    assert 1.5 <= time.monotonic() - started < 4
    assert strict.stats["paced_seconds"] > 1


def test_an_upload_in_flight_counts_until_it_has_arrived(fake):  # noqa: F811
    client = GraphClient(graph_endpoint(fake), "u@x", upload_budget_bytes=1000, upload_window=0.2)
    pending = client.reserve_upload(600)
    time.sleep(0.3)  # older than the window, but still being sent
    assert [n for _, n in client.upload_state()] == []  # not in the saved window until it arrived...
    client.upload_done(pending)
    assert [n for _, n in client.upload_state()] == [600]  # ...and counted from when it did


def test_a_503_without_retry_after_backs_off_then_gives_a_retryable_error(fake):  # noqa: F811
    mailbox = fake.add_user("a@trust.onmicrosoft.com")
    fake.throttle(count=100, status=503, retry_after=None)
    client = GraphClient(
        graph_endpoint(fake), mailbox.upn, http_client=fake.session(), max_wait=1.5, backoff_base=0.2
    )
    started = time.monotonic()
    with pytest.raises(RetryableError) as error:
        client.get(f"users/{mailbox.upn}/mailboxSettings")
    assert error.value.code == SERVER_BUSY
    assert 0.2 < time.monotonic() - started < 3  # it waited (exponential, with jitter) before giving up
    assert client.stats["throttled"] >= 2


def test_it_never_asks_a_multi_tenant_authority():
    for tenant in ("", "common", "organizations", "consumers"):
        with pytest.raises(PermanentError):
            authority_for(tenant)


def test_more_than_four_concurrent_requests_per_mailbox_is_refused(fake):  # noqa: F811
    with pytest.raises(ValueError):
        GraphClient(graph_endpoint(fake), "u@x", concurrency=5)


def test_a_request_waiting_for_upload_room_holds_no_request_slot(fake):  # noqa: F811
    import threading

    mailbox = fake.add_user("slots@trust.onmicrosoft.com")
    client = GraphClient(
        graph_endpoint(fake),
        mailbox.upn,
        http_client=fake.session(),
        concurrency=1,
        upload_budget_bytes=1000,
        upload_window=1.5,
    )
    client.upload_done(client.reserve_upload(900))  # the window is full for 1.5 s
    waited = []

    def upload():
        started = time.monotonic()
        client.request("GET", f"users/{mailbox.upn}", upload=500)  # stands in for an upload
        waited.append(time.monotonic() - started)

    uploader = threading.Thread(target=upload)
    uploader.start()
    time.sleep(0.1)
    started = time.monotonic()
    client.get(f"users/{mailbox.upn}/mailboxSettings")  # the only slot is free meanwhile
    assert time.monotonic() - started < 0.5
    uploader.join()
    assert waited and 1.2 <= waited[0] < 3  # the upload went when the 900 bytes left the window


def test_the_wait_for_room_is_exact_and_the_room_is_what_is_left(fake):  # noqa: F811
    client = GraphClient(graph_endpoint(fake), "u@x", upload_budget_bytes=1000, upload_window=2.0)
    client.upload_done(client.reserve_upload(700))
    assert client.upload_room() == 300
    assert client.upload_wait(300) == 0
    assert 1.8 < client.upload_wait(301) <= 2.0  # until the 700 bytes leave, not a poll
    assert client.try_reserve(301) is None and client.try_reserve(300) is not None
    assert client.upload_room() == 0
