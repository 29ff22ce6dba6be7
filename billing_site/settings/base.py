"""Settings shared by every environment, read from environment variables.

Every knob is documented in the README ("Configuration"). With nothing set, Meterline runs on
SQLite under ``var/`` with a file-system Celery broker, so a fresh laptop needs no server.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("METERLINE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://localhost:8000,http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_celery_beat",
    "health_check",
    "django_prometheus",
    "core",
    "catalog",
    "metering",
    "wallets",
    "invoicing",
    "payments",
    "costs",
    "reporting",
    "billing_site",  # last: its admin composes the pages that span apps (billing_site/admin.py)
]

MIDDLEWARE = [
    # First: every response, redirects included, carries X-Request-ID, and every log line its request id.
    "billing_site.ops.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.api.middleware.EmptyQueryValueMiddleware",
    # Decides once per request: bearer-key API routes (API_URLCONF) are served here, and the admin's
    # middleware below never runs for them (core/api/middleware.py). Everything else goes on down.
    "core.api.middleware.ApiRouteMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]
# The short chain ApiRouteMiddleware runs for bearer-key API routes (plain __call__ middleware only):
# simple-history's request context, so changes made through the API name their key (catalog/history.py).
API_MIDDLEWARE = ["simple_history.middleware.HistoryRequestMiddleware"]

# The Paygentic client calls paths without a trailing slash and follows redirects, and a redirected
# POST turns into a GET: never redirect to add a slash.
APPEND_SLASH = False

ROOT_URLCONF = "billing_site.urls"
# The bearer-key API's routes, served by core.api.middleware.ApiRouteMiddleware (and included by ROOT_URLCONF).
API_URLCONF = "billing_site.api_urls"
WSGI_APPLICATION = "billing_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'meterline.sqlite3'}",
        # Persistent connections: a new connection per request costs about 5x (performance notes).
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        # A health check is one extra round trip (SELECT 1) per request; ingestion-heavy deployments
        # may turn it off (CONN_HEALTH_CHECKS=0): a connection dropped by a database restart then
        # fails one request and is replaced (metering/README.md, "Performance").
        conn_health_checks=env_bool("CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock instead of failing when the worker and the web
    # process write at the same moment.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Session settings ride on the connection's start-up packet: no extra statement per connection.
    _session = []
    if not env_bool("DATABASE_JIT", False):
        # PostgreSQL's JIT compiled the all-customers usage aggregation for ~0.5 s of a 1.4 s query (its
        # row estimate crosses the JIT thresholds); no other query of ours gains from it
        # (metering/README.md, "JIT"); DATABASE_JIT=1 leaves the server's setting alone.
        _session.append("-c jit=off")
    if env_bool("DATABASE_GENERIC_PLANS", True):
        # Only our prepared hot-path statements (core.db.planned_once_cursor) are affected: Django's
        # own statements are never prepared. Left to choose, PostgreSQL kept re-planning the price,
        # wallet-lock and counter reads on every real-time request, because their one-row custom plans
        # looked cheaper than the generic plan they all end up using (metering/README.md, "Plans").
        _session.append("-c plan_cache_mode=force_generic_plan")
    if _session:
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["options"] = " ".join([_options.get("options", ""), *_session]).strip()

# Django's cache. With CACHE_URL (redis://…) every process shares it: a revoked API key is then refused
# at once by all of them (catalog/api/auth.py); the default, per-process memory, tells only the process
# that revoked it (metering/README.md, "API key cache"). Short timeouts: the ingestion path reads one
# value per request and reads the key from the database instead when the cache does not answer.
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Stored times are always aware UTC; TIME_ZONE only changes how the admin displays them.
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["catalog.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.api.auth.IsMerchantKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.errors.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Meterline API",
    "DESCRIPTION": "Usage-based billing, wire-compatible with the core of the Paygentic API.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package, so /v0/docs needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Names for choice sets that several serializers share; without them drf-spectacular invents hashed
    # names (TypeD7fEnum) and warns on `check --deploy`. Component names only: the wire is unchanged.
    "ENUM_NAME_OVERRIDES": {
        "FeatureTypeEnum": "catalog.models.FeatureType",
        "EntitlementStatusEnum": ["active", "canceled", "expired"],
        "ListObjectEnum": ["list"],
        # Same values on several components: one name each, so the schema names no hash-suffixed enum.
        "PaymentTermEnum": "catalog.models.PaymentTerm",
        "LineItemStatusEnum": ["pending", "invoiced"],
        "AdjustmentTypeEnum": ["percentageDiscount", "usageDiscount", "minimumQuantity", "maximumQuantity"],
        "CostTypeEnum": "costs.models.CostType",
    },
    # The answers every operation can give (400/401/503, 404 with a path id) and non-empty string query
    # parameters, stated once for all views (core/api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.document_common_errors",
        "metering.api.schema.require_batch_body",
        "costs.api.schema.document_dimension_filters",
    ],
}

# Celery. With no CELERY_BROKER_URL the broker is a folder under var/: worker, beat and web share
# it without any server running.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
# Redis (and SQS) hand a message out and redeliver it if it is not acknowledged within the visibility
# timeout. The default is one hour, so a chunk whose worker vanished waited an hour. 30 minutes is far
# longer than the longest task (a chunk of 500 subscriptions takes seconds; redelivering a task that is
# still running would only duplicate work, which chunks skip) yet short enough to recover a lost chunk
# inside METERLINE_BILLING_RUN_STALL_TIMEOUT, which must stay larger. It also bounds countdown/ETA
# tasks: none here waits longer. The filesystem broker ignores it.
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 30 * 60}  # seconds
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _sub in ("queue", "processed"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge a message when its task ends, not when a worker takes it: a worker killed mid-task leaves
# the message for the next worker, so a task must tolerate running twice. The billing chunk task, idempotent
# by constraint, also sets reject_on_worker_lost (invoicing/tasks.py).
CELERY_TASK_ACKS_LATE = True
# One message reserved per worker process at a time: a chunk is long, and a prefetched message would
# wait behind it (and be redelivered with it if the worker dies) while another worker sits idle.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Entries are copied into django-celery-beat's tables, where finance ops can pause or re-time them
# in the admin ("Periodic tasks").
CELERY_BEAT_SCHEDULE: dict = {
    # Close ended billing periods, fanned out to workers. Every 15 minutes: https://crontab.guru/#*/15_*_*_*_*
    "invoicing-close-billing-periods": {
        "task": "invoicing.close_billing_periods",
        "schedule": crontab(minute="*/15"),
    },
    # Issue drafts whose grace period has ended. Every 15 minutes at :05: https://crontab.guru/#5-59/15_*_*_*_*
    "invoicing-finalize-due-invoices": {
        "task": "invoicing.finalize_due_invoices",
        "schedule": crontab(minute="5-59/15"),
    },
    # Open invoices past their due date become overdue. Every 15 minutes at :10: https://crontab.guru/#10-59/15_*_*_*_*
    "invoicing-invoices-mark-overdue": {
        "task": "invoicing.invoices_mark_overdue",
        "schedule": crontab(minute="10-59/15"),
    },
    # Payment reminders and final notices of overdue invoices, on each merchant's schedule (invoicing/RECEIVABLES.md,
    # "Dunning"). Hourly at :20, after the overdue sweep: https://crontab.guru/#20_*_*_*_*
    "invoicing-dunning-reminders-send-due": {
        "task": "invoicing.dunning_reminders_send_due",
        "schedule": crontab(minute="20"),
    },
    # Usage events sent with an externalSubject before the customer existed (metering/README.md), linked
    # and, for real-time subscriptions, debited (invoicing/REALTIME.md). Every minute: https://crontab.guru/#*_*_*_*_*
    "invoicing-link-external-subjects": {
        "task": "invoicing.link_external_subjects",
        "schedule": crontab(minute="*"),
    },
    # Threshold (progressive) billing: subscriptions whose usage reached their threshold are invoiced at once
    # (invoicing/THRESHOLDS.md), in batches, off the ingest path. Every minute: https://crontab.guru/#*_*_*_*_*
    "invoicing-evaluate-usage-thresholds": {
        "task": "invoicing.evaluate_usage_thresholds",
        "schedule": crontab(minute="*"),
    },
    # Prepaid credit (wallets/README.md). Every 5 minutes: https://crontab.guru/#*/5_*_*_*_*
    "wallets-credit-expire-due": {
        "task": "wallets.tasks.credit_expire_due_task",
        "schedule": crontab(minute="*/5"),
    },
    # Hourly at :07: https://crontab.guru/#7_*_*_*_*
    "wallets-commitment-true-up-due": {
        "task": "wallets.tasks.commitment_true_up_due_task",
        "schedule": crontab(minute="7"),
    },
    # Bill the commitment shortfalls trued up above (invoicing/REALTIME.md), once per commitment. Hourly at :12,
    # after the true-up at :07: https://crontab.guru/#12_*_*_*_*
    "invoicing-bill-commitment-true-ups": {
        "task": "invoicing.bill_commitment_true_ups",
        "schedule": crontab(minute="12"),
    },
    # Spend alerts fired and spend caps enforced for the watched customers whose events arrived since their last
    # evaluation, at most 200 a run (invoicing/SPEND.md). Every minute: https://crontab.guru/#*_*_*_*_*
    "invoicing-spend-evaluate-due": {
        "task": "invoicing.spend_evaluate_due",
        "schedule": crontab(minute="*"),
    },
    # E-mails of invoices and credit notes whose send failed or was never picked up (invoicing/README.md,
    # "Delivery"). Every minute: https://crontab.guru/#*_*_*_*_*
    "invoicing-document-deliveries-send-due": {
        "task": "invoicing.document_deliveries_send_due",
        "schedule": crontab(minute="*"),
    },
    # Issued invoices of autoCharge subscriptions charged through the merchant's Stripe (payments/README.md,
    # "Automatic charge"), at most 100 a run. Every minute: https://crontab.guru/#*_*_*_*_*
    "payments-invoices-auto-charge-due": {
        "task": "payments.invoices_auto_charge_due",
        "schedule": crontab(minute="*"),
    },
    # Failed automatic charges tried again on each merchant's retry schedule (payments/README.md, "Retries and
    # the customer's e-mails"), at most 100 a run. Every 5 minutes: https://crontab.guru/#*/5_*_*_*_*
    "payments-invoices-payment-retry-due": {
        "task": "payments.invoices_payment_retry_due",
        "schedule": crontab(minute="*/5"),
    },
    # Refunds to cards left pending (Stripe unreachable, a worker died between the call and the record) sent
    # again with the same key (payments/README.md, "Refunds through the provider"), at most 100 a run, once their
    # 10-minute lease ended. Every 5 minutes: https://crontab.guru/#*/5_*_*_*_*
    "payments-provider-refunds-resume-due": {
        "task": "payments.provider_refunds_resume_due",
        "schedule": crontab(minute="*/5"),
    },
    # Every minute: https://crontab.guru/#*_*_*_*_*
    "wallets-webhook-deliveries-retry-due": {
        "task": "wallets.tasks.webhook_deliveries_retry_due_task",
        "schedule": crontab(minute="*"),
    },
}

# Billing knobs.
METERLINE_EVENT_FUTURE_TOLERANCE = timedelta(minutes=5)
# A billing-run chunk not finished this long after a worker last started it (after the run started, if
# no worker did) is abandoned, and the next close-billing-periods beat pass closes its run as partial or
# failed (invoicing/README.md, "Stalled runs"). Larger than the broker's visibility timeout, so a message
# redelivered after a lost worker gets its chance first.
METERLINE_BILLING_RUN_STALL_TIMEOUT = timedelta(minutes=45)
# Retry-After (seconds) of the API's 503 answer when the database cannot be reached (catalog/API.md).
METERLINE_RETRY_AFTER_SECONDS = int(os.environ.get("RETRY_AFTER_SECONDS", "1"))
# Bounds on the times a request may ask for (invoicing/API.md, "Time bounds"): every elapsed period of a
# backdated start or a test clock's advance is one invoice, so an unbounded time is unbounded work.
# How far back a subscription may start (days before its current time: now, or its test clock's time).
METERLINE_BACKDATE_HORIZON_DAYS = int(os.environ.get("METERLINE_BACKDATE_HORIZON_DAYS", "366"))
# How far ahead a subscription may start (days after its current time).
METERLINE_START_MAX_AHEAD_DAYS = int(os.environ.get("METERLINE_START_MAX_AHEAD_DAYS", "1827"))
# How far ahead of the real time a test clock may be set or advanced.
METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS = int(os.environ.get("METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS", "1827"))
# Elapsed periods a request (a backdated start, a test clock advance) invoices itself, per subscription;
# the rest go to a background billing run (trigger "catch_up").
METERLINE_INLINE_CATCHUP_PERIODS = int(os.environ.get("METERLINE_INLINE_CATCHUP_PERIODS", "3"))

# E-mail (README, "E-mail"): invoices and credit notes are mailed to customers (invoicing/README.md,
# "Delivery"). With nothing set, every message is written as one .eml file under var/mail/ (open it in any
# mail client), so no server is needed; EMAIL_HOST (or EMAIL_URL) sends through SMTP; EMAIL_BACKEND names
# any other Django e-mail backend, e.g. django-anymail's (ANYMAIL_* variables configure it).
EMAIL_FILE_PATH = Path(os.environ.get("EMAIL_FILE_PATH", VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "billing@localhost")
SERVER_EMAIL = os.environ.get("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))  # seconds; a hung SMTP server must not hold a worker
_email_url = urlsplit(os.environ.get("EMAIL_URL", ""))
if _email_url.scheme:
    # smtp://user:password@host:587 (STARTTLS), smtps://user:password@host:465 (implicit TLS),
    # smtp://host:25?tls=0 (plain, e.g. a local relay).
    EMAIL_HOST = _email_url.hostname or "localhost"
    EMAIL_PORT = _email_url.port or (465 if _email_url.scheme == "smtps" else 587)
    EMAIL_HOST_USER = unquote(_email_url.username or "")
    EMAIL_HOST_PASSWORD = unquote(_email_url.password or "")
    EMAIL_USE_SSL = _email_url.scheme == "smtps"
    EMAIL_USE_TLS = not EMAIL_USE_SSL and "tls=0" not in _email_url.query
else:
    EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "core.mail.EmlFileBackend"
)
if EMAIL_BACKEND.startswith("anymail."):
    # django-anymail is installed by whoever chooses it (it is no dependency of ours); ANYMAIL_<SETTING>
    # variables become its settings, e.g. ANYMAIL_MAILGUN_API_KEY=… → ANYMAIL["MAILGUN_API_KEY"]. Its
    # tracking webhooks (/anymail/…) report bounces into the delivery log.
    INSTALLED_APPS.append("anymail")
    ANYMAIL = {key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items() if key.startswith("ANYMAIL_")}
# Links in e-mails point here: the public address of this installation (scheme, host, no trailing slash).
METERLINE_PUBLIC_URL = os.environ.get("METERLINE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# How long the "view your invoice" link of an e-mail stays valid (days).
METERLINE_DOCUMENT_LINK_MAX_AGE_DAYS = int(os.environ.get("METERLINE_DOCUMENT_LINK_MAX_AGE_DAYS", "180"))

# Payment providers (payments/README.md). Fernet keys (comma-separated, the first encrypts, all decrypt: add
# a new key in front to rotate) that encrypt merchants' provider secrets at rest. Production refuses to start
# without them; with DEBUG on and none set, a key is derived from SECRET_KEY so `make run` works.
METERLINE_CREDENTIAL_KEYS = env_list("METERLINE_CREDENTIAL_KEYS", "")
# Where the Stripe library sends its requests: Stripe itself unless pointed elsewhere (the tests' local server).
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
# The library retries a failed connection this many times, with the same idempotency key (never a second charge).
STRIPE_MAX_NETWORK_RETRIES = int(os.environ.get("STRIPE_MAX_NETWORK_RETRIES", "2"))
STRIPE_TIMEOUT_SECONDS = int(os.environ.get("STRIPE_TIMEOUT_SECONDS", "30"))

# Operations (README, "Health, metrics and logs").
# /health/ready fails when beat has not sent the close-billing-periods task (every 15 minutes) for this
# many seconds; 0 leaves beat out of the readiness check.
HEALTH_BEAT_MAX_AGE = int(os.environ.get("HEALTH_BEAT_MAX_AGE", "2100"))
# /metrics is served only when enabled; with a token, only to "Authorization: Bearer <token>".
METRICS_ENABLED = env_bool("METRICS_ENABLED", False)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# django-prometheus' per-request metrics (latency by view, status codes...): about a dozen labelled metric
# updates on every request, events included; off unless asked for.
# django-prometheus's per-request metrics. Bearer-key API requests are served by ApiRouteMiddleware and
# never reach PrometheusAfterMiddleware (last): they are counted and timed by PrometheusBeforeMiddleware
# (totals, latency), without the per-view labels.
if env_bool("METRICS_HTTP_MIDDLEWARE", False):
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]

# Logs: plain text by default, one JSON object per line with LOG_FORMAT=json; every record carries the
# request id (billing_site/ops/request_id.py), in Celery workers too (billing_site/celery.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "billing_site.ops.request_id.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Error tracking, only when SENTRY_DSN is set.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
if SENTRY_DSN:
    from billing_site.ops.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=os.environ.get("SENTRY_ENVIRONMENT", "production"),
        traces_sample_rate=float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "0")),
    )
