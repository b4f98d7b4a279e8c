"""Built-in configuration defaults, and the check of what overrides them.

Every key here can be overridden in ``config.py`` (see ``config_example.py``, where
each key is documented) and then by an environment variable named ``LABQUEUE_<KEY>``.
Keys whose default depends on where the app lives (database file, data folders,
embedded broker) are filled in by ``create_app`` when left as ``None``.
"""

import json
import os
from pathlib import Path
from types import UnionType
from typing import get_args, get_origin, get_type_hints

from backend.runners import RUNNERS as RUNNER_CLASSES

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Defaults:
    APP_NAME = "Labqueue"
    # Where users reach the site; links in emails sent by the worker start with it.
    SITE_URL = "http://127.0.0.1:5055"

    # Filled in by create_app: a key persisted under instance/ when none is given.
    SECRET_KEY: str | None = None
    SECURITY_PASSWORD_SALT: str | None = None

    # Database: SQLite file in instance/ unless a URL is given.
    SQLALCHEMY_DATABASE_URI: str | None = None

    # Data folders (created at start-up).
    USER_DATA_DIR = str(PROJECT_ROOT / "userData")
    FAILED_ANALYSES_DIR = str(PROJECT_ROOT / "failedAnalyses")
    LOG_DIR = str(PROJECT_ROOT / "logs")
    LOG_FILE_NAME = "web.log"  # the worker writes worker.log
    LOG_LEVEL = "INFO"
    LOG_MAX_BYTES = 10 * 1024 * 1024
    LOG_BACKUP_COUNT = 5
    LOG_TO_FILE = False  # also when TESTING
    # Log to standard error instead of files (in containers: one stream per process).
    LOG_TO_STDERR = False

    # Registration policy.
    ACADEMIC_EMAIL_ONLY = True
    ACCESS_REQUEST_CONTACT: str | None = None  # falls back to the first of ADMINS
    ADMINS: list[str] = []

    # First admin, created by `flask create-admin` when given no arguments.
    ADMIN_EMAIL: str | None = None
    ADMIN_PASSWORD: str | None = None

    # Mail. With no MAIL_SERVER, mail is written as files under logs/mail/.
    MAIL_SERVER: str | None = None
    MAIL_PORT = 25
    MAIL_USE_TLS = False
    MAIL_USE_SSL = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_TIMEOUT = 30
    MAIL_DEFAULT_SENDER = "Labqueue <no-reply@labqueue.invalid>"

    # Celery. With no broker URL, the embedded SQLite-backed kombu transport.
    CELERY_BROKER_URL: str | None = None
    CELERY_RESULT_BACKEND: str | None = None
    CELERY_QUEUE = "labqueue"
    CELERY_EXTRA: dict = {}  # further Celery settings by their Celery names

    # Flask-Security-Too: every account flow, argon2, generic responses.
    SECURITY_REGISTERABLE = True
    SECURITY_CONFIRMABLE = True
    SECURITY_RECOVERABLE = True
    SECURITY_TRACKABLE = True
    SECURITY_CHANGEABLE = True
    SECURITY_PASSWORD_HASH = "argon2"  # noqa: S105 (a scheme name)
    SECURITY_PASSWORD_LENGTH_MIN = 12
    # Passwords are also scored by zxcvbn (0-4) on registration, change and reset;
    # a guessable one ("password1234") is refused with zxcvbn's advice.
    SECURITY_PASSWORD_COMPLEXITY_CHECKER = "zxcvbn"  # noqa: S105 (a checker name)
    SECURITY_ZXCVBN_MINIMUM_SCORE = 3
    SECURITY_RETURN_GENERIC_RESPONSES = True
    # Two-factor login with an authenticator app (TOTP), for whoever turns it on;
    # required for the admin role when ADMIN_TWO_FACTOR_REQUIRED is set. The key
    # that encrypts the stored secrets is made once in instance/ unless given.
    SECURITY_TWO_FACTOR = True
    SECURITY_TWO_FACTOR_ENABLED_METHODS = ["authenticator"]
    SECURITY_TWO_FACTOR_POST_SETUP_VIEW = "accounts.profile"
    SECURITY_TOTP_SECRETS: dict | None = None
    SECURITY_TOTP_ISSUER: str | None = None  # None: APP_NAME
    ADMIN_TWO_FACTOR_REQUIRED = False
    # What confirmation and reset tokens carry to tie them to the account's
    # address and password: a plain digest (the token is signed anyway), not
    # Flask-Security's default of half a million sha256_crypt rounds per link.
    # Links made under that default still verify.
    SECURITY_HASHING_SCHEMES = ["hex_sha512", "sha256_crypt"]
    SECURITY_DEPRECATED_HASHING_SCHEMES = ["sha256_crypt"]
    SECURITY_LOGOUT_METHODS = ["POST"]
    # The welcome mail carries the confirmation link.
    SECURITY_SEND_REGISTER_EMAIL = True
    SECURITY_AUTO_LOGIN_AFTER_CONFIRM = False
    SECURITY_POST_LOGIN_VIEW = "projects.index"  # where a researcher starts
    SECURITY_POST_CONFIRM_VIEW = "security.login"
    SECURITY_POST_REGISTER_VIEW = "security.login"
    # Deliverability checks need DNS; switch them off where there is none.
    SECURITY_EMAIL_VALIDATOR_ARGS = {"check_deliverability": True}
    SECURITY_MSG_LOGIN = ("Please log in to see this page.", "info")
    SECURITY_MSG_CONFIRM_REGISTRATION = (
        "Thank you. We have sent a confirmation link to %(email)s: follow it, then "
        "log in here.",
        "success",
    )
    # With generic responses a failed login must not say which part was wrong, but
    # it can remind people of the step they most often miss.
    SECURITY_MSG_GENERIC_AUTHN_FAILED = (
        "Login failed. Check your email and password; if you registered recently, "
        "follow the confirmation link we emailed you first.",
        "error",
    )

    # Login protection (frontend/core/limits.py), counted in the database. Failed logins
    # per address and requests per address are free up to RATE_LIMIT_FREE_ATTEMPTS,
    # per IP up to RATE_LIMIT_FREE_PER_IP; each further one waits twice as long as
    # the last, from the first delay up to the longest. Counts lapse after the
    # window. ACCOUNT_LOCK_AFTER failed logins lock the account; its unlock mail's
    # link works for UNLOCK_LINK_DAYS.
    RATE_LIMIT_FREE_ATTEMPTS = 5
    RATE_LIMIT_FREE_PER_IP = 20
    RATE_LIMIT_FIRST_DELAY_SECONDS = 1.0
    RATE_LIMIT_MAX_DELAY_SECONDS = 900.0
    RATE_LIMIT_WINDOW_SECONDS = 3600
    ACCOUNT_LOCK_AFTER = 20
    UNLOCK_LINK_DAYS = 7

    # Personal API tokens (frontend/api/): at most API_TOKENS_PER_USER live ones
    # each; a new token expires after API_TOKEN_DAYS by default and after at most
    # API_TOKEN_MAX_DAYS (0: a token may never expire). Writes through the API
    # are limited to API_WRITES_PER_MINUTE per token.
    API_TOKENS_PER_USER = 20
    API_TOKEN_DAYS = 90
    API_TOKEN_MAX_DAYS = 365
    API_WRITES_PER_MINUTE = 120
    # Retention (frontend/retention.py), each 0 for never: the outputs of analyses
    # finished this many days ago, projects unchanged (no upload, change or run)
    # this long, and accounts not signed in this long are deleted, each after a
    # warning mail RETENTION_WARNING_DAYS before (pinned analyses, with "Keep",
    # are never touched; admins' accounts neither). Failed runs' snapshots are
    # removed after RETENTION_FAILED_SNAPSHOT_DAYS, without a warning (they are
    # for admins). The policy is applied every PURGE_SECONDS (beat) and by
    # `flask purge`.
    RETENTION_OUTPUT_DAYS = 0
    RETENTION_PROJECT_DAYS = 0
    RETENTION_USER_DAYS = 0
    RETENTION_WARNING_DAYS = 14
    RETENTION_FAILED_SNAPSHOT_DAYS = 0
    PURGE_SECONDS = 3600
    # Guests (frontend/accounts/guests.py): with ALLOW_GUESTS, a visitor may try
    # the site without an account: a temporary one tied to their browser, with
    # GUEST_QUOTA_BYTES of storage, removed GUEST_HOURS after it was made unless
    # they register (and keep their projects). At most GUEST_PER_IP_PER_HOUR are
    # made from one address an hour.
    ALLOW_GUESTS = False
    GUEST_QUOTA_BYTES = 200 * 1024**2
    GUEST_HOURS = 24
    GUEST_PER_IP_PER_HOUR = 5
    # Sharing (frontend/sharing/): a link to an analysis lasts at most
    # SHARE_LINK_MAX_DAYS when its maker gives it an expiry (it may also last
    # until revoked).
    SHARE_LINK_MAX_DAYS = 365
    # GA4GH TES (frontend/tes/): a task's inline input content may total
    # TES_MAX_CONTENT_BYTES; a task that reads no project's files keeps its outputs
    # in the user's project called TES_PROJECT_NAME (made on first use).
    TES_MAX_CONTENT_BYTES = 1024 * 1024
    TES_PROJECT_NAME = "TES tasks"

    # Forms: CSRF on every form, for a working day.
    WTF_CSRF_TIME_LIMIT = 8 * 3600

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SAMESITE = "Lax"
    # None: secure exactly when SITE_URL is https (filled in by create_app).
    SESSION_COOKIE_SECURE: bool | None = None
    REMEMBER_COOKIE_SECURE: bool | None = None
    # Host names the site answers to; None: SITE_URL's (see frontend/core/http.py).
    TRUSTED_HOSTS: list | None = None
    # Proxies in front of the app that set X-Forwarded-For and -Proto (0: none; the
    # client address is the connection's).
    PROXY_COUNT = 0

    # Request bodies: forms and JSON are read into memory, so they stay small; only
    # views that stream a file to disk accept up to MAX_UPLOAD_BYTES.
    MAX_CONTENT_LENGTH = 2 * 1024**2
    MAX_UPLOAD_BYTES = 5 * 1024**3
    STORAGE_QUOTA_BYTES = 20 * 1024**3  # per user; admins can set one per user
    RESERVATION_HOURS = 24  # quota set aside for an unfinished upload lapses after
    # A resumable (tus) upload with no new piece for this long is removed, with
    # what it had received and the quota it held.
    RESUMABLE_UPLOAD_HOURS = 24
    # The upload page sends a file larger than this resumably, in pieces this size.
    WEB_UPLOAD_PIECE_BYTES = 8 * 1024 * 1024
    MAX_FILES_PER_PROJECT = 50_000
    ARCHIVE_MAX_ENTRIES = 10_000
    ARCHIVE_MAX_RATIO = 200
    PREVIEW_MAX_BYTES = 256 * 1024  # read for a text, CSV or JSON preview
    PREVIEW_TABLE_ROWS = 100
    RESULT_TABLE_ROWS = 1000  # rows of a featured result table sent to the page

    # Pipelines: where their folders are, and the image their Dockerfiles build on.
    PIPELINES_DIR = str(PROJECT_ROOT / "backend" / "pipelines")
    PIPELINE_BASE_IMAGE = "python:3.12-slim"
    # Stand-in base, made with debootstrap, where PIPELINE_BASE_IMAGE cannot be pulled.
    PIPELINE_LOCAL_BASE_IMAGE = "labqueue/python-base:bookworm-3"

    # Running analyses.
    RUNNER = "docker"  # or "slurm", or "local": no sandbox (development only)
    # RUNNER = "slurm": jobs go to this partition and account (None: the cluster's
    # defaults), and run SLURM_CONTAINER_COMMAND (None: `docker run` with the
    # sandbox's flags; see backend/runners/slurm.py for the placeholders).
    SLURM_PARTITION: str | None = None
    SLURM_ACCOUNT: str | None = None
    SLURM_CONTAINER_COMMAND: str | None = None
    # "service": jobs are submitted as the worker's account; "user": as the
    # owner's cluster account (set by admins on the user), through this command,
    # so that the cluster's fair share and accounting apply.
    SLURM_SUBMIT_AS = "service"
    SLURM_SUDO_COMMAND: list[str] = ["sudo", "-n", "-u", "{account}", "--"]
    # The runners this worker takes runs for (default: [RUNNER]). Each runner has
    # its own Celery queue, CELERY_QUEUE.<runner>: a worker on the cluster's login
    # node serves ["slurm"], Docker hosts ["docker"]. A pipeline runs on the runner
    # Admin -> Pipelines gives it, else on RUNNER.
    WORKER_RUNNERS: list[str] = []
    # Names this site's containers; default: from the database URL.
    SITE_ID: str | None = None
    # This worker host's name on its runs; default: the hostname.
    WORKER_HOST: str | None = None
    # "uid:gid" in containers; default: the worker's, or nobody.
    PIPELINE_USER: str | None = None
    MAX_RUNNING_PER_USER = 2  # more wait in the queue
    MAX_RUNNING = 50  # runs at once on the whole site; more wait in the queue
    MAX_CPUS_PER_RUN = 2.0  # caps on what manifests ask for
    MAX_MEMORY_MB_PER_RUN = 4096
    MAX_PIDS_PER_RUN = 512
    MAX_RUN_MINUTES = 24 * 60
    MAX_OUTPUT_BYTES = 10 * 1024**3  # and never more than the owner's quota leaves
    MAX_LOG_BYTES = 50 * 1024**2  # a run whose log grows past this is stopped
    # Run parameters, whatever a schema allows: each text value, and the whole
    # command (Linux refuses one argument over 128 KiB, all of them over ~2 MiB).
    MAX_PARAM_CHARS = 10_000
    MAX_ARGV_BYTES = 256 * 1024
    MAX_ATTEMPTS = 2  # runs started again after their host was lost
    BATCH_MAX_RUNS = 500  # analyses one batch (one per file) may queue
    HEARTBEAT_TIMEOUT_SECONDS = 60  # a host whose watcher is silent this long is gone
    RECONCILE_SECONDS = 30  # how often the reconciler looks
    IMAGE_CHECK_SECONDS = 60  # how often workers check that pipeline images exist
    DISPATCH_SECONDS = 5  # how often the dispatcher sends due queued runs
    REDISPATCH_SECONDS = 30  # a run sent this long ago and still queued is sent again
    WATCH_SECONDS = 0.5  # how often the watcher looks at its runs
    LAUNCH_GRACE_SECONDS = 60  # a claimed run not launched by then is looked into
    MAIL_RETRY_SECONDS = 30  # how often unsent mail is tried again


# Keys whose value must be one of a few words.
RUNNERS = tuple(RUNNER_CLASSES)  # the names the runner registry knows
CHOICES = {"RUNNER": RUNNERS, "SLURM_SUBMIT_AS": ("service", "user")}
# Keys whose value is a list of a few words.
LIST_CHOICES = {"WORKER_RUNNERS": RUNNERS}
KIND_NAMES = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "a string",
    list: 'a JSON list, e.g. ["a", "b"]',
    dict: 'a JSON object, e.g. {"key": "value"}',
}


class ConfigError(ValueError):
    """A setting that does not fit its key's type; says which and what fits."""


def _kind_of(key: str):
    """The type a key takes: from its annotation, else from its default."""
    hint = get_type_hints(Defaults).get(key)
    if hint is not None:
        options = get_args(hint) if get_origin(hint) is UnionType else (hint,)
        kinds = [get_origin(option) or option for option in options]
        return next((kind for kind in kinds if kind in KIND_NAMES), None)
    default = getattr(Defaults, key)
    return type(default) if type(default) in KIND_NAMES else None


def _fits(value, kind) -> bool:
    if value is None:
        return True
    if kind in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def check(config: dict, environ=None) -> None:
    """Stop start-up on a setting that does not fit its key: a LABQUEUE_ variable
    that did not parse as its key's type (a dict, a list, a number, a flag), or a
    value outside a key's choices. A string key given digits by a variable keeps the
    variable's text (a password of digits stays a string)."""
    environ = os.environ if environ is None else environ
    problems = []
    for key in (k for k in vars(Defaults) if k.isupper()):
        kind, value = _kind_of(key), config.get(key)
        variable = f"LABQUEUE_{key}"
        source = variable if variable in environ else f"{key} in config.py"
        if kind is str and variable in environ and not isinstance(value, str):
            config[key] = value = environ[variable]  # JSON made it a number
        if kind is not None and not _fits(value, kind):
            shown = environ.get(variable, json.dumps(value, default=str))
            problems.append(f"{source}: expected {KIND_NAMES[kind]}, got {shown!r}")
        elif key in CHOICES and value not in CHOICES[key]:
            choices = " or ".join(f'"{c}"' for c in CHOICES[key])
            problems.append(f"{source}: expected {choices}, got {value!r}")
        elif key in LIST_CHOICES and not set(value) <= set(LIST_CHOICES[key]):
            choices = ", ".join(f'"{c}"' for c in LIST_CHOICES[key])
            problems.append(f"{source}: expected a list of {choices}, got {value!r}")
        elif key == "PROXY_COUNT" and value < 0:
            problems.append(f"{source}: expected 0 (no proxy) or more, got {value}")
        elif key.startswith("RETENTION_") and value < 0:
            problems.append(f"{source}: expected 0 (never) or more days, got {value}")
    if problems:
        raise ConfigError(
            "Labqueue's configuration has a value it cannot use:\n  "
            + "\n  ".join(problems)
        )
