"""README's worked example (enrol an organisation, upload 10,000 mailboxes) run as written: the curl script
through bash and the httpx script through Python, against a live server with a real token. The uploads are
answered 202 and imported by a real Celery worker (start_worker on the test's broker), which the scripts poll.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from migrations_app.models import Mailbox, Organisation
from migrations_app.services.tokens import token_create
from tests.conftest import skip_or_fail
from tests.factories import UserFactory

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(name: str) -> str:
    """The fenced block right after `<!-- readme-example: NAME -->`."""
    match = re.search(rf"<!-- readme-example: {name} -->\s*```\w+\n(.*?)\n```", README.read_text(), re.DOTALL)
    assert match, f"README.md has no block marked <!-- readme-example: {name} -->"
    return match.group(1)


@pytest.fixture
def portal(live_server, real_broker, transactional_db, tmp_path):
    """The environment the README asks for: PORTAL and a trust admin's TOKEN; a worker imports the jobs."""
    admin = UserFactory(username="readme", role="trust_admin")
    _, raw = token_create(user=admin, name="readme", scopes=["read", "write"], expires_at=None)
    env = {**os.environ, "PORTAL": live_server.url, "TOKEN": raw}
    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield env, admin


def assert_enrolled_with_mailboxes(admin, ods_code: str):
    organisation = Organisation.objects.get(ods_code=ods_code)
    assert admin.organisations.filter(pk=organisation.pk).exists()
    assert Mailbox.objects.filter(organisation=organisation).count() == 10_000


def test_the_curl_example(portal, tmp_path):
    if shutil.which("curl") is None:
        skip_or_fail("curl is not installed")
    env, admin = portal
    result = subprocess.run(
        ["bash", "-c", readme_example("curl")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert result.stdout.strip().endswith("imported")
    assert_enrolled_with_mailboxes(admin, "RX1")


def test_the_python_example(portal, tmp_path):
    env, admin = portal
    result = subprocess.run(
        [sys.executable, "-c", readme_example("python")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "imported: 10000 created" in result.stdout
    assert_enrolled_with_mailboxes(admin, "RX2")
