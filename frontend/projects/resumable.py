"""Resumable uploads (the tus 1.0 protocol's core, with its creation, termination
and checksum extensions): a file sent in pieces, over as many requests as it
takes, which survives a dropped connection.

- ``create`` checks the name, the clash policy and the file count exactly as a
  one-request upload does (``services.plan_upload``), and sets the whole length
  aside in the owner's quota at once;
- ``append`` writes one piece at the offset the server has (a piece cut short by
  a dropped connection keeps what arrived), checks its digest when the client
  sends one (a mismatch keeps nothing of the piece), and when the last byte is in,
  plans again (the project may have changed meanwhile) and stores the file with
  ``services.store_staged``;
- ``terminate`` removes an upload; ``expire`` removes those untouched for
  RESUMABLE_UPLOAD_HOURS (a periodic task).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import uuid
from datetime import timedelta
from typing import IO

import sqlalchemy as sa
from flask import abort, current_app
from werkzeug.exceptions import ClientDisconnected

from ..core.access import Access, access_to
from ..core.extensions import db
from ..core.formatting import human_size
from ..core.layout import upload_path
from ..core.models import Project, ResumableUpload, StorageReservation, User, utcnow
from ..core.storage import LimitExceeded, StorageError, release_space, reserve_space
from . import services as svc

log = logging.getLogger(__name__)

CHECKSUMS = ("sha1", "sha256", "md5")


class ChecksumMismatch(StorageError):
    status = 460  # tus' own status for a piece whose digest differs


class OffsetConflict(StorageError):
    status = 409


class Busy(StorageError):
    status = 409  # another request is writing this upload


class Gone(StorageError):
    status = 404  # finished, given up, or its project is no longer the user's to change


GONE = (
    "There is no such upload (it was finished, removed, or you may no longer "
    "change its project)."
)


def get_own_or_404(user: User, upload_id: str) -> ResumableUpload:
    """The user's upload ``upload_id``, while they may still change its project:
    one whose project they can no longer change (a share removed, made
    read-only) is deleted with what it received, and is a 404 from then on."""
    upload = db.first_or_404(
        sa.select(ResumableUpload).where(
            ResumableUpload.id == upload_id, ResumableUpload.user_id == user.id
        )
    )
    if not may_write(upload):
        _forget(upload)
        abort(404, description=GONE)
    return upload


def may_write(upload: ResumableUpload) -> bool:
    """Whether the upload's user may still change its project."""
    return access_to(upload.user, upload.project) >= Access.WRITE


def create(
    user: User,
    project: Project,
    path: str,
    length: int,
    on_clash: str = "ask",
    extract: bool = False,
) -> ResumableUpload:
    """Start an upload of ``length`` bytes to ``path`` in ``project`` (owned by
    ``user``); raises StorageError (or UnsafeName) saying why not."""
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    if length < 0:
        raise StorageError("Upload-Length must be a number of bytes.")
    if length > limit:
        raise LimitExceeded(
            f"The file is {human_size(length)}; uploads may be {human_size(limit)} "
            "at most. Nothing was stored."
        )
    plan = svc.plan_upload(project, None, path, on_clash, extract)
    if plan.skipped:
        raise svc.NameClash(plan.skipped.message)
    # The file will be the project's: its owner's quota holds it.
    reservation = reserve_space(project.owner, max(length - plan.freed, 0))
    upload = ResumableUpload(
        id=uuid.uuid4().hex,
        user_id=user.id,
        project_id=project.id,
        path=path,
        on_clash=on_clash,
        extract=extract,
        length=length,
        reservation_id=reservation,
    )
    db.session.add(upload)
    db.session.flush()
    upload_path(upload).touch()
    db.session.commit()
    return upload


def current_offset(upload: ResumableUpload) -> int:
    """The bytes the server has: the row's count, or fewer if the file holds fewer
    (a process that died between writing and recording)."""
    try:
        on_disk = upload_path(upload).stat().st_size
    except FileNotFoundError:
        on_disk = 0
    if on_disk < upload.offset:
        upload.offset = on_disk
        db.session.commit()
    return upload.offset


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: sha1 <base64>`` → ("sha1", digest); None when absent."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise StorageError(
            f"Unknown checksum algorithm {algorithm!r}: use one of "
            + ", ".join(CHECKSUMS)
            + "."
        )
    try:
        return algorithm, base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise StorageError("Upload-Checksum's digest is not base64.") from exc


def append(
    upload: ResumableUpload,
    stream: IO[bytes],
    offset: int,
    length: int | None,
    checksum: tuple[str, bytes] | None = None,
) -> svc.UploadResult | None:
    """Write a piece sent from ``offset``; returns the stored file's result once
    the last byte is in, else None. The new offset is ``upload.offset``.

    One request writes an upload at a time: the staging file is locked while it
    is written (a second request gets Busy, 409), and the row is read again under
    the lock, so a piece never lands on an upload another request finished."""
    try:
        staged = open(upload_path(upload), "r+b")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise Gone(GONE) from None
    with staged:
        try:
            fcntl.flock(staged, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(
                "Another request is sending a piece of this upload: send the next "
                "one once it has ended (HEAD tells the offset)."
            ) from None
        current = db.session.execute(
            sa.select(ResumableUpload)
            .where(ResumableUpload.id == upload.id)
            .execution_options(populate_existing=True)
        ).scalar()
        if current is None:
            raise Gone(GONE)
        return _append_locked(current, staged, stream, offset, length, checksum)


def _append_locked(
    upload: ResumableUpload,
    out: IO[bytes],
    stream: IO[bytes],
    offset: int,
    length: int | None,
    checksum: tuple[str, bytes] | None,
) -> svc.UploadResult | None:
    have = current_offset(upload)
    if offset != have:
        raise OffsetConflict(
            f"The server has {have:,} bytes of this upload, not {offset:,}: "
            "send from there."
        )
    if length is not None and have + length > upload.length:
        raise StorageError(
            f"This piece would take the upload past its {upload.length:,} bytes."
        )
    digest = hashlib.new(checksum[0]) if checksum else None
    written = 0
    room = upload.length - have
    out.seek(have)
    try:
        while written < room:
            chunk = stream.read(min(svc.CHUNK, room - written))
            if not chunk:
                break
            out.write(chunk)
            written += len(chunk)
            if digest is not None:
                digest.update(chunk)
    except ClientDisconnected:
        pass  # what arrived is kept (unless a digest was asked for)
    out.flush()
    if digest is not None and digest.digest() != checksum[1]:
        out.truncate(have)
        raise ChecksumMismatch(
            "The piece's checksum does not match what arrived; it was not kept."
        )
    upload.offset = have + written
    upload.touched_at = utcnow()
    if upload.reservation_id is not None:  # still held while pieces come
        db.session.execute(
            sa.update(StorageReservation)
            .where(StorageReservation.id == upload.reservation_id)
            .values(created_at=utcnow())
        )
    db.session.commit()
    if upload.offset < upload.length:
        return None
    return _complete(upload)


def _complete(upload: ResumableUpload) -> svc.UploadResult:
    """Store the whole file where it was asked (checked again: the project may
    have changed), and forget the upload, stored or not."""
    project, staged = upload.project, upload_path(upload)
    try:
        # The share may have gone while the pieces came: checked at the end too.
        if not may_write(upload):
            raise Gone(GONE)
        plan = svc.plan_upload(
            project, None, upload.path, upload.on_clash, upload.extract
        )
        if plan.skipped:
            return plan.skipped
        if upload.reservation_id is None:  # its reservation was removed meanwhile
            upload.reservation_id = reserve_space(
                project.owner, max(upload.length - plan.freed, 0)
            )
        return svc.store_staged(
            project, plan, staged, upload.length, upload.reservation_id
        )
    finally:
        _forget(upload)


def _forget(upload: ResumableUpload) -> None:
    db.session.rollback()
    upload_path(upload).unlink(missing_ok=True)
    reservation = upload.reservation_id
    db.session.delete(upload)
    db.session.commit()
    if reservation is not None:
        release_space(reservation)


def terminate(upload: ResumableUpload) -> None:
    """Remove an upload with what it received (the client gave up on it)."""
    _forget(upload)


def expire() -> int:
    """Remove the uploads untouched for RESUMABLE_UPLOAD_HOURS; returns how many."""
    hours = current_app.config["RESUMABLE_UPLOAD_HOURS"]
    stale = db.session.scalars(
        sa.select(ResumableUpload).where(
            ResumableUpload.touched_at < utcnow() - timedelta(hours=hours)
        )
    ).all()
    for upload in stale:
        log.info(
            "Removing the resumable upload %s to %r (project %s): nothing arrived "
            "for %s hours (%s of %s bytes had)",
            upload.id,
            upload.path,
            upload.project_id,
            hours,
            upload.offset,
            upload.length,
        )
        _forget(upload)
    return len(stale)
