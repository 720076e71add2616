"""Which engine copies a wave's mailboxes, and the spec (endpoints, identities, sizes) it is given."""

from __future__ import annotations

from django.conf import settings

from migrations_app.engines import EndpointSpec, Engine, MailboxSpec, get_engine
from migrations_app.models import Endpoint, Mailbox, Wave


def _endpoint_spec(endpoint: Endpoint | None) -> EndpointSpec:
    if endpoint is None:
        return EndpointSpec(kind="simulated")
    return EndpointSpec(
        kind=endpoint.kind,
        host=endpoint.address,
        port=endpoint.port or 0,
        security=endpoint.security,
        username=endpoint.username,
        password=endpoint.secret,
        options=dict(endpoint.options or {}),
    )


def mailbox_spec(mailbox: Mailbox, wave: Wave) -> MailboxSpec:
    return MailboxSpec(
        email=mailbox.email,
        source=_endpoint_spec(wave.source_endpoint),
        target=_endpoint_spec(wave.target_endpoint),
        source_user=mailbox.source_identity or mailbox.email,
        target_user=mailbox.target_upn or mailbox.email,  # its UPN on the target, when the inventory gave one
        size_bytes=mailbox.size_bytes,
        item_count=mailbox.item_count,
        seed=mailbox.pk,
    )


def _is_graph(endpoint: Endpoint | None) -> bool:
    return endpoint is not None and endpoint.kind == Endpoint.Kind.GRAPH


def engine_kind(source: Endpoint | None, target: Endpoint | None) -> str:
    """An Exchange 2013 source means the exchange engine (EWS export, Graph import); otherwise a Graph (Exchange
    Online) target means the graph engine (it reads IMAP); otherwise the source endpoint's kind; no endpoints
    means the simulated engine. Waves and the readiness check both choose by this."""
    if source is not None and source.kind == Endpoint.Kind.EXCHANGE:
        return "exchange"
    if _is_graph(target):
        return "graph"
    return source.kind if source is not None else "simulated"


def wave_engine(wave: Wave) -> Engine:
    kind = engine_kind(wave.source_endpoint if wave.source_endpoint_id else None, wave.target_endpoint)
    return get_engine(kind, **settings.MIGRATION_ENGINE_OPTIONS.get(kind, {}))
