"""Source and target systems: the programme office registers them. The secrets (the copy's and the switch's)
are encrypted at rest (the field does it) and never returned by anything."""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from migrations_app.models import Endpoint, User
from migrations_app.outbound import OutboundRefused, outbound_check_url
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record

FIELDS = (
    "name",
    "kind",
    "role",
    "address",
    "port",
    "security",
    "username",
    "options",
    "max_concurrency",
    "switch_method",
    "switch_address",
    "switch_username",
    "switch_sessions",
    "switch_timeout_seconds",
    "routing_domain",
)
SECRETS = ("secret", "switch_secret")


@transaction.atomic
def endpoint_save(*, actor: User, data: Mapping[str, Any], endpoint: Endpoint | None = None) -> Endpoint:
    """Create (endpoint=None) or update an endpoint; a blank or absent secret keeps the one it has."""
    require_programme_office(actor)
    creating = endpoint is None
    endpoint = endpoint or Endpoint()
    for name in FIELDS:
        if name in data:
            setattr(endpoint, name, data[name])
    for name in SECRETS:
        if data.get(name):
            setattr(endpoint, name, data[name])
    endpoint.full_clean(exclude=list(SECRETS))
    if endpoint.kind == Endpoint.Kind.GRAPH:
        _check_graph(endpoint)
    _check_fetched_options(endpoint.options or {})
    if endpoint.kind == Endpoint.Kind.EXCHANGE:
        _check_exchange(endpoint)
    _check_switch(endpoint)
    endpoint.save()
    changed = sorted(k for k in data if k in FIELDS or k in SECRETS)
    event_record(
        action="endpoint.created" if creating else "endpoint.updated",
        actor=actor,
        subject=endpoint.name,
        data={"endpoint": endpoint.pk, "fields": changed},
    )
    return endpoint


def _check_fetched_options(options: Mapping[str, Any]) -> None:
    """What the server will fetch or open from an endpoint's options is held to the outbound rules:
    graph_url, service_endpoint and authority_host are URLs (a host) to a public address over https
    (migrations_app/outbound.py), ca_file a file inside
    ENDPOINT_CA_DIR (never an arbitrary path on the server)."""
    errors: dict[str, str] = {}
    # every URL or host an option names is checked again at every request (outbound_transport.py); here only
    # its form, so a mistake is told to the person saving it rather than found by the night's copy
    fetched = {
        "graph_url": options.get("graph_url"),
        "service_endpoint": options.get("service_endpoint"),  # EWS's URL, when not built from the address
        "authority_host": options.get("authority_host") and f"https://{options['authority_host']}/",
    }
    for name, url in fetched.items():
        if url:
            try:
                outbound_check_url(str(url))
            except OutboundRefused as exc:
                errors["options"] = f"{name}: {exc}"
    if options.get("ca_file"):
        ca_dir = Path(settings.ENDPOINT_CA_DIR).resolve() if settings.ENDPOINT_CA_DIR else None
        path = Path(str(options["ca_file"]))
        if ca_dir is None or not path.resolve().is_relative_to(ca_dir):
            errors["options"] = "ca_file: put the CA file in the directory named by ENDPOINT_CA_DIR"
    if errors:
        raise ValidationError(errors)


GRAPH_IMPORT_MODES = ("json", "mime")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _check_graph(endpoint: Endpoint) -> None:
    """A Graph endpoint: address = tenant ID (never a multi-tenant alias), username = application (client) ID,
    secret = client secret or a PEM private key (then options.certificate_thumbprint), options.import_mode
    json (default) or mime (docs/adr/009-graph-engine.md)."""
    errors: dict[str, str] = {}
    tenant = endpoint.address.strip()
    if not tenant or tenant.lower() in ("common", "organizations", "consumers"):
        errors["address"] = "Enter the Entra tenant ID (a GUID) of the Exchange Online tenant"
    if not _GUID.match(endpoint.username.strip()):
        errors["username"] = "Enter the application (client) ID of the app registration (a GUID)"
    options = endpoint.options or {}
    if options.get("import_mode", "json") not in GRAPH_IMPORT_MODES:
        errors["options"] = "import_mode must be json or mime"
    secret = endpoint.secret or ""
    if "PRIVATE KEY-----" in secret and not options.get("certificate_thumbprint"):
        errors["options"] = "A certificate key needs options.certificate_thumbprint (its SHA-1 thumbprint)"
    if not secret:
        errors["secret"] = "Enter the client secret, or the certificate's private key (PEM)"  # noqa: S105
    if errors:
        raise ValidationError(errors)


EXCHANGE_AUTH = ("ntlm", "basic")


def _check_exchange(endpoint: Endpoint) -> None:
    """An Exchange 2013 endpoint (a source only): address = the CAS host name, username = the service account
    that holds ApplicationImpersonation (DOMAIN\\user or a UPN), secret = its password; options.auth ntlm
    (default) or basic, options.ca_file a private CA bundle on the workers, options.include_archive,
    options.max_connections (EWS connections per worker, default 4). docs/adr/014-exchange-engine.md."""
    errors: dict[str, str] = {}
    options = endpoint.options or {}
    if endpoint.role != Endpoint.Role.SOURCE:
        errors["role"] = (
            "An Exchange 2013 endpoint can only be a source (the target is Exchange Online, Graph)"
        )
    if not endpoint.address.strip() and not options.get("service_endpoint"):
        errors["address"] = (
            "Enter the Exchange server's host name (its EWS URL is https://HOST/EWS/Exchange.asmx)"
        )
    if not endpoint.username.strip():
        errors["username"] = "Enter the service account that holds the ApplicationImpersonation role"
    if not endpoint.secret:
        errors["secret"] = "Enter the service account's password"  # noqa: S105
    if str(options.get("auth", "ntlm")).lower() not in EXCHANGE_AUTH:
        errors["options"] = "auth must be ntlm or basic"
    elif (
        not isinstance(options.get("max_connections", 4), int)
        or not 1 <= options.get("max_connections", 4) <= 64
    ):
        errors["options"] = "max_connections must be a whole number from 1 to 64"
    if errors:
        raise ValidationError(errors)


_ROUTING_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$")


def _check_switch(endpoint: Endpoint) -> None:
    """How a source switches its mailboxes (docs/adr/013-the-switch.md): PowerShell needs the Exchange server's
    host name, an account and its password; a webhook an https:// URL that is not an internal address and a
    signing secret; both the tenant's routing domain."""
    method = endpoint.switch_method
    M = Endpoint.SwitchMethod
    errors: dict[str, str] = {}
    if method in (M.EXCHANGE_POWERSHELL, M.WEBHOOK):
        domain = endpoint.routing_domain.strip().lower()
        if not _ROUTING_DOMAIN.match(domain):
            errors["routing_domain"] = "Enter the tenant's routing domain, e.g. contoso.mail.onmicrosoft.com"
        endpoint.routing_domain = domain
        if not endpoint.switch_secret:
            errors["switch_secret"] = (
                "Enter the account's password"
                if method == M.EXCHANGE_POWERSHELL
                else "Enter the signing secret"
            )
    if method == M.EXCHANGE_POWERSHELL:
        if not endpoint.switch_address.strip() or "/" in endpoint.switch_address:
            errors["switch_address"] = (
                "Enter the Exchange server's host name (its /PowerShell endpoint is used)"
            )
        if not endpoint.switch_username.strip():
            errors["switch_username"] = "Enter the account that holds the Mail Recipients role"
    if method == M.WEBHOOK:
        # the outbound rules (migrations_app/outbound.py); the switcher sends through outbound_request too
        try:
            endpoint.switch_address = outbound_check_url(endpoint.switch_address)
        except OutboundRefused as exc:
            errors["switch_address"] = str(exc)
        if endpoint.switch_secret and len(endpoint.switch_secret) < 24:
            errors["switch_secret"] = "Use a random signing secret of at least 24 characters"  # noqa: S105
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def endpoint_delete(*, actor: User, endpoint: Endpoint) -> None:
    require_programme_office(actor)
    event_record(
        action="endpoint.deleted", actor=actor, subject=endpoint.name, data={"endpoint": endpoint.pk}
    )
    endpoint.delete()
