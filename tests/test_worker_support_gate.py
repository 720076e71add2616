"""A real worker runs the hourly gate: a wave whose support rate crossed the threshold holds the next one."""

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.exceptions import ValidationError

from migrations_app.models import Mailbox, OrganisationHold, Wave
from migrations_app.services.support import support_request_submit
from migrations_app.services.waves import wave_approve, wave_go, wave_propose
from migrations_app.tasks import support_gate_evaluate
from tests.notify_fixtures import wave_in
from tests.wave_fixtures import ready_mailboxes, wave_with


@pytest.mark.django_db(transaction=True)
def test_a_wave_over_the_support_threshold_holds_the_next_one(real_broker, org_a, officer, approver, admin_a):
    last, moved = wave_in(org_a, starts_in=-dt.timedelta(days=2), mailboxes=20, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(wave=last).update(state=Mailbox.State.MIGRATED)
    for mailbox in moved[:2]:  # 10% > the default 3%
        support_request_submit(email=mailbox.email, category="sign_in", description="")
    ready_mailboxes(org_a, 3)
    following = wave_with(org_a, day=dt.date.today() + dt.timedelta(days=20), name="Following")
    wave_propose(wave=following, actor=officer)
    wave_go(wave=following, organisation=org_a, actor=admin_a)

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        support_gate_evaluate.delay()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not OrganisationHold.objects.exists():
            time.sleep(0.2)

    hold = OrganisationHold.objects.get()
    assert (hold.organisation_id, hold.wave_id, str(hold.support_rate)) == (org_a.pk, last.pk, "10.00")
    with pytest.raises(ValidationError, match="on hold"):
        wave_approve(wave=following, actor=approver)
    following.refresh_from_db()
    assert following.status == Wave.Status.PROPOSED
