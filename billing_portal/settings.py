"""Settings of the billing portal.

Every value comes from the environment (django-environ), read here once. With nothing set,
the portal runs on the embedded default: SQLite in the project folder, Celery tasks run
eagerly in-process, a local-memory cache, DEBUG on and Stripe disabled. ``.env.example``
lists every variable.
"""

from datetime import timedelta
from pathlib import Path

import environ

from apps.core import logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

# "development" (the embedded default) or "production".
DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production"}:
    raise environ.ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
else:
    SECRET_KEY = env.str(
        "DJANGO_SECRET_KEY",
        default="development-only-secret-key-never-used-in-production-0123456789",
    )
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The port the portal answers on, reported by /health.
PORT = env.int("PORT", default=8000)
SERVICE_NAME = "billing_portal"

INSTALLED_APPS = [
    "billing_portal.admin_site.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "djstripe",
    "import_export",
    "simple_history",
    "axes",
    "csp",
    "apps.core",
    "apps.pricing",
    "apps.customers",
    "apps.budgets",
    "apps.usage",
]

MIDDLEWARE = [
    "billing_portal.monitoring.RequestMonitoringMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "billing_portal.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: it answers a locked-out sign-in (django-axes).
    "axes.middleware.AxesMiddleware",
]

if PRODUCTION:
    # Static files are served by the portal itself (no CDN), compressed and fingerprinted.
    MIDDLEWARE.insert(2, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "billing_portal.urls"
WSGI_APPLICATION = "billing_portal.wsgi.application"
ASGI_APPLICATION = "billing_portal.asgi.application"

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

# --- Database ------------------------------------------------------------------------
if PRODUCTION:
    DATABASES = {"default": env.db("DATABASE_URL")}
else:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A health check costs a round trip per request; without it a connection that died (a
# database restart) fails one request per thread before it is replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; WAL and a busy timeout keep the embedded default usable
    # with a runserver and an eager worker in one process.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery ----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="billing_portal"),
            "TIMEOUT": 300,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged only once it finished, and handed back to the queue if its worker
# dies mid-way; every task is written to be harmless when it runs twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The broker is RabbitMQ (CELERY_BROKER_URL=amqp://...; CI's): a message a worker had taken
# goes back to the queue the moment that worker's connection drops, so a killed worker's
# tasks run again as soon as a worker is there. Redis (the default when only REDIS_URL is
# set) gives them back only after its visibility timeout, an hour here. No retry waits
# longer than Celery's retry_backoff_max default, 600 s: well under RabbitMQ's consumer
# timeout (30 min) and that hour (tests/test_tasks.py).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# django-celery-beat's DatabaseScheduler, stamping a heartbeat in the cache as it ticks.
CELERY_BEAT_SCHEDULER = "billing_portal.beat:HeartbeatScheduler"
# Workers log through the portal's LOGGING (request ids, masking), not Celery's own setup.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth, i18n, static --------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The audit history records changes; prices are versioned and plans follow Stripe, so it is
# never used to put an old version back.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True
# Importing price rules needs the right to add them; exporting, to read them.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

LOGIN_URL = "login"
# --- Content-Security-Policy (django-csp) --------------------------------------------
# Scripts only from the portal's own files: no inline script, no eval. Styles may be
# inline (the charts' and the admin's style attributes). Forms post to the portal, which
# may send the browser on to Stripe's hosted checkout and billing portal.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],  # the API reference (Redoc) parses in a worker
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": [
            "'self'",
            "https://checkout.stripe.com",
            "https://billing.stripe.com",
            *env.list("CSP_FORM_ACTION_EXTRA", default=[]),
        ],
    }
}
# --- Sign-in lock-out (django-axes): the admin's and the billing pages' sign-in -------
# Repeated failures lock the username and, separately, the address they came from; the
# lock lifts after the cool-off, or at once with `manage.py axes_reset_username <name>`,
# `axes_reset_ip <address>` or by deleting the attempt in the admin (Axes › Access
# attempts). A successful sign-in clears the user's failures.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# The lock lifts when it said it would, whatever is tried meanwhile.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "billing_portal.security.locked_out"
AXES_CLIENT_IP_CALLABLE = "billing_portal.security.client_address"
# Behind a reverse proxy every client comes from the proxy: the number of proxies in
# front of the portal says which X-Forwarded-For entry is the client's (0: none).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
LOGIN_REDIRECT_URL = "billing:overview"
LOGOUT_REDIRECT_URL = "login"
STATICFILES_DIRS = [BASE_DIR / "static"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default=(
        "django.core.mail.backends.smtp.EmailBackend"
        if PRODUCTION
        else "django.core.mail.backends.console.EmailBackend"
    ),
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
# Whether customers may point Apprise alert channels at private or loopback addresses
# (a test on this machine may; a production portal must not let them probe its network).
ALERT_PRIVATE_TARGETS = env.bool("ALERT_PRIVATE_TARGETS", default=not PRODUCTION)

# --- API -----------------------------------------------------------------------------
# The largest request body the API reads; a larger one is refused with 413 before parsing.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# Requests per API key, e.g. "6000/min"; empty for no limit. Over it: 429 with Retry-After.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="6000/min")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.customers.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["apps.core.renderers.PortalJSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "billing_portal.schema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing portal API",
    "DESCRIPTION": (
        "Usage ingestion, pricing, quotas and billing records for metered API and AI usage. "
        "Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error "
        'is `{"error": {"code", "message", "details"}}` with a stable `code`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Pricing -------------------------------------------------------------------------
# The currency of the catalog-wide default prices; a plan in another currency needs its own.
CATALOG_CURRENCY = env.str("CATALOG_CURRENCY", default="USD")

# --- Stripe (dj-stripe) --------------------------------------------------------------
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_TEST_SECRET_KEY = env.str("STRIPE_TEST_SECRET_KEY", default="")
STRIPE_LIVE_SECRET_KEY = env.str("STRIPE_LIVE_SECRET_KEY", default="")
STRIPE_TEST_PUBLIC_KEY = env.str("STRIPE_TEST_PUBLIC_KEY", default="")
STRIPE_LIVE_PUBLIC_KEY = env.str("STRIPE_LIVE_PUBLIC_KEY", default="")
# Stripe features are on only when the secret key of the current mode is set.
STRIPE_ENABLED = bool(STRIPE_LIVE_SECRET_KEY if STRIPE_LIVE_MODE else STRIPE_TEST_SECRET_KEY)
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_SUBSCRIBER_MODEL = "customers.Organization"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# dj-stripe verifies and stores each webhook; processing is a Celery task
# (``apps.customers.webhooks``), so the endpoint answers at once.
DJSTRIPE_WEBHOOK_EVENT_CALLBACK = "apps.customers.webhooks.defer_to_celery"
# Where the stripe SDK sends its calls (a Stripe-compatible test server in tests).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# After a payment fails, budgets keep their configured behaviour this long; then every
# budget of the organisation fails closed until the subscription is paid.
STRIPE_PAST_DUE_GRACE_DAYS = env.int("STRIPE_PAST_DUE_GRACE_DAYS", default=7)
# A period is closed this long after it ends; usage of a closed period recorded later is
# billed as an adjustment on the next statement.
STATEMENT_GRACE_HOURS = env.int("STATEMENT_GRACE_HOURS", default=48)
# The build of a statement waits this long at most for transactions begun before its
# freeze to end (they may hold records of the period); then the close is retried.
STATEMENT_FREEZE_WAIT_SECONDS = env.int("STATEMENT_FREEZE_WAIT_SECONDS", default=30)

# --- Demo ----------------------------------------------------------------------------
# seed_demo refuses to run where this is off (always off in production).
DEMO_DATA_ALLOWED = not PRODUCTION

# --- Production hardening ------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/detailed$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"

# JSON lines in production (LOG_JSON=false for text), text in development; every line has
# the request id, secrets masked (apps.core.logs).
LOGGING = logs.config(
    json=env.bool("LOG_JSON", default=PRODUCTION), level=env.str("LOG_LEVEL", default="INFO")
)
# Requests slower than this are logged with their timing.
SLOW_REQUEST_MS = env.int("SLOW_REQUEST_MS", default=1000)
# /metrics: a scrape sends "Authorization: Bearer <METRICS_TOKEN>"; without a token set,
# only loopback and private addresses may scrape, which is no guard behind a proxy on the
# same host (every client looks like loopback): production refuses to start without one.
METRICS_TOKEN = env.str("METRICS_TOKEN") if PRODUCTION else env.str("METRICS_TOKEN", default="")
