"""EWS's transport: exchangelib's HTTP adapter held to the outbound rules (migrations_app/outbound_transport.py)
with a private CA per host, the service URL of an endpoint, and exchangelib's and the transport's errors as our
typed errors. Plain Python: no Django."""

from __future__ import annotations

import requests

from migrations_app.engines.base import (
    AUTH_FAILED,
    IMPERSONATION_REFUSED,
    NETWORK,
    PROTOCOL,
    SERVER_BUSY,
    SOURCE_MISSING,
    TLS_FAILED,
    EndpointSpec,
    EngineError,
    PermanentError,
    RetryableError,
)
from migrations_app.outbound_transport import OutboundAdapter, OutboundRefusedError

EWS_PATH = "/EWS/Exchange.asmx"
_ca_files: dict[str, str] = {}  # host -> private CA file (an endpoint's options.ca_file), read by the adapter


def install_exchange_adapter() -> None:
    """exchangelib makes its own sessions from its HTTP adapter class. Ours obeys the outbound rules at every
    request (the CAS name resolved once and checked, the connection made to that address with the name as SNI
    and Host: migrations_app/outbound_transport.py), and gives a private CA per host."""
    from exchangelib.protocol import BaseProtocol

    class ExchangeAdapter(OutboundAdapter):
        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            host = requests.utils.urlparse(request.url).hostname or ""
            if verify is not False:
                verify = _ca_files.get(host, verify)
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert)

    BaseProtocol.HTTP_ADAPTER_CLS = ExchangeAdapter


def service_endpoint(endpoint: EndpointSpec) -> str:
    if endpoint.options.get("service_endpoint"):
        return endpoint.options["service_endpoint"]
    scheme = "http" if endpoint.security == "plain" else "https"
    port = f":{endpoint.port}" if endpoint.port else ""
    return f"{scheme}://{endpoint.host}{port}{EWS_PATH}"


def _refusal(exc: BaseException | None) -> OutboundRefusedError | None:
    """The outbound refusal behind an exception (exchangelib re-raises it as ErrorTimeoutExpired)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OutboundRefusedError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def ews_error(exc: Exception, where: str = "source") -> EngineError:
    """An exchangelib or transport error as our typed error."""
    from exchangelib import errors

    name = type(exc).__name__
    text = f"{where}: {name}: {exc}"
    if isinstance(exc, errors.ErrorServerBusy):
        return RetryableError(SERVER_BUSY, text, retry_after=getattr(exc, "back_off", None))
    if isinstance(exc, (errors.ErrorImpersonateUserDenied, errors.ErrorImpersonationFailed)):
        return PermanentError(
            IMPERSONATION_REFUSED,
            f"{where}: the service account may not impersonate this mailbox (grant the ApplicationImpersonation "
            f"role to it): {exc}",
        )
    if isinstance(exc, (errors.ErrorNonExistentMailbox, errors.ErrorMailboxMoveInProgress)):
        return PermanentError(SOURCE_MISSING, f"{where}: no such mailbox on Exchange: {exc}")
    if isinstance(exc, errors.UnauthorizedError):
        return PermanentError(AUTH_FAILED, f"{where}: Exchange refused the service account's credentials")
    refused = _refusal(exc)
    if refused is not None:
        # the outbound rules refused the CAS's address (configuration, not a blip: no retry)
        return PermanentError(NETWORK, f"{where}: refused: {refused}")
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(TLS_FAILED, text)
    if isinstance(exc, (requests.RequestException, errors.TransportError, OSError)):
        if isinstance(exc, errors.ResponseMessageError):
            return PermanentError(PROTOCOL, text)
        return RetryableError(NETWORK, text)
    return PermanentError(PROTOCOL, text)


# --- the reader ----------------------------------------------------------------------------------------------
