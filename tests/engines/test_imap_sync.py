"""The imap engine against two real Dovecot servers ('/' and '.' separators, TLS and STARTTLS)."""

from __future__ import annotations

import datetime

import pytest

from migrations_app.engines import get_engine
from tests.engines import mailgen

FOLDERS_SOURCE = ["INBOX", "Sent", "Entwürfe", "Résumé", "Projects/Ward 7 rota/2024", "Archive/2023"]
FOLDERS_TARGET = ["INBOX", "Sent", "Entwürfe", "Résumé", "Projects.Ward 7 rota.2024", "Archive.2023"]
TZ = datetime.timezone(datetime.timedelta(hours=1))


def seed(src, folder: str, count: int, start: int = 0, size: int = 2_000):
    if folder != "INBOX" and not src.folder_exists(folder):
        src.create_folder(folder)
    messages = []
    for i in range(start, start + count):
        flags = [b"\\Seen"] if i % 2 else []
        if i % 5 == 0:
            flags += [b"\\Flagged", b"\\Answered"]
        if i % 7 == 0:
            flags.append(b"$Label1")
        messages.append(
            {
                "msg": mailgen.message(i, size=size + (i % 9) * 300),
                "flags": flags,
                "date": datetime.datetime(2023, 3, 1 + i % 27, 8, i % 60, 5, tzinfo=TZ),
            }
        )
    mailgen.append(src, folder, messages)


def contents(client, folders):
    return {folder: mailgen.folder_contents(client, folder) for folder in folders}


@pytest.fixture
def engine():
    return get_engine("imap", connections=3, batch_bytes=64 * 1024, batch_messages=20)


def test_it_copies_every_folder_byte_for_byte_with_flags_and_dates(mailbox, engine):
    src = mailbox.src()
    for index, folder in enumerate(FOLDERS_SOURCE):
        seed(src, folder, 15 + index, start=index * 100)
    calls = []

    result = engine.sync(mailbox.spec(), None, lambda items, size, cp: calls.append((items, size)))

    assert result.items_copied == sum(15 + i for i in range(len(FOLDERS_SOURCE)))
    assert calls and calls[-1] == (result.items_copied, result.bytes_copied)
    tgt = mailbox.tgt()
    source = contents(src, FOLDERS_SOURCE)
    target = contents(tgt, FOLDERS_TARGET)
    for s_name, t_name in zip(FOLDERS_SOURCE, FOLDERS_TARGET, strict=True):
        assert target[t_name] == source[s_name], s_name
    assert engine.verify(mailbox.spec()).ok


def test_a_second_sync_copies_only_what_is_new(mailbox, engine):
    src = mailbox.src()
    seed(src, "INBOX", 30)
    seed(src, "Archive/2023", 20, start=100)
    first = engine.sync(mailbox.spec(), None, None)
    assert first.items_copied == 50

    seed(src, "INBOX", 6, start=500)
    seed(src, "Archive/2023", 4, start=600)
    second = engine.sync(mailbox.spec(), first.checkpoint, None)

    assert second.items_copied == 10
    assert second.checkpoint["items"] == 60
    again = engine.sync(mailbox.spec(), second.checkpoint, None)
    assert again.items_copied == 0
    tgt = mailbox.tgt()
    assert contents(tgt, ["INBOX", "Archive.2023"]) == {
        "INBOX": mailgen.folder_contents(src, "INBOX"),
        "Archive.2023": mailgen.folder_contents(src, "Archive/2023"),
    }


class Crash(Exception):
    pass


def test_it_resumes_after_a_crash_half_way_through_a_folder_without_duplicates(mailbox):
    engine = get_engine("imap", connections=2, batch_bytes=16 * 1024, batch_messages=5)
    src = mailbox.src()
    seed(src, "INBOX", 60)
    seed(src, "Sent", 20, start=100)
    saved = {}

    def crash_after_20(items, size, checkpoint):
        if items >= 20:
            raise Crash  # the worker died: this checkpoint was never saved
        saved["checkpoint"] = checkpoint

    with pytest.raises(Crash):
        engine.sync(mailbox.spec(), None, crash_after_20)
    assert saved["checkpoint"]["items"] < 20
    tgt = mailbox.tgt()
    assert tgt.select_folder("INBOX", readonly=True)[b"EXISTS"] > 0

    result = engine.sync(mailbox.spec(), saved["checkpoint"], None)

    # What was appended after the last saved checkpoint was found on the target, not copied again.
    assert sum(f.items_already_there for f in result.folders) >= 5
    assert result.checkpoint["items"] + sum(f.items_already_there for f in result.folders) == 80
    assert contents(tgt, ["INBOX", "Sent"]) == contents(src, ["INBOX", "Sent"])
    assert engine.verify(mailbox.spec()).ok
    assert result.checkpoint["folders"]["INBOX"]["complete"]


def test_two_different_messages_with_one_message_id_both_arrive(mailbox, engine):
    src = mailbox.src()
    shared = "<same-id@example.nhs.uk>"
    mailgen.append(
        src,
        "INBOX",
        [
            mailgen.message(1, message_id=shared, subject="first"),
            mailgen.message(2, message_id=shared, subject="second, longer subject"),
            mailgen.message(3, message_id=shared, subject="third"),  # same size as the first
        ],
    )
    engine.sync(mailbox.spec(), None, None)
    # A sync without a checkpoint must index the target and still copy nothing twice.
    repeat = engine.sync(mailbox.spec(), None, None)

    assert repeat.items_copied == 0
    assert repeat.folders[0].items_already_there == 3
    assert mailgen.folder_contents(mailbox.tgt(), "INBOX") == mailgen.folder_contents(src, "INBOX")


def test_messages_without_a_message_id_are_copied_once(mailbox, engine):
    src = mailbox.src()
    mailgen.append(src, "INBOX", [mailgen.message(i, message_id=None) for i in range(8)])
    first = engine.sync(mailbox.spec(), None, None)
    repeat = engine.sync(mailbox.spec(), None, None)  # no checkpoint: dedupe by header hash + size

    assert (first.items_copied, repeat.items_copied) == (8, 0)
    assert mailgen.folder_contents(mailbox.tgt(), "INBOX") == mailgen.folder_contents(src, "INBOX")


def test_a_20_mb_message_arrives_intact(mailbox):
    engine = get_engine("imap", connections=2, large_message_bytes=4 * 1024 * 1024, part_bytes=1024 * 1024)
    src = mailbox.src()
    big = mailgen.message(7, size=20 * 1024 * 1024, subject="MRI scans")
    mailgen.append(src, "INBOX", [{"msg": big, "flags": [b"\\Seen"]}, mailgen.message(8)])

    result = engine.sync(mailbox.spec(), None, None)

    assert result.items_copied == 2
    assert mailgen.folder_contents(mailbox.tgt(), "INBOX") == mailgen.folder_contents(src, "INBOX")


def test_a_recreated_source_folder_does_not_duplicate(mailbox, engine):
    src = mailbox.src()
    seed(src, "Projects/Ward 7 rota", 12)
    first = engine.sync(mailbox.spec(), None, None)
    old_validity = first.checkpoint["folders"]["Projects/Ward 7 rota"]["uidvalidity"]
    src.delete_folder("Projects/Ward 7 rota")
    seed(src, "Projects/Ward 7 rota", 12)  # the same messages, new UIDVALIDITY
    seed(src, "Projects/Ward 7 rota", 3, start=50)  # and three new ones
    assert src.select_folder("Projects/Ward 7 rota")[b"UIDVALIDITY"] != old_validity

    second = engine.sync(mailbox.spec(), first.checkpoint, None)

    assert second.items_copied == 3
    assert mailgen.folder_contents(mailbox.tgt(), "Projects.Ward 7 rota") == mailgen.folder_contents(
        src, "Projects/Ward 7 rota"
    )


def test_an_oversized_message_is_listed_as_skipped_with_its_subject(mailbox, engine):
    src = mailbox.src()
    src.create_folder("Sent")
    big = mailgen.message(2, size=300_000, subject="Théâtre rota, big scan")
    mailgen.append(src, "Sent", [mailgen.message(1), big, mailgen.message(3)])

    result = engine.sync(mailbox.spec(target_options={"max_message_bytes": 100_000}), None, None)

    assert result.items_copied == 2
    [skipped] = result.skipped
    assert (skipped.folder, skipped.subject) == ("Sent", "Théâtre rota, big scan")
    assert skipped.size > 100_000 and skipped.reason.startswith("TOO_BIG")
    # Still listed after a later pass, and not retried.
    again = engine.sync(mailbox.spec(target_options={"max_message_bytes": 100_000}), result.checkpoint, None)
    assert again.items_copied == 0 and [s.subject for s in again.skipped] == ["Théâtre rota, big scan"]


def test_verify_reports_a_missing_message(mailbox, engine):
    src = mailbox.src()
    seed(src, "INBOX", 5)
    seed(src, "Résumé", 4, start=10)
    engine.sync(mailbox.spec(), None, None)
    assert engine.verify(mailbox.spec()).ok

    tgt = mailbox.tgt()
    tgt.select_folder("Résumé")
    tgt.delete_messages(tgt.search("ALL")[:1])
    tgt.expunge()
    report = engine.verify(mailbox.spec())

    assert not report.ok
    [difference] = report.differences
    assert (difference.folder, difference.source_count, difference.target_count) == ("Résumé", 4, 3)
    assert difference.source_bytes > difference.target_bytes
    assert difference.missing == ["Ward round notes 10"] and difference.extra == []


def test_verify_names_a_replaced_message_by_subject_even_when_the_counts_agree(mailbox, engine):
    src = mailbox.src()
    seed(src, "INBOX", 3)
    engine.sync(mailbox.spec(), None, None)
    tgt = mailbox.tgt()
    tgt.select_folder("INBOX")
    tgt.delete_messages(tgt.search(["SUBJECT", "Ward round notes 1"]))
    tgt.expunge()
    mailgen.append(tgt, "INBOX", [mailgen.message(77)])  # same count again, not the same messages

    [difference] = engine.verify(mailbox.spec()).differences

    assert (difference.source_count, difference.target_count) == (3, 3)
    assert difference.missing == ["Ward round notes 1"]
    assert "missing: 'Ward round notes 1'" in difference.describe()


def test_plain_text_endpoints_work_where_the_spec_says_plain(mailbox, engine):
    seed(mailbox.src(), "INBOX", 3)
    result = engine.sync(mailbox.spec(source_security="plain", target_security="plain"), None, None)
    assert result.items_copied == 3


def test_a_message_the_target_refuses_is_listed_and_the_rest_of_its_batch_arrives(mailbox, engine):
    mailbox.small_target()  # the server refuses messages over 60 KB with NO [LIMIT]
    src = mailbox.src()
    messages = [mailgen.message(1), mailgen.message(2, size=80_000, subject="Discharge summary scan")]
    mailgen.append(src, "INBOX", messages + [mailgen.message(3)])

    result = engine.sync(mailbox.spec(), None, None)

    assert result.items_copied == 2
    [skipped] = result.skipped
    assert (skipped.folder, skipped.subject) == ("INBOX", "Discharge summary scan")
    assert skipped.reason.startswith("TOO_BIG") and "[LIMIT]" in skipped.reason
    assert len(mailgen.folder_contents(mailbox.tgt(), "INBOX")) == 2


def test_sync_flags_carries_later_flag_changes_over_and_leaves_target_deletions_alone(mailbox, engine):
    src = mailbox.src()
    seed(src, "INBOX", 10)
    first = engine.sync(mailbox.spec(), None, None)
    src.select_folder("INBOX")
    uids = src.search("ALL")
    src.add_flags(uids[:4], [b"\\Seen", b"$Reviewed"])
    src.remove_flags(uids[:4], [b"\\Flagged"])
    tgt = mailbox.tgt()
    tgt.select_folder("INBOX")
    tgt.add_flags(tgt.search("ALL")[-1:], [b"\\Deleted"])  # the user's own doing, after cutover

    plain = engine.sync(mailbox.spec(), first.checkpoint, None)
    assert plain.items_copied == 0 and not plain.folders  # nothing new, and flags left for the cutover
    flagged = get_engine("imap", connections=2, sync_flags=True).sync(mailbox.spec(), first.checkpoint, None)

    assert flagged.items_copied == 0
    assert flagged.folders[0].flags_updated == 4
    after = mailgen.folder_contents(tgt, "INBOX")
    expected = mailgen.folder_contents(src, "INBOX")
    assert [b for b, _, _ in after] == [b for b, _, _ in expected]
    deleted = [flags for _, flags, _ in after if b"\\Deleted" in flags]
    assert len(deleted) == 1
    assert [tuple(f for f in flags if f != b"\\Deleted") for _, flags, _ in after] == [
        flags for _, flags, _ in expected
    ]
