"""An event in words, for the pages' activity lists: "Started copying jane.doe@rj1.nhs.uk", not
"mailbox.claimed"; "The portal (automatic)", not "System". The action codes stay in the audit log's filter and
the API."""

WORDS = {
    "mailbox.claimed": "Started copying",
    "mailbox.synced": "Finished the first copy of",
    "mailbox.final_delta": "Copied the last changes of",
    "mailbox.verifying": "Checking the copy of",
    "mailbox.migrated": "Moved",
    "mailbox.failed": "Could not move",
    "mailbox.retry_scheduled": "Will try again to move",
    "mailbox.retried": "Queued again",
    "mailbox.requeued": "Handed to another worker",
    "mailbox.lease_lost": "Lost its worker:",
    "mailbox.paused": "Paused",
    "mailbox.resumed": "Resumed",
    "mailbox.stopped": "Stopped",
    "mailbox.carried_over": "Carried over to another wave:",
    "mailbox.placed": "Placed in a wave:",
    "mailbox.blocked": "Blocked",
    "mailbox.reinstated": "Reinstated",
    "mailbox.retired": "Retired",
    "mailbox.paced": "Slowed down",
    "mailbox.switched": "Switched to Exchange Online:",
    "mailbox.switch_requested": "Asked to switch",
    "mailbox.switch_waiting": "Waiting to switch",
    "mailboxes.marked_ready": "Marked mailboxes ready to plan:",
    "inventory.imported": "Imported the inventory of",
    "inventory.rejected": "Rejected an inventory file for",
    "affinity.imported": "Imported the permissions of",
    "affinity.rejected": "Rejected a permissions file for",
    "organisation.enrolled": "Enrolled",
    "organisation.invited": "Invited the admin of",
    "organisation.updated": "Updated the details of",
    "organisation.stage_changed": "Moved to the next stage:",
    "invitation.accepted": "Accepted the invitation for",
    "wave.propose": "Proposed the wave",
    "wave.go": "Said go for",
    "wave.no-go": "Said no-go for",
    "wave.approve": "Approved the wave",
    "wave.reject": "Rejected the wave",
    "wave.pause": "Paused the wave",
    "wave.resume": "Resumed the wave",
    "wave.cancel": "Cancelled the wave",
    "wave.unfrozen": "Sent back for approval after a change:",
    "wave.pilot_created": "Created the pilot wave",
    "wave.started": "Started the wave",
    "wave.completed": "Finished the wave",
    "wave.reopened": "Ran the wave again to retry its failures:",
    "wave.carried_over": "Carried over what was left of",
    "programme.settings_changed": "Changed the windows and planning rules:",
    "plan.committed": "Saved the wave plan",
    "api_token.created": "Made an API token",
    "api_token.revoked": "Revoked an API token",
}


def event_in_words(event) -> str:
    """What happened to what, in a sentence."""
    what = WORDS.get(event.action) or event.action.replace("_", " ").replace(".", ": ", 1).capitalize()
    subject = event.subject or (event.mailbox.email if event.mailbox_id and event.mailbox else "")
    return f"{what} {subject}".strip()


def actor_in_words(event) -> str:
    if event.actor_id and event.actor:
        return event.actor.get_full_name() or event.actor.username
    return "The portal (automatic)"
