"""Activity is said in words (what happened to what), not as raw action codes; the audit log's example filter
matches real events."""

import re

from migrations_app.event_words import WORDS
from migrations_app.services.events import event_record
from migrations_app.services.waves import ACTIONS
from tests.factories import MailboxFactory


def test_the_organisation_page_says_what_happened_to_which_mailbox(client_for, officer, org_a):
    mailbox = MailboxFactory(organisation=org_a)
    event_record(action="mailbox.claimed", organisation=org_a, mailbox=mailbox, subject=mailbox.email)
    page = client_for(officer).get("/organisations/RJ1/").content.decode()
    assert f"Started copying {mailbox.email}" in page and "The portal (automatic)" in page
    assert ">mailbox.claimed<" not in page and ">System<" not in page


def test_the_audit_logs_example_filter_names_a_real_action(client_for, officer):
    page = client_for(officer).get("/audit/").content.decode()
    example = re.search(r"For example mailbox\. or (wave\.[a-z-]+)", page)[1]
    assert example in {f"wave.{name}" for name in ACTIONS} and example in WORDS
