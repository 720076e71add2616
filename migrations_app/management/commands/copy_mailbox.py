"""Copy one mailbox from the command line: for troubleshooting a single move and for measuring the engines
beside other tools, with the same engine code and checkpoint format the workers use.

    python manage.py copy_mailbox --engine imap --source imaps://alice@old.example --target imap://...
        --state /tmp/alice [--phase full|incremental|cutover] [--verify]

Progress goes to stderr; one JSON line to stdout at the end; exit status 0 only when the copy (and the
verification, when asked) succeeded. Credentials come from the URLs or COPY_SOURCE_PASSWORD /
COPY_TARGET_PASSWORD (migrations_app/engines/urls.py) and are never printed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from migrations_app.engines import EngineError, MailboxSpec, engine_kinds, get_engine
from migrations_app.engines.urls import endpoint_from_url

PHASES = ("full", "incremental", "cutover")


class Command(BaseCommand):
    help = "Copy one mailbox with an engine, outside the orchestrator (a checkpoint kept in --state DIR)."

    def add_arguments(self, parser):
        parser.add_argument("--engine", required=True, choices=engine_kinds())
        parser.add_argument(
            "--source",
            required=True,
            help="imaps://user@host, ewss://account@cas/?user=SMTP, see engines/urls.py",
        )
        parser.add_argument("--target", required=True, help="imaps://..., graph://client@tenant/?user=UPN")
        parser.add_argument("--state", required=True, help="a directory for the checkpoint (made if missing)")
        parser.add_argument("--phase", choices=PHASES, default="incremental")
        parser.add_argument("--verify", action="store_true", help="compare source and target afterwards")
        parser.add_argument("--connections", type=int, default=None)

    def handle(self, *args, **options):
        try:
            source, source_user = endpoint_from_url(options["source"], side="source")
            target, target_user = endpoint_from_url(options["target"], side="target")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        state = Path(options["state"])
        state.mkdir(parents=True, exist_ok=True)
        checkpoint_path = state / "checkpoint.json"
        checkpoint = None
        if options["phase"] != "full" and checkpoint_path.exists():
            checkpoint = json.loads(checkpoint_path.read_text())
        # The workers' engine options for this kind (settings.MIGRATION_ENGINE_OPTIONS), then the command's.
        engine_options = dict(settings.MIGRATION_ENGINE_OPTIONS.get(options["engine"], {}))
        if options["connections"]:
            engine_options["connections"] = options["connections"]
        engine = get_engine(options["engine"], **engine_options)
        spec = MailboxSpec(
            email=target_user or source_user,
            source=source,
            target=target,
            source_user=source_user,
            target_user=target_user,
        )
        err = self.stderr

        def progress(items: int, size: int, cp: dict) -> None:
            _save(checkpoint_path, cp)
            err.write(f"{items} items, {size / 1_000_000:.1f} MB")

        summary: dict = {"engine": options["engine"], "phase": options["phase"]}
        started = time.perf_counter()
        ok = True
        try:
            run = engine.cutover if options["phase"] == "cutover" else engine.sync
            result = run(spec, checkpoint, progress)
            _save(checkpoint_path, result.checkpoint)
            summary.update(
                items_copied=result.items_copied,
                bytes_copied=result.bytes_copied,
                items_total=result.checkpoint.get("items"),
                skipped=len(result.skipped),
                flags_updated=sum(f.flags_updated for f in result.folders),
                items_moved=sum(f.items_moved for f in result.folders),
                items_deleted=sum(f.items_deleted for f in result.folders),
            )
            if result.checkpoint.get("settings"):  # the exchange engine: what moved and what could not
                records = result.checkpoint["settings"]["records"]
                summary["settings"] = {
                    "applied": [
                        f"{r['setting']}:{r['name']}".rstrip(":")
                        for r in records
                        if r["outcome"] == "applied"
                    ],
                    "skipped": [
                        {"setting": r["setting"], "name": r["name"], "why": r["detail"]}
                        for r in records
                        if r["outcome"] == "skipped"
                    ],
                }
            if options["verify"]:
                verified = engine.verify(spec)
                ok = verified.ok
                summary["verified"] = verified.ok
                summary["differences"] = [
                    {
                        "folder": f.folder,
                        "source_count": f.source_count,
                        "target_count": f.target_count,
                        "missing": f.missing[:20],
                        "extra": f.extra[:20],
                    }
                    for f in verified.differences
                ]
        except EngineError as exc:
            ok = False
            if exc.checkpoint:
                _save(checkpoint_path, exc.checkpoint)
            summary.update(error={"code": exc.code, "message": exc.message})
        summary["seconds"] = round(time.perf_counter() - started, 3)
        summary["ok"] = ok
        self.stdout.write(json.dumps(summary))
        if not ok:
            sys.exit(1)


def _save(path: Path, checkpoint: dict) -> None:
    """Written whole then renamed: a copy killed mid-write leaves the previous checkpoint."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(checkpoint))
    partial.replace(path)
