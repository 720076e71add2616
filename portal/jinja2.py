"""The Jinja2 environment for pages: NHS.UK frontend macros, Django's url/static helpers, htmx.

Django's Jinja2 backend already puts `request`, `csrf_input` and `csrf_token` in every context."""

from django.conf import settings
from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma, naturaltime
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django_htmx.jinja import htmx_script
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PackageLoader

from migrations_app.errors_catalogue import explain
from migrations_app.event_words import actor_in_words, event_in_words
from migrations_app.templatetags import filesizeformat_binary
from portal.jinja_components import ComponentMemo, nhsuk_attributes, placeholder


def url(name: str, *args, **kwargs) -> str:
    return reverse(name, args=args or None, kwargs=kwargs or None)


_SENTINEL = 9081726354


def url_for_each(name: str):
    """id -> the URL of `name` for that id (a URL with one integer argument), reversed once: a page linking
    each of 50 mailboxes reversed the same pattern 50 times (~40 us each)."""
    head, tail = reverse(name, args=[_SENTINEL]).split(str(_SENTINEL))
    return lambda pk: f"{head}{int(pk)}{tail}"


def fast_intcomma(value) -> str:
    """1234567 -> "1,234,567". Integers (nearly every count on a page) skip Django's localised formatting,
    which costs ~20 us a call: a wave of 500 organisations shows a thousand of them."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return intcomma(value)


def local_datetime(value, fmt: str = "j M Y H:i") -> str:
    if value is None:
        return ""
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        value = timezone.localtime(value)
    return date_format(value, fmt)


def _mailbox_states() -> list[tuple[str, str]]:
    from migrations_app.models import Mailbox

    return list(Mailbox.State.choices)


def _hide_none(value):
    return "" if value is None else value


class PortalEnvironment(Environment):
    """Jinja's environment with each template's globals as a plain dict. Jinja makes them a ChainMap over the
    environment's globals, and every `{% from ... import %}` then subtracts their keys from a set in Python
    (Template._get_default_module): nhsuk-frontend's components import each other ~130 times a page, ~5 ms of
    a page's CPU. The portal sets its globals once, here, before any template is loaded; a template's own
    globals still overlay them."""

    def make_globals(self, d):
        return {**self.globals, **(d or {})}


def environment(**options) -> Environment:
    options["undefined"] = ChainableUndefined
    options["loader"] = ChoiceLoader(
        [
            FileSystemLoader([str(d) for d in settings.TEMPLATES[0]["DIRS"]]),
            PackageLoader("nhsuk_frontend_jinja"),
        ]
    )
    options.setdefault("autoescape", True)
    # a None printed by {{ value }} shows nothing rather than the word "None" (templates say "Not set" where a
    # value is expected)
    options["finalize"] = _hide_none
    env = PortalEnvironment(**options)  # noqa: S701 - autoescape is on, set just above
    env.globals.update(
        {
            "url": url,
            "url_for_each": url_for_each,
            "static": static,
            "static_url": settings.STATIC_URL,
            "get_messages": messages.get_messages,
            "htmx_script": htmx_script,
            "service_name": "Mailbox migration portal",
            "explain_error": explain,
            "event_in_words": event_in_words,
            "actor_in_words": actor_in_words,
            "mailbox_states": _mailbox_states(),
            # nhsuk-frontend's chrome kept per set of parameters, and its attribute helper (jinja_components)
            "component_once": ComponentMemo(env),
            "component_fill": placeholder,
            "nhsuk_attributes": nhsuk_attributes,
        }
    )
    env.filters.update(
        {
            "intcomma": fast_intcomma,
            "naturaltime": naturaltime,
            "bytes": filesizeformat_binary,
            "datetime": local_datetime,
        }
    )
    return env
