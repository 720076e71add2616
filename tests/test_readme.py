"""README, followed word for word: every shell and Python block, in order, run as written on a checkout that
`make run` prepared, against the portal `make run` serves (its seeded demo, its web server, worker and beat).

- `<!-- readme-test: serve (...) -->` before a block: its first line (`make run`) starts in the background and
  the blocks after it run once the portal answers; the block's other lines are not run (`make test` is the
  suite this test is part of).
- `<!-- readme-file: NAME -->` before a block: its text is saved as NAME in the working folder (the CSV files the
  commands after it import).
- `<!-- readme-test: skip (reason) -->` before a block: not run, for the reason given (benchmarks, a second
  `make run`, commands that rewrite files).
- `<!-- readme-example: NAME -->` before a block: run here like any other, except the blocks in RUN_ELSEWHERE,
  which need what this checkout has not (a superuser's database URL; free fixed ports) and are run by their
  own tests through `readme_example(NAME)`.
- The worked example's scripts need `PORTAL` and `TOKEN` (README: a token made under API tokens); the test makes
  the token for the demo trust admin and sets both.

The working folder links the checkout's code, `.venv` and `node_modules`; `make run` gets a fresh database (a new
PostgreSQL database when DATABASE_URL is PostgreSQL, else SQLite), its own var folder and a free port. DEBUG,
SECRET_KEY and the test profile's variables are removed: the commands must run as a newcomer's shell has them.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.production.server import _database, _free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINKED = [".venv", "node_modules", "manage.py", "Makefile", "Procfile.dev", "pyproject.toml", "package.json"]
LINKED += [
    "package-lock.json",
    "portal",
    "migrations_app",
    "templates",
    "static",
    "frontend",
    "bench",
    "tests",
    "docs",
]
BLOCK = re.compile(r"(?:<!-- (readme-[a-z]+): ?(.*?) -->\s*)?```(\w+)\n(.*?)\n```", re.DOTALL)


def readme_blocks() -> list[tuple[str, str, str, str]]:
    """(marker, argument, language, text) of every fenced block, in order."""
    return [(m[1] or "", m[2] or "", m[3], m[4]) for m in BLOCK.finditer(README.read_text())]


# readme-example blocks run by their own tests, not by the walk through README below
RUN_ELSEWHERE = {
    "database-roles": "tests/commands/test_grant_app_role.py",
    "exchange-fakes": "tests/engines/test_exchange_fakes_serve.py",
}


def readme_example(name: str) -> str:
    """The fenced block right after `<!-- readme-example: NAME -->`, for the test that runs it."""
    match = re.search(rf"<!-- readme-example: {name} -->\s*```\w+\n(.*?)\n```", README.read_text(), re.DOTALL)
    assert match, f"README.md has no block marked <!-- readme-example: {name} -->"
    return match.group(1)


def test_every_block_is_run_or_says_why_not():
    blocks = readme_blocks()
    runnable = [b for b in blocks if b[2] in ("sh", "bash", "shell", "python") and b[0] != "readme-test"]
    assert len(runnable) >= 4, blocks  # the commands, the curl and httpx scripts, the webhook check
    for marker, argument, _language, _text in blocks:
        if marker == "readme-test":
            assert re.match(r"(serve|skip) \(.+\)$", argument), f"a skip needs its reason: {argument!r}"


def environment(work: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTAL_", "DJANGO_", "CELERY_", "SIMULATED_", "PYTEST"))
        and k
        not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "CACHE_URL", "ALLOWED_HOSTS", "PORT", "VIRTUAL_ENV"}
    }
    env.update({"PORT": str(port), "PORTAL_VAR_DIR": str(work / "var")})
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def wait_until_up(url: str, process: subprocess.Popen, log: Path, seconds: int = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)  # noqa: S310 - loopback
            return
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"`make run` did not serve {url}: {exc}\n{log.read_text()[-4000:]}"
                ) from exc
            time.sleep(0.5)


def run_block(language: str, text: str, env: dict, work: Path, number: int) -> None:
    command = (
        ["bash", "-e", "-c", text] if language != "python" else [str(ROOT / ".venv/bin/python"), "-c", text]
    )
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (
        f"README block {number} failed ({result.returncode}):\n{text}\n--- output:\n"
        + (result.stdout + result.stderr)[-4000:]
    )


# make run's setup, migrate and seed, then the 10,000-row uploads: ~100 s, several minutes under load
@pytest.mark.timeout(900)
def test_readme_runs_as_written_on_the_demo(tmp_path):
    if shutil.which("make") is None or shutil.which("curl") is None:
        skip_or_fail("the README test needs make and curl")
    work = tmp_path / "checkout"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    port = _free_port()
    database_url, drop = _database(tmp_path)
    env = environment(work, port, None if database_url.startswith("sqlite") else database_url)
    portal = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    server = None
    ran = []
    try:
        for number, (marker, argument, language, text) in enumerate(readme_blocks(), start=1):
            if marker == "readme-file":
                (work / argument).write_text(text + "\n")
                continue
            if marker == "readme-example" and argument in RUN_ELSEWHERE:
                continue
            if language not in ("sh", "bash", "shell", "python") or argument.startswith("skip"):
                continue
            if argument.startswith("serve"):
                first = text.splitlines()[0].split("#")[0].strip()
                assert first == "make run", text
                with log.open("wb") as out:
                    server = (
                        subprocess.Popen(  # its own process group: honcho, web, worker and beat stop together
                            ["bash", "-c", first],
                            cwd=work,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                wait_until_up(portal, server, log)
                token = subprocess.run(
                    [str(ROOT / ".venv/bin/python"), "manage.py", "shell", "-c",
                     "from migrations_app.models import User; from migrations_app.services.tokens import token_create;"
                     " print(token_create(user=User.objects.get(username='trust'), name='README',"
                     " scopes=['read', 'write'], expires_at=None)[1])"],
                    cwd=work, env=env, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert token.returncode == 0, token.stderr
                env = {**env, "PORTAL": portal, "TOKEN": token.stdout.strip().splitlines()[-1]}
                ran.append(first)
                continue
            run_block(language, text, env, work, number)
            ran.append(text.splitlines()[0])
        assert any("import_mailboxes" in r for r in ran) and any(
            "curl" in r or "set -euo" in r for r in ran
        ), ran
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        drop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
