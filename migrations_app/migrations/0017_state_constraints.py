"""Check constraints for every state and status column, built from the models' enums, and the cross-field rules
that must always hold (constraints.py, docs/adr/021-state-constraints.md).

On PostgreSQL each is added NOT VALID and validated afterwards, each step committed on its own (atomic = False),
so a full production table is never locked against writes for the length of a scan (ADR 029). The schema it
leaves is the same as before that change: a database that applied the earlier version is not touched."""

from django.db import migrations, models

from migrations_app.migration_ops import AddCheckConstraintSafely, ValidateConstraintSafely


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("migrations_app", "0016_event_protection_triggers"),
    ]

    operations = [
        AddCheckConstraintSafely(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["queued", "running", "succeeded", "rejected", "failed"])),
                name="importjob_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="mailbox",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "state__in",
                        [
                            "inventoried",
                            "ready",
                            "blocked",
                            "scheduled",
                            "syncing",
                            "synced",
                            "cutover",
                            "switching",
                            "verifying",
                            "migrated",
                            "failed",
                            "retired",
                        ],
                    )
                ),
                name="mailbox_state_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="mailbox",
            constraint=models.CheckConstraint(
                condition=models.Q(("cutover_step__in", ["final_delta", "switch", "catch_up", "verify", ""])),
                name="mailbox_cutover_step_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="mailbox",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("switch_status__in", ["requested", "switched", "unswitching", "unswitched", ""])
                ),
                name="mailbox_switch_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="mailbox",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        (
                            "state__in",
                            ["scheduled", "syncing", "synced", "cutover", "switching", "verifying"],
                        ),
                        _negated=True,
                    ),
                    ("wave__isnull", False),
                    _connector="OR",
                ),
                name="mailbox_in_wave_state_has_wave",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="mailbox",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("lease", ""),
                    ("state__in", ["syncing", "cutover", "switching", "verifying"]),
                    _connector="OR",
                ),
                name="mailbox_lease_only_while_copying",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="notification",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "status__in",
                        [
                            "pending",
                            "sending",
                            "sent",
                            "delivered",
                            "permanent-failure",
                            "temporary-failure",
                            "technical-failure",
                            "rejected",
                            "no-recipient",
                        ],
                    )
                ),
                name="notification_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="organisation",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["invited", "enrolled", "ready", "migrating", "migrated"])),
                name="organisation_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="readinesscheck",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["queued", "running", "succeeded", "failed"])),
                name="readinesscheck_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="wave",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "status__in",
                        [
                            "draft",
                            "proposed",
                            "approved",
                            "running",
                            "paused",
                            "completed",
                            "rejected",
                            "cancelled",
                        ],
                    )
                ),
                name="wave_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="wave",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "paused"), _negated=True),
                    ("paused_from__in", ["approved", "running"]),
                    _connector="OR",
                ),
                name="wave_paused_from_known",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="webhookdelivery",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["pending", "succeeded", "failed"])),
                name="webhookdelivery_status_valid",
            ),
        ),
        AddCheckConstraintSafely(
            model_name="webhookdelivery",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "pending"), _negated=True),
                    ("next_attempt_at__isnull", False),
                    _connector="OR",
                ),
                name="webhookdelivery_pending_is_due",
            ),
        ),
    ]
    operations += [ValidateConstraintSafely(op.model_name, op.constraint.name) for op in operations]
