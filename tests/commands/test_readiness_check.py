"""manage.py readiness_check: queue checks for the workers, or run them here; every unchecked mailbox."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from migrations_app.models import Mailbox, ReadinessCheck
from tests.readiness_fixtures import inventoried


def _run(*args) -> str:
    out = StringIO()
    call_command("readiness_check", *args, stdout=out)
    return out.getvalue()


def test_it_runs_an_organisations_check_here(org_a, preflight_rates):
    preflight_rates({"OVER_QUOTA": 0.5})
    inventoried(org_a, 6)
    output = _run("rj1", "--here")
    check = ReadinessCheck.objects.get()
    assert f"Check {check.pk}: 6 mailboxes, {check.ready} ready, {check.blocked} blocked" in output
    assert not Mailbox.objects.filter(state="inventoried").exists()


def test_without_here_it_queues_the_check_for_the_workers(org_a, org_b, django_capture_on_commit_callbacks):
    inventoried(org_a, 2)
    with django_capture_on_commit_callbacks() as queued:
        output = _run("RJ1", "RRV")
    assert len(queued) == 2 and output.count("queued for the workers") == 2
    assert set(ReadinessCheck.objects.values_list("status", flat=True)) == {"queued"}


def test_it_checks_every_unchecked_mailbox(org_a, org_b, preflight_rates):
    inventoried(org_a, 2)
    inventoried(org_b, 3)
    assert "5 mailboxes, 5 ready" in _run("--unchecked", "--here")


def test_it_refuses_an_unknown_code_or_no_scope(db):
    with pytest.raises(CommandError, match="No organisation with ODS code NOPE"):
        _run("NOPE")
    with pytest.raises(CommandError, match="Name the organisations"):
        _run()
