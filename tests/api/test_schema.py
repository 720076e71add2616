"""The OpenAPI schema generates without warnings and validates; the docs are served without a CDN."""

from django.core.management import call_command


def test_the_schema_is_valid_and_has_no_warnings(db, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/organisations/{ods_code}/mailboxes/bulk" in (tmp_path / "schema.yaml").read_text()


def test_swagger_and_redoc_are_served_offline(client, admin_a):
    client.force_login(admin_a)
    for url in ("/api/schema/swagger/", "/api/schema/redoc/"):
        page = client.get(url).content.decode()
        assert "cdn" not in page.lower() and "/static/drf_spectacular_sidecar/" in page
    assert client.get("/api/schema/").status_code == 200


def test_the_schema_and_docs_need_sign_in(client, db):
    for url in ("/api/schema/", "/api/schema/swagger/", "/api/schema/redoc/"):
        assert client.get(url).status_code == 401, url


def test_the_schema_opens_in_a_browser_and_scripts_still_get_openapi(client, officer):
    client.force_login(officer)
    browser = client.get("/api/schema/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert browser.status_code == 200 and browser["Content-Type"] == "text/plain; charset=utf-8"
    assert not browser.has_header("Content-Disposition") and b"openapi: 3" in browser.content
    script = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert script["Content-Type"].startswith("application/vnd.oai.openapi+json") and script.json()["openapi"]
