import io

from migrations_app.models import Event, Mailbox
from migrations_app.services.affinity import affinity_largest_groups, group_name, permissions_import
from tests.factories import MailboxFactory

HEADER = "mailbox,delegate,right\n"


def run(text, organisation, actor=None, **kwargs):
    return permissions_import(
        source=io.BytesIO(text.encode("utf-8")), organisation=organisation, actor=actor, **kwargs
    )


def groups():
    return dict(Mailbox.objects.values_list("email", "affinity_group"))


def mailboxes(organisation, *names, **kwargs):
    for name in names:
        MailboxFactory(organisation=organisation, email=f"{name}@nhs.net", **kwargs)


def test_a_chain_becomes_one_group(org_a):
    mailboxes(org_a, "a", "b", "c", "d")
    result = run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\nb@nhs.net,c@nhs.net,SendAs\n", org_a)
    assert result.status == "succeeded"
    name = group_name(["a@nhs.net", "b@nhs.net", "c@nhs.net"])
    assert name == group_name(["c@nhs.net", "a@nhs.net"])  # named after the smallest address
    assert groups() == {"a@nhs.net": name, "b@nhs.net": name, "c@nhs.net": name, "d@nhs.net": ""}
    assert (result.updated, result.unchanged) == (3, 0)


def test_two_disjoint_pairs_become_two_groups(org_a):
    mailboxes(org_a, "a", "b", "c", "d")
    run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\nc@nhs.net,d@nhs.net,FullAccess\n", org_a)
    found = groups()
    assert found["a@nhs.net"] == found["b@nhs.net"] != found["c@nhs.net"] == found["d@nhs.net"]


def test_existing_groups_are_merged_whole(org_a):
    mailboxes(org_a, "a", "b")
    mailboxes(org_a, "x", "y", affinity_group="front-desk")
    run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\nb@nhs.net,x@nhs.net,FullAccess\n", org_a)
    assert set(groups().values()) == {group_name(["a@nhs.net"])}  # y came along with its group


def test_re_importing_the_same_permissions_changes_nothing(org_a):
    mailboxes(org_a, "a", "b")
    text = HEADER + "a@nhs.net,b@nhs.net,FullAccess\n"
    run(text, org_a)
    result = run(text, org_a)
    assert (result.updated, result.unchanged) == (0, 2)


def test_it_reports_an_address_not_in_the_inventory(org_a):
    mailboxes(org_a, "a", "b")
    result = run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\na@nhs.net,ghost@nhs.net,FullAccess\n", org_a)
    assert result.status == "rejected"
    assert [(e.line, e.column, e.value) for e in result.errors] == [(3, "delegate", "ghost@nhs.net")]
    assert set(groups().values()) == {""}  # all or nothing


def test_it_imports_the_valid_rows_when_asked(org_a):
    mailboxes(org_a, "a", "b")
    result = run(
        HEADER + "a@nhs.net,b@nhs.net,FullAccess\na@nhs.net,ghost@nhs.net,FullAccess\n",
        org_a,
        import_valid_rows=True,
    )
    assert (result.status, result.rows_valid, result.error_count) == ("succeeded", 1, 1)
    assert groups()["a@nhs.net"] == groups()["b@nhs.net"] != ""


def test_a_trust_admins_import_cannot_reach_another_organisation_and_is_not_told_whose_it_is(
    org_a, org_b, admin_a
):
    mailboxes(org_a, "a")
    mailboxes(org_b, "b")
    result = run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\n", org_a, actor=admin_a)
    [error] = result.errors
    assert error.message == "this address is not in RJ1's inventory"
    assert "RRV" not in error.message
    assert set(groups().values()) == {""}


def test_a_national_import_groups_across_organisations(org_a, org_b):
    mailboxes(org_a, "a")
    mailboxes(org_b, "b")
    result = run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\n", None)
    assert result.status == "succeeded"
    [largest] = result.summary["largest_groups"]
    assert (largest["mailboxes"], largest["organisations"]) == (2, 2)


def test_it_reports_bad_addresses_and_header_errors(org_a):
    result = run(HEADER + "not-an-address,a@nhs.net,FullAccess\n", org_a)
    assert [(e.line, e.column) for e in result.errors] == [(2, "mailbox")]
    result = run("mailbox,who\n", org_a)
    assert "missing columns: delegate, right" in result.errors[0].message


def test_it_reports_the_largest_groups_and_those_bigger_than_a_wave(org_a, settings):
    settings.PROGRAMME_EVENING_WAVE_MAILBOXES = 2
    mailboxes(org_a, "a", "b", "c", "d", "e", size_bytes=10)
    result = run(
        HEADER
        + "a@nhs.net,b@nhs.net,FullAccess\nb@nhs.net,c@nhs.net,FullAccess\nd@nhs.net,e@nhs.net,SendAs\n",
        org_a,
    )
    largest = result.summary["largest_groups"]
    assert [(g["mailboxes"], g["bytes"]) for g in largest] == [(3, 30), (2, 20)]
    assert result.summary["groups_over_capacity"] == 1
    assert affinity_largest_groups(limit=1) == largest[:1]


def test_it_accepts_exchange_column_names(org_a):
    mailboxes(org_a, "a", "b")
    result = run("Identity,User,AccessRights\na@nhs.net,B@NHS.NET,FullAccess\n", org_a)
    assert result.status == "succeeded"


def test_it_records_one_event(org_a, officer):
    mailboxes(org_a, "a", "b")
    run(HEADER + "a@nhs.net,b@nhs.net,FullAccess\n", org_a, actor=officer)
    [event] = Event.objects.filter(action="affinity.imported")
    assert event.data["updated"] == 2
