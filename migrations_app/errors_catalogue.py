"""What each error code means, in plain English, and what to do about it: one table, used by the pages, the API
and the CSV exports, so a code never reaches a person without its explanation.

Add a code here when an engine, a service or a readiness check starts using one; `explain()` answers every code,
with a general explanation for one that is not (yet) listed.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    code: str
    meaning: str  # what happened, in words
    action: str  # what to do about it
    retry_helps: bool = False  # whether retrying without changing anything can work


CATALOGUE: dict[str, Explanation] = {
    e.code: e
    for e in [
        # retryable: the workers retry these by themselves, with back-off, before a person sees them
        Explanation(
            "NETWORK",
            "The connection to a mail server dropped or timed out.",
            "Usually passes by itself: retry. If it keeps happening, check the network path to the server.",
            retry_helps=True,
        ),
        Explanation(
            "THROTTLED",
            "The mail server asked us to slow down (too many requests).",
            "Nothing: the workers wait and retry by themselves. Retry by hand only if it stayed failed.",
            retry_helps=True,
        ),
        Explanation(
            "SERVER_BUSY",
            "The mail server was too busy to answer.",
            "Retry later; if it persists, ask the server's owners whether it is overloaded or in maintenance.",
            retry_helps=True,
        ),
        # permanent: a person must change something first
        Explanation(
            "AUTH_FAILED",
            "The mail server refused the migration account's sign-in.",
            "Check the migration account's password or certificate and its permissions on the mailbox, then "
            "retry.",
        ),
        Explanation(
            "TARGET_MISSING",
            "The mailbox to move into does not exist in Exchange Online.",
            "Create (or license) the user in Exchange Online, check the target UPN in the inventory, then retry.",
        ),
        Explanation(
            "NOT_LICENSED",
            "The user in Exchange Online has no mailbox licence.",
            "Assign an Exchange Online licence to the user, wait for the mailbox to appear, then retry.",
        ),
        Explanation(
            "OVER_QUOTA",
            "The target mailbox is full: its quota is smaller than the mail being moved.",
            "Raise the target mailbox's quota (or archive mail at the source), then retry.",
        ),
        Explanation(
            "TLS_FAILED",
            "A secure connection to the mail server could not be made (certificate or TLS settings).",
            "Check the server's certificate and the endpoint's address and TLS settings, then retry.",
        ),
        Explanation(
            "PROTOCOL",
            "The mail server answered something the migration could not understand.",
            "Look at the error message; ask the server's owners, or the migration team, before retrying.",
        ),
        Explanation(
            "SOURCE_MISSING",
            "The mailbox to move from was not found on the on-premises server.",
            "Check the address in the inventory (it may have been renamed or removed), fix it, then retry.",
        ),
        Explanation(
            "IMPERSONATION_REFUSED",
            "The migration account is not allowed to open this mailbox.",
            "Give the migration account the ApplicationImpersonation role (or full access) on it, then retry.",
        ),
        # items skipped during a copy (listed on the mailbox, never silently dropped)
        Explanation(
            "TOO_BIG",
            "A message is larger than the target accepts.",
            "Ask the mailbox owner to save or remove the attachment; the rest of the mailbox has moved.",
        ),
        Explanation(
            "REJECTED",
            "The target refused a message.",
            "Look at the skipped item's details; the rest of the mailbox has moved.",
        ),
        Explanation(
            "CORRUPT",
            "A message could not be read from the source: it is damaged.",
            "Nothing can bring it across as it is; tell the mailbox owner which item was skipped.",
        ),
        Explanation(
            "SEARCH_FOLDER",
            "A search folder is a saved search, not mail: it is not copied.",
            "Nothing: the owner can recreate the search in Outlook.",
        ),
    ]
}


def explain(code: str | None) -> Explanation | None:
    """The explanation of `code`; None for no code; a general one for a code not listed."""
    if not code:
        return None
    return CATALOGUE.get(code) or Explanation(
        code,
        f"The migration stopped with the error {code}.",
        "Read the error message; fix what it names, then retry, or ask the migration team.",
    )
