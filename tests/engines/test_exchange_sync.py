"""The exchange engine from a fake Exchange 2013 (SOAP over HTTP) to a fake Graph mailbox import: every item class,
once, in the mapped folder, byte for byte; resumable; incremental; patient with throttling; honest about skips."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from migrations_app.engines import (
    AUTH_FAILED,
    IMPERSONATION_REFUSED,
    SOURCE_MISSING,
    RetryableError,
    get_engine,
)
from migrations_app.engines.base import NOT_LICENSED, SERVER_BUSY
from tests.engines.exchange_fixtures import (  # noqa: F401 - fixtures
    ExchangeBox,
    event_bytes,
    exbox,
    fake_ews,
    fake_graph,
    mail_bytes,
)
from tests.fakes.microsoft import FakeCrash


def engine(fake_graph, **options):  # noqa: F811
    return get_engine("exchange", http_client=fake_graph.session(), max_wait=20, **options)


def test_it_moves_every_item_class_once_into_the_mapped_folder_byte_identical(exbox, fake_graph):  # noqa: F811
    result = engine(fake_graph).sync(exbox.spec())

    assert exbox.arrived() == exbox.expected()
    assert sum(exbox.expected().values()) == 12 == result.items_copied
    classes = result.checkpoint["classes"]
    assert {k: (v["copied"], v["total"]) for k, v in classes.items() if v["total"]} == {
        "mail": (6, 6),
        "calendar": (2, 2),
        "contacts": (2, 2),
        "tasks": (1, 1),
        "notes": (1, 1),
    }
    kinds = {(exbox.target.path(f), i.item_class) for f, i in exbox.target.items()}
    assert (("Calendar",), "IPM.Appointment") in kinds and (("Inbox", "Projects"), "IPM.Note") in kinds
    projects = exbox.target.by_path("Inbox", "Projects")
    assert projects.type == "IPF.Note" and exbox.target.by_path("Calendar").well_known == "calendar"


def test_a_search_folder_is_listed_as_skipped_and_never_copied(exbox, fake_graph):  # noqa: F811
    result = engine(fake_graph).sync(exbox.spec())

    assert [(s.folder, s.reason) for s in result.skipped] == [("Unread Mail", "SEARCH_FOLDER")]
    assert exbox.target.by_path("Unread Mail") is None


def test_a_second_sync_with_nothing_new_imports_nothing(exbox, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    first = eng.sync(exbox.spec())
    imports = fake_graph.import_requests["imports"]

    again = eng.sync(exbox.spec(), first.checkpoint)

    assert again.items_copied == 0 and fake_graph.import_requests["imports"] == imports
    assert exbox.arrived() == exbox.expected()


def test_a_crash_mid_folder_and_a_rerun_leave_no_duplicate(exbox, fake_graph):  # noqa: F811
    saved = []
    fake_graph.crash_after(5)  # the fifth import POST never leaves: the worker died
    eng = engine(fake_graph)
    with pytest.raises(FakeCrash):
        eng.sync(exbox.spec(), progress=lambda i, b, cp: saved.append(copy.deepcopy(cp)))
    assert 0 < sum(1 for _ in exbox.target.items()) < 12

    eng.sync(exbox.spec(), saved[-1])

    assert exbox.arrived() == exbox.expected()


def test_items_imported_but_not_yet_checkpointed_are_recognised_not_imported_twice(exbox, fake_graph):  # noqa: F811
    """The crash window: the imports succeeded, the worker died before the checkpoint said so. The rerun starts
    from an older checkpoint while the target holds more than it accounts for."""
    saved = []
    eng = engine(fake_graph, batch_items=3)
    eng.sync(exbox.spec(), progress=lambda i, b, cp: saved.append(copy.deepcopy(cp)))
    halfway = next(cp for cp in saved if 0 < cp["items"] < 12)
    imports = fake_graph.import_requests["imports"]

    eng.sync(exbox.spec(), halfway)

    assert exbox.arrived() == exbox.expected()
    assert fake_graph.import_requests["imports"] == imports  # nothing imported twice, nothing missing


def test_a_lost_checkpoint_imports_nothing_twice(exbox, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    eng.sync(exbox.spec())

    eng.sync(exbox.spec(), None)

    assert exbox.arrived() == exbox.expected()


def test_changes_of_each_class_between_prestage_and_cutover_arrive_at_cutover(exbox, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    prestage = eng.sync(exbox.spec())
    store = exbox.store
    by_path = {tuple(store.path(f)): f for f in store.folders.values()}
    inbox, calendar, contacts = by_path[("Inbox",)], by_path[("Calendar",)], by_path[("Contacts",)]
    tasks, notes = by_path[("Tasks",)], by_path[("Notes",)]
    # new
    store.add_item(inbox, "IPM.Note", "New mail", mail_bytes(900))
    store.add_item(calendar, "IPM.Appointment", "New clinic", event_bytes(900))
    store.add_item(contacts, "IPM.Contact", "New contact", b"BEGIN:VCARD\r\nFN:New\r\nEND:VCARD\r\n")
    store.add_item(tasks, "IPM.Task", "New task", b'{"class": "IPM.Task", "subject": "New task"}')
    store.add_item(notes, "IPM.StickyNote", "New note", b'{"class": "IPM.StickyNote", "subject": "New"}')
    # changed: a meeting moved to another day, a contact's new number
    store.change(next(iter(calendar.items)), event_bytes(1, "Clinic moved to Tuesday"))
    store.change(next(iter(contacts.items)), b"BEGIN:VCARD\r\nFN:Dr Contact 0\r\nTEL:0113\r\nEND:VCARD\r\n")
    # moved: a mail filed into Projects; deleted: a task and a note
    store.move(next(iter(inbox.items)), by_path[("Inbox", "Projects")])
    store.delete(next(iter(tasks.items)))
    store.delete(next(iter(notes.items)))

    cutover = eng.cutover(exbox.spec(), prestage.checkpoint)

    assert exbox.arrived() == exbox.expected()
    assert (
        cutover.items_copied == 5 + 2 + 1
    )  # new, changed (re-imported in place), moved (into its new folder)
    assert fake_graph.import_requests["imports"] == 12 + 8


def test_deleted_items_stay_on_the_target_under_the_never_policy(exbox, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    prestage = eng.sync(exbox.spec(delete_policy="never"))
    tasks = next(f for f in exbox.store.folders.values() if f.name == "Tasks")
    exbox.store.delete(next(iter(tasks.items)))

    eng.cutover(exbox.spec(delete_policy="never"), prestage.checkpoint)

    assert len(exbox.target.by_path("Tasks").items) == 1


def test_throttling_storms_on_both_sides_slow_the_copy_without_failing_it(exbox, fake_ews, fake_graph):  # noqa: F811
    fake_ews.busy(every=3, back_off_ms=20)  # every third EWS call: ErrorServerBusy, back off 20 ms
    fake_graph.throttle_imports(every=4, status=429, retry_after="0.02")
    eng = engine(fake_graph)

    eng.sync(exbox.spec())

    assert exbox.arrived() == exbox.expected()
    assert eng.last_stats["source"]["busy"] > 0 and eng.last_stats["graph"]["throttled"] > 0
    fake_graph.throttle_imports(every=2, status=503, retry_after="0.02")
    exbox.store.add_item(exbox.store.folder("Inbox"), "IPM.Note", "late", mail_bytes(901))
    eng.sync(exbox.spec(), None)  # from scratch: the map is empty, the search keys find what is there
    assert exbox.arrived() == exbox.expected()
    assert fake_graph.import_max_concurrency[exbox.target.id] <= 4


def test_a_busy_server_past_the_wait_budget_is_retried_later_with_its_hint(exbox, fake_ews, fake_graph):  # noqa: F811
    fake_ews.busy(count=50, back_off_ms=400)
    eng = get_engine("exchange", http_client=fake_graph.session(), max_wait=0.5)

    with pytest.raises(RetryableError) as caught:
        eng.sync(exbox.spec())

    assert caught.value.code == SERVER_BUSY and caught.value.retry_after == pytest.approx(0.4)


def test_a_corrupt_item_and_an_item_over_150_mb_are_skipped_and_listed(exbox, fake_graph):  # noqa: F811
    inbox = exbox.store.folder("Inbox")
    corrupt, huge = list(inbox.items.values())[:2]
    corrupt.corrupt = True
    huge.reported_size = 200 * 1024 * 1024

    result = engine(fake_graph).sync(exbox.spec())

    reasons = {(s.folder, s.subject, s.reason.split(":")[0]) for s in result.skipped}
    assert ("Inbox", corrupt.subject, "CORRUPT") in reasons and ("Inbox", huge.subject, "TOO_BIG") in reasons
    assert next(s for s in result.skipped if s.subject == huge.subject).size == 200 * 1024 * 1024
    assert result.items_copied == 10


def test_an_import_session_refused_mid_copy_is_renewed_and_the_copy_goes_on(exbox, fake_graph):  # noqa: F811
    calls = []

    def expire_sessions(*_):
        calls.append(1)
        if len(calls) == 2:  # once, mid-copy: every session so far expires early
            for token, (mailbox_id, _expiry) in list(fake_graph.import_sessions.items()):
                fake_graph.import_sessions[token] = (mailbox_id, 0)

    engine(fake_graph, batch_items=4).sync(exbox.spec(), progress=expire_sessions)

    assert exbox.arrived() == exbox.expected()
    assert fake_graph.import_requests["expired"] > 0 and fake_graph.import_requests["sessions"] > 1


def test_preflight_says_why_with_a_stable_code(exbox, fake_ews, fake_graph, tmp_path):  # noqa: F811
    eng = engine(fake_graph)
    assert eng.preflight(exbox.spec()).ok and eng.preflight(exbox.spec()).source_item_count == 12

    fake_ews.refuse_impersonation(exbox.address)
    refused = eng.preflight(exbox.spec())
    assert (refused.ok, refused.code) == (False, IMPERSONATION_REFUSED)
    assert "ApplicationImpersonation" in refused.message

    other = ExchangeBox(fake_ews, fake_graph, tmp_path)
    missing = eng.preflight(dataclasses.replace(other.spec(), source_user="nobody@trust.nhs.uk"))
    assert missing.code == SOURCE_MISSING

    fake_graph.mailbox(other.upn).licensed = False
    assert eng.preflight(other.spec()).code == NOT_LICENSED

    spec = other.spec()
    wrong = dataclasses.replace(spec, source=dataclasses.replace(spec.source, password="nope"))
    assert eng.preflight(wrong).code == AUTH_FAILED


def test_verify_compares_each_folder_by_count(exbox, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    eng.sync(exbox.spec())
    assert eng.verify(exbox.spec()).ok

    exbox.store.add_item(exbox.store.folder("Calendar"), "IPM.Appointment", "not copied", event_bytes(5))
    differences = eng.verify(exbox.spec()).differences
    assert [(d.folder, d.source_count, d.target_count) for d in differences] == [("Calendar", 3, 2)]
