"""Shared fixtures: a programme officer, two trust admins of different organisations, and a viewer, so every
permission boundary is one line to test. Services that are missing skip with the reason, unless
REQUIRE_SERVICES=1 (set by .ci/run), which turns the skip into a failure."""

import os

import pytest
from django.db import connection
from kombu import pools

from portal.celery import app
from tests.factories import OrganisationFactory, UserFactory
from tests.switch_fixtures import fake_exchange_ps  # noqa: F401 (a fixture for the switch tests)

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres(db):
    """Use in tests of the PostgreSQL-only paths (COPY, triggers)."""
    if connection.vendor != "postgresql":
        skip_or_fail("this test needs PostgreSQL: set DATABASE_URL=postgres://...")
    return connection


@pytest.fixture
def org_a(db):
    return OrganisationFactory(ods_code="RJ1", name="Guy's and St Thomas' NHS Foundation Trust")


@pytest.fixture
def org_b(db):
    return OrganisationFactory(
        ods_code="RRV", name="University College London Hospitals NHS Foundation Trust"
    )


@pytest.fixture
def officer(db):
    return UserFactory(username="officer", role="programme_office")


@pytest.fixture
def approver(db):
    return UserFactory(username="approver", role="programme_office")


@pytest.fixture
def admin_a(db, org_a):
    user = UserFactory(username="admin_a", role="trust_admin")
    user.organisations.add(org_a)
    return user


@pytest.fixture
def admin_b(db, org_b):
    user = UserFactory(username="admin_b", role="trust_admin")
    user.organisations.add(org_b)
    return user


@pytest.fixture
def viewer(db):
    return UserFactory(username="viewer", role="viewer")


@pytest.fixture
def client_for(client):
    """client_for(user) -> a test client signed in as that user."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def _drop_connection_pools() -> None:
    # The app keeps its broker connections in kombu's global pools, made on first use with the options of
    # that moment: reset them so this test's broker settings apply, and the next test starts clean too.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def real_broker(settings, tmp_path):
    """Tasks go to a real broker (the configured one, or a private filesystem queue) for start_worker()."""
    saved = {
        "task_always_eager": app.conf.task_always_eager,
        "broker_url": app.conf.broker_url,
        "broker_transport_options": app.conf.broker_transport_options,
    }
    app.conf.task_always_eager = False
    if app.conf.broker_url.startswith("filesystem://"):
        (tmp_path / "queue").mkdir()
        app.conf.broker_transport_options = {
            "control_folder": str(tmp_path),
            "data_folder_in": str(tmp_path / "queue"),
            "data_folder_out": str(tmp_path / "queue"),
        }
    _drop_connection_pools()
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    yield app
    app.conf.update(saved)
    _drop_connection_pools()
