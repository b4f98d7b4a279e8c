"""The retention policy: what the site deletes by itself, and only after a warning.

Three kinds of things expire when the site says so (each setting 0: never):

- the outputs of an analysis finished ``RETENTION_OUTPUT_DAYS`` ago (its page,
  log and parameters stay), unless someone pinned it with "Keep";
- a project with no upload, change or run for ``RETENTION_PROJECT_DAYS``, unless
  it holds a pinned or unfinished analysis;
- an account not seen for ``RETENTION_USER_DAYS``, with all it owns (admins'
  accounts never, nor one with a run going on).

Each is first *warned*: a ``RetentionNotice`` is written with its due date and its
owner gets one mail listing what will go, ``RETENTION_WARNING_DAYS`` ahead. It is
*deleted* only once due, its mail sent at least that long ago, and still expired
by the policy (kept, used or changed meanwhile, its notice is *dropped*, and a
new warning comes if it expires again). Each deletion is a log line and an audit
row. Failed runs' snapshots are removed after ``RETENTION_FAILED_SNAPSHOT_DAYS``
without a warning: they are for admins.

``purge(now, dry_run)`` does all this once; the beat runs it every
``PURGE_SECONDS`` and ``flask purge`` on demand (``--dry-run`` writes, sends and
deletes nothing).
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from backend import safe_open

from .accounts import guests
from .analyses.services import delete_analysis, output_files
from .core import audit, outbox
from .core.extensions import db
from .core.layout import output_dir, snapshots_dir
from .core.links import external_url
from .core.models import (
    FINISHED_STATES,
    Analysis,
    Project,
    RetentionNotice,
    Role,
    User,
    roles_users,
)
from .core.storage import stored_bytes
from .projects.services import delete_project

log = logging.getLogger(__name__)
KINDS = ("outputs", "project", "user")
SETTINGS = {
    "outputs": "RETENTION_OUTPUT_DAYS",
    "project": "RETENTION_PROJECT_DAYS",
    "user": "RETENTION_USER_DAYS",
}


@dataclass
class Expiring:
    """Something the policy will delete: whose it is and from when."""

    kind: str
    target_id: int
    user: User
    label: str  # "the outputs of analysis #12 (seq-qc)"
    keep_hint: str  # how to keep it
    due: datetime  # when the policy lets it go


@dataclass
class Report:
    warned: list[Expiring] = field(default_factory=list)
    deleted: list[Expiring] = field(default_factory=list)
    waiting: list[Expiring] = field(default_factory=list)  # due, warning too recent
    dropped: int = 0  # notices of things kept, used or gone meanwhile
    snapshots: list[str] = field(default_factory=list)
    guests: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool = False) -> list[str]:
        would = "would be " if dry_run else ""
        found = [
            f"{would}warned: {item.user.email}: {item.label}, due {item.due:%Y-%m-%d}"
            for item in self.warned
        ]
        found += [
            f"{would}deleted: {item.user.email}: {item.label}" for item in self.deleted
        ]
        found += [
            f"waiting for its warning's time: {item.user.email}: {item.label}"
            for item in self.waiting
        ]
        found += [f"{would}removed: failed run snapshot {s}" for s in self.snapshots]
        found += [
            f"{would}removed: guest account {g}, its time over" for g in self.guests
        ]
        if self.dropped:
            found.append(f"{self.dropped} warning(s) dropped: kept or used since")
        return found


def _days(kind: str) -> int:
    return int(current_app.config[SETTINGS[kind]])


def _warning_days() -> timedelta:
    return timedelta(days=current_app.config["RETENTION_WARNING_DAYS"])


# --- What expires -----------------------------------------------------------------


def _outputs(now: datetime, days: int) -> Iterator[Expiring]:
    """Finished analyses, not pinned, whose outputs expire within the warning
    time."""
    cutoff = now + _warning_days() - timedelta(days=days)
    stmt = (
        sa.select(Analysis)
        .where(
            Analysis.state.in_(FINISHED_STATES),
            Analysis.finished_at <= cutoff,
            ~Analysis.keep,
            Analysis.outputs_removed_at.is_(None),
        )
        .options(sa.orm.joinedload(Analysis.owner), sa.orm.joinedload(Analysis.project))
        .order_by(Analysis.id)
    )
    for analysis in db.session.scalars(stmt):
        if not output_files(analysis):
            continue  # nothing to remove, nothing to warn about
        yield Expiring(
            "outputs",
            analysis.id,
            analysis.owner,
            f"the outputs of analysis #{analysis.id} ({analysis.pipeline}) in "
            f"“{analysis.project.name}”",
            "open it and press Keep: "
            + external_url("analyses.detail", analysis_id=analysis.id),
            analysis.finished_at + timedelta(days=days),
        )


def _projects(now: datetime, days: int) -> Iterator[Expiring]:
    """Projects with no change or run for ``days``, holding no pinned or
    unfinished analysis."""
    cutoff = now + _warning_days() - timedelta(days=days)
    runs = (
        sa.select(
            Analysis.project_id,
            sa.func.max(Analysis.submitted_at).label("last_run"),
            sa.func.count(Analysis.id)
            .filter(sa.or_(Analysis.keep, Analysis.state.not_in(FINISHED_STATES)))
            .label("held"),
        )
        .group_by(Analysis.project_id)
        .subquery()
    )
    stmt = (
        sa.select(Project, runs.c.last_run, runs.c.held)
        .outerjoin(runs, runs.c.project_id == Project.id)
        .where(Project.updated_at <= cutoff)
        .options(sa.orm.joinedload(Project.owner))
        .order_by(Project.id)
    )
    for project, last_run, held in db.session.execute(stmt):
        last = max(project.updated_at, last_run or project.updated_at)
        if held or last > cutoff:
            continue
        yield Expiring(
            "project",
            project.id,
            project.owner,
            f"the project “{project.name}” and everything in it (unchanged since "
            f"{last:%Y-%m-%d})",
            "open it and press “Keep this project”, or upload or run something: "
            + external_url("projects.browse", project_id=project.id),
            last + timedelta(days=days),
        )


def _users(now: datetime, days: int) -> Iterator[Expiring]:
    """Accounts not seen for ``days`` (not admins', none with a run going on)."""
    cutoff = now + _warning_days() - timedelta(days=days)
    seen = sa.func.coalesce(User.last_seen_at, User.current_login_at, User.created_at)
    admins = (
        sa.select(roles_users.c.user_id)
        .join(Role, Role.id == roles_users.c.role_id)
        .where(Role.name == "admin")
    )
    busy = sa.select(Analysis.owner_id).where(Analysis.state.not_in(FINISHED_STATES))
    stmt = (
        sa.select(User, seen)
        .where(
            seen <= cutoff,
            User.guest_until.is_(None),  # guests go by their own time
            User.id.not_in(admins),
            User.id.not_in(busy),
        )
        .order_by(User.id)
    )
    for user, last in db.session.execute(stmt):
        yield Expiring(
            "user",
            user.id,
            user,
            f"your account {user.email} and all your projects and analyses (not "
            f"used since {last:%Y-%m-%d})",
            "sign in: " + external_url("security.login"),
            last + timedelta(days=days),
        )


FINDERS = {"outputs": _outputs, "project": _projects, "user": _users}


def expiring(now: datetime) -> list[Expiring]:
    """Everything the policy lets go within the warning time, by kind."""
    found = []
    for kind in KINDS:
        days = _days(kind)
        if days > 0:
            found.extend(FINDERS[kind](now, days))
    return found


# --- Deleting ---------------------------------------------------------------------


def _remove_outputs(analysis: Analysis, now: datetime) -> None:
    safe_open.clear_folder(output_dir(analysis))
    analysis.outputs_removed_at = now
    analysis.output_bytes = stored_bytes(analysis)
    db.session.commit()


def _remove_user(user: User) -> None:
    """An account with all it owns: its projects, and its runs in projects
    shared with it (their folders are in those projects)."""
    elsewhere = db.session.scalars(
        sa.select(Analysis)
        .join(Project, Project.id == Analysis.project_id)
        .where(Analysis.owner_id == user.id, Project.owner_id != user.id)
    ).all()
    for analysis in elsewhere:
        delete_analysis(analysis)
    for project in list(user.projects):
        delete_project(project)
    db.session.delete(user)
    db.session.commit()


def _delete(item: Expiring, now: datetime) -> None:
    model = {"outputs": Analysis, "project": Project, "user": User}[item.kind]
    target = db.session.get(model, item.target_id)
    if target is None:  # went with something deleted before it in this run
        return
    if item.kind == "outputs":
        _remove_outputs(target, now)
    elif item.kind == "project":
        delete_project(target)
    else:
        _remove_user(target)


def _warning_mail(user: User, items: list[Expiring]):
    app_name = current_app.config["APP_NAME"]
    lines = [
        f"- {item.label}: on {item.due:%d %B %Y}.\n  To keep it, {item.keep_hint}"
        for item in items
    ]
    return outbox.queue_mail(
        user.email,
        f"{app_name} will delete some of your data on "
        f"{min(item.due for item in items):%d %B %Y}",
        f"Hello {user.full_name},\n\n"
        f"Under this site's retention policy, {app_name} will delete:\n\n"
        + "\n".join(lines)
        + "\n\nNothing else of yours is affected. If you still need any of it, "
        "keep it as said above, or download it before then.\n",
    )


def _snapshots(now: datetime, dry_run: bool) -> list[str]:
    """Failed runs' snapshots older than RETENTION_FAILED_SNAPSHOT_DAYS."""
    days = current_app.config["RETENTION_FAILED_SNAPSHOT_DAYS"]
    root = snapshots_dir()
    if days <= 0 or not root.is_dir():
        return []
    cutoff = (now - timedelta(days=days)).timestamp()
    removed = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if folder.is_dir() and not folder.is_symlink():
            if folder.stat().st_mtime <= cutoff:
                removed.append(folder.name)
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
                    log.warning("Retention: removed failed run snapshot %s", folder)
    return removed


def purge(now: datetime, dry_run: bool = False) -> Report:
    """Apply the policy once, as of ``now``: warn, delete what is due and was
    warned about, drop stale warnings, remove old snapshots."""
    report = Report()
    warning = _warning_days()
    notices = {
        (n.kind, n.target_id): n
        for n in db.session.scalars(
            sa.select(RetentionNotice).options(sa.orm.joinedload(RetentionNotice.mail))
        )
    }
    found = expiring(now)
    current = {(item.kind, item.target_id) for item in found}
    for key, notice in notices.items():
        if key not in current:  # kept, used or gone since its warning
            report.dropped += 1
            if not dry_run:
                db.session.delete(notice)
    if not dry_run:
        db.session.commit()
    to_warn: dict[int, list[Expiring]] = defaultdict(list)
    for item in found:
        notice = notices.get((item.kind, item.target_id))
        if notice is None:
            item.due = max(item.due, now + warning)
            report.warned.append(item)
            to_warn[item.user.id].append(item)
            continue
        item.due = notice.due_at
        sent = notice.mail.sent_at if notice.mail is not None else None
        if notice.due_at > now:
            continue  # warned, not yet due
        if sent is None or sent + warning > now:
            report.waiting.append(item)
            continue
        report.deleted.append(item)
        if not dry_run:
            # Read first: deleting an account deletes its notices with it.
            notice_id, due, email = notice.id, notice.due_at, item.user.email
            _delete(item, now)
            db.session.execute(
                sa.delete(RetentionNotice).where(RetentionNotice.id == notice_id)
            )
            audit.record(
                "retention.deleted",
                f"{item.kind} {item.target_id} of {email}",
                f"{item.label}; warned {sent:%Y-%m-%d}",
            )
            db.session.commit()
            log.warning(
                "Retention: deleted %s of %s (warned %s, due %s)",
                item.label,
                email,
                f"{sent:%Y-%m-%d}",
                f"{due:%Y-%m-%d}",
            )
    if not dry_run:
        mails = []
        for items in to_warn.values():
            mail = _warning_mail(items[0].user, items)
            mails.append(mail)
            db.session.flush()
            for item in items:
                db.session.add(
                    RetentionNotice(
                        kind=item.kind,
                        target_id=item.target_id,
                        user_id=item.user.id,
                        due_at=item.due,
                        mail_id=mail.id,
                    )
                )
                log.info(
                    "Retention: warned %s that %s goes on %s",
                    item.user.email,
                    item.label,
                    f"{item.due:%Y-%m-%d}",
                )
        outbox.commit_and_send(mails)
    report.snapshots = _snapshots(now, dry_run)
    report.guests = _expire_guests(now, dry_run)
    return report


def _expire_guests(now: datetime, dry_run: bool) -> list[str]:
    """Guest accounts whose time is over, with all they made (no mail: they have
    no address, and every page told them when)."""
    removed = []
    for guest in guests.expired(now):
        removed.append(guest.email)
        if not dry_run:
            _remove_user(guest)
            log.warning(
                "Retention: removed guest account %s, its time over", guest.email
            )
    return removed


def policy_lines() -> list[str]:
    """The site's policy in words (none when nothing is ever deleted)."""
    config = current_app.config
    lines = []
    if config["RETENTION_OUTPUT_DAYS"]:
        lines.append(
            f"Outputs of analyses that ended {config['RETENTION_OUTPUT_DAYS']} days "
            "ago (their page, log and parameters stay)."
        )
    if config["RETENTION_PROJECT_DAYS"]:
        lines.append(
            f"Projects with no upload, change or run for "
            f"{config['RETENTION_PROJECT_DAYS']} days."
        )
    if config["RETENTION_USER_DAYS"]:
        lines.append(
            f"Accounts, with their data, not used for {config['RETENTION_USER_DAYS']} "
            "days."
        )
    return lines


def notices_for(user: User) -> list[RetentionNotice]:
    """The warnings standing for ``user``'s things, soonest first."""
    return list(
        db.session.scalars(
            sa.select(RetentionNotice)
            .where(RetentionNotice.user_id == user.id)
            .order_by(RetentionNotice.due_at)
        )
    )


def notice_of(kind: str, target_id: int) -> RetentionNotice | None:
    return db.session.scalar(
        sa.select(RetentionNotice).where(RetentionNotice.about(kind, target_id))
    )
