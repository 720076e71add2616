"""Helpers for the switch tests: a source endpoint switched by a given method, and the fake Exchange endpoint."""

import pytest

from migrations_app.models import Endpoint
from migrations_app.switchers.powershell import close_pools
from tests.fakes.exchange_powershell import FakeExchange

FAKE_CLIENT = "tests.fakes.exchange_powershell"
ROUTING_DOMAIN = "nhs.mail.onmicrosoft.com"


def switch_endpoint(method: str, **fields) -> Endpoint:
    """A simulated source (the simulated engine copies) whose mailboxes are switched by `method`."""
    defaults = dict(
        name=f"Trust Exchange ({method})",
        kind=Endpoint.Kind.SIMULATED,
        role=Endpoint.Role.SOURCE,
        switch_method=method,
        switch_address="ex01.trust.nhs.uk",
        switch_username="svc-switch",
        switch_secret="s3cret",
        switch_sessions=4,
        routing_domain=ROUTING_DOMAIN,
    )
    return Endpoint.objects.create(**{**defaults, **fields})


@pytest.fixture
def fake_exchange_ps(tmp_path, monkeypatch, settings):
    """The fake Exchange PowerShell endpoint, selected for the switchers; its sessions closed afterwards."""
    monkeypatch.setenv("FAKE_EXCHANGE_DIR", str(tmp_path / "exchange"))
    settings.SWITCH_POWERSHELL_CLIENT = FAKE_CLIENT
    close_pools()
    yield FakeExchange(tmp_path / "exchange")
    close_pools()
