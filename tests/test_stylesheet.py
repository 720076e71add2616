"""The NHS.UK stylesheet the pages link (built by make setup from frontend/nhsuk-portal.scss) asks no other host
for anything: the stock nhsuk-frontend build's @font-face pointed at assets.nhs.uk, which the browser then had to
refuse on every page."""

import re

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string

STYLESHEET = "nhsuk/nhsuk-portal.min.css"


def _css() -> str:
    path = finders.find(STYLESHEET)
    assert path, f"{STYLESHEET} is missing: run make setup (it compiles frontend/nhsuk-portal.scss)"
    with open(path, encoding="utf-8") as css:
        return css.read()


def test_the_stylesheet_has_no_web_font_and_no_remote_url():
    css = _css()
    assert "@font-face" not in css
    assert "assets.nhs.uk" not in css
    remote = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", css)
    assert remote == []


def test_it_keeps_the_nhs_font_stack_and_its_images_are_served():
    css = _css()
    assert re.search(r"html\{[^}]*font-family:\"Frutiger W01\",arial,sans-serif", css)
    images = set(re.findall(r"url\(\s*['\"]?(assets/images/[^)'\"]+)", css))
    assert images, "the icons' images are referenced relative to the stylesheet"
    for image in images:
        assert finders.find(f"nhsuk/{image}"), image


def test_pages_link_the_built_stylesheet(rf, db):
    from django.contrib.auth.models import AnonymousUser

    request = rf.get("/sign-in/")
    request.user = AnonymousUser()
    html = render_to_string("accounts/sign_in.html", {"form": None}, request=request)
    assert STYLESHEET in html and "nhsuk-frontend.min.css" not in html
