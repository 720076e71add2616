"""Seed a demo programme once: a few dozen organisations with realistic ODS codes, a few thousand mailboxes
imported through the same service as uploads, and demo users whose passwords are printed.

Running it again changes nothing and prints the same credentials (kept in var/demo-credentials.json).
"""

import csv
import datetime as dt
import io
import json
import random
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from migrations_app.engines import get_engine
from migrations_app.models import Contact, Organisation, ProgrammeSettings, User, Wave
from migrations_app.planning.calendar import LONDON, Window, WindowRules, windows_between
from migrations_app.selectors.planning import closed_periods
from migrations_app.selectors.progress import NIGHT_STARTS_BY
from migrations_app.services.affinity import permissions_import
from migrations_app.services.imports import inventory_import
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.readiness.checks import readiness_check_dispatch, readiness_check_start
from migrations_app.services.waves import wave_approve, wave_go, wave_propose

R = Organisation.Region
K = Organisation.Kind

# (ODS code, name, kind, region, parent ODS code)
ORGANISATIONS = [
    ("QMJ", "NHS North Central London Integrated Care Board", K.ICB, R.LONDON, None),
    ("QOP", "NHS Greater Manchester Integrated Care Board", K.ICB, R.NORTH_WEST, None),
    ("QHM", "NHS Cumbria and North East Integrated Care Board", K.ICB, R.NORTH_EAST_YORKSHIRE, None),
    ("RJ1", "Guy's and St Thomas' NHS Foundation Trust", K.TRUST, R.LONDON, None),
    ("RJ121", "Guy's Hospital", K.TRUST_SITE, R.LONDON, "RJ1"),
    ("RJ122", "St Thomas' Hospital", K.TRUST_SITE, R.LONDON, "RJ1"),
    ("RRV", "University College London Hospitals NHS Foundation Trust", K.TRUST, R.LONDON, None),
    ("RRV03", "University College Hospital", K.TRUST_SITE, R.LONDON, "RRV"),
    ("RTH", "Oxford University Hospitals NHS Foundation Trust", K.TRUST, R.SOUTH_EAST, None),
    ("RTH08", "John Radcliffe Hospital", K.TRUST_SITE, R.SOUTH_EAST, "RTH"),
    ("RGT", "Cambridge University Hospitals NHS Foundation Trust", K.TRUST, R.EAST_OF_ENGLAND, None),
    ("RR8", "Leeds Teaching Hospitals NHS Trust", K.TRUST, R.NORTH_EAST_YORKSHIRE, None),
    ("RR813", "St James's University Hospital", K.TRUST_SITE, R.NORTH_EAST_YORKSHIRE, "RR8"),
    ("R0A", "Manchester University NHS Foundation Trust", K.TRUST, R.NORTH_WEST, None),
    ("RRK", "University Hospitals Birmingham NHS Foundation Trust", K.TRUST, R.MIDLANDS, None),
    ("RA7", "University Hospitals Bristol and Weston NHS Foundation Trust", K.TRUST, R.SOUTH_WEST, None),
    ("RTD", "The Newcastle upon Tyne Hospitals NHS Foundation Trust", K.TRUST, R.NORTH_EAST_YORKSHIRE, None),
    ("RX1", "Nottingham University Hospitals NHS Trust", K.TRUST, R.MIDLANDS, None),
    ("RHM", "University Hospital Southampton NHS Foundation Trust", K.TRUST, R.SOUTH_EAST, None),
    ("REM", "Liverpool University Hospitals NHS Foundation Trust", K.TRUST, R.NORTH_WEST, None),
    ("F83004", "Archway Medical Centre", K.GP_PRACTICE, R.LONDON, "QMJ"),
    ("F83010", "Hanley Primary Care Centre", K.GP_PRACTICE, R.LONDON, "QMJ"),
    ("F83017", "The Village Practice", K.GP_PRACTICE, R.LONDON, "QMJ"),
    ("F85002", "Bounds Green Group Practice", K.GP_PRACTICE, R.LONDON, "QMJ"),
    ("F85019", "Lawrence House Surgery", K.GP_PRACTICE, R.LONDON, "QMJ"),
    ("P84004", "Ancoats Urban Village Medical Practice", K.GP_PRACTICE, R.NORTH_WEST, "QOP"),
    ("P84009", "Ladybarn Group Practice", K.GP_PRACTICE, R.NORTH_WEST, "QOP"),
    ("P84017", "The Range Medical Centre", K.GP_PRACTICE, R.NORTH_WEST, "QOP"),
    ("P84034", "Mauldeth Medical Centre", K.GP_PRACTICE, R.NORTH_WEST, "QOP"),
    ("A81001", "The Densham Surgery", K.GP_PRACTICE, R.NORTH_EAST_YORKSHIRE, "QHM"),
    ("A81002", "Queens Park Medical Centre", K.GP_PRACTICE, R.NORTH_EAST_YORKSHIRE, "QHM"),
    ("A81004", "Acklam Medical Centre", K.GP_PRACTICE, R.NORTH_EAST_YORKSHIRE, "QHM"),
    ("A81005", "Springwood Surgery", K.GP_PRACTICE, R.NORTH_EAST_YORKSHIRE, "QHM"),
    ("A81006", "Tennant Street Medical Practice", K.GP_PRACTICE, R.NORTH_EAST_YORKSHIRE, "QHM"),
    ("FA006", "Boots Pharmacy, Camden High Street", K.PHARMACY, R.LONDON, None),
    ("FC427", "Well Pharmacy, Didsbury", K.PHARMACY, R.NORTH_WEST, None),
    ("FX513", "Middlesbrough Community Pharmacy", K.PHARMACY, R.NORTH_EAST_YORKSHIRE, None),
]

# Roughly how many mailboxes each kind of organisation has in the demo.
SIZES = {K.ICB: 60, K.TRUST: 260, K.TRUST_SITE: 70, K.GP_PRACTICE: 24, K.PHARMACY: 6}

FIRST = [
    "Amelia",
    "Olivia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Freya",
    "Oliver",
    "George",
    "Arthur",
    "Noah",
    "Muhammad",
    "Leo",
    "Oscar",
    "Harry",
    "Archie",
    "Jack",
    "Henry",
    "Charlie",
    "Thomas",
    "Priya",
    "Aisha",
    "Zara",
    "Omar",
    "Chloe",
]
LAST = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Khan",
    "Ahmed",
    "Ali",
    "Begum",
    "Okafor",
    "Murphy",
    "Kelly",
    "Hughes",
    "Edwards",
]
SHARED = [
    "Reception",
    "Appointments",
    "Referrals",
    "Pharmacy team",
    "Ward 10",
    "Theatres",
    "Outpatients",
    "Governance",
    "Rota",
    "Estates",
]

CREDENTIALS_FILE = "demo-credentials.json"
# The share of mailboxes the demo's pre-flight blocks, by reason (SIMULATED_PREFLIGHT_RATES overrides it).
DEMO_PREFLIGHT_RATES = {
    "NOT_LICENSED": 0.03,
    "TARGET_MISSING": 0.015,
    "OVER_QUOTA": 0.01,
    "ITEM_TOO_LARGE": 0.005,
}
# A trust site of the demo trust admin's, enrolled and imported but not checked: the visitor runs its check.
UNCHECKED = "RJ122"


class Command(BaseCommand):
    help = "Seed the demo programme once (idempotent) and print the demo sign-in details."

    def handle(self, *args, **options):
        path = Path(settings.VAR_DIR) / CREDENTIALS_FILE
        if not User.objects.filter(username="programme").exists():
            self._seed(path)
        self._print_credentials(path)

    def _print_credentials(self, path: Path) -> None:
        if not path.exists():
            self.stdout.write(
                "Demo users exist but var/demo-credentials.json is gone: reset passwords with manage.py changepassword"
            )
            return
        creds = json.loads(path.read_text())
        self.stdout.write(
            self.style.SUCCESS(f"\nDemo programme ready. Sign in at http://127.0.0.1:{_port()}/ as:")
        )
        for row in creds:
            self.stdout.write(f"  {row['role']:<28} user: {row['username']:<10} password: {row['password']}")
        self.stdout.write("")

    @transaction.atomic
    def _seed(self, path: Path) -> None:
        rng = random.Random(2026)
        orgs = {}
        for code, name, kind, region, parent in ORGANISATIONS:
            # Three in four organisations have met every readiness gate; the rest are part of the way there.
            ready = rng.random() < 0.75
            org = Organisation.objects.create(
                ods_code=code,
                name=name,
                kind=kind,
                region=region,
                parent=orgs.get(parent),
                status=Organisation.Status.ENROLLED,
                enrolled_at=timezone.now(),
                preferred_window=rng.choice(list(Organisation.WindowPreference.values)),
                gate_mfa_enforced=ready or rng.random() < 0.6,
                gate_acceptable_use=ready or rng.random() < 0.6,
                gate_licences_assigned=ready or rng.random() < 0.5,
                gate_service_desk_briefed=ready,
            )
            Contact.objects.create(
                organisation=org,
                role=Contact.Role.PRIMARY,
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                email=f"it.migration.{code.lower()}@nhs.net",
            )
            orgs[code] = org

        inventory, permissions = _demo_files(rng)
        inventory_import(source=io.BytesIO(inventory), organisation=None, actor=None)
        permissions_import(source=io.BytesIO(permissions), organisation=None, actor=None)
        # The readiness check (engine pre-flight, the simulated engine drawing a realistic mix of blocked
        # mailboxes by seed) for the organisations that met every gate, run here so the demo can be planned at
        # once; UNCHECKED is left for the visitor to check from its page (and watch the workers do it).
        engine = get_engine(
            "simulated",
            instant=True,
            preflight_rates=settings.MIGRATION_ENGINE_OPTIONS.get("simulated", {}).get("preflight_rates")
            or DEMO_PREFLIGHT_RATES,
        )
        orgs[UNCHECKED].__dict__.update(dict.fromkeys(Organisation.GATES, True))
        Organisation.objects.filter(pk=orgs[UNCHECKED].pk).update(**dict.fromkeys(Organisation.GATES, True))
        ready_orgs = [org for org in orgs.values() if org.gates_met and org.ods_code != UNCHECKED]
        for org in ready_orgs:
            check = readiness_check_start(actor=None, organisation=org, queue=False)
            readiness_check_dispatch(check_id=check.pk, inline=True, engine=engine)
        Organisation.objects.filter(pk__in=[o.pk for o in ready_orgs]).update(
            status=Organisation.Status.READY
        )

        creds = []
        for username, role, first, last, administers in [
            ("programme", User.Role.PROGRAMME_OFFICE, "Pat", "Programme", []),
            ("approver", User.Role.PROGRAMME_OFFICE, "Alex", "Approver", []),
            ("trust", User.Role.TRUST_ADMIN, "Tara", "Trust-Admin", ["RJ1", "RJ121", "RJ122"]),
            ("viewer", User.Role.VIEWER, "Vic", "Viewer", []),
        ]:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_user(
                username=username,
                password=password,
                role=role,
                first_name=first,
                last_name=last,
                email=f"{username}@example.nhs.uk",
            )
            user.organisations.set([orgs[c] for c in administers])
            creds.append(
                {
                    "username": username,
                    "password": password,
                    "role": user.get_role_display() + (f" ({', '.join(administers)})" if administers else ""),
                }
            )
        path.write_text(json.dumps(creds, indent=2))
        path.chmod(0o600)
        _demo_wave(User.objects.get(username="programme"), User.objects.get(username="approver"))


# A window closing sooner than this would carry the demo's mailboxes over before they move: the next one is
# opened early instead.
DEMO_TIME_NEEDED = dt.timedelta(hours=2)


def demo_window(rules: WindowRules, closed, now: dt.datetime) -> tuple[Window, dt.datetime, dt.datetime]:
    """The programme window the demo pilot runs in, and when it opens and closes: the window open now if it
    has two hours or more left (at Monday 01:07 that is the weekend's, Friday 18:00 to Monday 06:00, London
    time); in the small hours, the one open now kept open longer (the night it is charted under is its own:
    progress.night_of); else the next one, opened early so the demo moves at once. The wave's name says so."""
    today = now.astimezone(LONDON).date()
    windows = windows_between(rules, today - dt.timedelta(days=7), today + dt.timedelta(days=14), closed)
    current = [w for w in windows if w.starts_at <= now < w.ends_at]
    for window in current:
        if window.ends_at - now >= DEMO_TIME_NEEDED:
            return window, window.starts_at, window.ends_at
    if current and now.astimezone(LONDON).time() < NIGHT_STARTS_BY:
        return current[0], current[0].starts_at, now + DEMO_TIME_NEEDED
    upcoming = [w for w in windows if w.starts_at > now]
    if not upcoming:
        raise CommandError("no window in the next fortnight for the demo wave: check the programme settings")
    return upcoming[0], now - dt.timedelta(minutes=1), upcoming[0].ends_at


def _demo_wave(officer: User, approver: User) -> Wave:
    """A pilot wave through the real workflow (created, proposed, go from every organisation in it,
    approved by a second person) in the programme window open now (or the next one, opened early), so the
    beat starts it within a minute of `make run` and the workers are seen moving mailboxes."""
    now = timezone.now()
    rules = WindowRules.from_settings(ProgrammeSettings.load())
    today = now.astimezone(LONDON).date()
    window, opens, closes = demo_window(
        rules, closed_periods(today - dt.timedelta(days=7), today + dt.timedelta(days=14)), now
    )
    wave = pilot_wave_create(actor=officer, starts_on=window.first_day, kind=window.kind, per_organisation=15)
    if opens != window.starts_at:
        at = opens.astimezone(LONDON)
        name = f"{wave.name}, opened early for the demo at {at:%H:%M}"
        Wave.objects.filter(pk=wave.pk).update(name=name, starts_at=opens)
    elif closes != window.ends_at:
        at = closes.astimezone(LONDON)
        name = f"{wave.name}, kept open for the demo until {at:%H:%M}"
        Wave.objects.filter(pk=wave.pk).update(name=name, ends_at=closes)
    wave.refresh_from_db()
    wave_propose(wave=wave, actor=officer, reason="demo: the first pilot")
    for organisation in Organisation.objects.filter(mailboxes__wave=wave).distinct():
        wave_go(wave=wave, organisation=organisation, actor=officer, reason="demo")
    wave_approve(wave=wave, actor=approver, reason="demo: approved to run now")
    return wave


def _demo_files(rng: random.Random) -> tuple[bytes, bytes]:
    """A national inventory CSV (with an ods_code column) and a permissions CSV, as an admin would upload."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["ods_code", "email", "display_name", "kind", "size_bytes", "item_count", "affinity_group"]
    )
    perms = io.StringIO()
    pwriter = csv.writer(perms)
    pwriter.writerow(["mailbox", "delegate", "right"])
    for code, _name, kind, _region, _parent in ORGANISATIONS:
        domain = f"{code.lower()}.nhs.uk" if kind != K.GP_PRACTICE else "nhs.net"
        people = []
        for i in range(max(3, int(SIZES[kind] * rng.uniform(0.7, 1.3)))):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = (
                f"{first}.{last}{i}@{domain}".lower()
                if kind != K.GP_PRACTICE
                else f"{first}.{last}.{code}{i}@nhs.net".lower()
            )
            size = int(min(rng.lognormvariate(20.7, 1.3), 80 * 2**30))  # median ~1 GB, tail past 50 GB
            writer.writerow([code, email, f"{first} {last}", "user", size, max(1, size // 75_000), ""])
            people.append(email)
        for j, team in enumerate(rng.sample(SHARED, k=min(3, len(SHARED)))):
            shared = f"{team.replace(' ', '.')}.{code}{j}@{domain}".lower()
            writer.writerow(
                [
                    code,
                    shared,
                    f"{team} ({code})",
                    "shared",
                    rng.randint(2**28, 2**33),
                    rng.randint(5000, 90000),
                    "",
                ]
            )
            for delegate in rng.sample(people, k=min(len(people), rng.randint(2, 6))):
                pwriter.writerow([shared, delegate, "FullAccess"])
        if kind == K.TRUST:
            writer.writerow(
                [
                    code,
                    f"boardroom.{code}@{domain}".lower(),
                    f"Boardroom ({code})",
                    "room",
                    50_000_000,
                    2000,
                    "",
                ]
            )
    return out.getvalue().encode(), perms.getvalue().encode()


def _port() -> str:
    import os

    return os.environ.get("PORT", "8000")
