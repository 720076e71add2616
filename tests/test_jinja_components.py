"""portal/jinja_components.py: nhsuk-frontend's attributes helper in Python, and the page chrome rendered once
per set of parameters, against nhsuk-frontend's own macros."""

import re

import pytest
from django.template import engines
from jinja2 import ChainableUndefined, Environment, PackageLoader
from markupsafe import Markup

from portal.jinja_components import ComponentMemo, nhsuk_attributes, placeholder

# nhsuk-frontend as installed, without the portal's templates in front of it
PACKAGE = Environment(
    loader=PackageLoader("nhsuk_frontend_jinja"), autoescape=True, undefined=ChainableUndefined
)


def _package_attributes(value) -> str:
    macro = PACKAGE.get_template("nhsuk/macros/attributes.jinja").module.nhsukAttributes
    return str(macro(value))


def _tidy(html: str) -> str:
    """The macro leaves runs of whitespace inside tags; the attributes are what must agree."""
    return re.sub(r"\s+", " ", html).strip()


ATTRIBUTES = [
    None,
    ChainableUndefined(),
    "",
    ' data-raw="as given"',
    Markup(' data-safe="kept"'),
    {},
    {"id": "plain"},
    {"data-x": "quote \" and <tag> & 'apostrophe'"},
    {"title": Markup('already "safe" <b>')},
    {"aria-hidden": True, "aria-expanded": False},
    {"tabindex": 0, "data-ratio": 1.5},
    {"data-none": None, "data-undefined": ChainableUndefined()},
    {"hidden": {"value": True, "optional": True}},
    {"hidden": {"value": False, "optional": True}},
    {"hidden": {"value": None, "optional": True}},
    {"hidden": {"value": "", "optional": True}},
    {"hidden": {"value": 0, "optional": True}},
    {"data-list": {"value": ["a", "b<c>", "d'e", 'f"g', "h&i"], "type": "array"}},
    {"data-map": {"value": {"z": 1, "a": [True, None]}, "type": "array"}},
    {"data-str-array": {"value": "abc", "type": "array"}},
    {"data-int-array": {"value": 5, "type": "array"}},
    {"data-missing": {"type": "string"}},
    {"data-opt-false": {"value": "shown", "optional": False}},
    {"<odd name>": "v", "a&b": "w"},
    {"hx-headers": '{"X-CSRFToken": "abc"}', "class": "one two"},
]


@pytest.mark.parametrize("attributes", ATTRIBUTES, ids=range(len(ATTRIBUTES)))
def test_the_attributes_helper_gives_what_nhsuk_frontends_macro_gives(attributes):
    assert _tidy(str(nhsuk_attributes(attributes))) == _tidy(_package_attributes(attributes))


def test_the_portals_components_use_the_python_helper():
    env = engines["jinja2"].env
    exported = env.get_template("nhsuk/macros/attributes.jinja").module.nhsukAttributes
    assert exported is nhsuk_attributes
    button = env.get_template("nhsuk/components/button/macro.jinja").module.button
    params = {
        "text": "Go",
        "href": "/x?a=1&b=2",
        "attributes": {"data-module": "x", "hidden": {"value": True, "optional": True}},
    }
    ours = str(button(params))
    theirs = str(PACKAGE.get_template("nhsuk/components/button/macro.jinja").module.button(params))
    assert _tidy(ours) == _tidy(theirs) and 'data-module="x"' in ours and " hidden" in ours


def _header_params(name_text, *, active="dashboard", role="Trust admin"):
    return {
        "service": {"text": "Mailbox migration portal", "href": "/"},
        "account": {
            "items": [
                {"text": name_text, "icon": True},
                {"text": role},
                {"href": "/tokens/", "text": "API tokens"},
                {"href": "/sign-out/", "text": "Sign out"},
            ]
        },
        "navigation": {
            "items": [
                {"href": "/dashboard/", "text": "Dashboard", "active": active == "dashboard"},
                {"href": "/waves/", "text": "Waves", "active": active == "waves"},
            ]
        },
    }


NAMES = ["Ann Admin", 'O\'Brien <b>&amp; "Co"</b>', "  padded  ", "two\nlines", "PORTALFILL", "Zoë ünïcode"]


@pytest.mark.parametrize("name", NAMES)
def test_the_header_kept_once_is_the_header_nhsuk_frontend_draws_for_that_user(name):
    env = engines["jinja2"].env
    memo = ComponentMemo(env)
    direct = str(env.get_template("nhsuk/components/header/macro.jinja").module.header(_header_params(name)))
    kept = memo("header", _header_params(placeholder("account")), {"account": name})
    again = memo("header", _header_params(placeholder("account")), {"account": name})
    assert str(kept) == direct and str(again) == direct
    assert isinstance(kept, Markup)


def test_one_rendering_serves_everyone_with_the_same_navigation_and_none_leaks_a_name():
    env = engines["jinja2"].env
    memo = ComponentMemo(env)
    first = memo("header", _header_params(placeholder("account")), {"account": "Alice"})
    second = memo("header", _header_params(placeholder("account")), {"account": "Bob"})
    assert "Alice" in first and "Bob" not in first
    assert "Bob" in second and "Alice" not in second
    assert len(memo.kept) == 1  # one rendering kept for both
    memo("header", _header_params(placeholder("account"), active="waves"), {"account": "Alice"})
    assert len(memo.kept) == 2  # another active item is another rendering


def test_safe_and_plain_text_are_kept_apart():
    env = engines["jinja2"].env
    memo = ComponentMemo(env)
    plain = memo("footer", {"meta": {"items": [{"href": "/a", "text": "<b>x</b>"}]}})
    safe = memo("footer", {"meta": {"items": [{"href": "/a", "text": Markup("<b>x</b>")}]}})
    assert "&lt;b&gt;x&lt;/b&gt;" in plain and "<b>x</b>" not in plain
    assert "<b>x</b>" in safe


def test_every_page_shows_the_signed_in_users_own_name(client_for, admin_a, officer):
    admin_a.first_name, admin_a.last_name = "Ann", "<Admin>"
    admin_a.save()
    ours = client_for(admin_a).get("/dashboard/").content.decode()
    theirs = client_for(officer).get("/dashboard/").content.decode()
    assert "Ann &lt;Admin&gt;" in ours and "Ann &lt;Admin&gt;" not in theirs
    assert officer.username in theirs and placeholder("account") not in ours + theirs
