"""The test profile: the same settings, with fast password hashing, a local cache and eager tasks."""

import os

os.environ.setdefault("PORTAL_TESTING", "1")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from portal.settings import *  # noqa: E402, F403
