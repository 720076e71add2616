"""README's bench.switch command runs as written (a small wave, the fake at no delay): it needs PostgreSQL and
Redis, as the benchmark itself says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_bench_switch_switches_every_mailbox_once_and_prints_its_figure(tmp_path):
    database = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not database.startswith("postgres") or not broker.startswith("redis://"):
        skip_or_fail("bench.switch needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL)")
    env = {
        **os.environ,
        "DATABASE_URL": database.rsplit("/", 1)[0] + "/portal_switch_bench_test",
        "PORTAL_TESTING": "0",
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "bench.switch", "--mailboxes", "60", "--cmdlet-seconds", "0.01"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "checked: 60 migrated and switched, Set-Mailbox once each" in done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith('{"bench": "switch", "switches": 60,') and '"sessions": 16' in line
