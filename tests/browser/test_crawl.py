"""The first hour, crawled: each role of the seeded demo, served by the production profile under gunicorn (after
collectstatic, as README says), visits every page reachable from the navigation and from links on those pages
(bounded: at most PER_PATTERN pages of each URL shape and MAX_PAGES in all), and on each page checks what a
newcomer would notice: the page answers 200 (or the intended 403/404 page), no escaped HTML tags in the text,
no "None" shown as a value, no console error, no request to another host, and axe finds no serious or critical
violation (once per URL shape). It presses every button of every search or filter form (GET) once.
CSV downloads linked from the pages are fetched and must answer CSV."""

import re
import time
from collections import Counter
from urllib.parse import urljoin, urlsplit

import pytest

from tests.browser.conftest import assert_accessible

MAX_PAGES = 35
PER_PATTERN = 1
PER_PARENT = 4
# never followed: they change state or leave the portal's pages
SKIP = re.compile(r"^/(sign-out|sign-in|admin/logout|api/)|/(pause|resume|cancel|retry|roll-back|revoke)/")
ESCAPED_TAGS = re.compile(r"<(form|button|a |div|span|input)\b")
# "None" alone in a line or a table cell is a Python None shown as a value ("None yet." is English)
NONE_VALUE = re.compile(r"(?:^|\t)None(?:$|\t)", re.MULTILINE)


def shape(path: str) -> str:
    """/waves/12/?page=3 -> /waves/N/: pages of one shape are the same template."""
    return re.sub(r"/(\d+|[A-Z][A-Z0-9]{1,8})(?=/)", "/N", urlsplit(path).path)


def parent(path: str) -> str:
    """The listing a page hangs from (/notifications/templates/ for /notifications/templates/first/): at most
    PER_PARENT pages under one, so a list of forty similar pages costs four visits."""
    parts = shape(path).strip("/").split("/")
    return "/".join(parts[:-1]) if len(parts) >= 3 else shape(path)  # top-level pages are their own


class Crawl:
    def __init__(self, page, origin: str):
        self.page, self.origin = page, origin
        self.problems: list[str] = []
        self.foreign: list[str] = []
        self.console: list[str] = []
        page.context.on("request", self._request)
        page.on(
            "console",
            lambda m: m.type == "error" and self.console.append(f"{page.url}: {m.text}"),
        )
        page.on("pageerror", lambda e: self.console.append(f"{page.url}: {e}"))

    def _request(self, request):
        if not request.url.startswith(self.origin) and not request.url.startswith(("data:", "blob:")):
            # even one the Content-Security-Policy then refuses (nhsuk-frontend's stock stylesheet asked
            # assets.nhs.uk for its web font): a page that never asks works the same on an isolated network
            self.foreign.append(f"{self.page.url} asked {request.url}")

    def check_page(self, path: str, status: int | None, axe: bool) -> None:
        page = self.page
        if "html" not in page.evaluate("() => document.contentType"):
            return  # /healthz is JSON
        if status == 403:
            assert "You cannot do this" in page.content(), path
        elif status == 404:
            assert "Page not found" in page.content(), path
        elif status != 200:
            self.problems.append(f"{path}: answered {status}")
            return
        text = page.evaluate("() => document.body.innerText")
        for match in ESCAPED_TAGS.finditer(text):
            self.problems.append(
                f"{path}: escaped HTML in the text: ...{text[max(0, match.start() - 40) :][:90]!r}"
            )
        for match in NONE_VALUE.finditer(text):
            self.problems.append(f"{path}: 'None' shown: ...{text[max(0, match.start() - 60) :][:100]!r}")
        if axe:
            try:
                assert_accessible(page)
            except AssertionError as error:
                self.problems.append(str(error))

    def links(self) -> list[str]:
        hrefs = self.page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        found = []
        for href in hrefs:
            url = urljoin(self.page.url, href).split("#")[0]
            if url.startswith(self.origin):
                found.append(url[len(self.origin) :] or "/")
        return found

    def get_forms(self) -> list[int]:
        """Indexes of the page's GET forms that have a submit button."""
        return self.page.eval_on_selector_all(
            "form",
            "fs => fs.map((f, i) => [i, (f.getAttribute('method') || 'get').toLowerCase(),"
            " !!f.querySelector('button, input[type=submit]')]).filter(x => x[1] === 'get' && x[2]).map(x => x[0])",
        )


@pytest.mark.parametrize("username", ["programme", "trust", "viewer"])
def test_every_page_a_role_can_reach_works(chromium, production_server, username):
    origin = production_server.url
    context = chromium.new_context(base_url=origin, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        crawl = Crawl(page, origin)
        page.goto("/sign-in/")
        crawl.check_page("/sign-in/", 200, axe=username == "programme")
        page.fill("#username", username)
        page.fill("#password", production_server.credentials[username])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/dashboard/$"))

        queue, seen, shapes, parents, csvs = ["/dashboard/"], set(), Counter(), Counter(), []
        visited = 0
        while queue and visited < MAX_PAGES:
            path = queue.pop(0)
            if path in seen or SKIP.search(path):
                continue
            seen.add(path)
            if ".csv" in path:
                csvs.append(path)
                continue
            if shapes[shape(path)] >= PER_PATTERN or parents[parent(path)] >= PER_PARENT:
                continue
            shapes[shape(path)] += 1
            parents[parent(path)] += 1
            visited += 1
            started = time.monotonic()
            response = page.goto(path)
            first_of_shape = shapes[shape(path)] == 1
            crawl.check_page(path, response.status if response else None, axe=first_of_shape)
            print(
                f"{username} {path} {response.status if response else None} {time.monotonic() - started:.2f}s"
            )
            if response is None or response.status != 200:
                continue
            queue.extend(link for link in crawl.links() if link not in seen)
            if first_of_shape:
                for index in crawl.get_forms():
                    page.goto(path)
                    form = page.locator("form").nth(index)
                    button = form.locator("button, input[type=submit]").first
                    button.click()  # a search reloads the page, an htmx filter swaps part of it
                    page.wait_for_load_state("networkidle")
                    crawl.check_page(f"{path} (form {index} submitted)", 200, axe=False)

        for path in csvs[:8]:
            answer = context.request.get(path)
            assert answer.status == 200 and "text/csv" in answer.headers["content-type"], path

        assert visited >= 8, f"the crawl reached only {sorted(seen)}"
        assert not crawl.problems, "\n".join(crawl.problems)
        assert not crawl.console, "console errors:\n" + "\n".join(crawl.console)
        assert not crawl.foreign, "requests to another host:\n" + "\n".join(sorted(set(crawl.foreign)))
    finally:
        context.close()
