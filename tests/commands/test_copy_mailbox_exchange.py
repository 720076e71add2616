"""manage.py copy_mailbox --engine exchange: an Exchange 2013 mailbox (the fake EWS, an ews:// URL) into Exchange
Online (the fake Graph, a graph:// URL), full then cutover with --verify; the service account's password comes
from the environment and is never printed. The Graph side is reached through the workers' engine options
(settings.MIGRATION_ENGINE_OPTIONS), as in production."""

import io
import json

from django.core.management import call_command

from tests.engines.exchange_fixtures import (  # noqa: F401 - fixtures
    ExchangeBox,
    fake_ews,
    fake_graph,
    mail_bytes,
)


def _copy(box: ExchangeBox, state, *args) -> dict:
    out, err = io.StringIO(), io.StringIO()
    source = f"ews://{box.exchange.username}@127.0.0.1:{box.exchange.port}/?user={box.address}&auth=basic"
    target = f"graph://{box.graph.client_id}@{box.graph.tenant_id}/?user={box.upn}"
    call_command(
        "copy_mailbox", "--engine", "exchange", "--source", source, "--target", target, "--state", str(state),
        *args, stdout=out, stderr=err,
    )  # fmt: skip
    assert "secret" not in out.getvalue() + err.getvalue()
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_copy_mailbox_moves_an_exchange_mailbox_then_its_cutover_delta(
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    tmp_path,
    settings,
    monkeypatch,
):
    settings.MIGRATION_ENGINE_OPTIONS = {"exchange": {"http_client": fake_graph.session(), "max_wait": 20}}
    monkeypatch.setenv("COPY_SOURCE_PASSWORD", fake_ews.password)
    monkeypatch.setenv("COPY_TARGET_PASSWORD", fake_graph.client_secret)
    box = ExchangeBox(fake_ews, fake_graph, tmp_path)

    full = _copy(box, tmp_path / "state", "--phase", "full")
    assert (full["ok"], full["items_copied"], full["skipped"]) == (True, 12, 1)  # the search folder, listed

    inbox = box.store.folder("Inbox")
    box.store.add_item(inbox, "IPM.Note", "late", mail_bytes(800))
    box.store.delete(next(iter(box.store.folder("Tasks").items)))
    cutover = _copy(box, tmp_path / "state", "--phase", "cutover", "--verify")

    assert (cutover["ok"], cutover["items_copied"], cutover["items_deleted"], cutover["verified"]) == (
        True,
        1,
        1,
        True,
    )
    assert box.arrived() == box.expected()
