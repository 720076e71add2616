"""The graph engine: a real Dovecot source copied into the fake Exchange Online (tests/fakes/microsoft.py)."""

from __future__ import annotations

import base64
import datetime
import time

import pytest

from migrations_app.engines import TARGET_MISSING, THROTTLED, RetryableError, get_engine
from migrations_app.engines.graph import MARKER, PR_MESSAGE_DELIVERY_TIME, PR_MESSAGE_FLAGS
from tests.engines import mailgen
from tests.engines.graph_fixtures import fake, graphbox, when  # noqa: F401 - fixtures
from tests.fakes.microsoft import FakeCrash, messages_in


def _engine(fake, **options):  # noqa: F811
    return get_engine("graph", http_client=fake.session(), max_wait=30, **options)


def _seed(box, folder: str, count: int, *, start: int = 0, seen_every: int = 2, size: int = 1500):
    src = box.src()
    if folder.upper() != "INBOX":
        src.create_folder(folder)
    mailgen.append(
        src,
        folder,
        [
            {
                "msg": mailgen.message(n, size=size),
                "flags": (b"\\Seen",) if n % seen_every == 0 else (),
                "date": when(n),
            }
            for n in range(start, start + count)
        ],
    )


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("mode", ["json", "mime"])
def test_it_copies_folders_dates_and_read_state_as_received_mail(graphbox, fake, mode):  # noqa: F811
    _seed(graphbox, "INBOX", 12)
    _seed(graphbox, "Sent", 3, start=100)
    _seed(graphbox, "Projects/Ward 7", 4, start=200)
    _seed(graphbox, "INBOX/Referrals", 2, start=300)

    result = _engine(fake).sync(graphbox.spec(import_mode=mode))

    assert result.items_copied == 21
    inbox = messages_in(fake, graphbox.upn, "inbox")
    assert len(inbox) == 12
    assert len(messages_in(fake, graphbox.upn, "sentitems")) == 3  # well-known folder by name
    assert len(messages_in(fake, graphbox.upn, "Projects", "Ward 7")) == 4  # hierarchy kept
    assert len(messages_in(fake, graphbox.upn, "inbox", "Referrals")) == 2
    for message in inbox:
        n = int(message["subject"].rsplit(" ", 1)[1])
        assert message["isDraft"] is False
        assert message["isRead"] is (n % 2 == 0)
        assert message["internetMessageId"].startswith(f"<msg-{n}-")
        assert message["_props"][MARKER.lower()].startswith(message["internetMessageId"] + "|")
        if mode == "json":
            assert message["receivedDateTime"] == _iso(when(n))  # the source's INTERNALDATE
            assert int(message["_props"][PR_MESSAGE_FLAGS.lower()]) & 8 == 0
            assert message["_props"][PR_MESSAGE_DELIVERY_TIME.lower()] == _iso(when(n))
        else:
            assert message["_mime"] == mailgen.message(n, size=1500)  # byte for byte
    verified = _engine(fake).verify(graphbox.spec(import_mode=mode))
    assert verified.ok, verified.differences
    # creates go 20 to a $batch: 21 messages in 4 folders take a handful of round trips, not 21 (or 42)
    assert fake.http_requests[("POST", "graph.microsoft.com", "messages")] == 0
    assert fake.http_requests[("POST", "graph.microsoft.com", "$batch")] <= 4 + (4 if mode == "mime" else 0)


def test_attachments_arrive_inline_and_through_upload_sessions(graphbox, fake):  # noqa: F811
    src = graphbox.src()
    big = mailgen.message(1, size=5_000_000)  # a ~5 MB scan: over the inline limit
    small = mailgen.message(2, size=60_000)
    mailgen.append(
        src,
        "INBOX",
        [{"msg": big, "flags": (), "date": when(1)}, {"msg": small, "flags": (), "date": when(2)}],
    )

    result = _engine(fake).sync(graphbox.spec())

    assert result.items_copied == 2
    by_subject = {m["subject"]: m for m in messages_in(fake, graphbox.upn, "inbox")}
    scan = by_subject["Ward round notes 1"]["attachments"][0]
    assert scan["name"] == "scan-1.pdf"
    assert base64.b64decode(scan["contentBytes"]) in _decoded_attachment(big)
    assert not by_subject["Ward round notes 1"]["_props"][MARKER.lower()].startswith("pending:")
    assert by_subject["Ward round notes 2"]["attachments"][0]["name"] == "scan-2.pdf"


def _decoded_attachment(raw: bytes) -> bytes:
    import email
    import email.policy

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return next(parsed.iter_attachments()).get_payload(decode=True)


@pytest.mark.parametrize("mode", ["json", "mime"])
def test_a_crash_and_a_resume_never_duplicate(graphbox, fake, mode):  # noqa: F811
    _seed(graphbox, "INBOX", 90)
    saved = {}

    def progress(items, size, checkpoint):
        saved["checkpoint"] = checkpoint

    fake.fail_after(3)  # the worker dies while sending its fourth batch
    with pytest.raises(Exception) as crash:
        _engine(fake, batch_messages=10).sync(graphbox.spec(import_mode=mode), progress=progress)
    assert (
        isinstance(crash.value, FakeCrash)
        or isinstance(crash.value.__cause__, FakeCrash)
        or "worker died" in str(crash.value)
    )
    made = len(messages_in(fake, graphbox.upn, "inbox"))
    assert 0 < made < 90
    fake.fail_after(None)

    result = _engine(fake).sync(graphbox.spec(import_mode=mode), saved.get("checkpoint"), progress)

    inbox = messages_in(fake, graphbox.upn, "inbox")
    assert len(inbox) == 90
    assert len({m["internetMessageId"] for m in inbox}) == 90
    assert result.checkpoint["items"] >= 90 - result.folders[0].items_already_there
    again = _engine(fake).sync(graphbox.spec(import_mode=mode), result.checkpoint)
    assert again.items_copied == 0
    assert len(messages_in(fake, graphbox.upn, "inbox")) == 90


def test_a_rerun_without_a_checkpoint_finds_what_is_there(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 15)
    _engine(fake).sync(graphbox.spec())

    result = _engine(fake).sync(graphbox.spec(), None)

    assert result.items_copied == 0
    assert result.folders[0].items_already_there == 15
    assert len(messages_in(fake, graphbox.upn, "inbox")) == 15


def test_a_throttling_storm_stays_within_the_limits(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 60)
    fake.op_time = 0.02  # each call takes a while, so they overlap
    fake.throttle(every=4, retry_after="1")  # every fourth call is refused with 429, Retry-After: 1

    engine = _engine(fake, batch_messages=5)
    result = engine.sync(graphbox.spec())

    assert result.items_copied == 60
    assert len(messages_in(fake, graphbox.upn, "inbox")) == 60
    assert fake.max_concurrency[graphbox.mailbox.user_id] <= 4
    assert fake.max_concurrency[graphbox.mailbox.user_id] >= 2  # it did run requests side by side
    assert fake.over_limit == 0


def test_throttling_beyond_the_wait_budget_is_a_retryable_error_with_the_wait(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 3)
    fake.throttle(count=1000, retry_after="30")

    with pytest.raises(RetryableError) as error:
        get_engine("graph", http_client=fake.session(), max_wait=5).sync(graphbox.spec())

    assert error.value.code == THROTTLED
    assert error.value.retry_after == 30


def test_an_expired_token_is_refreshed(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 10)
    engine = _engine(fake, batch_messages=5)
    engine.sync(graphbox.spec())
    issued = fake.tokens_issued["client_credentials"]
    _seed(graphbox, "INBOX", 5, start=50)
    fake.expire_tokens()

    result = engine.sync(graphbox.spec())

    assert result.items_copied == 15 or len(messages_in(fake, graphbox.upn, "inbox")) == 15
    assert fake.tokens_issued["client_credentials"] == issued + 1


def test_one_token_serves_many_mailboxes_of_an_endpoint(dovecots, fake):  # noqa: F811
    from tests.engines.graph_fixtures import GraphBox

    engine = _engine(fake)
    for _ in range(3):
        box = GraphBox(dovecots, fake)
        _seed(box, "INBOX", 2)
        engine.sync(box.spec())
        box.close()
    assert fake.tokens_issued["client_credentials"] == 1


def test_preflight_reports_the_mailbox_kind_and_a_missing_user(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 2)
    graphbox.mailbox.purpose = "shared"
    result = _engine(fake).preflight(graphbox.spec())
    assert result.ok and result.target_kind == "shared" and result.source_item_count == 2

    fake.mailboxes.pop(graphbox.mailbox.user_id)
    missing = _engine(fake).preflight(graphbox.spec())
    assert missing.ok is False and missing.code == TARGET_MISSING


def test_a_wrong_client_secret_is_an_auth_failure(graphbox, fake):  # noqa: F811
    from dataclasses import replace

    spec = graphbox.spec()
    spec = replace(spec, target=replace(spec.target, password="not-the-secret"))
    result = _engine(fake).preflight(spec)
    assert result.ok is False and result.code == "AUTH_FAILED"
    assert "7000215" in result.message


def test_a_certificate_credential_gets_app_only_tokens(graphbox, fake):  # noqa: F811
    from cryptography.hazmat.primitives import hashes

    from tests.identity.certificates import make_client_certificate

    certificate, pem, _ = make_client_certificate()
    fake.add_certificate(certificate)
    key = pem.split(b"-----BEGIN CERTIFICATE")[0].decode()
    _seed(graphbox, "INBOX", 2)
    spec = graphbox.spec()
    from dataclasses import replace

    target = replace(
        spec.target,
        password=key,
        options={"certificate_thumbprint": certificate.fingerprint(hashes.SHA1()).hex()},  # noqa: S303
    )

    result = _engine(fake).sync(replace(spec, target=target))

    assert result.items_copied == 2
    assert fake.tokens_issued["client_credentials"] == 1


def test_two_source_folders_into_one_well_known_folder_verify_together(graphbox, fake):  # noqa: F811
    _seed(graphbox, "Sent", 2)
    _seed(graphbox, "Sent Items", 3, start=10)
    _seed(graphbox, "Junk", 1, start=20)

    _engine(fake).sync(graphbox.spec())

    assert len(messages_in(fake, graphbox.upn, "sentitems")) == 5
    assert len(messages_in(fake, graphbox.upn, "junkemail")) == 1
    verified = _engine(fake).verify(graphbox.spec())
    assert verified.ok
    sent = next(f for f in verified.folders if f.target_folder == "sentitems")
    assert (sent.folder, sent.source_count, sent.target_count) == ("Sent + Sent Items", 5, 5)


def test_the_upload_limit_paces_the_copy_and_its_window_outlives_the_run(graphbox, fake):  # noqa: F811
    _seed(graphbox, "INBOX", 30, size=3000)  # ~90 KB in all
    fake.limit_uploads(40_000, window_seconds=1.0)  # a stand-in for 150 MB in 5 minutes
    limited = get_engine(
        "graph",
        http_client=fake.session(),
        connections=2,
        batch_messages=5,
        upload_budget_bytes=40_000,
        upload_window=1.0,
    )
    started = time.monotonic()

    result = limited.sync(graphbox.spec(import_mode="mime"))

    assert result.items_copied == 30  # no error: it waited for the budget instead
    assert time.monotonic() - started >= 1.0  # ~90 KB at 40 KB a second
    assert fake.upload_over_budget == 0 and fake.upload_peak[graphbox.mailbox.user_id] <= 40_000
    window = result.checkpoint["writer"]["uploads"]
    assert window and sum(n for _, n in window) <= 40_000  # the window as it was, for the next run

    # The next run (another worker, say) starts from that window rather than from an empty one.
    _seed(graphbox, "INBOX", 10, start=100, size=3000)
    again = get_engine(
        "graph", http_client=fake.session(), batch_messages=5, upload_budget_bytes=40_000, upload_window=1.0
    ).sync(graphbox.spec(import_mode="mime"), result.checkpoint)
    assert again.items_copied == 10
    assert fake.upload_over_budget == 0


def test_a_forwarded_message_arrives_as_an_item_attachment_not_an_empty_file(graphbox, fake):  # noqa: F811
    inner = mailgen.message(5, subject="Referral from Ward 7")
    outer = (
        b"From: Alice Example <alice@example.nhs.uk>\r\nTo: Bob Example <bob@example.nhs.uk>\r\n"
        b"Subject: Fwd: Referral from Ward 7\r\nMessage-ID: <fwd-1@example.nhs.uk>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
        b"See below.\r\n--b1\r\nContent-Type: message/rfc822\r\n"
        b'Content-Disposition: attachment; filename="referral.eml"\r\n\r\n' + inner + b"\r\n--b1--\r\n"
    )
    mailgen.append(graphbox.src(), "INBOX", [{"msg": outer, "flags": (), "date": when(1)}])

    _engine(fake).sync(graphbox.spec())

    [message] = messages_in(fake, graphbox.upn, "inbox")
    [attachment] = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert attachment["item"]["subject"] == "Referral from Ward 7"
    assert "notes for item 5" in attachment["item"]["body"]["content"]


def test_the_end_of_an_upload_window_is_filled_with_the_part_of_a_batch_that_fits(graphbox, fake):  # noqa: F811
    from migrations_app.engines.graph.writer import GraphWriter
    from migrations_app.engines.graph_client import GraphClient
    from migrations_app.engines.pipeline.protocols import Item, Payload
    from tests.engines.graph_fixtures import graph_endpoint

    graph = GraphClient(graph_endpoint(fake), graphbox.upn, upload_budget_bytes=10_000, upload_window=5.0)
    writer = GraphWriter(lambda: graph, graphbox.upn, mode="mime", shared={"graph": graph})
    batch = [(Item(n, 1000, key=f"k{n}"), Payload(b"x" * 1000)) for n in range(6)]

    graph.upload_done(graph.reserve_upload(6_000))  # 4,000 bytes left for 5 s
    assert [len(part) for part in writer._fitting(batch)] == [4, 2]  # 4 now, 2 when room comes

    graph.upload_done(graph.reserve_upload(3_500))  # 500 left: under half the batch
    assert [len(part) for part in writer._fitting(batch)] == [6]  # not worth a request: waits, goes whole
