"""Readiness: pre-flight checks (checks), the reasons a mailbox is blocked (codes), the organisation's stages
(stages) and leavers (leavers). Import from the modules; nothing is re-exported here."""
