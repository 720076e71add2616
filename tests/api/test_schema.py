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
