"""Every list exports as a streamed CSV, with spreadsheet formulas neutralised by one shared helper."""

import csv
import io

from django.http import StreamingHttpResponse

from migrations_app.views._csv import neutralise
from tests.factories import MailboxFactory
from tests.status_fixtures import wave_in_states


def rows(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    return list(csv.reader(io.StringIO(text)))


def test_neutralise_prefixes_formula_starts_with_a_quote():
    for dangerous in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://evil","Click")']:
        assert neutralise(dangerous) == "'" + dangerous
    for safe in ["Jane Doe", "a=b", "", "1", "jane@rj1.nhs.uk"]:
        assert neutralise(safe) == safe
    assert neutralise(None) == "" and neutralise(42) == "42"


def test_every_export_neutralises_formulas(client_for, officer, org_a):
    wave = wave_in_states([org_a], {"failed": 1})
    MailboxFactory(organisation=org_a, email="evil@rj1.nhs.uk", display_name='=HYPERLINK("http://x","y")')
    org_a.name = "@evil trust"
    org_a.save()
    client = client_for(officer)
    for url, params in [
        ("/mailboxes/export.csv", {"q": "evil"}),
        ("/organisations/RJ1/mailboxes.csv", {"q": "evil"}),
    ]:
        body = rows(client.get(url, params))
        assert body[1][:2] == ["evil@rj1.nhs.uk", '\'=HYPERLINK("http://x","y")']
    organisations = rows(client.get("/organisations/export.csv"))
    assert organisations[0][:2] == ["ods_code", "name"] and organisations[1][1] == "'@evil trust"
    assert rows(client.get(f"/waves/{wave.pk}/mailboxes.csv"))[1][7] == "failed"
    assert rows(client.get("/failures/export.csv"))[1][10] == "AUTH_FAILED"
    assert rows(client.get("/audit/export.csv"))[0][:3] == ["id", "when", "action"]
    assert rows(client.get("/waves/export.csv"))[1][:2] == ["Evening", "Weekday evening"]


def test_the_organisation_export_is_scoped(client_for, admin_a, org_a, org_b):
    MailboxFactory(organisation=org_a)
    body = rows(client_for(admin_a).get("/organisations/export.csv"))
    assert [r[0] for r in body[1:]] == ["RJ1"] and body[1][6] == "1"
    assert client_for(admin_a).get("/organisations/RRV/mailboxes.csv").status_code == 404


def test_the_wave_export_is_scoped(client_for, admin_a, org_a, org_b):
    wave_in_states([org_a], {"scheduled": 1}, name="Ours")
    wave_in_states([org_b], {"scheduled": 1}, name="Theirs")
    body = rows(client_for(admin_a).get("/waves/export.csv"))
    assert [r[0] for r in body[1:]] == ["Ours"]
