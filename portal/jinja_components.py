"""nhsuk-frontend's page chrome rendered once per set of parameters.

Every full page draws the NHS.UK header (service name, navigation, account links) and footer through
nhsuk-frontend's Jinja macros: ~3 ms of CPU a page, a fifth of the dashboard's, for markup that differs only
by which navigation item is active, the user's role and the user's name. A macro's output depends only on
its parameters (it is imported without context), so `component_once` keeps each distinct rendering in the
process and hands it out again. Values that differ for every person (the user's name) are passed as `fills`:
the component is rendered with a placeholder in their place, kept, and the value, escaped as the macro would
escape it, is put in on the way out. A value the macro would change otherwise (surrounding spaces, a line
break: `trim`, `indent`) is rendered directly instead. tests/test_jinja_components.py compares both ways."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from jinja2 import Environment, Undefined
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup, escape

# component -> (template, macro)
COMPONENTS = {
    "header": ("nhsuk/components/header/macro.jinja", "header"),
    "footer": ("nhsuk/components/footer/macro.jinja", "footer"),
}
KEEP = 512  # renderings kept per process (a page's chrome: a few dozen in practice)


def placeholder(name: str) -> str:
    """A token escaping, trim and indent leave as it is."""
    return f"PORTALFILL{name}X7Q"


class _Unkeyable(Exception):
    pass


def _freeze(value):
    """A hashable key that tells apart what renders differently (Markup from str, True from 1)."""
    if isinstance(value, Markup):
        return ("m", str(value))
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return ("c", value)
    if isinstance(value, int | float):
        return ("n", type(value).__name__, value)
    if isinstance(value, dict):
        return ("d", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("l", tuple(_freeze(v) for v in value))
    if isinstance(value, Undefined):
        return ("u",)
    raise _Unkeyable(type(value).__name__)


class ComponentMemo:
    def __init__(self, env: Environment) -> None:
        self.env = env
        self.kept: dict = {}
        self.lock = threading.Lock()

    def _macro(self, component: str):
        template, name = COMPONENTS[component]
        return getattr(self.env.get_template(template).module, name)

    def __call__(self, component: str, params: dict, fills: dict | None = None) -> Markup:
        fills = fills or {}
        if any(not _fillable(v) for v in fills.values()):
            return self._direct(component, params, fills)
        try:
            key = (component, _freeze(params))
        except _Unkeyable:
            return self._direct(component, params, fills)
        html = self.kept.get(key)
        if html is None:
            html = str(self._macro(component)(params))
            with self.lock:
                if len(self.kept) >= KEEP:
                    self.kept.clear()
                self.kept[key] = html
        for name, value in fills.items():
            html = html.replace(placeholder(name), str(escape(value)))
        return Markup(html)  # noqa: S704 - the macro's own output, each fill escaped just above

    def _direct(self, component: str, params: dict, fills: dict) -> Markup:
        """Rendered with the values in place of their placeholders, nothing kept."""
        return self._macro(component)(_substitute(params, {placeholder(k): v for k, v in fills.items()}))


def _fillable(value) -> bool:
    text = str(value)
    return not isinstance(value, Markup) and text == text.strip() and "\n" not in text and "\r" not in text


def _substitute(value, fills: dict):
    if isinstance(value, str) and not isinstance(value, Markup) and value in fills:
        return fills[value]
    if isinstance(value, dict):
        return {k: _substitute(v, fills) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, fills) for v in value]
    return value


def nhsuk_attributes(attributes) -> Markup:
    """nhsuk-frontend's `nhsukAttributes` macro (nhsuk/macros/attributes.jinja, from govuk-frontend), the same
    rules in Python: a string is output as it is; a mapping gives ` name="value"` per item, the value escaped,
    a boolean as true/false, an `{"value": .., "type": "array"}` as escaped JSON, a value already marked safe
    as it is, a missing value as `name=""`, and with `"optional": true` a true value as the bare name and an
    empty or false one left out; a value with a double quote in it is single-quoted."""
    if isinstance(attributes, str):
        return Markup(attributes)  # noqa: S704 - as the macro does (`| safe`): a template's own attribute string
    if not isinstance(attributes, Mapping):
        return Markup("")
    html = ""
    for name, item in attributes.items():
        if isinstance(item, Mapping):
            given, kind, optional = item.get("value"), item.get("type"), item.get("optional")
        else:
            given, kind, optional = item, "string", False
        if given is None or isinstance(given, Undefined):
            value, escaped = None, ""
        elif hasattr(given, "__html__"):
            value, escaped = _NO_VALUE, given  # the macro reads `.val` of a safe string: undefined
        elif kind == "array" and _iterable(given):
            value, escaped = _NO_VALUE, htmlsafe_json_dumps(given, sort_keys=True)
        else:
            value, escaped = given, escape(given)
        if optional is True and value is True:
            html = f"{html} {escape(name)}"
        elif (optional is True and value is not None and value is not False) or optional is not True:
            shown = str(value).lower() if isinstance(value, bool) else escaped
            quote = "'" if '"' in escaped else '"'
            html = f"{html} {escape(name)}={quote}{shown}{quote}"
    return Markup(html)  # noqa: S704 - every name and value escaped above (or safe already, or JSON made safe)


_NO_VALUE = object()  # neither none, true nor false: what the macro's undefined `value` is in those branches


def _iterable(value) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True
