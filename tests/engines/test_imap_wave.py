"""A wave through the IMAP engine end to end: approved wave, IMAP source and target endpoints (a Dovecot
master user, as a migration service account is), the tick, the tasks, every mailbox copied with fidelity
and verified, every transition in the Event table."""

import datetime as dt

import pytest

from migrations_app.models import Endpoint, Event, Mailbox, Wave
from migrations_app.services.execution import wave_tick
from tests.engines import mailgen
from tests.engines.dovecot import MASTER_USER, PASSWORD
from tests.execution_fixtures import CUTOVER_STEPS, approved_wave

M = Mailbox.State
FOLDERS = {"INBOX": 5, "Sent Items": 3, "Projects/2024": 2}  # source separator "/", target "."


def _endpoint(server, name, role, security):
    return Endpoint.objects.create(
        name=name,
        kind=Endpoint.Kind.IMAP,
        role=role,
        address=server.host,
        port=server.tls_port if security == "tls" else server.port,
        security=security,
        username=MASTER_USER,
        secret=PASSWORD,
        options={"ca_file": str(server.ca_file), "master_user_separator": "*"},
        max_concurrency=4,
        routing_domain="trust.mail.onmicrosoft.com",  # the cutover's switch (simulated) routes mail there
    )


@pytest.mark.django_db(transaction=True)
def test_an_approved_wave_moves_real_mailboxes_between_imap_servers(dovecots, org_a, settings):
    source, target = dovecots
    source_endpoint = _endpoint(source, "Trust IMAP", Endpoint.Role.SOURCE, "tls")
    target_endpoint = _endpoint(target, "New IMAP", Endpoint.Role.TARGET, "starttls")
    wave, mailboxes = approved_wave(
        org_a,
        3,
        starts_in=dt.timedelta(minutes=-1),
        source_endpoint=source_endpoint,
        target_endpoint=target_endpoint,
    )
    pairs = []
    for i, mailbox in enumerate(mailboxes):
        src_user, tgt_user = source.new_user(), target.new_user()
        c = mailgen.client(source, src_user)
        for folder, count in FOLDERS.items():
            if folder != "INBOX":
                c.create_folder(folder)
            mailgen.append(
                c,
                folder,
                [
                    {
                        "msg": mailgen.message(100 * i + n, size=3_000 + n * 500),
                        "flags": (b"\\Seen",) if n % 2 else (),
                    }
                    for n in range(count)
                ],
            )
        c.logout()
        Mailbox.objects.filter(pk=mailbox.pk).update(
            source_identity=src_user, target_upn=tgt_user, item_count=10
        )
        pairs.append((mailbox, src_user, tgt_user))

    wave_tick()  # eager tasks: claim, copy, straight on to cutover, verify, complete

    wave.refresh_from_db()
    assert wave.status == Wave.Status.COMPLETED
    for mailbox, src_user, tgt_user in pairs:
        mailbox.refresh_from_db()
        assert (mailbox.state, mailbox.items_copied, mailbox.last_error_code) == (M.MIGRATED, 10, "")
        src, tgt = mailgen.client(source, src_user), mailgen.client(target, tgt_user)
        for folder in FOLDERS:
            assert mailgen.folder_contents(tgt, folder.replace("/", ".")) == mailgen.folder_contents(
                src, folder
            )
        src.logout()
        tgt.logout()
        steps = list(
            Event.objects.filter(mailbox_id=mailbox.pk).order_by("id").values_list("from_state", "to_state")
        )
        assert steps == [
            (M.SCHEDULED, M.SYNCING),
            (M.SYNCING, M.SYNCED),
            (M.SYNCED, M.CUTOVER),
            *CUTOVER_STEPS,  # final delta, switch requested, switched
            (M.CUTOVER, M.VERIFYING),
            (M.VERIFYING, M.MIGRATED),
        ]
