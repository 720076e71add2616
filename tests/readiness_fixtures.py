"""Helpers for the readiness tests: inventoried mailboxes, a check run to the end (tasks eager, on-commit
callbacks run), and a simulated engine whose pre-flight blocks a given share."""

import pytest

from migrations_app.models import Mailbox, Organisation, ReadinessCheck
from migrations_app.services.readiness.checks import readiness_check_start
from tests.wave_fixtures import ready_mailboxes


def inventoried(organisation: Organisation, count: int, **extra) -> list[Mailbox]:
    return ready_mailboxes(organisation, count, state=Mailbox.State.INVENTORIED, **extra)


@pytest.fixture
def preflight_rates(settings):
    """preflight_rates({"NOT_LICENSED": 0.2}): the simulated engine blocks that share, deterministically."""

    def configure(rates: dict[str, float]) -> None:
        settings.MIGRATION_ENGINE_OPTIONS = {
            **settings.MIGRATION_ENGINE_OPTIONS,
            "simulated": {"instant": True, "preflight_rates": rates},
        }

    configure({})
    return configure


@pytest.fixture
def run_check(django_capture_on_commit_callbacks):
    """run_check(actor=..., organisation=...) -> the finished check (the workers' tasks run eagerly)."""

    def run(**kwargs) -> ReadinessCheck:
        with django_capture_on_commit_callbacks(execute=True):
            check = readiness_check_start(**kwargs)
        check.refresh_from_db()
        return check

    return run
