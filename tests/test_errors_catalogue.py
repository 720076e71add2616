"""Every error code a person can meet comes with a plain-English meaning and what to do, from one table, on the
pages, in the API and in the CSV exports."""

import csv
import io

from markupsafe import escape

from migrations_app.engines.base import ERROR_CODES
from migrations_app.errors_catalogue import CATALOGUE, explain
from tests.factories import MailboxFactory


def test_every_engine_error_code_is_explained():
    assert set(CATALOGUE) >= ERROR_CODES
    for entry in CATALOGUE.values():
        assert entry.meaning.endswith(".") and entry.action.endswith(".")
    assert explain("") is None
    assert "SOMETHING_NEW" in explain("SOMETHING_NEW").meaning


def test_pages_api_and_csv_carry_the_explanation(client_for, officer, org_a):
    mailbox = MailboxFactory(
        organisation=org_a, state="failed", last_error_code="OVER_QUOTA", last_error_message="quota"
    )
    client = client_for(officer)
    why = CATALOGUE["OVER_QUOTA"]
    assert escape(why.action) in client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert why.meaning in client.get("/failures/").content.decode()
    assert escape(why.action) in client.get("/failures/?code=OVER_QUOTA").content.decode()
    row = client.get(f"/api/v1/mailboxes/{mailbox.pk}/").json()
    assert (row["last_error_meaning"], row["last_error_action"]) == (why.meaning, why.action)
    export = b"".join(client.get("/failures/export.csv").streaming_content).decode()
    [line] = list(csv.DictReader(io.StringIO(export)))
    assert line["last_error_action"] == why.action
