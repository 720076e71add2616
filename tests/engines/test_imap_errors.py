"""The imap engine's typed errors, and preflight."""

from __future__ import annotations

import dataclasses

import pytest
from imapclient import exceptions as imap_errors

from migrations_app.engines import (
    AUTH_FAILED,
    NETWORK,
    OVER_QUOTA,
    SERVER_BUSY,
    TLS_FAILED,
    PermanentError,
    RetryableError,
    get_engine,
)
from migrations_app.engines.imap import _Namespace, engine_error, map_folder_name
from tests.engines import mailgen
from tests.engines.dovecot import free_port


@pytest.fixture
def engine():
    return get_engine("imap", connections=1, timeout=5)


def test_bad_credentials_are_a_permanent_auth_failure(mailbox, engine):
    spec = mailbox.spec()
    spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, password="wrong"))

    with pytest.raises(PermanentError) as caught:
        engine.sync(spec, None, None)
    assert caught.value.code == AUTH_FAILED

    preflight = engine.preflight(spec)
    assert (preflight.ok, preflight.code) == (False, AUTH_FAILED)


def test_a_server_that_is_down_is_a_retryable_network_error(mailbox, engine):
    spec = mailbox.spec()
    spec = dataclasses.replace(spec, target=dataclasses.replace(spec.target, port=free_port()))

    with pytest.raises(RetryableError) as caught:
        engine.sync(spec, None, None)
    assert caught.value.code == NETWORK
    with pytest.raises(RetryableError):
        engine.preflight(spec)


def test_an_unknown_certificate_is_refused(mailbox, engine):
    spec = mailbox.spec()
    options = {k: v for k, v in spec.source.options.items() if k != "ca_file"}
    spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, options=options))

    with pytest.raises(PermanentError) as caught:
        engine.sync(spec, None, None)
    assert caught.value.code == TLS_FAILED


def test_preflight_passes_between_two_good_accounts(mailbox, engine):
    mailbox.src().append("INBOX", b"Subject: hi\r\n\r\nhello\r\n")
    result = engine.preflight(mailbox.spec())
    assert result.ok
    assert (result.source_item_count, result.source_size_bytes) == (1, len(b"Subject: hi\r\n\r\nhello\r\n"))


@pytest.mark.parametrize(
    ("exc", "cls", "code"),
    [
        (
            imap_errors.LoginError("[AUTHENTICATIONFAILED] Authentication failed."),
            PermanentError,
            AUTH_FAILED,
        ),
        (
            imap_errors.IMAPClientError("APPEND command error: NO [OVERQUOTA] Quota exceeded"),
            PermanentError,
            OVER_QUOTA,
        ),
        (
            imap_errors.IMAPClientError("select failed: NO [UNAVAILABLE] try later"),
            RetryableError,
            SERVER_BUSY,
        ),
        (
            imap_errors.IMAPClientError("select failed: NO [INUSE] mailbox locked"),
            RetryableError,
            SERVER_BUSY,
        ),
        (imap_errors.IMAPClientAbortError("Server shutting down."), RetryableError, SERVER_BUSY),
        (imap_errors.IMAPClientAbortError("socket error: EOF"), RetryableError, NETWORK),
        (ConnectionResetError(104, "reset"), RetryableError, NETWORK),
        (TimeoutError("timed out"), RetryableError, NETWORK),
    ],
)
def test_server_answers_map_to_typed_errors(exc, cls, code):
    error = engine_error(exc, "target")
    assert isinstance(error, cls) and error.code == code


def test_folder_names_translate_between_separators_and_prefixes():
    slash, dot, courier = _Namespace("", "/"), _Namespace("", "."), _Namespace("INBOX.", ".")
    assert map_folder_name("Projects/Ward 7/2024", slash, dot) == "Projects.Ward 7.2024"
    assert map_folder_name("Projects.Ward 7.2024", dot, slash) == "Projects/Ward 7/2024"
    assert map_folder_name("v1.2 notes/a", slash, dot) == "v1_2 notes.a"
    assert map_folder_name("INBOX/Receipts", slash, dot) == "INBOX.Receipts"
    assert map_folder_name("Entwürfe", slash, courier) == "INBOX.Entwürfe"
    assert map_folder_name("INBOX.Entwürfe", courier, slash) == "Entwürfe"
    assert map_folder_name("inbox", slash, courier) == "INBOX"


def test_a_target_too_small_blocks_preflight_and_stops_the_sync_as_over_quota(mailbox, engine):
    mailbox.small_target()  # 100 KiB
    mailgen.append(mailbox.src(), "INBOX", [mailgen.message(i, size=30_000) for i in range(8)])

    preflight = engine.preflight(mailbox.spec())
    assert (preflight.ok, preflight.code) == (False, OVER_QUOTA)
    assert preflight.target_free_bytes == 100 * 1024

    with pytest.raises(PermanentError) as caught:
        engine.sync(mailbox.spec(), None, None)
    assert caught.value.code == OVER_QUOTA
    assert caught.value.checkpoint["engine"] == "imap"  # resumable once the quota is raised
