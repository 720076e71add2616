"""Real Celery worker processes for benchmarks and end-to-end tests: started with the project's own settings
and the caller's DATABASE_URL / CELERY_BROKER_URL, waited for until ready, stopped (or killed) by the caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`celery -A portal worker` in a process group of its own, its log in a file."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        *,
        env: dict[str, str],
        pool: str = "solo",
        concurrency: int = 1,
        beat: bool = False,
        queues: str = "",
    ):
        self.name = name
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker",
            "--hostname", f"{name}@%h", "--pool", pool, "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        if queues:  # e.g. "copies" for a copy worker (CELERY_COPY_QUEUE), "celery" for the rest
            command += ["--queues", queues]
        if beat:  # the beat inside this worker: the every-minute tick and the reconciler, on their schedule
            command += ["--beat", "--scheduler", "celery.beat:Scheduler"]  # in memory: nothing on disk
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready after {timeout} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acknowledgement, as when a machine dies."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def worker_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The production profile (DEBUG off: no query log growing in a long-lived worker), with throwaway keys."""
    import base64
    import secrets

    return {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "0",
        "PORTAL_TESTING": "0",  # a pytest run's test profile must not leak into the workers it starts
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PORTAL_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for Django's connection settings (the test database, in tests)."""
    from urllib.parse import quote

    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
