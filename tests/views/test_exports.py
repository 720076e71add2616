"""Large CSV exports run as background jobs: the buttons on the audit log and the mailbox search queue one, its
page shows progress, and the file is downloaded when ready; only by the person who asked, with their scope."""

import csv
import io

import pytest
from django.urls import reverse

from migrations_app.models import Event, Export
from migrations_app.services import exports
from tests.factories import MailboxFactory


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def test_the_audit_log_button_exports_the_whole_log_in_the_background(
    client_for, officer, org_a, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 2)
    Event.objects.bulk_create(
        [Event(action=f"test.{n}", organisation=org_a, subject="=cmd") for n in range(5)]
    )
    client = client_for(officer)
    page = client.get(reverse("audit_log")).content.decode()
    assert reverse("export_create") in page and 'name="kind" value="audit"' in page

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("export_create"), {"kind": "audit", "params": ""})
    export = Export.objects.get()
    assert response.status_code == 302 and response.url == reverse("export_detail", args=[export.pk])
    assert "Waiting for a worker" in client.get(response.url).content.decode()  # the request did not do it
    assert client.get(reverse("export_download", args=[export.pk])).status_code == 404  # not ready

    for callback in queued:  # the worker
        callback()
    export.refresh_from_db()
    assert export.status == "succeeded" and export.rows_done == Event.objects.count()
    assert client.get(reverse("export_progress", args=[export.pk])).headers["HX-Refresh"] == "true"
    rows = _csv(client.get(reverse("export_download", args=[export.pk])))
    assert rows[0][:3] == ["id", "when", "action"] and len(rows) == 1 + Event.objects.count()
    assert list({r[5] for r in rows[1:] if r[2].startswith("test.")}) == ["'=cmd"]  # formulas neutralised


def test_every_mailbox_export_holds_only_what_the_asker_may_see(
    client_for, admin_a, org_a, org_b, django_capture_on_commit_callbacks
):
    MailboxFactory(organisation=org_a, email="ann@rj1.nhs.uk")
    MailboxFactory(organisation=org_b, email="bob@rrv.nhs.uk")
    client = client_for(admin_a)
    assert 'value="mailboxes"' in client.get(reverse("mailbox_search")).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("export_create"), {"kind": "mailboxes"})
    export = Export.objects.get()
    rows = _csv(client.get(reverse("export_download", args=[export.pk])))
    assert [r[0] for r in rows[1:]] == ["ann@rj1.nhs.uk"]


def test_nobody_else_sees_or_downloads_an_export(
    client_for, admin_a, admin_b, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin_a).post(reverse("export_create"), {"kind": "audit"})
    export = Export.objects.get()
    other = client_for(admin_b)
    for name in ("export_detail", "export_progress", "export_download"):
        assert other.get(reverse(name, args=[export.pk])).status_code == 404


def test_an_unknown_kind_is_refused(client_for, officer):
    assert client_for(officer).post(reverse("export_create"), {"kind": "passwords"}).status_code == 404
    assert not Export.objects.exists()
