"""Shared fixtures: a programme officer, two trust admins of different organisations, and a viewer, so every
permission boundary is one line to test. Services that are missing skip with the reason, unless
REQUIRE_SERVICES=1 (set by .ci/run), which turns the skip into a failure."""

import os

import pgtrigger
import pytest
from django.db import connection
from kombu import pools

from portal.celery import app
from tests.factories import OrganisationFactory, UserFactory
from tests.switch_fixtures import fake_exchange_ps  # noqa: F401 (a fixture for the switch tests)

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit and lockout counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True, scope="session")
def _flush_past_the_audit_trails_truncate_trigger():
    """pytest-django empties the tables after a transactional test with one TRUNCATE (`flush`), which the audit
    trail's statement trigger refuses, as it should in production. Tests let that flush alone through, by
    django-pgtrigger's ignore for that one trigger; every other statement still meets it."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        if self.connection.vendor != "postgresql":
            return original(self, sql_list)
        with pgtrigger.ignore("migrations_app.Event:event_no_truncate"):
            return original(self, sql_list)

    patch = pytest.MonkeyPatch()
    patch.setattr(BaseDatabaseOperations, "execute_sql_flush", execute_sql_flush)
    yield
    patch.undo()


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


from tests.readiness_fixtures import preflight_rates, run_check  # noqa: E402, F401


@pytest.fixture(scope="session")
def production_server(tmp_path_factory):
    """gunicorn serving the production profile (DEBUG unset, collectstatic's manifest) on the seeded demo, as
    README says to serve it (tests/production/server.py). One per test session."""
    from tests.production import server

    yield from server.start(tmp_path_factory.mktemp("production"))
