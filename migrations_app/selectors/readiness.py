"""Readiness reads that pages, the API and the planner share: required gates, blocked mailboxes by reason,
what the planner leaves out and why, organisations by stage. Counts come from the mailbox counters or the
partial index of blocked mailboxes, never from a walk over the mailbox table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet, Sum

from migrations_app.models import Mailbox, MailboxCounter, Organisation, ProgrammeSettings, ReadinessCheck
from migrations_app.services.readiness.codes import BlockedReason, blocked_reason

M = Mailbox.State
NOT_CHECKED = "NOT_CHECKED"
GATES_MISSING = "GATES_MISSING"


def required_gates(settings: ProgrammeSettings | None = None) -> list[str]:
    settings = settings or ProgrammeSettings.load()
    return [g for g in Organisation.GATES if g in (settings.required_gates or [])]


def gates_unmet_condition(required: list[str]) -> Q | None:
    """Organisations missing any required gate (None: no gate required, nobody is held back)."""
    if not required:
        return None
    condition = Q()
    for gate in required:
        condition |= Q(**{gate: False})
    return condition


def organisations_gates_unmet(required: list[str] | None = None) -> QuerySet[Organisation]:
    required = required_gates() if required is None else required
    condition = gates_unmet_condition(required)
    return Organisation.objects.filter(condition) if condition is not None else Organisation.objects.none()


def gate_labels(names: list[str]) -> list[str]:
    return [str(Organisation._meta.get_field(n).verbose_name) for n in names]


@dataclass
class BlockedCount:
    reason: BlockedReason
    mailboxes: int


def blocked_by_reason(organisation_ids: list[int] | None = None) -> list[BlockedCount]:
    """Blocked mailboxes by code (one organisation's, several, or programme-wide): the partial index
    mailbox_blocked_idx holds the blocked ones only, and COUNT(*) (not COUNT(id): id is not in the index) lets
    PostgreSQL answer from the index alone (13 ms against 220-690 ms for 52,000 blocked of 2.1M)."""
    qs = Mailbox.objects.filter(state=M.BLOCKED)
    if organisation_ids is not None:
        qs = qs.filter(organisation_id__in=organisation_ids)
    rows = qs.order_by().values_list("blocked_code").annotate(n=Count("*")).order_by("-n", "blocked_code")
    return [BlockedCount(blocked_reason(code), n) for code, n in rows]


def last_check(organisation: Organisation) -> ReadinessCheck | None:
    return ReadinessCheck.objects.filter(organisation=organisation).order_by("-id").first()


@dataclass
class LeftOutReason:
    code: str
    message: str
    mailboxes: int

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "mailboxes": self.mailboxes}


@dataclass
class LeftOut:
    organisation_id: int
    ods_code: str
    name: str
    mailboxes: int = 0
    reasons: list[LeftOutReason] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "ods_code": self.ods_code,
            "name": self.name,
            "mailboxes": self.mailboxes,
            "reasons": [r.as_dict() for r in self.reasons],
        }


def plan_left_out() -> list[LeftOut]:
    """Every organisation the planner leaves out, wholly or in part, and why: required gates missing (all
    its unplanned mailboxes wait), mailboxes inventoried but not checked yet, mailboxes blocked (by reason).
    From the counters (mailboxes in no wave, by state), then the blocked ones by code for those organisations."""
    required = required_gates()
    unplanned = (
        MailboxCounter.objects.filter(wave_id=0, state__in=(M.INVENTORIED, M.READY, M.BLOCKED))
        .exclude(mailboxes=0)
        .order_by()
        .values_list("organisation_id", "state")
        .annotate(n=Sum("mailboxes"))
    )
    by_org: dict[int, dict[str, int]] = defaultdict(dict)
    for org_id, state, n in unplanned:
        by_org[org_id][state] = by_org[org_id].get(state, 0) + n
    unmet = set()
    condition = gates_unmet_condition(required)
    if condition is not None and by_org:
        unmet = set(Organisation.objects.filter(condition, pk__in=list(by_org)).values_list("pk", flat=True))
    relevant = {
        o for o, states in by_org.items() if o in unmet or states.get(M.INVENTORIED) or states.get(M.BLOCKED)
    }
    if not relevant:
        return []
    orgs = {
        pk: (code, name, [g for g, met in zip(required, gates, strict=True) if not met])
        for pk, code, name, *gates in Organisation.objects.filter(pk__in=relevant).values_list(
            "pk", "ods_code", "name", *required
        )
    }
    blocked: dict[int, list[tuple[str, int]]] = defaultdict(list)
    blocked_rows = (
        Mailbox.objects.filter(state=M.BLOCKED, organisation_id__in=list(relevant))
        .order_by()
        .values_list("organisation_id", "blocked_code")
        .annotate(n=Count("id"))
    )
    for org_id, code, n in blocked_rows:
        blocked[org_id].append((code, n))
    result = []
    for org_id in relevant:
        code, name, missing = orgs[org_id]
        states = by_org[org_id]
        item = LeftOut(org_id, code, name)
        if org_id in unmet:
            item.reasons.append(
                LeftOutReason(
                    GATES_MISSING,
                    "Readiness gates not met: " + ", ".join(gate_labels(missing)),
                    states.get(M.READY, 0),
                )
            )
            item.mailboxes += states.get(M.READY, 0)
        if states.get(M.INVENTORIED):
            n = states[M.INVENTORIED]
            item.reasons.append(
                LeftOutReason(
                    NOT_CHECKED,
                    f"{n:,} mailbox(es) inventoried but not checked yet: run the readiness check",
                    n,
                )
            )
            item.mailboxes += n
        for blocked_code, n in sorted(blocked[org_id], key=lambda x: (-x[1], x[0])):
            reason = blocked_reason(blocked_code)
            item.reasons.append(LeftOutReason(f"BLOCKED:{reason.code}", f"{n:,} blocked: {reason.text}", n))
            item.mailboxes += n
        result.append(item)
    result.sort(key=lambda i: (-i.mailboxes, i.ods_code))
    return result


def organisations_by_stage(organisations: QuerySet[Organisation]) -> dict[str, int]:
    counts = dict(organisations.order_by().values_list("stage").annotate(n=Count("id")))
    return {stage: counts.get(stage, 0) for stage in Organisation.Stage.values}


def blocked_by_reason_visible_to(user) -> list[BlockedCount]:
    """Blocked mailboxes by reason across what the user sees (the dashboard). The counters say first whether
    anything is blocked at all; only then are the blocked rows grouped (partial index, blocked rows only)."""
    from migrations_app.selectors.scoping import _own_organisation_ids, counters_visible_to

    if not counters_visible_to(user).filter(state=M.BLOCKED, mailboxes__gt=0).exists():
        return []
    if user.is_programme_office or user.is_viewer:
        return blocked_by_reason()
    return blocked_by_reason(_own_organisation_ids(user))
