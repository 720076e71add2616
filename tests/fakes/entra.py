"""The fake Entra ID authority, half of the fake Microsoft cloud (tests/fakes/microsoft.py): the OpenID
configuration, authorize (a page that picks an account), token (authorization code, client credentials with a
secret or a certificate assertion, refresh), JWKS and logout, shaped like the documented v2.0 endpoints; the
access tokens the fake Graph accepts and the ID tokens a sign-in gets."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlencode

import jwt

from tests.fakes.microsoft_data import (
    GRAPH_SCOPE,
    LOGIN,
    Person,
    _b64url,
)


class FakeEntra:
    """Mixed into FakeMicrosoft, whose __init__ holds the state these methods use."""

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired now (the next Graph call gets 401)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0

    # --- tokens ------------------------------------------------------------------------------------------

    def _access_token(self) -> str:
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImZha2UifQ." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_lifetime
        return token

    def token_valid(self, header: str) -> bool:
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            return self._tokens.get(header[7:], 0) > time.time()

    def id_token(self, person: Person, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "aud": self.client_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": person.name,
            "oid": person.oid,
            "preferred_username": person.username,
            "email": person.username,
            "sub": _b64url(hashlib.sha256(person.oid.encode()).digest()),
            "tid": self.tenant_id,
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16),
            **person.extra_claims,
        }
        if person.roles:
            claims["roles"] = person.roles
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict:
        numbers = self.signing_key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64url(numbers.e.to_bytes(3, "big")),
                    "issuer": self.issuer,
                }
            ]
        }

    def client_authenticated(self, form: dict) -> tuple[bool, str]:
        if form.get("client_id") != self.client_id:
            return (
                False,
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found.",
            )
        if "client_secret" in form:
            if form["client_secret"] == self.client_secret:
                return True, ""
            return False, "AADSTS7000215: Invalid client secret provided."
        if form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            assertion = form.get("client_assertion", "")
            for certificate in self.client_certificates:
                try:
                    jwt.decode(
                        assertion,
                        certificate.public_key(),
                        algorithms=["RS256", "PS256"],
                        audience=f"https://{LOGIN}/{self.tenant_id}/oauth2/v2.0/token",
                        options={"require": ["exp", "iss", "sub"]},
                    )
                    return True, ""
                except jwt.PyJWTError:
                    continue
            return (
                False,
                "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.",
            )
        return (
            False,
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    # --- Entra ---------------------------------------------------------------------------------------------

    def login(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        with self._lock:
            self.requests.append(("login", path))
        parts = [p for p in path.split("/") if p]
        if parts == ["common", "discovery", "instance"]:
            # Instance discovery, as MSAL asks it for the aliases of an authority host.
            return (
                200,
                {},
                {
                    "tenant_discovery_endpoint": f"https://{LOGIN}/common/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": LOGIN,
                            "preferred_cache": "login.windows.net",
                            "aliases": [LOGIN, "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                        }
                    ],
                },
            )
        if not parts or parts[0] != self.tenant_id:
            return (
                400,
                {},
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{parts[0] if parts else ''}' not found.",
                },
            )
        rest = "/".join(parts[1:])
        if rest == "v2.0/.well-known/openid-configuration":
            base = f"https://{LOGIN}/{self.tenant_id}"
            return (
                200,
                {},
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": self.issuer,
                    "request_uri_parameter_supported": False,
                    "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "http_logout_supported": True,
                    "frontchannel_logout_supported": True,
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "oid", "tid", "roles"],
                    "kerberos_endpoint": f"{base}/kerberos",
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com",
                    "rbac_url": "https://pas.windows.net",
                },
            )
        if rest == "discovery/v2.0/keys":
            return 200, {}, self.jwks()
        if rest == "oauth2/v2.0/authorize":
            return self._authorize(method, query, body)
        if rest == "oauth2/v2.0/token" and method == "POST":
            return self._token({k: v[0] for k, v in parse_qs(body.decode()).items()})
        if rest == "oauth2/v2.0/logout":
            target = (query.get("post_logout_redirect_uri") or [""])[0]
            page = f"<html><head><title>Signed out</title></head><body><h1>You signed out of your account</h1><a href='{html.escape(target)}'>Back</a></body></html>"
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
        return 404, {}, {"error": "not_found", "error_description": path}

    def _authorize(self, method: str, query: dict, body: bytes):
        params = {k: v[0] for k, v in query.items()}
        if method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            params = json.loads(base64.urlsafe_b64decode(form["request"]))
            person = self.people.get(form.get("oid", ""))
            if person is None:
                return 400, {"Content-Type": "text/html"}, b"<h1>Unknown account</h1>"
            code = secrets.token_urlsafe(24)
            self._codes[code] = {"person": person, "params": params}
            location = f"{params['redirect_uri']}?{urlencode({'code': code, 'state': params.get('state', ''), 'session_state': str(uuid.uuid4())})}"
            return 302, {"Location": location}, b""
        if params.get("client_id") != self.client_id:
            return 400, {"Content-Type": "text/html"}, b"<h1>AADSTS700016: Application not found</h1>"
        request = base64.urlsafe_b64encode(json.dumps(params).encode()).decode()
        buttons = "".join(
            f"<button type='submit' name='oid' value='{p.oid}'>{html.escape(p.username)}</button>"
            for p in self.people.values()
        )
        page = (
            "<html><head><title>Sign in to your account</title></head><body><h1>Pick an account</h1>"
            f"<form method='post'><input type='hidden' name='request' value='{request}'>{buttons}</form></body></html>"
        )
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()

    def _token(self, form: dict):
        ok, why = self.client_authenticated(form)
        if not ok:
            return 401, {}, {"error": "invalid_client", "error_description": why, "error_codes": [7000215]}
        grant = form.get("grant_type")
        with self._lock:
            self.tokens_issued[grant] += 1
        if grant == "client_credentials":
            if form.get("scope") != GRAPH_SCOPE:
                return (
                    400,
                    {},
                    {
                        "error": "invalid_scope",
                        "error_description": "AADSTS1002012: The provided value for scope is not valid.",
                    },
                )
            return (
                200,
                {},
                {
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "ext_expires_in": self.token_lifetime,
                    "access_token": self._access_token(),
                },
            )
        if grant == "authorization_code":
            grant_data = self._codes.pop(form.get("code", ""), None)
            if grant_data is None:
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS70008: The provided authorization code or refresh token has expired.",
                    },
                )
            params = grant_data["params"]
            verifier = form.get("code_verifier", "")
            challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
            if params.get("code_challenge_method") != "S256" or challenge != params.get("code_challenge"):
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS501481: The Code_Verifier does not match the code_challenge.",
                    },
                )
            if form.get("redirect_uri") != params.get("redirect_uri"):
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS50148: The redirect_uri does not match.",
                    },
                )
            person = grant_data["person"]
            client_info = _b64url(json.dumps({"uid": person.oid, "utid": self.tenant_id}).encode())
            return (
                200,
                {},
                {
                    "token_type": "Bearer",
                    "scope": "openid profile email User.Read",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": self._access_token(),
                    "refresh_token": secrets.token_urlsafe(32),
                    "id_token": self.id_token(person, params.get("nonce")),
                    "client_info": client_info,
                },
            )
        return 400, {}, {"error": "unsupported_grant_type", "error_description": grant}
