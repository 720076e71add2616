"""Telling staff about their move through GOV.UK Notify, one concern a module:

- templates: the words for each moment, rendered with a mailbox's real data (and previewed);
- scheduling: which mailboxes are due which notification now, inserted set-based, at most once each;
- sending: hands due notifications to Notify (or the log backend) within its rate limit and daily allowance;
- receipts: Notify's delivery callbacks, stored per message.
"""
