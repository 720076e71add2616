"""README's production profile: `collectstatic`, then `gunicorn portal.wsgi` with DEBUG unset, serves every page
(it once answered 500 everywhere but /healthz: a folder asked of the static manifest)."""

import re
import urllib.error
import urllib.request


def fetch(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode(errors="replace"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace"), dict(error.headers)


def test_the_sign_in_and_public_pages_and_their_static_files_are_served(production_server):
    for path in ["/sign-in/", "/when-does-my-mailbox-move/"]:
        status, page, _ = fetch(production_server.url + path)
        assert status == 200, f"{path}: {status}\n{production_server.log_tail()}"
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
        # the manifest's hashed names, and the favicons named by folder
        assert any(re.search(r"\.[0-9a-f]{12}\.css$", a) for a in assets), assets
        assert any("/nhsuk/assets/" in a for a in assets), assets
        for asset in assets:
            status, _, headers = fetch(production_server.url + asset)
            assert status == 200, asset


def test_an_unknown_page_is_the_404_page_not_an_error(production_server):
    status, page, _ = fetch(production_server.url + "/no-such-page/")
    assert status == 404 and "Page not found" in page, page[:500]
