"""Settings, all read from the environment (see README, "Configuration").

Two profiles: development (DEBUG=1, the embedded default: SQLite and a broker that needs no server) and
production (DEBUG unset or 0: a real SECRET_KEY and encryption key are required, HTTPS everywhere; passes
`manage.py check --deploy` with no warnings).
"""

import base64
import binascii
import os
import sys
from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

from portal.entra import entra_settings
from portal.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("PORTAL_TESTING", False)
# The test profile selects development keys and a fast password hasher: it must never be on in a deployment,
# so it is refused unless the test runner loaded the test settings.
if TESTING and not (
    os.environ.get("DJANGO_SETTINGS_MODULE") == "portal.settings_test" and "pytest" in sys.modules
):
    raise ImproperlyConfigured("PORTAL_TESTING is for the test runner only (portal.settings_test): unset it")

# --- secrets -------------------------------------------------------------------------------------------
# A development default exists only when DEBUG is on; production must set its own.
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG or TESTING else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
if SECRET_KEY == _DEV_SECRET_KEY and not (DEBUG or TESTING):
    raise ImproperlyConfigured("SECRET_KEY is the development key: set a secret one when DEBUG is off")

# Fernet keys for credentials stored at rest, comma-separated, newest first (older ones still decrypt, so
# keys can be rotated). Generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
_DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="  # base64 of a fixed 32-byte dev key
PORTAL_ENCRYPTION_KEYS = env_list("PORTAL_ENCRYPTION_KEYS") or (
    [_DEV_ENCRYPTION_KEY] if DEBUG or TESTING else []
)
if not PORTAL_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("PORTAL_ENCRYPTION_KEYS must be set when DEBUG is off")
for _position, _key in enumerate(PORTAL_ENCRYPTION_KEYS, start=1):
    # checked now, not at the first credential read: a bad key found at 2 a.m. by a worker is worse
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ImproperlyConfigured(
            f"PORTAL_ENCRYPTION_KEYS: key {_position} is not a Fernet key (url-safe base64 of 32 bytes)"
        ) from None
    if _key == _DEV_ENCRYPTION_KEY and not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            f"PORTAL_ENCRYPTION_KEYS: key {_position} is the development key: generate one for this deployment"
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG or TESTING else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- applications --------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    # the audit trail's protection triggers, declared on Event (docs/adr/020-audit-trail-protection.md)
    "pgtrigger",
    "migrations_app",
]

MIDDLEWARE = [
    "portal.middleware.DebugErrorPagesMiddleware",  # outermost: sees the final 404 (only acts with DEBUG on)
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # before anything reads the body: too large a body, NUL bytes in parameters stop here (request_limits.py)
    "migrations_app.request_limits.RequestLimitsMiddleware",
    # after authentication: keys are per user (api/idempotency.py)
    "migrations_app.api.idempotency.IdempotencyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "migrations_app.security_headers.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"
AUTH_USER_MODEL = "migrations_app.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Pages use Jinja2 so that the NHS.UK frontend component macros (nhsuk-frontend-jinja) can be called
# directly (docs/adr/002-jinja2-templates.md); the Django admin keeps the Django template engine.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "portal.jinja2.environment"},
    },
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes; IMMEDIATE transactions take the write lock up
    # front, so two processes never deadlock upgrading a read lock ("database is locked").
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# A connection pool per process (psycopg_pool; PostgreSQL only, 0 = none). Copy workers run many copies on
# threads (`--pool threads`): each copy borrows a connection for its writes and gives it back, so a worker
# carrying hundreds of copies needs DB_POOL_MAX_SIZE connections, not one per copy (docs/adr/031).
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0)
if DB_POOL_MAX_SIZE < 0:
    raise ImproperlyConfigured("DB_POOL_MAX_SIZE must be 0 (no pool) or more")
if DB_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool wants connections closed (returned) after use
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env_float("DB_POOL_TIMEOUT_SECONDS", 60.0),
    }
# Behind PgBouncer in transaction mode a server-side cursor cannot outlive its transaction: CSV downloads
# stream with client-side cursors instead (docs/adr/031).
if env_bool("DB_PGBOUNCER_TRANSACTION_MODE", False):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (import progress, rate limits); shared between web and worker processes ------------------------
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "portal.cache.RedisCache", "LOCATION": CACHE_URL}}
elif TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# The public "when does my mailbox move?" page: lookups per client IP in each window listed (a burst, then a
# longer window: a trust's staff behind one NAT share an address), and for everyone together, counted in the
# cache above (atomically; a shared cache such as Redis when several web processes serve it).
PUBLIC_LOOKUP_RATE = env_str("PUBLIC_LOOKUP_RATE", "30/m,300/h")
PUBLIC_LOOKUP_GLOBAL_RATE = env_str("PUBLIC_LOOKUP_GLOBAL_RATE", "3000/m")
# Behind a load balancer or proxy: its addresses (or networks). X-Forwarded-For is believed only from these,
# for the client address every rate limit counts by (migrations_app/ratelimit.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
# The public help form ("I need help with my moved mailbox"): requests per client IP, like the lookup.
PUBLIC_HELP_RATE = env_str("PUBLIC_HELP_RATE", "5/h")

# --- GOV.UK Notify (services/notifications/) ------------------------------------------------------------------
# Without a key the log backend sends nothing and writes what it would send on each mailbox's timeline.
NOTIFY_API_KEY = env_str("NOTIFY_API_KEY")
NOTIFY_BACKEND = env_str("NOTIFY_BACKEND")  # "notify" or "log"; empty: notify when there is a key
NOTIFY_BASE_URL = env_str("NOTIFY_BASE_URL", "https://api.notifications.service.gov.uk")
# The Notify template for each moment (each is "((subject))" / "((body))"): moment=uuid,...; default=uuid for all.
NOTIFY_TEMPLATE_IDS = dict(
    (item.partition("=")[0].strip(), item.partition("=")[2].strip())
    for item in env_list("NOTIFY_TEMPLATE_IDS")
)
# The bearer token we give Notify for its delivery-receipt callbacks (POST /notify/receipts).
NOTIFY_CALLBACK_TOKEN = env_str("NOTIFY_CALLBACK_TOKEN")
NOTIFY_SEND_BATCH = env_int("NOTIFY_SEND_BATCH", 500)
# Requests to Notify at once: its 3,000 a minute is 50 a second, so with Notify answering in 150-300 ms from
# here 8-15 must be in flight to use the allowance; 16 leaves room for a slow minute.
NOTIFY_SEND_THREADS = env_int("NOTIFY_SEND_THREADS", 16)
NOTIFY_RATE_LIMIT_WAIT_SECONDS = env_int("NOTIFY_RATE_LIMIT_WAIT_SECONDS", 30)
NOTIFY_RETRY_WAIT_SECONDS = env_int("NOTIFY_RETRY_WAIT_SECONDS", 900)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 3)
# Where the notifications send people for help (the public help form on this portal).
PUBLIC_HELP_URL = env_str("PUBLIC_HELP_URL", "https://mailbox-move.nhs.uk/when/help")

# --- Celery ------------------------------------------------------------------------------------------------
# The embedded default is kombu's filesystem transport: messages are files in var/broker, so the web
# server, the worker and beat share a queue with no server to install (docs/adr/003-embedded-broker.md).
# Tests get their own folder, so a test can never hand work to a `make run` worker on the same machine.
BROKER_DIR = VAR_DIR / ("test-broker" if TESTING else "broker")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(BROKER_DIR / "control"),  # fanout exchanges (kombu's default is ./control)
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
# Redis (and SQS) hand an unacknowledged message to another worker after `visibility_timeout`. Tasks ack
# late, so a task running longer than that is started a second time while the first still runs; the lease
# makes that harmless, but it wastes a worker and, at kombu's default of one hour, the longest copy would
# be redelivered every hour. The longest task the sizing allows is one mailbox's copy: the biggest mailbox
# Exchange Online takes (100 GB) at the slowest per-mailbox rate we plan for (10 MB/s), about 2.8 hours.
# Recovery never waits for this timeout: a killed worker's mailboxes are requeued by their stale heartbeat
# (reconcile_stale) and lost jobs by the stuck-work sweep (docs/adr/015-broker-visibility-timeout.md).
LONGEST_TASK_SECONDS = env_int("LONGEST_TASK_SECONDS", 100 * 1000**3 // (10 * 1000**2))
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 12 * 3600)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "sqs://")):
    if CELERY_VISIBILITY_TIMEOUT_SECONDS <= LONGEST_TASK_SECONDS:
        raise ImproperlyConfigured(
            f"CELERY_VISIBILITY_TIMEOUT_SECONDS={CELERY_VISIBILITY_TIMEOUT_SECONDS} must be longer than the "
            f"longest task ({LONGEST_TASK_SECONDS} s, LONGEST_TASK_SECONDS), or long tasks run twice"
        )
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Copies on a queue of their own (e.g. "copies"), for workers built to carry hundreds of them at once
# (`--pool threads`, DB_POOL_MAX_SIZE); imports, exports and the rest stay on the default queue with prefork
# workers, whose CPU-bound work would otherwise share one interpreter with the copies (docs/adr/031).
# Empty (the default, and make run): every task on the default queue.
CELERY_COPY_QUEUE = env_str("CELERY_COPY_QUEUE")
if CELERY_COPY_QUEUE:
    CELERY_TASK_ROUTES = {"migrations_app.tasks.mailboxes_work": {"queue": CELERY_COPY_QUEUE}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "Europe/London"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "migrations_app.tasks.worker_heartbeat", "schedule": 30.0},
    # starts pre-stage syncs and cutovers, carries over at window close, completes waves
    "wave-tick": {"task": "migrations_app.tasks.wave_tick", "schedule": 60.0},
    # requeues mailboxes whose worker died or whose task the broker lost (heartbeat stale)
    "reconcile-stale": {
        "task": "migrations_app.tasks.reconcile_stale",
        "schedule": float(env_int("MIGRATION_RECONCILE_SECONDS", 15)),
    },
    # forgets Idempotency-Key responses older than API_IDEMPOTENCY_TTL_HOURS
    "idempotency-keys-purge": {"task": "migrations_app.tasks.idempotency_keys_purge", "schedule": 3600.0},
    # empties delivered webhook bodies older than WEBHOOK_PAYLOAD_RETENTION_DAYS
    "webhook-payloads-purge": {"task": "migrations_app.tasks.webhook_payloads_purge", "schedule": 3600.0},
    # makes the event table's coming monthly partitions (PostgreSQL), EVENT_PARTITIONS_MONTHS_AHEAD ahead
    "event-partitions-ensure": {
        "task": "migrations_app.tasks.event_partitions_ensure",
        "schedule": 6 * 3600.0,
    },
    # turns new events into webhook deliveries and sends the ones that are due
    "webhooks-dispatch": {"task": "migrations_app.tasks.webhooks_dispatch", "schedule": 10.0},
    # import jobs and readiness checks whose task was lost or whose worker died (services/sweeps.py)
    "stuck-work-sweep": {"task": "migrations_app.tasks.stuck_work_sweep", "schedule": 60.0},
    # schedules the notifications that are due (set-based) and hands them to Notify within its limits
    "notifications-send": {"task": "migrations_app.tasks.notifications_send", "schedule": 15.0},
    # holds the next waves of organisations whose last wave crossed the support or failure threshold
    "support-gate": {"task": "migrations_app.tasks.support_gate_evaluate", "schedule": 3600.0},
}

# --- execution (services/execution/): portal/settings_execution.py ----------------------------------------
from portal.settings_execution import *  # noqa: E402, F403

# --- files -------------------------------------------------------------------------------------------------
# Uploaded inventories wait here for a worker. With workers on several machines point this at shared
# storage (STORAGES["default"]) such as S3 or a shared volume.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")  # collectstatic output for production
if DEBUG or TESTING:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from the finders then, but wants the folder
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # nhsuk-frontend's JS and images, installed by `npm ci`, and its CSS compiled without the remote web font
    # by `make setup` (frontend/nhsuk-portal.scss); neither is committed
    ("nhsuk", BASE_DIR / "build" / "nhsuk"),
    ("nhsuk", BASE_DIR / "node_modules" / "nhsuk-frontend" / "dist" / "nhsuk"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
INVENTORY_UPLOAD_MAX_BYTES = env_int("INVENTORY_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)
# Uploads up to this size are imported during the request; larger ones go to a worker and the page
# shows progress.
INVENTORY_INLINE_MAX_BYTES = env_int("INVENTORY_INLINE_MAX_BYTES", 256 * 1024)
# A wave's live figures are shared for this long between people who see the same organisations (the page
# polls every 3 s; 0 turns the sharing off). selectors/progress.wave_progress_shared.
WAVE_LIVE_CACHE_SECONDS = env_int("WAVE_LIVE_CACHE_SECONDS", 1)
# The signed-in user and a trust admin's organisations, kept this long in the shared cache between requests
# (migrations_app/auth_backends.py; forgotten at once when they change through the models; 0: read each time).
AUTH_USER_CACHE_SECONDS = env_int("AUTH_USER_CACHE_SECONDS", 2)
# The programme's support rate on every dashboard, shared this long (selectors/support.py; 0: not shared).
PROGRAMME_SUPPORT_CACHE_SECONDS = env_int("PROGRAMME_SUPPORT_CACHE_SECONDS", 30)

# --- programme ---------------------------------------------------------------------------------------------
# An affinity group larger than this cannot fit in one evening window: the programme office must see it.
PROGRAMME_LARGEST_WAVE_MAILBOXES = env_int("PROGRAMME_LARGEST_WAVE_MAILBOXES", 83_000)
PROGRAMME_EVENING_WAVE_MAILBOXES = env_int("PROGRAMME_EVENING_WAVE_MAILBOXES", 22_000)
INVITATION_DAYS = env_int("INVITATION_DAYS", 14)
# links in e-mails; unset, the address `make run` serves (PORT, as the Makefile and honcho use it)
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL") or f"http://127.0.0.1:{env_int('PORT', 8000)}"

# --- email -------------------------------------------------------------------------------------------------
_EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
_EMAIL_OPTIONS = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25),
    "username": env_str("EMAIL_HOST_USER"),
    "password": env_str("EMAIL_HOST_PASSWORD"),
    "use_tls": env_bool("EMAIL_USE_TLS", False),
}
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": _EMAIL_BACKEND,
            "OPTIONS": _EMAIL_OPTIONS if _EMAIL_BACKEND.endswith("smtp.EmailBackend") else {},
        }
    }
else:  # Django 5.2 / 6.0 (Python 3.11 installs)
    EMAIL_BACKEND = _EMAIL_BACKEND
    EMAIL_HOST, EMAIL_PORT = _EMAIL_OPTIONS["host"], _EMAIL_OPTIONS["port"]
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _EMAIL_OPTIONS["username"], _EMAIL_OPTIONS["password"]
    EMAIL_USE_TLS = _EMAIL_OPTIONS["use_tls"]
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "migration-portal@example.nhs.uk")

# --- i18n --------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

# --- auth --------------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Entra ID sign-in (portal/entra.py): None keeps local accounts only.
ENTRA = entra_settings()

# Four eyes on wave approval (services/waves.py): the approver is neither the proposer nor whoever last changed
# the wave. A deployment setting, not a button, so one person cannot switch it off, approve and switch it on.
WAVE_FOUR_EYES = env_bool("WAVE_FOUR_EYES", True)

# Failed sign-ins (services/sign_in.py): slowed from the 3rd for an account, refused for 15 minutes after the
# 5th for an account or the 30th from one client address (TRUSTED_PROXIES says whose address that is).
SIGN_IN_SLOW_AFTER = env_int("SIGN_IN_SLOW_AFTER", 3)
SIGN_IN_MAX_FAILURES = env_int("SIGN_IN_MAX_FAILURES", 5)
SIGN_IN_MAX_FAILURES_PER_ADDRESS = env_int("SIGN_IN_MAX_FAILURES_PER_ADDRESS", 30)
SIGN_IN_LOCKOUT_SECONDS = env_int("SIGN_IN_LOCKOUT_SECONDS", 15 * 60)

if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# --- REST framework ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: an unauthenticated request gets 401 with WWW-Authenticate: Bearer
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "migrations_app.api.authentication.AddressGate",
        "migrations_app.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "migrations_app.api.permissions.TokenHasScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["migrations_app.api.throttling.UserRateThrottle"],
    "DEFAULT_PARSER_CLASSES": [
        "migrations_app.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # No OrderingFilter: every list is cursor-paged on a unique, indexed key (id, ODS code, start + id), so
    # page 10,000 costs what page 1 does; an ?ordering= on a non-unique column would page unstably and sort
    # 2.1 million rows.
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "migrations_app.api.errors.problem_exception_handler",
}
# Requests per user, all their tokens and their session together ("600/min", "10/s"), and per client address
# for anonymous and failed-authentication requests (migrations_app/api/throttling.py).
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE") or "600/min"
API_ANON_THROTTLE_RATE = env_str("API_ANON_THROTTLE_RATE") or "60/min"
# A bulk upsert with more rows than this is answered 202 with an import job to poll.
API_BULK_INLINE_MAX_ROWS = env_int("API_BULK_INLINE_MAX_ROWS", 5_000)
API_BULK_MAX_ROWS = env_int("API_BULK_MAX_ROWS", 100_000)
# The largest request body accepted anywhere but an inventory upload: the bulk limit's rows at ~640 bytes each.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024 * 1024)
# Idempotency-Key: how long a first response is kept for retries, and after how long a request that never
# finished (its process died) stops holding its key.
API_IDEMPOTENCY_TTL_HOURS = env_int("API_IDEMPOTENCY_TTL_HOURS", 24)
API_IDEMPOTENCY_IN_FLIGHT_SECONDS = env_int("API_IDEMPOTENCY_IN_FLIGHT_SECONDS", 600)

# --- outbound requests to URLs people type (migrations_app/outbound.py, docs/adr/019-outbound-requests.md) ----
# https on port 443 to public addresses only. The programme office (never a trust) can name exceptions:
# hosts that may use http, "host:port" pairs allowed another port, hosts that may resolve to internal addresses.
OUTBOUND_ALLOWED_HTTP_HOSTS = env_list("OUTBOUND_ALLOWED_HTTP_HOSTS") or env_list(
    "WEBHOOK_ALLOWED_HTTP_HOSTS"
)
OUTBOUND_ALLOWED_PORTS = env_list("OUTBOUND_ALLOWED_PORTS")
OUTBOUND_ALLOWED_INTERNAL_HOSTS = env_list("OUTBOUND_ALLOWED_INTERNAL_HOSTS")
# Private networks (CIDR) that any host may resolve into: where the trusts' Exchange servers are reached (HSCN,
# a VPN). Loopback, link-local (the metadata address), unspecified and multicast addresses are never allowed.
OUTBOUND_ALLOWED_INTERNAL_NETWORKS = env_list("OUTBOUND_ALLOWED_INTERNAL_NETWORKS")
# An endpoint's options.ca_file must be inside this directory (unset: no extra CA files accepted).
ENDPOINT_CA_DIR = env_str("ENDPOINT_CA_DIR")

# --- outbound webhooks (services/webhooks.py) ----------------------------------------------------------------
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# A claimed delivery is not queued again for this long (longer than the timeout).
WEBHOOK_CLAIM_SECONDS = env_int("WEBHOOK_CLAIM_SECONDS", 120)
# A delivered webhook's body is emptied this many days after it was delivered (the event itself is kept for
# ever: the body can be rebuilt from it); failed and pending deliveries keep theirs.
WEBHOOK_PAYLOAD_RETENTION_DAYS = env_int("WEBHOOK_PAYLOAD_RETENTION_DAYS", 30)

# --- the event table's monthly partitions (PostgreSQL; services/event_partitions.py, docs/adr/029) -----------
# Beat keeps this month's partition and this many following months' made ahead (0-120).
EVENT_PARTITIONS_MONTHS_AHEAD = env_int("EVENT_PARTITIONS_MONTHS_AHEAD", 3)
if not 0 <= EVENT_PARTITIONS_MONTHS_AHEAD <= 120:
    raise ImproperlyConfigured("EVENT_PARTITIONS_MONTHS_AHEAD must be between 0 and 120")

# --- the switch (migrations_app/switchers, docs/adr/013-the-switch.md) --------------------------------------------
# The PowerShell remoting client: "pypsrp", or a module offering the same WSMan / RunspacePool / PowerShell
# classes (the tests' and the benchmark's fake Exchange endpoint).
SWITCH_POWERSHELL_CLIENT = env_str("SWITCH_POWERSHELL_CLIENT", "pypsrp")

# The OpenAPI schema and its docs need sign-in (a session or a token) unless the programme office publishes them.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", False)

# Stuck work (services/sweeps.py): a job or check still queued this long had its task lost (a broker outage
# at enqueue) and is sent again; a running import whose progress has not moved this long lost its worker and
# is run again, up to IMPORT_MAX_ATTEMPTS runs, then failed with a reason; a running readiness check whose
# counts have not moved this long lost batches and is failed with a reason (run it again).
SWEEP_QUEUED_AFTER_SECONDS = env_int("SWEEP_QUEUED_AFTER_SECONDS", 300)
IMPORT_STALL_SECONDS = env_int("IMPORT_STALL_SECONDS", 900)
IMPORT_MAX_ATTEMPTS = env_int("IMPORT_MAX_ATTEMPTS", 3)
READINESS_STALL_SECONDS = env_int("READINESS_STALL_SECONDS", 900)

SPECTACULAR_SETTINGS = {
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny"
        if API_DOCS_PUBLIC
        else "rest_framework.permissions.IsAuthenticated"
    ],
    "TITLE": "Migration control portal API",
    "VERSION": "1",
    # the schema endpoint is not part of the API it describes
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["migrations_app.api.schema.drop_duplicate_routes"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "migrations_app.api.schema.add_problems_and_idempotency",
    ],
    # several models have a "kind": name their enums so the schema (and check --deploy) has no collision
    "ENUM_NAME_OVERRIDES": {
        "WaveKindEnum": "migrations_app.models.Wave.Kind",
        "DecisionKindEnum": "migrations_app.models.Decision.Kind",
        "OrganisationKindEnum": "migrations_app.models.Organisation.Kind",
        "MailboxKindEnum": "migrations_app.models.Mailbox.Kind",
        "EndpointKindEnum": "migrations_app.models.Endpoint.Kind",
        "ImportJobKindEnum": "migrations_app.models.ImportJob.Kind",
        "OrganisationStatusEnum": "migrations_app.models.Organisation.Status",
        "ImportJobStatusEnum": "migrations_app.models.ImportJob.Status",
        "WaveStatusEnum": "migrations_app.models.Wave.Status",
        "EndpointRoleEnum": "migrations_app.models.Endpoint.Role",
    },
}

# --- security ----------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Sessions in the database, read through the cache: a signed-in request reads its session from the cache
# (Redis in production) instead of a query; the database stays the record, so a cache flush signs nobody out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Django's model backend, its signed-in user kept a moment in the cache (auth_backends.py).
AUTHENTICATION_BACKENDS = ["migrations_app.auth_backends.CachedModelBackend"]
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG and not TESTING:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"quiet_client_errors": {"()": "portal.logfilters.QuietClientErrors"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's default config gives "django" a console handler of its own under DEBUG: with the root's, every
        # message (and a 403's traceback) was printed twice; the root's handler prints it once
        "django": {"handlers": [], "level": env_str("LOG_LEVEL", "INFO"), "propagate": True},
    },
}

# --- readiness checks (services/readiness) ------------------------------------------------------------------
# Mailboxes pre-flighted per task (one engine, one slot per endpoint, one UPDATE for the batch).
READINESS_BATCH_MAILBOXES = env_int("READINESS_BATCH_MAILBOXES", 500)
# Transient trouble (network, throttled, busy) is tried this many times, with back-off, before a mailbox is
# counted as not checked (left as it was, never blocked for it).
READINESS_RETRY_LIMIT = env_int("READINESS_RETRY_LIMIT", 4)
READINESS_RETRY_BASE_SECONDS = env_int("READINESS_RETRY_BASE_SECONDS", 30)
# A batch's hold on an endpoint slot expires after this, should its worker die holding it.
READINESS_SLOT_SECONDS = env_int("READINESS_SLOT_SECONDS", 600)
# The most mailboxes one chosen-set check (API, beat re-check) takes.
READINESS_CHOSEN_MAX = env_int("READINESS_CHOSEN_MAX", 50_000)
READINESS_RECHECK_MAX = env_int("READINESS_RECHECK_MAX", 20_000)
CELERY_BEAT_SCHEDULE["readiness-recheck"] = {
    "task": "migrations_app.tasks.readiness_recheck",
    "schedule": float(env_int("READINESS_RECHECK_SECONDS", 900)),
}
CELERY_BEAT_SCHEDULE["organisations-mop-up"] = {
    "task": "migrations_app.tasks.organisations_mop_up_review",
    "schedule": 300.0,
}
