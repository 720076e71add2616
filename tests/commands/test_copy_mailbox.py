"""manage.py copy_mailbox, as README shows it: one mailbox between two real Dovecot servers, run as a
command (a separate process), a full copy then an incremental one with --verify; exit status and the JSON
line; a wrong password fails with status 1 and is never echoed."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.engines import mailgen
from tests.engines.conftest import dovecots  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, env_extra=None):
    env = {**os.environ, "PORTAL_TESTING": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "manage.py", "copy_mailbox", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _url(scheme, server, user, port, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{scheme}://{user}@{server.host}:{port}/?{q}"


def test_copy_mailbox_copies_then_verifies_and_says_so_in_one_json_line(dovecots, tmp_path):  # noqa: F811
    source, target = dovecots
    src_user, tgt_user = source.new_user(), target.new_user()
    client = mailgen.client(source, src_user)
    mailgen.append(client, "INBOX", [mailgen.message(n) for n in range(12)])
    src_url = _url("imaps", source, src_user, source.tls_port, ca_file=source.ca_file)
    tgt_url = _url("imap", target, tgt_user, target.port, starttls=1, ca_file=target.ca_file)
    secrets = {"COPY_SOURCE_PASSWORD": source.users[src_user], "COPY_TARGET_PASSWORD": target.users[tgt_user]}
    state = tmp_path / "state"

    full = _run("--engine", "imap", "--source", src_url, "--target", tgt_url, "--state", str(state),
                "--phase", "full", env_extra=secrets)  # fmt: skip
    assert full.returncode == 0, full.stderr
    summary = json.loads(full.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["items_copied"], summary["phase"]) == (True, 12, "full")
    assert (state / "checkpoint.json").exists()

    mailgen.append(client, "INBOX", [mailgen.message(n) for n in range(100, 103)])
    again = _run("--engine", "imap", "--source", src_url, "--target", tgt_url, "--state", str(state),
                 "--verify", env_extra=secrets)  # fmt: skip
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["items_copied"], summary["items_total"], summary["verified"]) == (3, 15, True)
    assert "items" in again.stderr  # progress on stderr

    wrong = {**secrets, "COPY_TARGET_PASSWORD": "not-the-password-xyz"}
    refused = _run("--engine", "imap", "--source", src_url, "--target", tgt_url, "--state", str(state),
                   env_extra=wrong)  # fmt: skip
    assert refused.returncode == 1
    assert json.loads(refused.stdout.strip().splitlines()[-1])["error"]["code"] == "AUTH_FAILED"
    assert "not-the-password-xyz" not in refused.stdout + refused.stderr
    client.logout()
