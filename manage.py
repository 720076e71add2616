#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from portal.env import load_env_file

    # what `make run` set up (DEBUG=1, and the database, broker and cache it was given); the environment wins
    load_env_file(Path(os.environ.get("PORTAL_VAR_DIR") or Path(__file__).resolve().parent / "var") / ".env")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
