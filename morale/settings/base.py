"""Settings shared by every environment, read from one environment object.

``local`` (the embedded default of ``./scripts/run.sh``, ``manage.py``, gunicorn and
celery), ``production`` and ``test`` build on this module; it sets no secret key and keeps
``DEBUG`` off. With nothing configured the data lives under the git-ignored ``var/``
folder: a SQLite file, a filesystem Celery broker and media files. ``DATABASE_URL`` /
``CELERY_BROKER_URL`` run the same code on PostgreSQL + Redis. Importing it creates no
files or folders. The README lists every setting.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

# Runtime state of the embedded default (SQLite file, broker folders, media).
VAR_DIR = Path(env.str("MORALE_VAR_DIR", default=str(BASE_DIR / "var")))

# --- Django core -----------------------------------------------------------------
# SECRET_KEY: set by local.py (a development default), production.py (required) and test.py.
DEBUG = False
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc files, served by whitenoise (no CDN)
    "django_celery_beat",
    "axes",  # log-in throttling: failed attempts and lockouts (see "Log-in throttling" below)
    "csp",  # django-csp: the Content-Security-Policy header (below)
    "annotation",
    "modelloop",
    "training",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out log-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "morale.urls"
WSGI_APPLICATION = "morale.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,  # frontend/templates holds the pages
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction begins, so concurrent writers
    # queue on the lock (up to `timeout` seconds) instead of failing half-way with
    # "database is locked"; WAL lets readers go on while one writer writes.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_TIMEOUT_SECONDS", default=30),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, files -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes first: it refuses a locked-out log-in before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, reading the annotator with the user (annotation/auth.py).
    "annotation.auth.UserWithAnnotatorBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:start"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Media is served by Django itself only when this is on (embedded default, tests);
# production serves MEDIA_ROOT from the front web server or object storage.
MORALE_SERVE_MEDIA = env.bool("MORALE_SERVE_MEDIA", default=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploaded images: larger files or more pixels are refused with a clear message.
MORALE_MAX_IMAGE_BYTES = env.int("MORALE_MAX_IMAGE_BYTES", default=10 * 1024 * 1024)
MORALE_MAX_IMAGE_PIXELS = env.int("MORALE_MAX_IMAGE_PIXELS", default=40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = MORALE_MAX_IMAGE_BYTES + 1024 * 1024

# --- Content-Security-Policy (django-csp) -------------------------------------------
# Every page: scripts, styles, fonts and fetches from this site only, no inline script or
# style, no plugins, no framing, forms post here only. Media get a stricter one of their
# own (morale/urls.py); the API docs a wider one per view (morale/api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],  # data: for the favicon and the admin's and docs' CSS icons
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Where browsers report violations (a URL; empty: nowhere).
MORALE_CSP_REPORT_URI = env.str("MORALE_CSP_REPORT_URI", default="")
if MORALE_CSP_REPORT_URI:
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["report-uri"] = [MORALE_CSP_REPORT_URI]

# --- Celery --------------------------------------------------------------------------
# kombu ignores the host of a filesystem URL but warns when there is none.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")


def filesystem_broker_options(folder: Path) -> dict:
    """kombu's filesystem transport: one folder in and out, so producers and consumers
    on this host share the queue files (morale/broker.py creates the folders on first use)."""
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        # kombu polls the folder; its 1 s default would add up to a second to every scoring hop.
        "polling_interval": 0.1,
    }


# Redis (and any broker with a visibility timeout): a message a worker took but never acked
# (acks_late; the worker was SIGKILLed or lost its machine) is handed out again after this
# many seconds. kombu's default is an hour; it must stay above every acks_late task's
# time_limit, or a task still running is delivered a second time (tests/morale/test_jobs.py
# checks). The long jobs (exports, imports, training) ack early and are recovered by the
# job lifecycle's sweep instead (morale/jobs.py), within MORALE_JOB_STALE_MINUTES.
MORALE_BROKER_VISIBILITY_TIMEOUT_SECONDS = env.int("MORALE_BROKER_VISIBILITY_TIMEOUT_SECONDS", default=600)


def broker_transport_options(url: str, folder: Path) -> dict:
    """The transport options for broker ``url``: the filesystem folders, or Redis' timeouts."""
    if url.startswith("filesystem://"):
        return filesystem_broker_options(folder)
    return {"visibility_timeout": MORALE_BROKER_VISIBILITY_TIMEOUT_SECONDS}


CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, VAR_DIR / "broker")


def broker_transport_for(url: str) -> str | None:
    """kombu's filesystem transport hands consumers half-written messages; the embedded
    default uses the race-free one in morale/broker.py. Other URLs pick their own."""
    return "morale.broker:Transport" if url.startswith("filesystem://") else None


CELERY_BROKER_TRANSPORT = broker_transport_for(CELERY_BROKER_URL)
CELERY_TASK_IGNORE_RESULT = True  # tasks write to the database; nobody waits on results
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a killed worker's task goes back to the queue
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "modelloop.*": {"queue": "gpu"},
    "training.*": {"queue": "gpu"},
    # An exact name wins over the patterns: the sweep must not wait behind a six-hour run,
    # and the retrain trigger only counts rows and queues a run.
    "training.sweep_runs": {"queue": "default"},
    "training.retrain_on_judgments": {"queue": "default"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# A dead broker must not hang a web request: fail fast, the sweeper re-queues later.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- MORALE --------------------------------------------------------------------------
# How far a human score may be from the model's before the annotator gets a grounding check.
MORALE_DISAGREEMENT_THRESHOLD = env.float("MORALE_DISAGREEMENT_THRESHOLD", default=1.0)
# "all_agree" (paper, appendix 9): offer the add-scenario prompt only when no scenario on
# the page disagreed. "any_agree": offer it whenever at least one scenario agreed.
MORALE_ADD_SCENARIO_WHEN = env.str("MORALE_ADD_SCENARIO_WHEN", default="all_agree")
MORALE_JUDGMENTS_PER_SCENARIO = env.int("MORALE_JUDGMENTS_PER_SCENARIO", default=3)
MORALE_SCENARIOS_PER_PAGE = env.int("MORALE_SCENARIOS_PER_PAGE", default=5)
# Which context a new page goes to (annotation/services/routing.py): "random" (least-judged
# first, random among ties) or "disagreement" (among contexts at most
# MORALE_ROUTING_SLACK judgments behind the least-judged, those the model is least sure of).
MORALE_ROUTING = env.str("MORALE_ROUTING", default="random")
if MORALE_ROUTING not in ("random", "disagreement"):
    raise ImproperlyConfigured(f"MORALE_ROUTING must be 'random' or 'disagreement', not {MORALE_ROUTING!r}")
MORALE_ROUTING_SLACK = env.int("MORALE_ROUTING_SLACK", default=3)
if MORALE_ROUTING_SLACK < 0:
    raise ImproperlyConfigured(f"MORALE_ROUTING_SLACK must be >= 0, not {MORALE_ROUTING_SLACK}")
MORALE_ASSIGNMENT_TTL_MINUTES = env.int("MORALE_ASSIGNMENT_TTL_MINUTES", default=30)
# Probability that an assignment page carries one canary scenario of its context.
MORALE_CANARY_RATE = env.float("MORALE_CANARY_RATE", default=0.2)
MORALE_CONSENT_VERSION = env.str("MORALE_CONSENT_VERSION", default="2026-11-v1")
# Whether annotators do the practice round (the admin's current one) after the instructions.
MORALE_PRACTICE_ENABLED = env.bool("MORALE_PRACTICE_ENABLED", default=True)
# Pages an annotator is asked for in one working session: the progress line shows the share
# done and a time estimate from their own pace (0: no target, only the count).
MORALE_SESSION_TARGET_PAGES = env.int("MORALE_SESSION_TARGET_PAGES", default=10)
# How long the grounding-check page waits (polling) for a missing model score before it
# lets the annotator go on; the check is then offered later in the session.
MORALE_SCORE_WAIT_SECONDS = env.int("MORALE_SCORE_WAIT_SECONDS", default=20)
MORALE_SCENARIO_MAX_CHARS = env.int("MORALE_SCENARIO_MAX_CHARS", default=500)
# What happens to a scenario an annotator writes: "pool" (straight into the pool, as in the
# paper) or "review" (scored, but held until a researcher approves it in the admin).
MORALE_WRITTEN_SCENARIOS = env.str("MORALE_WRITTEN_SCENARIOS", default="pool")
if MORALE_WRITTEN_SCENARIOS not in ("pool", "review"):
    raise ImproperlyConfigured(f"MORALE_WRITTEN_SCENARIOS must be 'pool' or 'review', not {MORALE_WRITTEN_SCENARIOS!r}")
# Reports ("report this item") from this many annotators take a scenario out of the pool
# until a researcher keeps or retires it (0: reports never take it out).
MORALE_REPORTS_TO_HOLD = env.int("MORALE_REPORTS_TO_HOLD", default=2)
MORALE_SCORER_BATCH_SIZE = env.int("MORALE_SCORER_BATCH_SIZE", default=32)
MORALE_SWEEP_INTERVAL_SECONDS = env.int("MORALE_SWEEP_INTERVAL_SECONDS", default=60)
# A local Hugging Face VLM checkpoint directory (e.g. /models/Qwen2-VL-2B-Instruct). GPU
# workers register it as a zero-shot version at start and promote it while the built-in
# baseline is current (modelloop/worker.py). Empty: off.
MORALE_VLM_PATH = env.str("MORALE_VLM_PATH", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Dataset export --------------------------------------------------------------------
# Defaults of the dataset export (manage.py export_dataset); each export records the values
# it used, and the filters can be overridden per export. See docs/dataset-export.md.
# Train/test split by context: sha256(f"{seed}:{context_id}"); changing either moves contexts.
MORALE_EXPORT_SPLIT_SEED = env.str("MORALE_EXPORT_SPLIT_SEED", default="morale-split-1")
MORALE_EXPORT_TEST_FRACTION = env.float("MORALE_EXPORT_TEST_FRACTION", default=0.1)
# "reconfirmed": per annotator x scenario the judgment after the grounding check where there
# is one, else the initial one; "initial": first answers only (no model anchoring).
MORALE_EXPORT_SOURCE = env.str("MORALE_EXPORT_SOURCE", default="reconfirmed")
# Scenarios whose judgments' sample sd is above this are dropped (paper, section 3.3).
MORALE_EXPORT_MAX_SD = env.float("MORALE_EXPORT_MAX_SD", default=1.2)
MORALE_EXPORT_INCLUDE_SCREENED = env.bool("MORALE_EXPORT_INCLUDE_SCREENED", default=False)
MORALE_EXPORT_INCLUDE_CANARIES = env.bool("MORALE_EXPORT_INCLUDE_CANARIES", default=False)
# Whether exports (and the dataset figures) keep imported ratings and pre-aggregated scores.
MORALE_EXPORT_INCLUDE_IMPORTED = env.bool("MORALE_EXPORT_INCLUDE_IMPORTED", default=True)
# Contexts read per round trip; memory use is bounded by this, not by the data size.
MORALE_EXPORT_CHUNK_SIZE = env.int("MORALE_EXPORT_CHUNK_SIZE", default=500)
# Admin imports whose two files together are larger than this run in a worker instead of
# within the request (which gunicorn would cut off after its 30 s timeout).
MORALE_IMPORT_INLINE_MAX_BYTES = env.int("MORALE_IMPORT_INLINE_MAX_BYTES", default=5 * 1024 * 1024)
# ... and so are uploads of more rows than this (a CSV or JSON Lines line is a row), however small.
MORALE_IMPORT_INLINE_MAX_ROWS = env.int("MORALE_IMPORT_INLINE_MAX_ROWS", default=5000)
# Rows written per transaction: each chunk commits on its own, so no import holds SQLite's
# write lock for long (an annotator's judgment waits at most one chunk).
MORALE_IMPORT_CHUNK_ROWS = env.int("MORALE_IMPORT_CHUNK_ROWS", default=500)

# --- Training ----------------------------------------------------------------------------
# Gate: a new head becomes current only if, on the same test lists, its NDCG@5 is at least
# the current version's minus this tolerance ...
MORALE_GATE_NDCG_TOLERANCE = env.float("MORALE_GATE_NDCG_TOLERANCE", default=0.0)
# ... and its Unsafe Rate at most the current version's plus this one.
MORALE_GATE_UNSAFE_TOLERANCE = env.float("MORALE_GATE_UNSAFE_TOLERANCE", default=0.0)
# ... and its MAE against the human mean (the 1-5 score annotators see) at most the current
# version's plus this one: worse absolute scores are refused whatever the ranking (issue 11).
MORALE_GATE_MAE_TOLERANCE = env.float("MORALE_GATE_MAE_TOLERANCE", default=0.0)
# How often celery beat starts a retraining (the periodic task is editable in the admin).
MORALE_RETRAIN_INTERVAL_HOURS = env.int("MORALE_RETRAIN_INTERVAL_HOURS", default=24)
# Retrain as the data arrives (training/trigger.py): queue a head-only run once this many
# usable judgments arrived since the last run's export; 0 = off. This is the default: the
# "Retrain policy" row in the admin overrides it. Checked every MORALE_RETRAIN_CHECK_SECONDS.
MORALE_RETRAIN_AFTER_JUDGMENTS = env.int("MORALE_RETRAIN_AFTER_JUDGMENTS", default=0)
MORALE_RETRAIN_CHECK_SECONDS = env.int("MORALE_RETRAIN_CHECK_SECONDS", default=60)

# --- Quality control (annotation/research/quality.py; paper section 3.2) -------------------------
# Canary pass rate per annotator: below WARN the annotator is flagged for a researcher;
# below PAUSE (after at least MIN_CHECKS canaries) they are paused automatically.
MORALE_CANARY_WARN_RATE = env.float("MORALE_CANARY_WARN_RATE", default=0.98)
MORALE_CANARY_PAUSE_RATE = env.float("MORALE_CANARY_PAUSE_RATE", default=0.8)
MORALE_CANARY_MIN_CHECKS = env.int("MORALE_CANARY_MIN_CHECKS", default=5)
# A judgment given in fewer seconds than this is flagged as too fast; an annotator whose
# share of too-fast answers exceeds TOO_FAST_SHARE is flagged.
MORALE_TOO_FAST_SECONDS = env.float("MORALE_TOO_FAST_SECONDS", default=2.0)
MORALE_TOO_FAST_SHARE = env.float("MORALE_TOO_FAST_SHARE", default=0.2)
# Per-annotator screening runs once an annotator has this many judgments ...
MORALE_SCREEN_MIN_JUDGMENTS = env.int("MORALE_SCREEN_MIN_JUDGMENTS", default=15)
# ... and flags a Pearson correlation with the leave-one-out item means below this,
MORALE_SCREEN_MIN_CORRELATION = env.float("MORALE_SCREEN_MIN_CORRELATION", default=0.3)
# ... and a score variance whose robust z-score (median/MAD over annotators) exceeds this.
MORALE_SCREEN_VARIANCE_Z = env.float("MORALE_SCREEN_VARIANCE_Z", default=3.5)
# ... and straight-lining: the same score on every scenario of more than this share of
# the annotator's pages (pages with at least two scenarios).
MORALE_SCREEN_STRAIGHT_LINE_SHARE = env.float("MORALE_SCREEN_STRAIGHT_LINE_SHARE", default=0.5)
# How often celery beat recomputes the quality flags.
MORALE_QUALITY_INTERVAL_SECONDS = env.int("MORALE_QUALITY_INTERVAL_SECONDS", default=600)
# Analysis (annotation/research/): where the text-only labels -1, 0, +1 sit on the 1-5
# scale when judgment shifts are counted (paper, table 2 / fig. 6).
MORALE_TEXT_LABEL_SCORES = env.list("MORALE_TEXT_LABEL_SCORES", cast=float, default=[1.0, 3.0, 5.0])
# Seconds the researchers' dashboard (/research/) keeps its figures before recomputing.
MORALE_DASHBOARD_CACHE_SECONDS = env.int("MORALE_DASHBOARD_CACHE_SECONDS", default=60)

# --- Crowd platforms and sign-up -------------------------------------------------------
# Platforms whose entry URL (/enter/?PROLIFIC_PID=... or ?workerId=...) creates annotators
# without a sign-up, e.g. "prolific,mturk". Empty: the entry URL is off.
MORALE_CROWD_PLATFORMS = env.list("MORALE_CROWD_PLATFORMS", default=[])
# Prolific: when set, the entry URL's STUDY_ID must match it.
MORALE_PROLIFIC_STUDY_ID = env.str("MORALE_PROLIFIC_STUDY_ID", default="")
# Shown on the finish page (e.g. Prolific's study completion code). Empty: a per-annotator
# code is derived from SECRET_KEY, which researchers can verify in the admin.
MORALE_COMPLETION_CODE = env.str("MORALE_COMPLETION_CODE", default="")
# At most this many annotators with an open page at once (0: no cap).
MORALE_MAX_CONCURRENT_ANNOTATORS = env.int("MORALE_MAX_CONCURRENT_ANNOTATORS", default=0)
# Whether /accounts/signup/ lets anyone create an annotator account.
MORALE_SELF_SIGNUP = env.bool("MORALE_SELF_SIGNUP", default=False)
# Creating crowd participants is rate-limited, "N/period" with period s, m, h or d (e.g.
# "10/h", "100/10m"; "0/h" or empty: no limit): per client address (IPv6: per /64) ...
MORALE_CROWD_NEW_PER_ADDRESS = env.str("MORALE_CROWD_NEW_PER_ADDRESS", default="10/h")
# ... and for the whole study (every participant this deployment creates). Re-entry of a
# participant who exists already is never limited.
MORALE_CROWD_NEW_PER_STUDY = env.str("MORALE_CROWD_NEW_PER_STUDY", default="60/m")
# A crowd participant's first page holds its slots for this long only, until it is
# submitted (later pages: MORALE_ASSIGNMENT_TTL_MINUTES) ...
MORALE_FIRST_PAGE_TTL_MINUTES = env.int("MORALE_FIRST_PAGE_TTL_MINUTES", default=5)
# ... and at most this many crowd participants who have not submitted a page yet may hold
# a page at once; more newcomers get the "study is full" page (0: no cap).
MORALE_MAX_UNTOUCHED_PARTICIPANTS = env.int("MORALE_MAX_UNTOUCHED_PARTICIPANTS", default=20)
# The finish page shows a completion code only once this many pages are completed, or
# when nothing is left for the annotator to rate (0: at once).
MORALE_COMPLETION_MIN_PAGES = env.int("MORALE_COMPLETION_MIN_PAGES", default=1)

# --- Client address (morale/client_ip.py: crowd entry limits, log-in lockouts) -----------
# Behind a proxy: the header it sets to the client's address (e.g. "X-Forwarded-For" or
# "X-Real-IP"). Empty: REMOTE_ADDR. No other header is ever believed.
MORALE_CLIENT_IP_HEADER = env.str("MORALE_CLIENT_IP_HEADER", default="")
# Proxies that append to that header: the client is this many entries from the right.
MORALE_TRUSTED_PROXY_COUNT = env.int("MORALE_TRUSTED_PROXY_COUNT", default=1)

# --- Log-in throttling (django-axes; the site's log-in and the admin's) -------------------
# After this many failed log-ins (counted per MORALE_LOGIN_LOCKOUT_PARAMETERS) ...
AXES_FAILURE_LIMIT = env.int("MORALE_LOGIN_FAILURE_LIMIT", default=5)
# ... log-in is refused for this long (each further failure starts it again), with a page
# that says so (HTTP 429 + Retry-After). A successful log-in clears the count.
AXES_COOLOFF_TIME = timedelta(minutes=env.int("MORALE_LOGIN_COOLOFF_MINUTES", default=15))


def axes_lockout_parameters(items: list[str]) -> list:
    """["username+ip_address", "ip_address"] -> [["username", "ip_address"], "ip_address"] (axes' form)."""
    return [item.split("+") if "+" in item else item for item in (i.strip() for i in items) if item]


# What is counted: comma-separated alternatives, "+" combines, from username, ip_address,
# user_agent. "username+ip_address" locks one account from one address, so nobody can lock
# a researcher out from elsewhere; add ",ip_address" to also stop one address trying many
# usernames, or ",username" to stop guessing from many addresses (which lets anyone who
# knows a username lock it).
AXES_LOCKOUT_PARAMETERS = axes_lockout_parameters(
    env.list("MORALE_LOGIN_LOCKOUT_PARAMETERS", default=["username+ip_address"])
)
AXES_RESET_ON_SUCCESS = True
# One row per successful log-in (user, address, user agent), shown in the admin. Off:
# crowd participants log in on every entry, and an address is personal data.
AXES_DISABLE_ACCESS_LOG = not env.bool("MORALE_LOGIN_ACCESS_LOG", default=False)
AXES_CLIENT_IP_CALLABLE = "morale.client_ip.client_address"
AXES_LOCKOUT_CALLABLE = "annotation.views.entry.login_locked_out"

# --- REST API (annotation/api/, modelloop/api.py, training/api.py; morale/api/urls.py) ------
# Token first: an anonymous request is answered 401 with "WWW-Authenticate: Token". Session
# requests (the browsable API, /api/docs/) must carry a CSRF token on unsafe methods.
# Query parameters are allow-listed per view (morale/api/filters.py): unknown ones are a 400.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["morale.api.filters.AllowListedFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "morale.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    # JSON, and the browsable API with the inline styles it needs (morale/api/renderers.py).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "morale.api.renderers.BrowsableAPIRenderer"],
    # Bodies are JSON only (the schema then documents one request type, and a form post is a 415).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Documents the error answers every operation shares (morale/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "morale.api.schema.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MORALE API",
    "DESCRIPTION": "Contexts, scenarios, assignments, judgments, predictions, model versions, exports and "
    "training runs. Annotators read their own assignments and judgments; researchers read everything, "
    "export datasets and start training runs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Any logged-in user reads the schema and the docs, but each sees only the operations,
    # fields and filters they may use: an annotator's schema has no researcher-only parts.
    "SERVE_PUBLIC": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "status" with different choices: one named enum each.
    "ENUM_NAME_OVERRIDES": {
        "AssignmentStatusEnum": "annotation.models.Assignment.Status",
        "ExportStatusEnum": "annotation.models.DatasetExport.Status",
        "PredictionStatusEnum": "modelloop.models.Prediction.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
    },
}

# --- Background jobs: one lifecycle (morale/jobs.py) for exports, imports, training runs ---------
# A running job whose worker wrote no heartbeat for this many minutes lost its worker: the
# sweep (periodic, and whenever a training run is queued) queues it again or fails it.
MORALE_JOB_STALE_MINUTES = env.int("MORALE_JOB_STALE_MINUTES", default=10)
# A worker writes a heartbeat at most once per this many seconds (well below the staleness).
MORALE_JOB_HEARTBEAT_SECONDS = env.int("MORALE_JOB_HEARTBEAT_SECONDS", default=30)
# A job lost this many times (claimed, then silent) is failed instead of queued again.
MORALE_JOB_MAX_ATTEMPTS = env.int("MORALE_JOB_MAX_ATTEMPTS", default=3)
# A queued job whose message could not be sent (broker down) is sent again after this long.
MORALE_JOB_RESEND_SECONDS = env.int("MORALE_JOB_RESEND_SECONDS", default=60)

# --- sessions on the annotator's hot path (issue 16) ---------------------------------------
# Signed cookies: the session costs no query and no write per request, survives restarts
# and is shared by every gunicorn worker (it lives in the browser, signed with SECRET_KEY:
# rotating the key signs everyone out). It holds only the user id, the backend, the
# password hash's HMAC (a password change still ends other sessions) and flash messages;
# django-axes keeps its attempts in its own tables, not in the session. The price: logging out clears the
# browser's cookie but cannot revoke a copy of it before SESSION_COOKIE_AGE. Set
# MORALE_SESSION_ENGINE=django.contrib.sessions.backends.db for server-side sessions.
SESSION_ENGINE = env.str("MORALE_SESSION_ENGINE", default="django.contrib.sessions.backends.signed_cookies")

# --- Robustness probes (training/probes, docs/probes.md) ---------------------------------
# Gate options, off unless set: refuse a candidate whose probe flip rate exceeds the current
# version's by more than this, or whose Rel. mCE against the current version is above this.
MORALE_GATE_MAX_FLIP_RATE_INCREASE = env.float("MORALE_GATE_MAX_FLIP_RATE_INCREASE", default=None)
MORALE_GATE_MAX_REL_MCE = env.float("MORALE_GATE_MAX_REL_MCE", default=None)
