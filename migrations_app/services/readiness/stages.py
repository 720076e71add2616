"""An organisation's stage on the programme's path, as a state machine. Each move is one conditional UPDATE
(only from the stages its entry rule names) and an Event per organisation moved.

    enrolled --inventory imported--> readiness --pilot wave approved--> pilot
    enrolled / readiness / pilot --main wave approved--> sync_switch
    sync_switch --no planned mailboxes left, some failed, skipped or carried over (beat)--> mop_up
    sync_switch / mop_up --programme office closes, with a reason; every mailbox migrated or retired--> closed
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from migrations_app.models import Event, Mailbox, Organisation, User, Wave
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record_many

ST = Organisation.Stage
M = Mailbox.State
ENTRY: dict[str, tuple[str, ...]] = {
    ST.READINESS: (ST.ENROLLED,),
    ST.PILOT: (ST.ENROLLED, ST.READINESS),
    ST.SYNC_SWITCH: (ST.ENROLLED, ST.READINESS, ST.PILOT),
    ST.MOP_UP: (ST.SYNC_SWITCH,),
    ST.CLOSED: (ST.SYNC_SWITCH, ST.MOP_UP),
}
# Mailboxes still on their way: the organisation is not in mop-up while any is left.
PLANNED = (M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.VERIFYING)
# What a closed organisation may hold.
FINISHED = (M.MIGRATED, M.RETIRED)
STAGE_CHANGED = "organisation.stage_changed"


def _stage_move(
    organisations, *, to_stage: str, actor: User | None, reason: str, data: dict | None = None
) -> list[int]:
    """Move the given organisations (a queryset) that are in one of to_stage's entry stages. Set-based."""
    from_stages = ENTRY[to_stage]
    candidates = organisations.filter(stage__in=from_stages)
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    if connection.vendor == "postgresql":
        return _stage_move_in_sql(candidates, to_stage=to_stage, actor_id=actor_id, reason=reason, data=data)
    # SQLite: the candidates are read and moved in one write transaction
    rows = list(candidates.order_by("pk").values_list("pk", "ods_code", "stage"))
    if not rows:
        return []
    now = timezone.now()
    moved = Organisation.objects.filter(pk__in=[r[0] for r in rows], stage__in=from_stages).update(
        stage=to_stage, stage_changed_at=now, updated_at=now
    )
    assert moved == len(rows)
    event_record_many(
        dict(
            action=STAGE_CHANGED,
            actor_id=actor_id,
            organisation_id=pk,
            subject=code,
            from_state=stage,
            to_state=to_stage,
            message=reason,
            data=data or {},
        )
        for pk, code, stage in rows
    )
    return [r[0] for r in rows]


def _stage_move_in_sql(candidates, *, to_stage: str, actor_id, reason: str, data: dict | None) -> list[int]:
    """The same move in one statement on PostgreSQL: lock the candidates, move them, and append their events
    from what the UPDATE returned. A national inventory moves ~22,000 organisations at once: reading them
    into Python, an UPDATE naming each id and 22,000 Event objects bulk-created took 2.4 s of the import
    (bench.import_inventory), this about a tenth of it."""
    select, params = (
        candidates.order_by("pk")
        .select_for_update()
        .values_list("pk", "ods_code", "stage")
        .query.sql_with_params()
    )
    now = timezone.now()
    organisation, event = Organisation._meta.db_table, Event._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH candidate (id, ods_code, from_stage) AS ({select}),
            moved AS (
                UPDATE {organisation} o SET stage = %s, stage_changed_at = %s, updated_at = %s
                FROM candidate c WHERE o.id = c.id
                RETURNING o.id, c.ods_code, c.from_stage
            )
            INSERT INTO {event}
                (created_at, action, actor_id, organisation_id, subject, from_state, to_state, message, data)
            SELECT %s, %s, %s, id, left(ods_code, 254), left(from_stage, 20), %s, %s, %s::jsonb FROM moved
            RETURNING organisation_id
            """,
            [
                *params,
                to_stage,
                now,
                now,
                now,
                STAGE_CHANGED,
                actor_id,
                to_stage,
                reason,
                json.dumps(data or {}),
            ],
        )
        return sorted(row[0] for row in cursor.fetchall())


@transaction.atomic
def organisations_stage_on_import(*, organisation: Organisation | None, actor: User | None) -> list[int]:
    """Enrolled -> readiness once an inventory is imported (a national file: every organisation it gave
    mailboxes to)."""
    if organisation is not None:
        orgs = Organisation.objects.filter(pk=organisation.pk)
    else:
        orgs = Organisation.objects.filter(Exists(Mailbox.objects.filter(organisation_id=OuterRef("pk"))))
    return _stage_move(orgs, to_stage=ST.READINESS, actor=actor, reason="Inventory imported")


def organisations_stage_on_approval(*, wave: Wave, actor: User | None) -> list[int]:
    """A pilot wave approved: its organisations are in pilot; a main wave: in sync & switch. Called inside
    the approval's transaction, after the mailboxes are stamped."""
    in_wave = Organisation.objects.filter(
        Exists(Mailbox.objects.filter(wave=wave, organisation_id=OuterRef("pk")))
    )
    to_stage = ST.PILOT if wave.is_pilot else ST.SYNC_SWITCH
    return _stage_move(
        in_wave, to_stage=to_stage, actor=actor, reason=f"{wave.name} approved", data={"wave": wave.pk}
    )


@transaction.atomic
def organisations_mop_up_review() -> list[int]:
    """Beat: organisations in sync & switch with no planned mailbox left and something left behind (failed,
    carried over, skipped items, or still unplanned) go to mop-up. One query over the organisations in that
    stage (a few thousand at most), the mailbox conditions by EXISTS on the (organisation, state, id) index."""
    mine = Mailbox.objects.filter(organisation_id=OuterRef("pk"))
    left_behind = (
        Q(state=M.FAILED)
        | Q(carried_over=True)
        | Q(skipped_items__isnull=False, state=M.MIGRATED)
        | Q(state__in=(M.INVENTORIED, M.READY, M.BLOCKED))
    )
    candidates = Organisation.objects.filter(stage=ST.SYNC_SWITCH).filter(
        ~Exists(mine.filter(state__in=PLANNED, carried_over=False)), Exists(mine.filter(left_behind))
    )
    return _stage_move(candidates, to_stage=ST.MOP_UP, actor=None, reason="No planned mailboxes left")


@transaction.atomic
def organisation_close(*, organisation: Organisation, actor: User, reason: str) -> Organisation:
    """The programme office closes an organisation: every mailbox migrated or retired."""
    require_programme_office(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason for closing the organisation"})
    if organisation.stage not in ENTRY[ST.CLOSED]:
        raise ValidationError(
            f"{organisation.ods_code} is in {organisation.get_stage_display()}: only an organisation in "
            "Sync & Switch or Mop-up can be closed"
        )
    open_left = Mailbox.objects.filter(organisation=organisation).exclude(state__in=FINISHED).count()
    if open_left:
        raise ValidationError(
            f"{organisation.ods_code} still has {open_left:,} mailbox(es) neither migrated nor retired"
        )
    if not _stage_move(
        Organisation.objects.filter(pk=organisation.pk), to_stage=ST.CLOSED, actor=actor, reason=reason
    ):
        raise ValidationError(f"{organisation.ods_code} changed stage meanwhile: reload and try again")
    organisation.refresh_from_db()
    return organisation
