"""Signing in with Entra ID: MSAL's authorization-code flow (PKCE, state and nonce are MSAL's), and the user
and role the portal gives the person who came back.

People are keyed by the `oid` claim (stable for the life of the account; a UPN can be renamed and reused).
Portal roles come from the app roles in the `roles` claim, read at every sign-in, so a change in Entra takes
effect the next time the person signs in. App roles to create on the app registration (README):

    Programme.Officer   -> programme office (plans, proposes and runs waves)
    Programme.Approver  -> programme office (approves; four eyes keeps a proposer from approving their own)
    Trust.Admin         -> trust admin (of the organisations assigned in the portal, or named in a claim)
    Programme.Viewer    -> read-only viewer

Several roles: the strongest wins (programme office, then trust admin, then viewer). No role: refused.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.db import transaction

from migrations_app.models import Organisation, User
from migrations_app.services.events import event_record

log = logging.getLogger(__name__)

ROLE_PROGRAMME_OFFICER = "Programme.Officer"
ROLE_PROGRAMME_APPROVER = "Programme.Approver"
ROLE_TRUST_ADMIN = "Trust.Admin"
ROLE_VIEWER = "Programme.Viewer"
APP_ROLES = {
    ROLE_PROGRAMME_OFFICER: User.Role.PROGRAMME_OFFICE,
    ROLE_PROGRAMME_APPROVER: User.Role.PROGRAMME_OFFICE,
    ROLE_TRUST_ADMIN: User.Role.TRUST_ADMIN,
    ROLE_VIEWER: User.Role.VIEWER,
}
_STRENGTH = [User.Role.PROGRAMME_OFFICE, User.Role.TRUST_ADMIN, User.Role.VIEWER]
FLOW_KEY = "entra_flow"
SIGNED_IN_WITH_ENTRA = "entra_signed_in"


class EntraSignInError(Exception):
    """Sign-in refused. `reason` is stable (state, refused, no_role, inactive, failed, unavailable); message is
    for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def entra_enabled() -> bool:
    return bool(getattr(settings, "ENTRA", None))


_apps: dict[tuple, Any] = {}
_apps_lock = threading.Lock()


def entra_app():
    """One MSAL app per configuration for the life of the process (it fetches the tenant's OpenID
    configuration when it is made)."""
    import msal

    config = settings.ENTRA
    key = (
        config["authority"],
        config["client_id"],
        hashlib.sha256(repr(config["credential"]).encode()).hexdigest(),  # never the secret itself
        id(config.get("http_client")),
    )
    with _apps_lock:
        if key not in _apps:
            _apps[key] = msal.ConfidentialClientApplication(
                config["client_id"],
                client_credential=config["credential"],
                authority=config["authority"],
                http_client=config.get("http_client"),
            )
        return _apps[key]


@contextmanager
def _unreachable_is_a_sign_in_error():
    try:
        yield
    except requests.RequestException as exc:
        log.warning("Entra ID unreachable: %s", type(exc).__name__)
        raise EntraSignInError(
            "unavailable", "Microsoft sign-in cannot be reached just now. Try again in a few minutes."
        ) from exc


def entra_sign_in_start(*, session, redirect_uri: str, next_url: str = "") -> str:
    """Start the flow: MSAL's flow dict (state, nonce, PKCE verifier) goes into the session; returns the
    Entra authorize URL to send the browser to."""
    # response_mode "query", not MSAL's suggested "form_post": Entra's form post is a cross-site POST, on
    # which the browser withholds our SameSite=Lax session cookie, and with it the flow (state, nonce, PKCE
    # verifier). The code in the URL is single-use, bound to the PKCE verifier, and the callback answers with
    # a redirect, so it stays out of Referer headers.
    with warnings.catch_warnings(), _unreachable_is_a_sign_in_error():
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
        flow = entra_app().initiate_auth_code_flow(
            scopes=[],
            redirect_uri=settings.ENTRA["redirect_uri"] or redirect_uri,
            prompt="select_account",
            response_mode="query",
        )
    session[FLOW_KEY] = {"flow": flow, "next": next_url}
    return flow["auth_uri"]


def entra_sign_in_complete(*, session, auth_response: Mapping[str, str]) -> tuple[User, str]:
    """Finish the flow with what Entra sent back to the redirect URI: (user, next URL)."""
    saved = session.pop(FLOW_KEY, None)
    if not saved:
        raise EntraSignInError("state", "This sign-in was not started here, or it was already used.")
    try:
        with _unreachable_is_a_sign_in_error():
            result = entra_app().acquire_token_by_auth_code_flow(saved["flow"], dict(auth_response))
    except ValueError as exc:  # MSAL: state mismatch, or a response that does not belong to this flow
        log.warning("Entra sign-in refused: %s", str(exc).split(":")[0])
        raise EntraSignInError(
            "state", "The answer from Microsoft did not match a sign-in started here."
        ) from exc
    if "error" in result:
        description = (result.get("error_description") or "").splitlines()
        log.warning("Entra sign-in error %s: %s", result["error"], description[0] if description else "")
        raise EntraSignInError(
            "refused",
            f"Microsoft did not sign you in ({result['error']}). {description[0] if description else ''}",
        )
    claims = result.get("id_token_claims") or {}
    if (
        claims.get("tid")
        and claims["tid"] != settings.ENTRA["tenant_id"]
        and "." not in settings.ENTRA["tenant_id"]
    ):
        raise EntraSignInError("refused", "That account belongs to another organisation's directory.")
    return user_from_entra_claims(claims=claims), saved.get("next") or ""


def portal_role(roles: list[str]) -> str | None:
    granted = {APP_ROLES[r] for r in roles if r in APP_ROLES}
    return next((role for role in _STRENGTH if role in granted), None)


def _claimed_organisations(claims: Mapping[str, Any]) -> list[str] | None:
    name = settings.ENTRA.get("organisations_claim") if entra_enabled() else ""
    if not name or name not in claims:
        return None
    value = claims[name]
    codes = value if isinstance(value, list) else str(value).replace(",", " ").split()
    return sorted({str(c).strip().upper() for c in codes if str(c).strip()})


@transaction.atomic
def user_from_entra_claims(*, claims: Mapping[str, Any]) -> User:
    """The portal user for a signed-in Entra account: made at the first sign-in, role and name brought up to
    date at every one. Trust-admin organisations follow the configured claim when the token carries it;
    otherwise they are whatever the programme office assigned in the portal."""
    oid = claims.get("oid")
    if not oid:
        raise EntraSignInError("failed", "Microsoft's answer did not identify the account (no oid claim).")
    roles = list(claims.get("roles") or [])
    role = portal_role(roles)
    user = User.objects.select_for_update().filter(entra_oid=oid).first()
    if role is None:
        log.info("Entra sign-in refused for %s: no portal app role", oid)
        raise EntraSignInError(
            "no_role",
            "Your account has no role in the migration portal. Ask your portal administrator to assign you "
            "one of its roles (Programme.Officer, Programme.Approver, Trust.Admin or Programme.Viewer) in "
            "Microsoft Entra ID, then sign in again.",
        )
    username = str(claims.get("preferred_username") or oid)[:150]
    created = user is None
    if created:
        if User.objects.filter(username=username).exists():
            username = f"entra-{oid}"[:150]
        user = User(username=username, entra_oid=oid)
        user.set_unusable_password()
    elif not user.is_active:
        raise EntraSignInError(
            "inactive", "Your portal account has been deactivated. Ask the programme office."
        )
    previous_role = user.role
    user.role = role
    user.email = str(claims.get("email") or claims.get("preferred_username") or "")[:254]
    user.first_name = str(claims.get("given_name") or "")[:150]
    user.last_name = str(claims.get("family_name") or "")[:150]
    if not (user.first_name or user.last_name) and claims.get("name"):
        user.first_name = str(claims["name"])[:150]
    user.save()
    codes = _claimed_organisations(claims)
    if codes is not None:
        organisations = list(Organisation.objects.filter(ods_code__in=codes))
        unknown = sorted(set(codes) - {o.ods_code for o in organisations})
        if unknown:
            log.warning("Entra claim names unknown organisations: %s", ", ".join(unknown))
        user.organisations.set(organisations)
    if created:
        event_record(
            action="user.created",
            actor=user,
            subject=user.username,
            to_state=role,
            data={"source": "entra", "roles": roles},
        )
    elif previous_role != role:
        event_record(
            action="user.role_changed",
            actor=user,
            subject=user.username,
            from_state=previous_role,
            to_state=role,
            data={"source": "entra", "roles": roles},
        )
    return user


def entra_logout_url(*, post_logout_redirect_uri: str) -> str:
    return f"{settings.ENTRA['authority']}/oauth2/v2.0/logout?" + urlencode(
        {"post_logout_redirect_uri": post_logout_redirect_uri}
    )
