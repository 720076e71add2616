"""The test profile: the same settings, with fast password hashing, a local cache and eager tasks."""

import os

os.environ.setdefault("PORTAL_TESTING", "1")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from portal.settings import *  # noqa: E402, F403

# Tests change figures and read them back at once: no sharing of live figures (tests/views/test_wave_live_cache.py
# turns it on).
WAVE_LIVE_CACHE_SECONDS = 0
PROGRAMME_SUPPORT_CACHE_SECONDS = 0
