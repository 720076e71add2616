"""Where the programme stands: the reads behind the dashboard, the live wave page and an organisation's
progress. Every count comes from the mailbox counters (models.MailboxCounter, kept by triggers), a table of
about one row per (organisation, wave, state): never a count over the 2.1 million mailbox rows. The only
reads of mailbox rows here are the failed ones of one wave (mailbox_wave_state_idx).

Organisation stages are a state machine (services/readiness/stages.py); the dashboard counts them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from migrations_app.models import Mailbox, MailboxCounter, Organisation, User, Wave
from migrations_app.planning.calendar import LONDON
from migrations_app.selectors.scoping import counters_visible_to, organisations_visible_to

M = Mailbox.State
W = Wave.Status
OPEN_WAVE_STATUSES = (W.APPROVED, W.RUNNING, W.PAUSED)
# A wave that is moving or may still move: the live page polls while the wave is in one of these.
LIVE_WAVE_STATUSES = (W.APPROVED, W.RUNNING, W.PAUSED)
IN_FLIGHT = (M.SYNCING, M.SYNCED, M.CUTOVER, M.SWITCHING, M.VERIFYING)
THROUGHPUT_DAYS = 28
# A forecast needs this much history (days since the first measured wave, and waves measured): minutes of one
# pilot said "20 December 2026 at 18 mailboxes a day".
FORECAST_MIN_DAYS = 7
FORECAST_MIN_WAVES = 3


@dataclass
class StateCount:
    state: str
    label: str
    mailboxes: int
    bytes: int


def state_counts(counters: QuerySet[MailboxCounter]) -> list[StateCount]:
    """Every mailbox state with its mailboxes and bytes, zeros included (one GROUP BY over counters)."""
    rows = counters.order_by().values("state").annotate(n=Sum("mailboxes"), b=Sum("bytes"))
    found = {row["state"]: (row["n"] or 0, row["b"] or 0) for row in rows}
    return [StateCount(value, label, *found.get(value, (0, 0))) for value, label in M.choices]


NOT_HANDLED = (M.INVENTORIED, M.READY, M.BLOCKED)


def state_counts_and_attention(
    counters: QuerySet[MailboxCounter],
) -> tuple[list[StateCount], dict, dict[int, tuple[int, int]]]:
    """From one pass over the counters (the dashboard's; one GROUP BY (state, needed attention, wave), a few
    hundred groups): the counts by state; the share of mailboxes that needed attention, i.e. that failed or
    were retried at least once (mailbox.needed_attention), of those a wave has handled (scheduled or later,
    or rolled back out of their wave after needing attention); and {wave id: (mailboxes, bytes) migrated}."""
    rows = (
        counters.order_by()
        .values_list("state", "needed_attention", "wave_id")
        .annotate(n=Sum("mailboxes"), b=Sum("bytes"))
    )
    found: dict[str, list[int]] = {}
    per_wave: dict[int, list[int]] = {}
    handled = attention = 0
    for state, needed_attention, wave_id, n, b in rows:
        n, b = n or 0, b or 0
        entry = found.setdefault(state, [0, 0])
        entry[0] += n
        entry[1] += b
        if wave_id and state not in NOT_HANDLED:
            handled += n
            attention += n if needed_attention else 0
        elif not wave_id and needed_attention:  # rolled back out of their wave: still counted, and as handled
            handled += n
            attention += n
        if wave_id and state == M.MIGRATED and n:
            moved = per_wave.setdefault(wave_id, [0, 0])
            moved[0] += n
            moved[1] += b
    counts = [StateCount(value, label, *found.get(value, (0, 0))) for value, label in M.choices]
    return counts, _share(attention, handled), {k: (v[0], v[1]) for k, v in per_wave.items()}


def _share(attention: int, handled: int) -> dict:
    return {
        "mailboxes": attention,
        "of": handled,
        "percent": round(100 * attention / handled, 2) if handled else 0.0,
    }


def totals(counts: list[StateCount]) -> dict[str, int]:
    by_state = {c.state: c for c in counts}
    total = sum(c.mailboxes for c in counts)
    migrated = by_state[M.MIGRATED].mailboxes
    return {
        "mailboxes": total,
        "bytes": sum(c.bytes for c in counts),
        "migrated": migrated,
        "migrated_bytes": by_state[M.MIGRATED].bytes,
        "failed": by_state[M.FAILED].mailboxes,
        "in_flight": sum(by_state[s].mailboxes for s in IN_FLIGHT),
        "queued": by_state[M.SCHEDULED].mailboxes,
        "prestaged_bytes": sum(by_state[s].bytes for s in (M.SYNCED, M.CUTOVER, M.VERIFYING)),
        "percent": math.floor(100 * migrated / total) if total else 0,
    }


def organisation_stage_counts(user: User) -> list[tuple[str, str, int]]:
    """(stage, label, organisations) for the organisations the user sees: the stage each organisation is in
    (Organisation.stage, moved by services.readiness.stages), one GROUP BY over organisation_stage_idx."""
    counts = dict(organisations_visible_to(user).order_by().values_list("stage").annotate(n=Count("id")))
    return [(value, label, counts.get(value, 0)) for value, label in Organisation.Stage.choices]


def waves_overview(waves: QuerySet[Wave], *, now: dt.datetime | None = None, limit: int = 5) -> dict:
    """Waves upcoming (approved, or planned and not yet started), running (or paused), and done.

    One query: the waves a user sees are a programme's calendar (75 for the whole national programme in
    bench.pages, a handful for a trust), and each of six queries over waves_visible_to's subqueries cost more
    than reading them all (a third of the dashboard's CPU)."""
    now = now or timezone.now()
    rows = list(waves.order_by("starts_at", "id"))
    upcoming = [w for w in rows if w.status in (W.DRAFT, W.PROPOSED, W.APPROVED) and w.ends_at > now]
    running = [w for w in rows if w.status in (W.RUNNING, W.PAUSED)]
    done = [w for w in reversed(rows) if w.status == W.COMPLETED]
    return {
        "upcoming_count": len(upcoming),
        "running_count": len(running),
        "done_count": len(done),
        "upcoming": upcoming[:limit],
        "running": running[:limit],
        "done": done[:limit],
    }


# A window that opens after midnight and before this hour (London) belongs to the evening before: moves at
# Monday 01:24 are Sunday night's.
NIGHT_STARTS_BY = dt.time(6, 0)


def night_of(starts_at: dt.datetime) -> dt.date:
    """The London date of the night (evening or weekend) a window opening at that instant belongs to."""
    local = starts_at.astimezone(LONDON)
    return local.date() - dt.timedelta(days=1) if local.time() < NIGHT_STARTS_BY else local.date()


def _per_night(per_wave: dict[int, tuple[int, int]], waves: list[tuple[int, dt.datetime]]) -> dict:
    """{night: [mailboxes, bytes]} migrated by the waves (id, starts_at) given, each dated by night_of."""
    nights: dict[dt.date, list[int]] = {}
    for wave_id, starts_at in waves:
        moved, size = per_wave.get(wave_id, (0, 0))
        if not moved:
            continue
        entry = nights.setdefault(night_of(starts_at), [0, 0])
        entry[0] += moved
        entry[1] += size
    return nights


def moved_per_night(per_wave: dict[int, tuple[int, int]], *, nights: int = 14) -> list[dict]:
    """Mailboxes and bytes migrated per night, the night being the London date of the window each wave belongs
    to (night_of its start), for the last `nights` nights that moved anything, oldest first."""
    waves = list(Wave.objects.filter(pk__in=list(per_wave)).values_list("id", "starts_at"))
    chosen = sorted(_per_night(per_wave, waves).items())[-nights:]
    top_n = max((n for _, (n, _) in chosen), default=0)
    top_b = max((b for _, (_, b) in chosen), default=0)
    return [
        {
            "night": night,
            "mailboxes": n,
            "bytes": b,
            "mailbox_percent": round(100 * n / top_n) if top_n else 0,
            "bytes_percent": round(100 * b / top_b) if top_b else 0,
        }
        for night, (n, b) in chosen
    ]


def _finish(today: dt.date, remaining: int, per_day: float) -> dt.date:
    return today + dt.timedelta(days=math.ceil(remaining / per_day))


def forecast(
    per_wave: dict[int, tuple[int, int]], summary: dict[str, int], *, now: dt.datetime | None = None
) -> dict:
    """The finish date from measured throughput, with its basis and a range. The basis: mailboxes migrated by
    the waves that started in the last 28 days (or since the first, if the programme is younger), per day.
    The range: the same days moving at the pace of the slowest and of the fastest of those nights. No date
    with too little history (FORECAST_MIN_DAYS, FORECAST_MIN_WAVES): minutes of one pilot forecast nothing."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=THROUGHPUT_DAYS)
    recent = list(
        Wave.objects.filter(starts_at__gte=since, starts_at__lte=now).values_list("id", "starts_at")
    )
    measured = sum(per_wave.get(pk, (0, 0))[0] for pk, _ in recent)
    remaining = summary["mailboxes"] - summary["migrated"]
    nights = _per_night(per_wave, recent)
    result = {"measured": measured, "remaining": remaining, "per_day": 0.0, "finish": None}
    result.update(
        {
            "waves": sum(1 for pk, _ in recent if per_wave.get(pk, (0, 0))[0]),
            "days": 0.0,
            "nights": len(nights),
            "slowest_night": min((n for n, _ in nights.values()), default=0),
            "fastest_night": max((n for n, _ in nights.values()), default=0),
        }
    )
    if remaining <= 0 and summary["mailboxes"]:
        result["done"] = True  # nothing to forecast
        return result
    if not recent or not measured:
        return result
    first = min(starts for _, starts in recent)
    days = max(1.0, min(THROUGHPUT_DAYS, (now - first).total_seconds() / 86400))
    result["days"] = days
    if days < FORECAST_MIN_DAYS or result["waves"] < FORECAST_MIN_WAVES:
        result["too_little_history"] = True
        return result
    today = now.astimezone(LONDON).date()
    per_day = measured / days
    nights_per_day = len(nights) / days  # how often a window moved mail over those days
    result["per_day"] = per_day
    result["per_day_text"] = f"{per_day:,.1f}" if per_day < 10 else f"{round(per_day):,}"
    result["finish"] = _finish(today, remaining, per_day)
    # at the slowest night's pace every night: the latest date; at the fastest's: the earliest
    result["latest"] = _finish(today, remaining, result["slowest_night"] * nights_per_day)
    result["earliest"] = _finish(today, remaining, result["fastest_night"] * nights_per_day)
    return result


def dashboard(user: User, *, now: dt.datetime | None = None) -> dict:
    from migrations_app.selectors.waves import waves_visible_to

    counters = counters_visible_to(user)
    counts, attention, per_wave = state_counts_and_attention(counters)
    summary = totals(counts)
    return {
        "state_counts": counts,
        "summary": summary,
        "stages": organisation_stage_counts(user),
        "waves": waves_overview(waves_visible_to(user), now=now),
        "nights": moved_per_night(per_wave),
        "forecast": forecast(per_wave, summary, now=now),
        "attention": attention,
    }


# --- one wave, live ---------------------------------------------------------------------------------------------


def wave_progress(wave: Wave, user: User, *, now: dt.datetime | None = None) -> dict:
    """The live figures of a wave, for the organisations the user sees: counts and bytes by state, progress,
    the time left in the window, and failures by error code."""
    now = now or timezone.now()
    counters = counters_visible_to(user).filter(wave_id=wave.pk)
    counts = state_counts(counters)
    _add_allocated(wave, user, counts)
    summary = totals(counts)
    failures = (
        wave_failures(wave, user)
        if summary["failed"]
        else []  # no failed mailbox in the counters: no need to look at rows
    )
    if now < wave.starts_at:
        window = {"phase": "before", "delta": wave.starts_at - now}
    elif now < wave.ends_at:
        window = {"phase": "open", "delta": wave.ends_at - now}
    else:
        window = {"phase": "closed", "delta": now - wave.ends_at}
    return {
        "state_counts": counts,
        "summary": summary,
        "failures": failures,
        "window": window,
        "live": wave.status in LIVE_WAVE_STATUSES,
        "cutover_steps": wave_cutover_steps(wave, user) if summary["in_flight"] else [],
    }


def wave_progress_shared(wave: Wave, user: User) -> dict:
    """wave_progress, shared for WAVE_LIVE_CACHE_SECONDS (1 s) between everyone who sees the same
    organisations: thousands of trust admins poll their waves every 3 s, and the figures cannot change faster
    than the poll interval can show. Never older than that setting; 0 turns the sharing off."""
    from django.conf import settings

    from migrations_app.selectors.scoping import scope_key
    from migrations_app.selectors.shared import kept_shared

    seconds = settings.WAVE_LIVE_CACHE_SECONDS
    if seconds <= 0:
        return wave_progress(wave, user)
    key = f"wave-live:{wave.pk}:{wave.status}:{scope_key(user)}"
    return kept_shared(key, seconds, lambda: wave_progress(wave, user))


def wave_progress_etag(wave: Wave, progress: dict, *, can_retry: bool) -> str:
    """A validator for the live fragment: what it shows (figures, failures, steps, the window to the minute,
    the wave's status, the buttons offered), so an unchanged poll is answered 304 without rendering."""
    import hashlib
    import json

    window = progress["window"]
    shown = [
        wave.status,
        can_retry,
        progress["live"],
        progress["state_counts"],
        progress["summary"],
        progress["failures"],
        progress["cutover_steps"],
        window["phase"],
        int(window["delta"].total_seconds() // 60),
    ]
    digest = hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f'"{digest}"'


def _add_allocated(wave: Wave, user: User, counts: list[StateCount]) -> None:
    """A draft or proposed wave's mailboxes are mostly not stamped yet (the allocations say which: see
    selectors.waves), so the counters by wave do not hold them: count them as ready, from the members (at
    most a window's worth of rows, through the (organisation, state, id) index)."""
    from migrations_app.selectors.scoping import mailboxes_visible_to
    from migrations_app.selectors.waves import ALLOCATING_STATUSES, wave_allocated_condition

    if wave.status not in ALLOCATING_STATUSES:
        return
    condition = wave_allocated_condition(wave)
    if condition is None:
        return
    planned = mailboxes_visible_to(user).filter(condition).aggregate(n=Count("id"), b=Sum("size_bytes"))
    for count in counts:
        if count.state == M.READY:
            count.mailboxes += planned["n"] or 0
            count.bytes += planned["b"] or 0


# A mailbox's place in its cutover, in order: (state, cutover step) -> label.
CUTOVER_STEPS = (
    ((M.CUTOVER, ""), "Final delta"),
    ((M.CUTOVER, Mailbox.CutoverStep.SWITCH), "Switch"),
    ((M.SWITCHING, Mailbox.CutoverStep.SWITCH), "Waiting for the switch to be confirmed"),
    ((M.CUTOVER, Mailbox.CutoverStep.CATCH_UP), "Catch-up delta"),
    ((M.VERIFYING, Mailbox.CutoverStep.VERIFY), "Verify"),
)


def wave_cutover_steps(wave: Wave, user: User) -> list[dict]:
    """How many of the wave's mailboxes are at each cutover step: one GROUP BY over its cutting-over rows only
    (mailbox_wave_state_idx), a few hundred at a time, not the wave."""
    from migrations_app.selectors.scoping import mailboxes_visible_to

    rows = (
        mailboxes_visible_to(user)
        .filter(wave=wave, state__in=(M.CUTOVER, M.SWITCHING, M.VERIFYING))
        .order_by()
        .values_list("state", "cutover_step")
        .annotate(n=Count("id"))
    )
    found: dict[tuple[str, str], int] = {}
    for state, step, n in rows:
        if state == M.VERIFYING:
            step = Mailbox.CutoverStep.VERIFY
        elif state == M.CUTOVER and step == Mailbox.CutoverStep.FINAL_DELTA:
            step = ""
        found[(state, step)] = found.get((state, step), 0) + n
    return [{"step": label, "mailboxes": found.get(key, 0)} for key, label in CUTOVER_STEPS]


def wave_failures(wave: Wave, user: User) -> list[dict]:
    """Failed mailboxes of the wave grouped by error code, largest group first (mailbox_wave_state_idx: the
    failed rows of one wave only)."""
    from migrations_app.selectors.scoping import mailboxes_visible_to

    rows = (
        mailboxes_visible_to(user)
        .filter(wave=wave, state=M.FAILED)
        .order_by()
        .values("last_error_code")
        .annotate(n=Count("id"))
        .order_by("-n", "last_error_code")
    )
    return [{"code": row["last_error_code"], "mailboxes": row["n"]} for row in rows]


def failures_by_code(user: User) -> list[dict]:
    """Failure triage across the programme: failed mailboxes by error code, with how many organisations and
    waves each code touches (mailbox_state_idx: the failed rows only)."""
    from migrations_app.selectors.scoping import mailboxes_visible_to

    rows = (
        mailboxes_visible_to(user)
        .filter(state=M.FAILED)
        .order_by()
        .values("last_error_code")
        .annotate(
            n=Count("id"),
            organisations=Count("organisation_id", distinct=True),
            waves=Count("wave_id", distinct=True),
        )
        .order_by("-n", "last_error_code")
    )
    return [
        {
            "code": row["last_error_code"],
            "mailboxes": row["n"],
            "organisations": row["organisations"],
            "waves": row["waves"],
        }
        for row in rows
    ]


# --- one organisation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganisationCounters:
    """An organisation's counters read once for a page: [(state, wave id, mailboxes, bytes)], summed over
    whatever else a counter row is keyed by. The organisation page's sections (progress, waves, readiness,
    support) each read the same few dozen rows; one query instead of five."""

    rows: list[tuple[str, int, int, int]]

    def any_in(self, state: str) -> bool:
        return any(s == state and n > 0 for s, _, n, _ in self.rows)


def organisation_counters(organisation: Organisation) -> OrganisationCounters:
    rows = (
        MailboxCounter.objects.filter(organisation_id=organisation.pk)
        .order_by()
        .values_list("state", "wave_id")
        .annotate(n=Sum("mailboxes"), b=Sum("bytes"))
    )
    return OrganisationCounters([(state, wave, n or 0, b or 0) for state, wave, n, b in rows])


def organisation_progress(organisation: Organisation, counters: OrganisationCounters | None = None) -> dict:
    if counters is None:
        counters = organisation_counters(organisation)
    found: dict[str, list[int]] = {}
    for state, _, n, b in counters.rows:
        entry = found.setdefault(state, [0, 0])
        entry[0] += n
        entry[1] += b
    counts = [StateCount(value, label, *found.get(value, (0, 0))) for value, label in M.choices]
    summary = totals(counts)
    return {"state_counts": counts, "summary": summary, "live": summary["in_flight"] > 0}


def organisation_wave_ids(
    organisation: Organisation, counters: OrganisationCounters | None = None
) -> list[int]:
    """The waves the organisation has mailboxes in (counters) or is allocated to (allocations)."""
    from migrations_app.models import Allocation

    if counters is None:
        counters = organisation_counters(organisation)
    stamped = {wave for _, wave, n, _ in counters.rows if wave and n}
    allocated = set(Allocation.objects.filter(organisation=organisation).values_list("wave_id", flat=True))
    return sorted(stamped | allocated)


def organisation_counts_in_waves(
    organisation: Organisation, wave_ids: list[int], counters: OrganisationCounters | None = None
) -> dict[int, tuple[int, int]]:
    """{wave id: (mailboxes, migrated)} for the organisation's stamped mailboxes in those waves."""
    if counters is None:
        counters = organisation_counters(organisation)
    wanted, found = set(wave_ids), {}
    for state, wave, n, _ in counters.rows:
        if wave in wanted:
            entry = found.setdefault(wave, [0, 0])
            entry[0] += n
            entry[1] += n if state == M.MIGRATED else 0
    return {wave: (n, migrated) for wave, (n, migrated) in found.items()}
