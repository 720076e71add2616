"""Pages never show a Python None as the word "None"."""

import re

import pytest
from django.template import engines

from tests.factories import MailboxFactory, OrganisationFactory


def test_a_none_value_prints_nothing():
    template = engines["jinja2"].from_string("[{{ value }}] [{{ value or 'Not set' }}]")
    assert template.render({"value": None}) == "[] [Not set]"


def test_the_organisation_and_mailbox_pages_say_not_set_rather_than_none(client_for, officer):
    organisation = OrganisationFactory(ods_code="RTH", parent=None, notes="")
    mailbox = MailboxFactory(organisation=organisation, affinity_group="", display_name="")
    for url in ["/organisations/RTH/", f"/mailboxes/{mailbox.pk}/"]:
        page = client_for(officer).get(url).content.decode()
        assert not re.search(r">\s*None\s*<", page), url


def test_url_for_each_gives_what_reverse_gives_for_every_id():
    from django.urls import reverse

    from portal.jinja2 import url_for_each

    mailbox_url = url_for_each("mailbox_detail")
    for pk in (1, 42, 9081726354, 10**12):
        assert mailbox_url(pk) == reverse("mailbox_detail", args=[pk])
    with pytest.raises(ValueError):
        mailbox_url("1/../../admin")  # an id, nothing else, goes into the path
