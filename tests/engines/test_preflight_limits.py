"""Pre-flight of the real engines blocks what cannot be copied, with the codes the blocked-mailbox table
explains: NOT_LICENSED (Graph's MailboxNotEnabledForRESTAPI), OVER_QUOTA (the mailbox against the target's
quota where the API says it) and ITEM_TOO_LARGE (a source message over the target's per-message limit)."""

from __future__ import annotations

import dataclasses

import pytest

from migrations_app.engines import OVER_QUOTA, PermanentError, get_engine
from migrations_app.engines.base import ITEM_TOO_LARGE, NOT_LICENSED
from migrations_app.engines.graph.quota import GB
from migrations_app.services.readiness.codes import REASONS
from tests.engines import mailgen
from tests.engines.graph_fixtures import fake, graphbox  # noqa: F401 - fixtures


def _graph(fake):  # noqa: F811
    return get_engine("graph", http_client=fake.session(), max_wait=30)


def _seed(src, sizes: list[int], folder: str = "INBOX") -> None:
    if folder != "INBOX":
        src.create_folder(folder)
    mailgen.append(
        src,
        folder,
        [mailgen.message(n, size=s, subject=f"Scan {n} ({s} bytes)") for n, s in enumerate(sizes)],
    )


def test_an_unlicensed_graph_user_is_not_licensed_in_preflight_and_in_a_copy(graphbox, fake):  # noqa: F811
    graphbox.mailbox.licensed = False
    _seed(graphbox.src(), [1500])

    result = _graph(fake).preflight(graphbox.spec())
    assert (result.ok, result.code) == (False, NOT_LICENSED)
    assert "no Exchange Online mailbox" in result.message and "licence" in result.message
    assert NOT_LICENSED in REASONS

    with pytest.raises(PermanentError) as error:  # a licence removed after pre-flight
        _graph(fake).sync(graphbox.spec())
    assert error.value.code == NOT_LICENSED
    assert "MailboxNotEnabledForRESTAPI" in error.value.message


def test_a_front_line_licence_is_too_small_for_a_big_mailbox(graphbox, fake):  # noqa: F811
    _seed(graphbox.src(), [1500])
    graphbox.mailbox.plans = ("EXCHANGE_S_DESKLESS",)  # F3: a 2 GB mailbox
    spec = dataclasses.replace(
        graphbox.spec(), size_bytes=3 * GB, item_count=40_000
    )  # the inventory's figure

    result = _graph(fake).preflight(spec)
    assert (result.ok, result.code) == (False, OVER_QUOTA)
    assert result.target_free_bytes == 2 * GB and result.source_size_bytes == 3 * GB
    assert "2048.0 MB quota" in result.message

    graphbox.mailbox.plans = ("EXCHANGE_S_ENTERPRISE",)  # E3: 100 GB
    fits = _graph(fake).preflight(spec)
    assert fits.ok and fits.target_free_bytes == 100 * GB


def test_a_stated_quota_is_compared_with_what_the_source_really_holds(graphbox, fake):  # noqa: F811
    _seed(graphbox.src(), [20_000] * 5)
    small = _graph(fake).preflight(graphbox.spec(quota_bytes=50_000))
    assert (small.ok, small.code) == (False, OVER_QUOTA)
    assert small.source_item_count == 5 and small.source_size_bytes > 50_000

    assert _graph(fake).preflight(graphbox.spec(quota_bytes=10_000_000)).ok


def test_a_message_over_the_graph_limit_blocks_the_mailbox_naming_it(graphbox, fake):  # noqa: F811
    src = graphbox.src()
    _seed(src, [3_000, 90_000])
    _seed(src, [120_000], folder="Scans")
    # Exchange Online's 150 MB, scaled down: the same SEARCH LARGER on the source.
    result = _graph(fake).preflight(graphbox.spec(max_message_bytes=60_000))
    assert (result.ok, result.code) == (False, ITEM_TOO_LARGE)
    assert result.message.startswith("2 message(s) are larger than the target accepts")
    assert result.message.index("Scans: 'Scan 0 (120000 bytes)'") < result.message.index("INBOX: 'Scan 1")
    assert "Scan 0 (3000" not in result.message
    listed = [(i["folder"], i["subject"]) for i in result.details["too_large"]]  # kept for the mailbox page
    assert listed == [("Scans", "Scan 0 (120000 bytes)"), ("INBOX", "Scan 1 (90000 bytes)")]
    assert all(i["size"] > 60_000 for i in result.details["too_large"])

    assert _graph(fake).preflight(graphbox.spec(max_message_bytes=200_000)).ok


def test_imap_preflight_finds_messages_over_the_targets_limit(mailbox):
    _seed(mailbox.src(), [2_000, 70_000])
    engine = get_engine("imap", connections=1, timeout=5)

    result = engine.preflight(mailbox.spec(target_options={"max_message_bytes": 50_000}))
    assert (result.ok, result.code) == (False, ITEM_TOO_LARGE)
    assert "1 message(s)" in result.message and "Scan 1 (70000 bytes)" in result.message

    assert engine.preflight(mailbox.spec()).ok  # Dovecot states no limit
