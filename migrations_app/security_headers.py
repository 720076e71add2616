"""Content-Security-Policy on every response: scripts only from this site (no inline script anywhere: htmx is
configured by a <meta name="htmx-config"> to add no inline styles and evaluate nothing, and the NHS.UK frontend
is started from static/js/portal.js), nothing framed, no plugins, forms and fetches to this site only.

Style attributes stay allowed (style-src-attr): the progress bars set their width from data, and a style
attribute cannot run code. The API docs (Swagger UI, ReDoc, from drf-spectacular's sidecar) inject <style>
elements and ReDoc runs a blob: worker, so their pages allow those too, and still no inline script."""

import base64
import hashlib
import re
from pathlib import Path

import nhsuk_frontend_jinja
from django.conf import settings


def _nhsuk_inline_script_hashes() -> str:
    """The NHS.UK page template's one inline script (it marks the body js-enabled before anything paints),
    allowed by its hash: that exact text and nothing else. Read from the installed template, so an upgrade
    that changes it keeps working."""
    template = Path(nhsuk_frontend_jinja.__file__).parent / "templates" / "nhsuk" / "template.jinja"
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", template.read_text(), flags=re.S)
    digests = [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts if s.strip()]
    return " ".join(f"'sha256-{d}'" for d in digests)


BASE = {
    "default-src": "'self'",
    "script-src": f"'self' {_nhsuk_inline_script_hashes()}".strip(),
    "style-src": "'self'",
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
DOCS = {**BASE, "style-src": "'self' 'unsafe-inline'", "worker-src": "'self' blob:"}


def _header(policy: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in policy.items())


BASE_HEADER, DOCS_HEADER = _header(BASE), _header(DOCS)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            docs = request.path.startswith("/api/schema/") or request.path.startswith("/admin/")
            header = DOCS_HEADER if docs else BASE_HEADER
            name = (
                "Content-Security-Policy-Report-Only"
                if getattr(settings, "CSP_REPORT_ONLY", False)
                else "Content-Security-Policy"
            )
            response[name] = header
        return response
