"""The cutover delta (engines/pipeline/delta.py) in both engines, against real Dovecot sources: what changed
on the source between the pre-stage and the cutover arrives (flags, moves between folders, deletions), a moved
message is moved on the target rather than copied again, deletions follow the endpoint's policy, and what
the portal did not write is never touched."""

from __future__ import annotations

import pytest

from migrations_app.engines import get_engine
from migrations_app.engines.graph.message import PR_MESSAGE_FLAGS
from tests.engines import mailgen
from tests.engines.graph_fixtures import fake, graphbox, when  # noqa: F401 - fixtures
from tests.fakes.microsoft import messages_in


def _seed(src, folder: str, numbers) -> None:
    if folder != "INBOX" and not src.folder_exists(folder):
        src.create_folder(folder)
    mailgen.append(
        src,
        folder,
        [
            {"msg": mailgen.message(n), "flags": [b"\\Flagged"] if n % 3 == 0 else [], "date": when(n)}
            for n in numbers
        ],
    )


def _uid_of(client, folder: str, n: int) -> int:
    client.select_folder(folder)
    [uid] = client.search(["HEADER", "Subject", f"Ward round notes {n}"])
    return uid


def _change_the_source(src) -> None:
    """Between pre-stage and cutover: two messages read, one unflagged, two moved to Projects, one deleted."""
    src.select_folder("INBOX")
    src.add_flags([_uid_of(src, "INBOX", 1), _uid_of(src, "INBOX", 2)], [b"\\Seen"])
    src.remove_flags([_uid_of(src, "INBOX", 3)], [b"\\Flagged"])
    src.move([_uid_of(src, "INBOX", 4), _uid_of(src, "INBOX", 5)], "Projects")
    src.select_folder("INBOX")
    src.delete_messages([_uid_of(src, "INBOX", 7)])
    src.expunge()


# --- IMAP to IMAP -------------------------------------------------------------------------------------------


@pytest.fixture
def imap_engine():
    return get_engine("imap", connections=2, batch_messages=4)


def test_imap_cutover_carries_flags_moves_and_deletions_and_leaves_the_users_own_mail(mailbox, imap_engine):
    src = mailbox.src()
    _seed(src, "INBOX", range(10))
    _seed(src, "Projects", range(100, 103))
    first = imap_engine.sync(mailbox.spec())
    assert first.items_copied == 13
    _change_the_source(src)
    tgt = mailbox.tgt()
    own = mailgen.message(900, subject="Delivered to the new mailbox")
    mailgen.append(tgt, "INBOX", [{"msg": own, "flags": [b"\\Seen"]}])

    cut = imap_engine.cutover(mailbox.spec(), first.checkpoint)

    assert cut.items_copied == 0  # the moved messages were moved on the target, not copied again
    by_folder = {f.folder: f for f in cut.folders}
    assert by_folder["INBOX"].flags_updated == 3
    assert by_folder["Projects"].items_moved == 2
    assert by_folder["INBOX"].items_deleted == 1
    target_inbox = mailgen.folder_contents(tgt, "INBOX")
    source_inbox = mailgen.folder_contents(src, "INBOX")
    assert sorted(m for m in target_inbox if m[0] != own) == sorted(source_inbox)  # bodies, flags, dates
    assert [m for m in target_inbox if m[0] == own]  # the user's own message is still there
    assert sorted(mailgen.folder_contents(tgt, "Projects")) == sorted(
        mailgen.folder_contents(src, "Projects")
    )
    # Nothing left to do: a second cutover changes nothing.
    again = imap_engine.cutover(mailbox.spec(), cut.checkpoint)
    assert again.items_copied == 0 and not any(
        f.items_deleted or f.items_moved or f.flags_updated for f in again.folders
    )


def test_imap_cutover_deletes_nothing_when_the_endpoint_says_never(mailbox, imap_engine):
    src = mailbox.src()
    _seed(src, "INBOX", range(10))
    _seed(src, "Projects", range(100, 103))
    first = imap_engine.sync(mailbox.spec(target_options={"delete_policy": "never"}))
    _change_the_source(src)

    cut = imap_engine.cutover(mailbox.spec(target_options={"delete_policy": "never"}), first.checkpoint)

    assert not any(f.items_deleted for f in cut.folders)
    subjects = {
        mailgen.header(body, "Subject") for body, _, _ in mailgen.folder_contents(mailbox.tgt(), "INBOX")
    }
    assert "Ward round notes 7" in subjects  # deleted on the source, kept on the target
    assert "Ward round notes 4" not in subjects  # moves are still carried


# --- IMAP to Exchange Online --------------------------------------------------------------------------------


def _graph(fake):  # noqa: F811
    return get_engine("graph", http_client=fake.session(), max_wait=30, batch_messages=4)


def test_graph_cutover_patches_read_and_flag_state_moves_and_deletes(graphbox, fake):  # noqa: F811
    src = graphbox.src()
    _seed(src, "INBOX", range(10))
    _seed(src, "Projects", range(100, 103))
    engine = _graph(fake)
    first = engine.sync(graphbox.spec())
    assert first.items_copied == 13
    _change_the_source(src)
    inbox = fake.folder_by_path(graphbox.upn, "inbox")
    fake._create(  # mail delivered to Exchange Online meanwhile: no marker, never touched
        graphbox.mailbox,
        inbox,
        {
            "subject": "Delivered to the new mailbox",
            "singleValueExtendedProperties": [{"id": PR_MESSAGE_FLAGS, "value": "1"}],
        },
    )

    cut = engine.cutover(graphbox.spec(), first.checkpoint)

    assert cut.items_copied == 0
    subjects = {m["subject"]: m for m in messages_in(fake, graphbox.upn, "inbox")}
    assert set(subjects) == {f"Ward round notes {n}" for n in (0, 1, 2, 3, 6, 8, 9)} | {
        "Delivered to the new mailbox"
    }
    assert subjects["Ward round notes 1"]["isRead"] and subjects["Ward round notes 2"]["isRead"]
    assert subjects["Ward round notes 3"]["flag"]["flagStatus"] == "notFlagged"
    assert subjects["Ward round notes 6"]["flag"]["flagStatus"] == "flagged"
    projects = {m["subject"] for m in messages_in(fake, graphbox.upn, "Projects")}
    assert projects == {f"Ward round notes {n}" for n in (4, 5, 100, 101, 102)}
    assert engine.verify(graphbox.spec()).folders  # and the counts agree again
    assert all(f.matches for f in engine.verify(graphbox.spec()).folders if f.target_folder != "inbox")
