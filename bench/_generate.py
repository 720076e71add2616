"""The benchmarks' programme, generated set-based in the scratch database: organisations of an evening's mix
(a few trusts, many practices), every gate met, and their mailboxes of 0.5 to 2.4 GB."""

from __future__ import annotations


def organisations_and_mailboxes(
    cursor, *, mailboxes: int, orgs: int, prefix: str, status: str, stage: str, state: str, trusts: int
) -> None:
    """`orgs` organisations coded `prefix`00001... (the first `trusts` of them trusts) in `status` and `stage`,
    and `mailboxes` mailboxes spread over them round-robin, in `state`."""
    cursor.execute(
        """
        INSERT INTO migrations_app_organisation
            (ods_code, name, kind, region, status, stage, preferred_window, priority, gate_mfa_enforced,
             gate_acceptable_use, gate_licences_assigned, gate_service_desk_briefed, notes, created_at, updated_at)
        SELECT %(prefix)s || lpad(i::text, 5, '0'), 'Organisation ' || i,
               CASE WHEN i <= %(trusts)s THEN 'trust' ELSE 'gp_practice' END, 'london', %(status)s, %(stage)s,
               'any', 50, true, true, true, true, '', now(), now()
        FROM generate_series(1, %(orgs)s) AS i
        """,
        {"orgs": orgs, "prefix": prefix, "trusts": trusts, "status": status, "stage": stage},
    )
    cursor.execute(
        """
        INSERT INTO migrations_app_mailbox
            (organisation_id, email, display_name, kind, size_bytes, item_count, state, source_identity,
             created_at, updated_at)
        SELECT o.id, 'user' || i || '@' || lower(o.ods_code) || '.nhs.uk', 'User ' || i, 'user',
               500000000::bigint + (i %% 97) * 20000000::bigint, 10000 + i %% 5000, %(state)s, '', now(), now()
        FROM generate_series(1, %(mailboxes)s) AS i
        JOIN migrations_app_organisation o ON o.ods_code = %(prefix)s || lpad((1 + i %% %(orgs)s)::text, 5, '0')
        """,
        {"mailboxes": mailboxes, "orgs": orgs, "prefix": prefix, "state": state},
    )
