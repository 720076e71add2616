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
