"""README's walk-through of the exchange engine against the two fake servers, run as written (on free ports, with
var/ in a temporary directory): both fakes start as processes of their own, manage.py copy_mailbox reaches the
fake Exchange over EWS and the fake Exchange Online over HTTPS (Entra ID token through MSAL, Graph, the import
URLs; its private CA trusted through the target's ca_file), full then cutover with verification. Every seeded
item arrives once, per folder, with its class and its payload byte for byte, and the mailbox's settings with it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import certifi

from tests.fakes.exchange_store import seed
from tests.test_readme import readme_example

ROOT = Path(__file__).resolve().parents[2]
USER = "alice@trust.onmicrosoft.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_walk_through_moves_alice_between_the_fakes_from_the_command_line(tmp_path):
    ews_port, graph_port = _free_port(), _free_port()
    script = (
        readme_example("exchange-fakes")
        .replace("8443", str(ews_port))
        .replace("8444", str(graph_port))
        .replace("var/", f"{tmp_path}/")
    )
    # a newcomer's shell: none of the test runner's settings (PORTAL_TESTING, DJANGO_SETTINGS_MODULE, ...)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COPY_", "PORTAL_", "DJANGO_"))}
    env["DEBUG"] = "1"  # what `make run` leaves in var/.env for manage.py
    # a machine whose environment names the public CA bundle (requests would let it win over a session's own
    # CA): the target's ca_file is trusted all the same
    env["REQUESTS_CA_BUNDLE"] = certifi.where()
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background fakes are stopped with it, whatever happens
    )
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate()
        raise AssertionError(f"the walk-through did not finish: {out[-2000:]} {err[-3000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("{") and '"engine"' in line]
    assert not any("secret" in line for line in lines)  # the passwords came from the environment, never shown
    summaries = [json.loads(line) for line in lines]
    full, cutover = summaries
    assert (full["ok"], full["items_copied"], full["skipped"]) == (True, 13, 1)  # the search folder, listed
    assert (cutover["ok"], cutover["verified"], cutover["items_copied"]) == (True, True, 0)

    dump = tmp_path / "imported" / USER
    store = seed(ROOT / "tests/fakes/exchange_seed")["alice@trust.nhs.uk"]
    expected = sorted(
        ("/".join(store.path(f)), i.item_class, i.raw) for f, i in store.items() if not f.search
    )
    arrived = sorted(
        (
            str(path.parent.relative_to(dump)),
            path.name.split(".", 1)[1].removesuffix(".fts"),
            path.read_bytes().split(b"\0", 3)[3],  # the fake stream's content: the seed file's bytes
        )
        for path in dump.rglob("*.fts")
    )
    assert arrived == expected

    settings = json.loads((dump / "_settings.json").read_text())
    replies = settings["mailboxSettings"]["automaticRepliesSetting"]
    assert (replies["status"], replies["externalAudience"]) == ("alwaysEnabled", "contactsOnly")
    assert settings["mailboxSettings"]["timeZone"] == "GMT Standard Time"
    assert [r["displayName"] for r in settings["messageRules"]] == [
        "Project mail to Projects",
        "Rota changes",
    ]
    roles = {
        (p["emailAddress"].get("address") or p["emailAddress"]["name"]): p["role"]
        for p in settings["calendarPermissions"]
    }
    assert roles == {
        "My Organization": "limitedRead",
        "bob@trust.nhs.uk": "read",
        "pa@trust.nhs.uk": "delegateWithoutPrivateEventAccess",
    }
    skipped = {(s["setting"], s["name"]) for s in cutover["settings"]["skipped"]}
    assert skipped == {
        ("inbox_rule", "Play a sound (Outlook only)"),
        ("delegate", "pa@trust.nhs.uk"),
        ("send_as_full_access", ""),
    }
