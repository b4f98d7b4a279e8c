"""Database models. Schema changes go through a migration (``flask db migrate``)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app
from flask_security import RoleMixin, UserMixin
from flask_security.utils import get_message
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

from .extensions import db


def utcnow() -> datetime:
    # Naive UTC, as Flask-Security writes its own timestamps; SQLite keeps no zone.
    return datetime.now(UTC).replace(tzinfo=None)


roles_users = sa.Table(
    "roles_users",
    db.metadata,
    sa.Column(
        "user_id", sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "role_id", sa.ForeignKey("role.id", ondelete="CASCADE"), primary_key=True
    ),
)


class Role(db.Model, RoleMixin):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))

    def __str__(self) -> str:
        return self.name


class User(db.Model, UserMixin):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(255), unique=True)
    password: Mapped[str | None] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    fs_uniquifier: Mapped[str] = mapped_column(sa.String(64), unique=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100), default="")
    institution: Mapped[str | None] = mapped_column(sa.String(255))
    # Their account on the lab's cluster, set by admins: with SLURM_SUBMIT_AS =
    # "user", their Slurm jobs are submitted as it.
    cluster_account: Mapped[str | None] = mapped_column(sa.String(32))

    # Login tracking (SECURITY_TRACKABLE).
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    current_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    last_login_ip: Mapped[str | None] = mapped_column(sa.String(64))
    current_login_ip: Mapped[str | None] = mapped_column(sa.String(64))
    login_count: Mapped[int | None] = mapped_column(default=0)
    # A guest's account (ALLOW_GUESTS) lasts until then, unless they register.
    guest_until: Mapped[datetime | None] = mapped_column(sa.DateTime())
    # The last day they used the site, signed in (written at most once a day): an
    # account unseen for RETENTION_USER_DAYS is deleted, after a warning.
    last_seen_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    # Set when repeated failed logins locked the account (frontend/core/limits.py);
    # the unlock mail's link or an admin clears it.
    locked_at: Mapped[datetime | None] = mapped_column(sa.DateTime())

    # Two-factor login (Flask-Security-Too's; "authenticator": TOTP). The secret
    # is stored encrypted with SECURITY_TOTP_SECRETS.
    tf_primary_method: Mapped[str | None] = mapped_column(sa.String(64))
    tf_totp_secret: Mapped[str | None] = mapped_column(sa.String(255))
    tf_phone_number: Mapped[str | None] = mapped_column(sa.String(128))

    def check_tf_required(self, tf_setup_methods, tf_fresh):
        """A second factor at every login for whoever set one up, and for admins
        when the site requires it (they set one up at their next login)."""
        required, methods = super().check_tf_required(tf_setup_methods, tf_fresh)
        return required or self._admin_needs_tf(), methods

    def check_tf_required_setup(self) -> bool:
        return super().check_tf_required_setup() or self._admin_needs_tf()

    def _admin_needs_tf(self) -> bool:
        return bool(current_app.config["ADMIN_TWO_FACTOR_REQUIRED"]) and self.has_role(
            "admin"
        )

    def is_locked(self, form_error: list[str] | None = None) -> bool:
        """Flask-Security asks this after the password was checked: a locked
        account cannot log in (nor be reset) until it is unlocked. It answers as
        for a wrong password (the owner has the unlock mail)."""
        if self.locked_at is None:
            return False
        if form_error is not None:
            form_error.append(get_message("GENERIC_AUTHN_FAILED")[0])
        return True

    # Bytes this user may store; None means the site's STORAGE_QUOTA_BYTES.
    storage_quota: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Email when an analysis ends.
    notify_by_email: Mapped[bool] = mapped_column(
        default=True, server_default=sa.true()
    )

    roles: Mapped[list[Role]] = relationship(
        secondary=roles_users, backref=sa.orm.backref("users", lazy="dynamic")
    )
    projects: Mapped[list[Project]] = relationship(
        back_populates="owner", cascade="all, delete-orphan"
    )

    @property
    def is_guest(self) -> bool:
        return self.guest_until is not None

    @property
    def full_name(self) -> str:
        if self.is_guest:
            return "Guest"
        return f"{self.first_name} {self.last_name}".strip() or self.email

    def __str__(self) -> str:
        return self.email


class DomainRuleKind(enum.StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


class DomainRule(db.Model):
    """An admin's exception to the academic-address rule, for one domain and its
    subdomains."""

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(sa.String(255), unique=True)
    kind: Mapped[DomainRuleKind] = mapped_column(
        sa.Enum(
            DomainRuleKind,
            native_enum=False,
            length=10,
            values_callable=lambda kinds: [k.value for k in kinds],
        )
    )
    # Shown as the institution of users registering from an allowed domain.
    institution: Mapped[str | None] = mapped_column(sa.String(255))
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.domain}"


class Project(db.Model):
    """A user's folder of data; on disk under USER_DATA_DIR/<owner id>/<id>/."""

    __table_args__ = (sa.UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    owner: Mapped[User] = relationship(back_populates="projects")
    files: Mapped[list[ProjectFile]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )

    def __str__(self) -> str:
        return self.name


class ProjectFile(db.Model):
    """A file or folder of a project, stored at ``files/<path>`` in its folder.

    ``path`` passed backend.files.clean_relpath when the row was made, so paths on
    disk come from this table, never from request text.
    """

    __table_args__ = (
        sa.UniqueConstraint("project_id", "path"),
        sa.Index("ix_project_file_listing", "project_id", "parent"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(sa.String(4000))
    # The folder's path ("" at the top of the project), for listing a folder.
    parent: Mapped[str] = mapped_column(sa.String(4000))
    name: Mapped[str] = mapped_column(sa.String(255))
    is_dir: Mapped[bool] = mapped_column(default=False)
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    modified_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    # Where a file added from an analysis' outputs came from: analysis (id),
    # pipeline, version, params, output (its path there), added_by, added_at. Kept
    # as written, so it outlives the analysis.
    provenance: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))

    project: Mapped[Project] = relationship(back_populates="files")

    def __str__(self) -> str:
        return self.path


class AnalysisState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The ``pipeline`` of an analysis that runs a GA4GH TES task (see TesTask).
TES_PIPELINE = "tes"

FINISHED_STATES = (
    AnalysisState.SUCCEEDED,
    AnalysisState.FAILED,
    AnalysisState.CANCELLED,
)


class Analysis(db.Model):
    """One run of a pipeline on a project. This row, not the broker, is the truth
    and the queue: queued → running → succeeded | failed | cancelled, and queued →
    cancelled. A running row is claimed by a worker host (``worker``), launched
    (``handle``) and supervised by that host's watcher, which finalizes it once."""

    __table_args__ = (
        sa.Index("ix_analysis_state_submitted", "state", "submitted_at"),
        sa.Index("ix_analysis_owner_submitted", "owner_id", "submitted_at"),
        sa.Index("ix_analysis_state_worker", "state", "worker"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    pipeline: Mapped[str] = mapped_column(sa.String(64))
    pipeline_version: Mapped[str] = mapped_column(sa.String(32))
    image: Mapped[str] = mapped_column(sa.String(255))
    image_id: Mapped[str | None] = mapped_column(sa.String(255))
    params: Mapped[dict] = mapped_column(sa.JSON)
    state: Mapped[AnalysisState] = mapped_column(
        sa.Enum(
            AnalysisState,
            native_enum=False,
            length=16,
            values_callable=lambda states: [s.value for s in states],
        ),
        default=AnalysisState.QUEUED,
    )
    submitted_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    exit_code: Mapped[int | None]
    attempt: Mapped[int] = mapped_column(default=0)
    progress_percent: Mapped[float] = mapped_column(default=0.0)
    progress_message: Mapped[str] = mapped_column(sa.String(255), default="")
    error_summary: Mapped[str | None] = mapped_column(sa.Text)
    # Bytes of its folder (outputs and log): measured while it runs and at the end,
    # and counted against the owner's storage quota.
    output_bytes: Mapped[int] = mapped_column(
        sa.BigInteger, default=0, server_default="0"
    )
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # Why the watcher is stopping it (cancel, timeout, a cap), kept so that a
    # watcher restarted meanwhile reports it rightly.
    stopping_reason: Mapped[str | None] = mapped_column(sa.String(255))
    worker: Mapped[str | None] = mapped_column(sa.String(255))  # the host's id
    # The runner it runs on, chosen when it is submitted (its pipeline's, else the
    # site's RUNNER); its start goes to that runner's queue.
    runner: Mapped[str | None] = mapped_column(sa.String(16))
    # When the dispatcher last sent "start" for it (queued rows only).
    dispatched_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    # The runner's handle (backend.runners.Handle as a dict) once launched.
    # none_as_null: "no handle" is SQL NULL (not JSON null), so queries can ask.
    handle: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))
    launched_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    # Bytes of the runner's output already copied into log.txt.
    log_offset: Mapped[int] = mapped_column(
        sa.BigInteger, default=0, server_default="0"
    )
    # What it ran under: cpus, memory_mb, pids, timeout_s, max_output_bytes,
    # output_limit_note, max_log_bytes.
    limits: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True))
    peak_memory_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    cpu_seconds: Mapped[float | None]
    # An admin's "queue again" makes a new analysis; this points at the earlier one.
    retry_of_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("analysis.id", ondelete="SET NULL")
    )
    # Pinned by who may control it: the retention policy never removes its
    # outputs, nor the project holding it.
    keep: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # When the retention policy removed its outputs (its log and parameters stay).
    outputs_removed_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    # The batch it was submitted in (one analysis per file), if any.
    batch_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("batch.id", ondelete="SET NULL"), index=True
    )

    owner: Mapped[User] = relationship()
    project: Mapped[Project] = relationship(back_populates="analyses")
    retry_of: Mapped[Analysis | None] = relationship(remote_side=[id])
    batch: Mapped[Batch | None] = relationship(back_populates="analyses")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def __str__(self) -> str:
        return f"#{self.id} {self.pipeline}"

    def update_from(self, statement) -> bool:
        """Run ``statement``, an UPDATE of this analysis' row; when it matched,
        bring this object up to date from the row it returned (one round trip,
        and the owner and project already loaded stay loaded). False when
        nothing matched: another worker got there first."""
        attributes = sa.inspect(Analysis).column_attrs
        row = db.session.execute(
            statement.returning(*(attribute.columns[0] for attribute in attributes)),
            execution_options={"synchronize_session": False},
        ).first()
        if row is None:
            return False
        for attribute, value in zip(attributes, row, strict=True):
            set_committed_value(self, attribute.key, value)
        return True


class Batch(db.Model):
    """Analyses of one pipeline submitted together from one run form: one per
    file, ``field`` (the file parameter that varies) taking each in turn, every
    other parameter the same."""

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    pipeline: Mapped[str] = mapped_column(sa.String(64))
    field: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    owner: Mapped[User] = relationship()
    project: Mapped[Project] = relationship()
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="batch", order_by="Analysis.id"
    )

    def __str__(self) -> str:
        return f"batch #{self.id} {self.pipeline}"


class PipelineSetting(db.Model):
    """Admins' switches for pipelines found on disk (a pipeline with no row is on,
    and runs on the site's RUNNER)."""

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str | None] = mapped_column(sa.Text)
    # The runner new runs of the pipeline go to; None: the site's RUNNER.
    runner: Mapped[str | None] = mapped_column(sa.String(16))

    def __str__(self) -> str:
        return self.name


class PipelineImage(db.Model):
    """What a worker last found about a pipeline's image, on the runner it uses.

    Workers check at start, every IMAGE_CHECK_SECONDS and before each launch, and
    ``flask pipelines prepare`` after building; the web offers a pipeline only when
    the last check found its image (or none was made yet: the worker checks again
    before launching).
    """

    pipeline: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    image: Mapped[str] = mapped_column(sa.String(255))  # the tag that was checked
    ready: Mapped[bool]
    problem: Mapped[str | None] = mapped_column(sa.Text)  # for admins
    runner: Mapped[str] = mapped_column(sa.String(16))
    host: Mapped[str] = mapped_column(sa.String(255))
    checked_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    def __str__(self) -> str:
        return f"{self.image} ({'ready' if self.ready else 'missing'})"


class StorageReservation(db.Model):
    """Bytes set aside for an upload or extraction in progress, so that uploads sent
    in parallel cannot together pass the owner's quota. Deleted when the upload
    ends; one older than RESERVATION_HOURS (its web process died) no longer counts.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)


class WatcherLease(db.Model):
    """One watcher per worker host supervises that host's runs: the one whose
    token is here, renewed every tick. A lease not renewed for a while, or held by
    a process that is gone from this host, is taken over."""

    host: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(64))
    pid: Mapped[int]
    renewed_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    # The runners the host's worker serves (WORKER_RUNNERS), e.g. ["slurm"].
    runners: Mapped[list] = mapped_column(sa.JSON, default=list)


class OutgoingMail(db.Model):
    """A mail to send, written in the same transaction as what it tells; a task
    sends it after the commit and a periodic one retries until the server takes
    it, so an SMTP outage delays mail but loses none."""

    __table_args__ = (sa.Index("ix_outgoing_mail_due", "sent_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(sa.String(255))
    subject: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)
    html: Mapped[str | None] = mapped_column(sa.Text)
    # Account mails carry one-time links: their text is wiped once sent.
    confidential: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    # A sender holds a mail until then, so that two never send it at once.
    claimed_until: Mapped[datetime | None] = mapped_column(sa.DateTime())

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipient}"


class AuditEvent(db.Model):
    """A security or admin event: who did what to what, when and from where.
    Rows are only ever added (Admin → Audit trail lists and searches them)."""

    __table_args__ = (sa.Index("ix_audit_event_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow, index=True)
    action: Mapped[str] = mapped_column(sa.String(64))
    # Who: kept as an address too, so that the row outlives the account.
    actor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user.id", ondelete="SET NULL")
    )
    actor_email: Mapped[str | None] = mapped_column(sa.String(255))
    target: Mapped[str] = mapped_column(sa.String(255), default="")
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str] = mapped_column(sa.Text, default="")

    actor: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class RateLimit(db.Model):
    """Attempts counted for one key ("login-account:5", "reset-ip:192.0.2.1"),
    in the database so that every web process sees the same counts."""

    key: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    attempts: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    # No attempt is taken before then (the growing delay).
    blocked_until: Mapped[datetime | None] = mapped_column(sa.DateTime())


class ApiToken(db.Model):
    """A personal token for the API and the TES endpoint (``Authorization: Bearer``).

    Only a digest of the secret is kept: the secret is shown once, when made. A
    user may hold several, each named, revoked one by one, and expiring or not.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    # sha256 of the whole secret, hex: the secret has 256 random bits, so a
    # plain digest is enough (nothing to guess, nothing to stretch).
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The secret's first characters, shown in lists to tell tokens apart.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    read_only: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    last_used_ip: Mapped[str | None] = mapped_column(sa.String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime())

    user: Mapped[User] = relationship(
        backref=sa.orm.backref("api_tokens", cascade="all, delete-orphan")
    )

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > now
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ResumableUpload(db.Model):
    """A file being uploaded in pieces (tus): where it goes, how long it is, how
    much has arrived. Its bytes are at the project's ``.staging/tus-<id>``; the
    quota for the whole length is set aside when it is created."""

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(sa.String(4000))
    on_clash: Mapped[str] = mapped_column(sa.String(16), default="ask")
    extract: Mapped[bool] = mapped_column(default=False)
    length: Mapped[int] = mapped_column(sa.BigInteger)
    offset: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    reservation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("storage_reservation.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    # The last piece's arrival: an upload untouched for RESUMABLE_UPLOAD_HOURS
    # is removed.
    touched_at: Mapped[datetime] = mapped_column(
        sa.DateTime(), default=utcnow, index=True
    )

    project: Mapped[Project] = relationship()
    user: Mapped[User] = relationship()


class TesTask(db.Model):
    """A GA4GH TES task: the analysis that runs it (pipeline ``TES_PIPELINE``) and
    what the client asked for, kept as sent so that the task reads back the same.
    Its id on the TES endpoint is the analysis' id."""

    analysis_id: Mapped[int] = mapped_column(
        sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(255), default="", index=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    tags: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # inputs (content left out: it is in the task's folder), outputs, resources,
    # executors and volumes, as the client sent them.
    request: Mapped[dict] = mapped_column(sa.JSON)
    # Why it cannot run here (an input or output this server does not fetch or
    # send); the worker ends it in SYSTEM_ERROR with this line in its log.
    system_problem: Mapped[str | None] = mapped_column(sa.Text)

    analysis: Mapped[Analysis] = relationship(
        backref=sa.orm.backref("tes_task", uselist=False, cascade="all, delete-orphan")
    )

    def __str__(self) -> str:
        return f"TES task {self.analysis_id} {self.name}"


class TesImage(db.Model):
    """An image an administrator allows TES tasks to run (besides the registered
    pipelines' images, which are allowed anyway)."""

    image: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    added_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    def __str__(self) -> str:
        return self.image


class Group(db.Model):
    """A lab or team: its owner invites members by address, and a project shared
    with the group reaches every member."""

    __tablename__ = "user_group"  # GROUP is an SQL keyword

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    owner_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)

    owner: Mapped[User] = relationship()
    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="GroupMember.email",
    )

    def __str__(self) -> str:
        return self.name


class GroupMember(db.Model):
    """An address invited to a group. It counts as a member once the account of
    that address has accepted (``joined_at``); the group's owner is one from the
    start. Kept by address (lower case) so that an invitation can wait for its
    account to be made."""

    __table_args__ = (sa.UniqueConstraint("group_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_group.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(sa.String(255), index=True)
    invited_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user.id", ondelete="SET NULL")
    )
    invited_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    joined_at: Mapped[datetime | None] = mapped_column(sa.DateTime())

    group: Mapped[Group] = relationship(back_populates="members")
    invited_by: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"{self.email} in {self.group_id}"


class ProjectShare(db.Model):
    """A project shared with a group, or with one address (lower case; it reaches
    the account of that address once there is one), read-only or read-write."""

    __table_args__ = (
        sa.UniqueConstraint("project_id", "group_id", name="uq_project_share_group"),
        sa.UniqueConstraint("project_id", "email", name="uq_project_share_email"),
        sa.CheckConstraint(
            "(group_id IS NULL) <> (email IS NULL)", name="group_or_email"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_group.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    can_write: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user.id", ondelete="SET NULL")
    )

    project: Mapped[Project] = relationship()
    group: Mapped[Group | None] = relationship()

    @property
    def access(self) -> str:
        return "read-write" if self.can_write else "read-only"

    def __str__(self) -> str:
        return f"{self.project_id} with {self.email or self.group_id}"


class ShareLink(db.Model):
    """A read-only link to one analysis' page and outputs, for anyone who has it.
    Only a digest of its secret is kept (like API tokens'); revoked or past its
    expiry, it opens nothing."""

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(
        sa.ForeignKey("analysis.id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_by_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime())

    analysis: Mapped[Analysis] = relationship()
    created_by: Mapped[User] = relationship()

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > now
        )

    def __str__(self) -> str:
        return f"link {self.prefix}… to #{self.analysis_id}"


class RetentionNotice(db.Model):
    """A warning that the retention policy will delete something (``kind``:
    "outputs" of an analysis, a "project", a "user" and their data) on
    ``due_at``. Nothing is deleted before its mail was sent and the warning time
    has passed; a notice whose target was kept, changed or used since is dropped,
    and a new one is sent if it becomes due again."""

    __table_args__ = (sa.UniqueConstraint("kind", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    target_id: Mapped[int]
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    due_at: Mapped[datetime] = mapped_column(sa.DateTime())
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(), default=utcnow)
    mail_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("outgoing_mail.id", ondelete="SET NULL")
    )

    mail: Mapped[OutgoingMail | None] = relationship()

    @classmethod
    def about(cls, kind: str, target_id: int):
        """SQL condition: the notice about ``kind`` ``target_id``."""
        return sa.and_(cls.kind == kind, cls.target_id == target_id)

    def __str__(self) -> str:
        return f"{self.kind} {self.target_id} due {self.due_at:%Y-%m-%d}"
