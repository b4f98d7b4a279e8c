"""What a user's data takes and may take: the storage quota, what counts against
it, and space set aside for uploads in progress. A project's files and its
analyses' folders (members' runs included) count against the project's owner.
Checked by uploads, "Add to project" and the worker before a run (its output
room)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from backend import safe_open

from .extensions import db
from .formatting import human_size
from .layout import analysis_dir
from .models import Analysis, Project, ProjectFile, StorageReservation, User, utcnow


class StorageError(Exception):
    """A request we refuse, with a message for the user and an HTTP status."""

    status = 400


class LimitExceeded(StorageError):
    status = 413


def _usage_parts(user_id: int, leaving_out: int | None = None) -> dict:
    """SQL for the bytes a user takes, by kind: project files, analysis folders
    (outputs and logs), and space set aside for uploads in progress (but
    ``leaving_out``)."""
    total = sa.func.coalesce
    files = (
        sa.select(total(sa.func.sum(ProjectFile.size), 0))
        .join(Project)
        .where(Project.owner_id == user_id)
        .scalar_subquery()
    )
    # An analysis' folder is in its project's: it counts for the project's owner,
    # whoever of those it is shared with ran it.
    outputs = (
        sa.select(total(sa.func.sum(Analysis.output_bytes), 0))
        .join(Project, Project.id == Analysis.project_id)
        .where(Project.owner_id == user_id)
        .scalar_subquery()
    )
    since = utcnow() - timedelta(hours=current_app.config["RESERVATION_HOURS"])
    held = sa.select(total(sa.func.sum(StorageReservation.bytes), 0)).where(
        StorageReservation.user_id == user_id, StorageReservation.created_at > since
    )
    if leaving_out is not None:
        held = held.where(StorageReservation.id != leaving_out)
    return {"files": files, "outputs": outputs, "uploading": held.scalar_subquery()}


def _usage(user_id: int, leaving_out: int | None = None):
    """SQL for the bytes a user takes in all (``_usage_parts`` summed)."""
    parts = _usage_parts(user_id, leaving_out)
    return parts["files"] + parts["outputs"] + parts["uploading"]


def storage_by_kind(user: User) -> dict[str, int]:
    """Bytes ``user`` takes as project files, analysis outputs (with their logs)
    and uploads in progress: what the quota counts, for the profile page."""
    parts = _usage_parts(user.id)
    row = db.session.execute(sa.select(*parts.values())).one()
    return dict(zip(parts, (int(value) for value in row), strict=True))


def storage_used(user: User, leaving_out: int | None = None) -> int:
    """Bytes ``user`` takes now, uploads in progress included."""
    return db.session.scalar(sa.select(_usage(user.id, leaving_out)))


def quota_for(user: User) -> int:
    if user.storage_quota is not None:
        return user.storage_quota
    return current_app.config["STORAGE_QUOTA_BYTES"]


def _over_quota(user: User, amount: int, leaving_out: int | None = None):
    quota, used = quota_for(user), storage_used(user, leaving_out)
    return LimitExceeded(
        f"This needs {human_size(amount)} but only "
        f"{human_size(max(quota - used, 0))} of your {human_size(quota)} storage "
        f"quota is left (over by {human_size(used + amount - quota)}). "
        "Nothing was stored."
    )


def _lock_owner(user: User) -> None:
    """Start a fresh transaction holding ``user``'s row: on PostgreSQL this orders
    reservations one user at a time; SQLite has one writer at a time anyway, and
    each reservation below is a single statement."""
    db.session.commit()
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())


def reserve_space(user: User, amount: int) -> int:
    """Set ``amount`` bytes aside for ``user`` if the quota has room for them, in
    one atomic step; returns the reservation's id. Raises LimitExceeded."""
    _lock_owner(user)
    fits = _usage(user.id) + amount <= quota_for(user)
    values = sa.select(
        sa.literal(user.id), sa.literal(amount, sa.BigInteger), sa.literal(utcnow())
    ).where(fits)
    reservation = db.session.execute(
        sa.insert(StorageReservation)
        .from_select(["user_id", "bytes", "created_at"], values)
        .returning(StorageReservation.id)
    ).scalar()
    db.session.commit()
    if reservation is None:
        raise _over_quota(user, amount)
    return reservation


def resize_reservation(user: User, reservation: int, amount: int) -> None:
    """Make a reservation ``amount`` bytes if the quota has room (atomically)."""
    _lock_owner(user)
    changed = db.session.execute(
        sa.update(StorageReservation)
        .where(
            StorageReservation.id == reservation,
            _usage(user.id, leaving_out=reservation) + amount <= quota_for(user),
        )
        .values(bytes=amount)
    ).rowcount
    db.session.commit()
    if not changed:
        raise _over_quota(user, amount, leaving_out=reservation)


def release_space(reservation: int) -> None:
    """Give a reservation back (its upload ended, stored or not)."""
    db.session.rollback()
    db.session.execute(
        sa.delete(StorageReservation).where(StorageReservation.id == reservation)
    )
    db.session.commit()


def stored_bytes(analysis: Analysis) -> int:
    """What the analysis' folder holds (outputs, log, a task's files), counted
    without following a link."""
    return safe_open.tree_size(analysis_dir(analysis))


def output_room(analysis: Analysis) -> int:
    """Bytes the project owner's quota leaves for this analysis' folder (what it
    already holds, from an earlier attempt, is its own). The folder is in the
    project's, so a member of a shared project runs on the owner's quota."""
    owner = analysis.project.owner
    return quota_for(owner) - storage_used(owner) + analysis.output_bytes
