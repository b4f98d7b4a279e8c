"""Built-in configuration defaults.

Every key here can be overridden in ``config.py`` (see ``config_example.py``, where
each key is documented) and then by an environment variable named ``LABQUEUE_<KEY>``.
Keys whose default depends on where the app lives (database file, data folders,
embedded broker) are filled in by ``create_app`` when left as ``None``.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Defaults:
    APP_NAME = "Labqueue"
    # Where users reach the site; links in emails sent by the worker start with it.
    SITE_URL = "http://127.0.0.1:5055"

    # Filled in by create_app: a key persisted under instance/ when none is given.
    SECRET_KEY = None
    SECURITY_PASSWORD_SALT = None

    # Database: SQLite file in instance/ unless a URL is given.
    SQLALCHEMY_DATABASE_URI = None

    # Data folders (created at start-up).
    USER_DATA_DIR = str(PROJECT_ROOT / "userData")
    FAILED_ANALYSES_DIR = str(PROJECT_ROOT / "failedAnalyses")
    LOG_DIR = str(PROJECT_ROOT / "logs")
    LOG_FILE_NAME = "web.log"  # the worker writes worker.log
    LOG_LEVEL = "INFO"
    LOG_MAX_BYTES = 10 * 1024 * 1024
    LOG_BACKUP_COUNT = 5
    LOG_TO_FILE = False  # also when TESTING

    # Registration policy.
    ACADEMIC_EMAIL_ONLY = True
    ACCESS_REQUEST_CONTACT = None  # falls back to the first of ADMINS
    ADMINS: list[str] = []

    # First admin, created by `flask create-admin` when given no arguments.
    ADMIN_EMAIL = None
    ADMIN_PASSWORD = None

    # Mail. With no MAIL_SERVER, mail is written as files under logs/mail/.
    MAIL_SERVER = None
    MAIL_PORT = 25
    MAIL_USE_TLS = False
    MAIL_USE_SSL = False
    MAIL_USERNAME = None
    MAIL_PASSWORD = None
    MAIL_TIMEOUT = 30
    MAIL_DEFAULT_SENDER = "Labqueue <no-reply@labqueue.invalid>"

    # Celery. With no broker URL, the embedded SQLite-backed kombu transport.
    CELERY_BROKER_URL = None
    CELERY_RESULT_BACKEND = None
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
    SECURITY_RETURN_GENERIC_RESPONSES = True
    SECURITY_LOGOUT_METHODS = ["POST"]
    # The welcome mail carries the confirmation link.
    SECURITY_SEND_REGISTER_EMAIL = True
    SECURITY_AUTO_LOGIN_AFTER_CONFIRM = False
    SECURITY_POST_LOGIN_VIEW = "accounts.profile"
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

    # Forms: CSRF on every form, for a working day.
    WTF_CSRF_TIME_LIMIT = 8 * 3600

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SAMESITE = "Lax"
    # None: secure exactly when SITE_URL is https (filled in by create_app).
    SESSION_COOKIE_SECURE = None
    REMEMBER_COOKIE_SECURE = None
    # Host names the site answers to; None: SITE_URL's (see frontend/http.py).
    TRUSTED_HOSTS = None

    # Request bodies: forms and JSON are read into memory, so they stay small; only
    # views that stream a file to disk accept up to MAX_UPLOAD_BYTES.
    MAX_CONTENT_LENGTH = 2 * 1024**2
    MAX_UPLOAD_BYTES = 5 * 1024**3
    STORAGE_QUOTA_BYTES = 20 * 1024**3  # per user; admins can set one per user
    RESERVATION_HOURS = 24  # quota set aside for an unfinished upload lapses after
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
    PIPELINE_LOCAL_BASE_IMAGE = "labqueue/python-base:bookworm"

    # Running analyses.
    RUNNER = "auto"  # docker, local, or auto (docker when an engine answers)
    SITE_ID = None  # names this site's containers; default: from the database URL
    PIPELINE_USER = None  # "uid:gid" in containers; default: the worker's, or nobody
    MAX_RUNNING_PER_USER = 2  # more wait in the queue
    MAX_CPUS_PER_RUN = 2.0  # caps on what manifests ask for
    MAX_MEMORY_MB_PER_RUN = 4096
    MAX_PIDS_PER_RUN = 512
    MAX_RUN_MINUTES = 24 * 60
    MAX_OUTPUT_BYTES = 10 * 1024**3  # and never more than the owner's quota leaves
    MAX_LOG_BYTES = 50 * 1024**2  # a run whose log grows past this is stopped
    MAX_ATTEMPTS = 2  # runs started again after their worker died
    HEARTBEAT_TIMEOUT_SECONDS = 60  # a running row silent this long lost its worker
    RECONCILE_SECONDS = 60  # how often the reconciler looks
    IMAGE_CHECK_SECONDS = 60  # how often workers check that pipeline images exist
    DEFER_SECONDS = 10  # wait before retrying a run held back by MAX_RUNNING_PER_USER
