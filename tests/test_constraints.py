"""The database refuses states the code does not know and rows that break the rules that must always hold,
whoever writes them (a raw UPDATE, a bug, a migration script): CheckConstraints built from the models' enums
(migrations_app/constraints.py)."""

import pytest
from django.apps import apps
from django.db import IntegrityError, models, transaction

from migrations_app.models import ImportJob, Mailbox, Organisation, Wave, Webhook, WebhookDelivery
from tests.factories import MailboxFactory
from tests.wave_fixtures import wave_with

ENUM_FIELDS = ("state", "status", "cutover_step", "switch_status")


def _refused(queryset, **changes):
    with pytest.raises(IntegrityError), transaction.atomic():
        queryset.update(**changes)


def test_every_state_and_status_column_is_held_to_its_enum():
    """A new model with a state or status column gets its constraint too (and a new state gets into the
    constraint by makemigrations, since the constraint is built from the enum)."""
    missing = []
    for model in apps.get_app_config("migrations_app").get_models():
        for field in model._meta.fields:
            if field.name not in ENUM_FIELDS or not field.choices:
                continue
            allowed = {value for value, _label in field.choices} | ({""} if field.blank else set())
            held = [
                c
                for c in model._meta.constraints
                if isinstance(c, models.CheckConstraint)
                and any(
                    isinstance(child, tuple) and child[0] == f"{field.name}__in" and set(child[1]) == allowed
                    for child in c.condition.children
                )
            ]
            if not held:
                missing.append(f"{model.__name__}.{field.name}")
    assert missing == []


def test_it_refuses_an_unknown_mailbox_state(db):
    mailbox = MailboxFactory(state="ready")
    _refused(Mailbox.objects.filter(pk=mailbox.pk), state="teleported")
    _refused(Mailbox.objects.filter(pk=mailbox.pk), switch_status="sideways")
    _refused(Mailbox.objects.filter(pk=mailbox.pk), cutover_step="leap")


@pytest.mark.parametrize("model", [Organisation, Wave, ImportJob])
def test_it_refuses_an_unknown_status(db, model):
    row = {
        Organisation: lambda: MailboxFactory().organisation,
        Wave: lambda: wave_with(),
        ImportJob: lambda: ImportJob.objects.create(filename="x.csv"),
        WebhookDelivery: lambda: None,
    }[model]()
    if row is None:
        pytest.skip(
            "covered by the delivery test below"
        )  # needs a webhook; see test_a_pending_delivery_is_due
    _refused(model.objects.filter(pk=row.pk), status="limbo")


def test_a_mailbox_in_a_wave_state_has_a_wave(db):
    wave = wave_with(status="approved")
    mailbox = MailboxFactory(state="ready")
    _refused(Mailbox.objects.filter(pk=mailbox.pk), state="scheduled")
    Mailbox.objects.filter(pk=mailbox.pk).update(state="scheduled", wave=wave)
    _refused(Mailbox.objects.filter(pk=mailbox.pk), wave=None)


def test_a_lease_is_held_only_while_copying(db):
    wave = wave_with(status="running")
    mailbox = MailboxFactory(state="scheduled", wave=wave)
    _refused(Mailbox.objects.filter(pk=mailbox.pk), lease="run-1")
    Mailbox.objects.filter(pk=mailbox.pk).update(state="syncing", lease="run-1")
    _refused(Mailbox.objects.filter(pk=mailbox.pk), state="migrated")


def test_a_paused_wave_knows_what_it_was_paused_from(db):
    wave = wave_with(status="approved")
    _refused(Wave.objects.filter(pk=wave.pk), status="paused")
    Wave.objects.filter(pk=wave.pk).update(status="paused", paused_from="approved")


def test_a_pending_delivery_is_due(db, org_a):
    webhook = Webhook.objects.create(organisation=org_a, url="https://hooks.example.org/", secret="s" * 30)
    delivery = WebhookDelivery.objects.create(
        webhook=webhook, message_id="m", payload={}, next_attempt_at=None, status="failed"
    )
    _refused(WebhookDelivery.objects.filter(pk=delivery.pk), status="pending")
    _refused(WebhookDelivery.objects.filter(pk=delivery.pk), status="limbo")
