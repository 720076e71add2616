"""Shared fixtures: a programme officer, two trust admins of different organisations, and a viewer, so every
permission boundary is one line to test. Services that are missing skip with the reason, unless
REQUIRE_SERVICES=1 (set by .ci/run), which turns the skip into a failure."""

import os

import pytest
from django.db import connection

from tests.factories import OrganisationFactory, UserFactory

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
