"""Projects and their files: owner-scoped queries, limits, and every change on disk.

Layout: ``USER_DATA_DIR/<owner id>/<project id>/files/<path>`` holds the files, and
``…/<project id>/.staging/`` the uploads and extractions in progress (same
filesystem, so finished work moves into place with one rename). The database rows
(ProjectFile) mirror the tree; paths on disk are always taken from them.
"""

from __future__ import annotations

import logging
import os
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import sqlalchemy as sa
from flask import abort, current_app
from flask_security import current_user
from werkzeug.exceptions import ClientDisconnected
from zipstream import ZipStream

from backend import safe_open
from backend.archives import (
    ArchiveLimits,
    ArchiveRejected,
    archive_kind,
    archive_stem,
    extract,
)
from backend.files import (
    UnsafeName,
    clean_name,
    clean_relpath,
    inside,
    numbered_name,
)
from backend.safe_open import link_or_copy

from ..core import audit
from ..core.access import Access, projects_where
from ..core.extensions import db
from ..core.formatting import human_size
from ..core.layout import disk_path, files_dir, project_dir, staging_dir
from ..core.models import (
    Analysis,
    Project,
    ProjectFile,
    ResumableUpload,
    RetentionNotice,
    StorageReservation,
    User,
    utcnow,
)
from ..core.storage import (
    LimitExceeded,
    StorageError,
    quota_for,
    release_space,
    reserve_space,
    resize_reservation,
    storage_used,
)

CHUNK = 1024 * 1024
CLASH_POLICIES = ("ask", "replace", "keep", "skip")

log = logging.getLogger(__name__)


class NameClash(StorageError):
    status = 409


class FolderUnwritable(StorageError):
    """The server cannot write where the data lives (a deployment's mistake)."""

    status = 503


# --- Lookups ------------------------------------------------------------------------


def get_entry_or_404(project: Project, entry_id: int) -> ProjectFile:
    """A file or folder of ``project`` (already owner-checked), or 404."""
    return db.first_or_404(
        sa.select(ProjectFile).where(
            ProjectFile.id == entry_id, ProjectFile.project_id == project.id
        )
    )


def get_folder_or_404(project: Project, folder_id: int | None) -> ProjectFile | None:
    """A folder of ``project``, None for its top level, 404 for anything else."""
    if folder_id is None:
        return None
    entry = get_entry_or_404(project, folder_id)
    if not entry.is_dir:
        abort(404)
    return entry


def provenance_readable(entry: ProjectFile) -> bool:
    """Whether the analysis a file came from is still there for the signed-in
    user to open."""
    origin = (entry.provenance or {}).get("analysis")
    if not isinstance(origin, int):
        return False
    return (
        db.session.scalar(
            sa.select(Analysis.id)
            .join(Project, Project.id == Analysis.project_id)
            .where(Analysis.id == origin, projects_where(current_user, Access.READ))
        )
        is not None
    )


def open_entry(entry: ProjectFile) -> BinaryIO:
    """A project file, open for reading, reached without following a link (its
    bytes may have come from a run's outputs). 404 when it is not on disk."""
    try:
        return safe_open.open_file(files_dir(entry.project), entry.path)
    except FileNotFoundError:
        abort(404)


@dataclass
class ProjectSummary:
    project: Project
    file_count: int
    total_bytes: int
    last_change: object
    analyses: int = 0


def list_projects(
    user: User, only: int | None = None, need: Access = Access.OWNER
) -> list[ProjectSummary]:
    """The projects ``user`` has ``need`` on (by default their own; or only the one
    with id ``only``) with their file count, size, number of analyses and last
    change, most recently changed first, in one query."""
    from ..core.models import Analysis

    files = (
        sa.select(
            ProjectFile.project_id,
            sa.func.count(ProjectFile.id).label("count"),
            sa.func.sum(ProjectFile.size).label("size"),
        )
        .where(~ProjectFile.is_dir)
        .group_by(ProjectFile.project_id)
        .subquery()
    )
    runs = (
        sa.select(Analysis.project_id, sa.func.count(Analysis.id).label("count"))
        .group_by(Analysis.project_id)
        .subquery()
    )
    stmt = (
        sa.select(
            Project,
            sa.func.coalesce(files.c.count, 0),
            sa.func.coalesce(files.c.size, 0),
            sa.func.coalesce(runs.c.count, 0),
        )
        .outerjoin(files, files.c.project_id == Project.id)
        .outerjoin(runs, runs.c.project_id == Project.id)
        .where(projects_where(user, need))
        .order_by(Project.updated_at.desc())
    )
    if only is not None:
        stmt = stmt.where(Project.id == only)
    return [
        ProjectSummary(project, count, size, project.updated_at, analyses)
        for project, count, size, analyses in db.session.execute(stmt)
    ]


def project_totals(project: Project) -> tuple[int, int]:
    """(number of files, bytes) of one project."""
    count, size = db.session.execute(
        sa.select(
            sa.func.count(ProjectFile.id),
            sa.func.coalesce(sa.func.sum(ProjectFile.size), 0),
        ).where(ProjectFile.project_id == project.id, ~ProjectFile.is_dir)
    ).one()
    return count, size


SORT_COLUMNS = {
    "name": ProjectFile.name,
    "size": ProjectFile.size,
    "modified": ProjectFile.modified_at,
}


def folder_listing(
    project: Project, folder: ProjectFile | None, sort: str = "name", desc: bool = False
) -> list[ProjectFile]:
    """Entries directly inside ``folder``: folders first, then by ``sort``."""
    column = SORT_COLUMNS.get(sort, ProjectFile.name)
    order = column.desc() if desc else column.asc()
    return list(
        db.session.scalars(
            sa.select(ProjectFile)
            .where(
                ProjectFile.project_id == project.id,
                ProjectFile.parent == (folder.path if folder else ""),
            )
            .order_by(ProjectFile.is_dir.desc(), order, ProjectFile.name)
        )
    )


def all_entries(project: Project) -> list[ProjectFile]:
    """Every file and folder of ``project``, by path."""
    return list(
        db.session.scalars(
            sa.select(ProjectFile)
            .where(ProjectFile.project_id == project.id)
            .order_by(ProjectFile.path)
        )
    )


def parent_folder(project: Project, entry: ProjectFile) -> ProjectFile | None:
    """The folder holding ``entry``; None at the top of the project."""
    if not entry.parent:
        return None
    return entry_at(project, entry.parent)


def folder_sizes(project: Project, entries: list[ProjectFile]) -> dict[int, int]:
    """Bytes inside each folder among ``entries``, by folder id."""
    return {entry.id: _tree_size(project, entry) for entry in entries if entry.is_dir}


def breadcrumbs(project: Project, folder: ProjectFile | None) -> list[ProjectFile]:
    """The folders from the top of the project down to ``folder``."""
    if folder is None:
        return []
    parts = folder.path.split("/")
    paths = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    rows = db.session.scalars(
        sa.select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.path.in_(paths)
        )
    )
    by_path = {row.path: row for row in rows}
    return [by_path[path] for path in paths if path in by_path]


# --- Projects -----------------------------------------------------------------------


def _check_project_name(user: User, name: str, exclude: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise StorageError("Give the project a name.")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in name):
        raise StorageError(
            "A project name cannot contain line breaks, tabs or other control "
            "characters."
        )
    stmt = sa.select(Project.id).where(
        Project.owner_id == user.id, Project.name == name
    )
    if exclude is not None:
        stmt = stmt.where(Project.id != exclude)
    if db.session.scalar(stmt) is not None:
        raise NameClash(f"You already have a project called “{name}”.")
    return name


def create_project(user: User, name: str, description: str = "") -> Project:
    """Create a project and its folder."""
    project = Project(
        owner=user,
        name=_check_project_name(user, name),
        description=description.strip(),
    )
    db.session.add(project)
    db.session.flush()  # its id names its folder, made before the row is kept
    try:
        files_dir(project).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        db.session.rollback()
        log.error("Cannot make the folder of a new project: %s", exc)
        raise FolderUnwritable(
            "The project could not be created: the server cannot write its "
            "folder. The administrators have been told; nothing was kept."
        ) from exc
    db.session.commit()
    return project


def update_project(project: Project, name: str, description: str) -> None:
    """Rename a project or change its description."""
    project.name = _check_project_name(project.owner, name, exclude=project.id)
    project.description = description.strip()
    project.updated_at = utcnow()
    db.session.commit()


def keep_project(project: Project) -> None:
    """Count the project as in use today: the retention policy's time for it
    starts again, and a warning standing about it is withdrawn."""
    project.updated_at = utcnow()
    db.session.execute(
        sa.delete(RetentionNotice).where(RetentionNotice.about("project", project.id))
    )
    audit.record("project.kept", f"project {project.id}")
    db.session.commit()


def delete_project(project: Project) -> None:
    """Delete a project, its rows and its folder on disk."""
    folder = project_dir(project)
    # Its uploads in progress go with it, and so does the quota they held.
    held = sa.select(ResumableUpload.reservation_id).where(
        ResumableUpload.project_id == project.id
    )
    db.session.execute(
        sa.delete(StorageReservation).where(StorageReservation.id.in_(held))
    )
    audit.record(
        "project.deleted",
        f"project {project.id} {project.name!r} of {project.owner.email}",
    )
    db.session.delete(project)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)


# --- Files and folders -------------------------------------------------------------


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def entry_at(project: Project, path: str) -> ProjectFile | None:
    """The file or folder of ``project`` at ``path``, if there is one."""
    return db.session.scalar(
        sa.select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.path == path
        )
    )


def _names_in(project: Project, parent: str) -> set[str]:
    return set(
        db.session.scalars(
            sa.select(ProjectFile.name).where(
                ProjectFile.project_id == project.id, ProjectFile.parent == parent
            )
        )
    )


def _ensure_folders(project: Project, folder_path: str) -> None:
    """Create rows and directories for ``folder_path`` and its ancestors."""
    if not folder_path:
        return
    parts = folder_path.split("/")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        existing = entry_at(project, path)
        if existing is None:
            parent, name = _split(path)
            db.session.add(
                ProjectFile(
                    project=project, path=path, parent=parent, name=name, is_dir=True
                )
            )
        elif not existing.is_dir:
            raise NameClash(f"“{path}” is a file, so it cannot hold other files.")
    db.session.flush()
    inside(files_dir(project), folder_path).mkdir(parents=True, exist_ok=True)


def _file_count(project: Project) -> int:
    return project_totals(project)[0]


def _check_file_count(project: Project, new_files: int) -> None:
    limit = current_app.config["MAX_FILES_PER_PROJECT"]
    count = _file_count(project)
    if count + new_files > limit:
        raise LimitExceeded(
            f"A project can hold {limit:,} files; this one has {count:,} and this "
            f"would add {new_files:,} (over by {count + new_files - limit:,}). "
            "Nothing was stored."
        )


def make_folder(project: Project, parent: ProjectFile | None, name: str) -> ProjectFile:
    """Create an empty folder in ``parent``."""
    name = clean_name(name)
    path = f"{parent.path}/{name}" if parent else name
    if entry_at(project, path) is not None:
        raise NameClash(f"“{name}” already exists here.")
    _ensure_folders(project, path)
    project.updated_at = utcnow()
    db.session.commit()
    return entry_at(project, path)


@dataclass
class UploadResult:
    status: str  # stored, replaced, kept, skipped, extracted, refused
    path: str
    message: str


def _receive(stream: IO[bytes], target: Path, length: int) -> None:
    """Copy exactly ``length`` bytes of ``stream`` into the new file ``target``."""
    written = 0
    try:
        with open(target, "xb") as out:
            while written < length:
                chunk = stream.read(min(CHUNK, length - written))
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
    except ClientDisconnected:
        pass
    if written != length:
        raise StorageError(
            f"The upload stopped after {human_size(written)} of "
            f"{human_size(length)}; nothing was stored."
        )


@dataclass
class UploadPlan:
    """Where an upload goes, decided from its name and the clash policy before a
    byte is read (and again when a resumable upload completes)."""

    parent: str
    name: str
    kind: str | None  # the archive's kind when it is to be extracted
    existing: ProjectFile | None  # what it replaces
    freed: int  # bytes the replaced file or folder held
    skipped: UploadResult | None = None  # on_clash "skip" and the name exists


def plan_upload(
    project: Project,
    folder: ProjectFile | None,
    relpath: str,
    on_clash: str = "ask",
    extract_archive: bool = False,
) -> UploadPlan:
    """Check an upload's name, clash policy and file count; raise StorageError
    (or UnsafeName) with what is wrong."""
    if on_clash not in CLASH_POLICIES:
        raise StorageError(f"Unknown choice for existing names: {on_clash}.")
    relpath = clean_relpath(relpath)
    if folder is not None:
        relpath = f"{folder.path}/{relpath}"
    parent, name = _split(relpath)
    kind = archive_kind(name) if extract_archive else None
    target_name = archive_stem(name) if kind else name
    target_path = f"{parent}/{target_name}" if parent else target_name

    existing = entry_at(project, target_path)
    freed = 0
    if existing is not None:
        if on_clash == "ask":
            raise NameClash(f"“{target_path}” already exists.")
        if on_clash == "skip":
            skipped = UploadResult("skipped", target_path, "Skipped: the name exists.")
            return UploadPlan(parent, target_name, kind, existing, 0, skipped)
        if on_clash == "keep":
            target_name = numbered_name(target_name, _names_in(project, parent))
            existing = None
        elif existing.is_dir != bool(kind):
            what = "a folder" if existing.is_dir else "a file"
            raise NameClash(
                f"“{target_path}” is {what}; it cannot be replaced by this."
            )
        else:
            freed = _tree_size(project, existing)
    _check_file_count(project, 0 if kind else 1)
    return UploadPlan(parent, target_name, kind, existing, freed)


def store_staged(
    project: Project, plan: UploadPlan, staged: Path, size: int, reservation: int
) -> UploadResult:
    """Put a fully received file (or what its archive holds) in place."""
    if plan.kind:
        return _extract_into(
            project,
            staged,
            plan.kind,
            plan.parent,
            plan.name,
            plan.existing,
            reservation,
        )
    return _place_file(project, staged, plan.parent, plan.name, plan.existing, size)


def upload(
    project: Project,
    folder: ProjectFile | None,
    relpath: str,
    stream: IO[bytes],
    length: int | None,
    on_clash: str = "ask",
    extract_archive: bool = False,
) -> UploadResult:
    """Store one uploaded file (or extract one archive) under ``folder``."""
    if length is None:
        raise StorageError("The upload has no Content-Length; nothing was stored.")
    plan = plan_upload(project, folder, relpath, on_clash, extract_archive)
    if plan.skipped:
        return plan.skipped
    # Set aside before a byte is read: parallel uploads cannot pass the quota.
    reservation = reserve_space(project.owner, max(length - plan.freed, 0))
    staged = staging_dir(project) / uuid.uuid4().hex
    try:
        _receive(stream, staged, length)
        return store_staged(project, plan, staged, length, reservation)
    finally:
        staged.unlink(missing_ok=True)
        release_space(reservation)


def _joined(folder_path: str, relpath: str) -> str:
    return f"{folder_path}/{relpath}" if folder_path else relpath


def add_files(
    project: Project,
    folder_path: str,
    sources: list[tuple[str, int]],
    opener: Callable[[str], BinaryIO],
    on_clash: str,
    provenance: dict,
    origin: Callable[[str], str] | None = None,
) -> list[UploadResult]:
    """Put files from elsewhere on this site (an analysis' outputs: ``sources``
    are their paths under ``folder_path`` and their sizes as listed; ``opener``
    opens one, safely) into ``project``, each planned and placed like an upload,
    with its ``provenance`` (and where it was, as ``output``: its path, or what
    ``origin`` says of it). All or nothing:
    every name, the file count and the quota are checked for the whole set before
    one is placed. The bytes of the very file opened are linked or cloned where
    the storage allows, else copied."""
    plans = [
        (plan_upload(project, None, _joined(folder_path, relpath), on_clash), relpath)
        for relpath, _ in sources
    ]
    sizes = dict(sources)
    placing = [(plan, relpath) for plan, relpath in plans if not plan.skipped]
    targets = [f"{plan.parent}/{plan.name}" for plan, _ in placing]
    twice = next((t for t in targets if targets.count(t) > 1), None)
    if twice:  # "keep" numbered one as another is already called
        raise NameClash(f"“{twice}” would be written twice; choose another folder.")
    _check_file_count(project, sum(plan.existing is None for plan, _ in placing))
    needed = sum(max(sizes[relpath] - plan.freed, 0) for plan, relpath in placing)
    reservation = reserve_space(project.owner, needed)
    results = [plan.skipped for plan, _ in plans if plan.skipped]
    try:
        for plan, relpath in placing:
            staged = staging_dir(project) / uuid.uuid4().hex
            try:
                with opener(relpath) as source:
                    link_or_copy(source, staged)
                    # What was placed, should the file have changed since listed.
                    size = os.fstat(source.fileno()).st_size
                results.append(
                    _place_file(
                        project,
                        staged,
                        plan.parent,
                        plan.name,
                        plan.existing,
                        size,
                        {**provenance, "output": (origin or str)(relpath)},
                    )
                )
            finally:
                staged.unlink(missing_ok=True)
    finally:
        release_space(reservation)
    return results


def _tree_size(project: Project, entry: ProjectFile) -> int:
    if not entry.is_dir:
        return entry.size
    return db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(ProjectFile.size), 0)).where(
            ProjectFile.project_id == project.id,
            ProjectFile.path.startswith(entry.path + "/", autoescape=True),
        )
    )


def _place_file(
    project, staged, parent, name, existing, size, provenance=None
) -> UploadResult:
    path = f"{parent}/{name}" if parent else name
    _ensure_folders(project, parent)
    now = utcnow()
    if existing is not None:
        existing.size, existing.modified_at = size, now
        existing.provenance = provenance
        status = "replaced"
    else:
        db.session.add(
            ProjectFile(
                project=project,
                path=path,
                parent=parent,
                name=name,
                size=size,
                modified_at=now,
                provenance=provenance,
            )
        )
        status = "stored"
    project.updated_at = now
    db.session.flush()
    os.replace(staged, inside(files_dir(project), path))
    db.session.commit()
    verb = {"stored": "Stored", "replaced": "Replaced"}[status]
    return UploadResult(status, path, f"{verb} {path} ({human_size(size)}).")


def _extract_into(project, archive, kind, parent, name, existing, reservation):
    config = current_app.config
    owner = project.owner
    # What replacing frees (the folder this archive replaces) is room too.
    freed = _tree_size(project, existing) if existing is not None else 0
    room = quota_for(owner) - storage_used(owner, leaving_out=reservation) + freed
    limits = ArchiveLimits(
        max_entries=min(
            config["ARCHIVE_MAX_ENTRIES"],
            config["MAX_FILES_PER_PROJECT"] - _file_count(project),
        ),
        max_total_bytes=max(room, 0),
        max_ratio=config["ARCHIVE_MAX_RATIO"],
    )
    out = staging_dir(project) / (uuid.uuid4().hex + ".d")
    try:
        result = extract(archive, out, limits, kind)
        # The extracted bytes replace the archive's in the reservation.
        resize_reservation(owner, reservation, max(result.total_bytes - freed, 0))
    except ArchiveRejected as exc:
        shutil.rmtree(out, ignore_errors=True)
        raise StorageError(f"The archive was not extracted: {exc}.") from exc
    except LimitExceeded:
        shutil.rmtree(out, ignore_errors=True)
        raise
    path = f"{parent}/{name}" if parent else name
    try:
        _ensure_folders(project, parent)
        if existing is not None:
            _delete_rows(project, existing)
            db.session.flush()  # the old rows must go before new ones take the path
        db.session.add(
            ProjectFile(
                project=project, path=path, parent=parent, name=name, is_dir=True
            )
        )
        now = utcnow()
        rows = []
        for entry in result.entries:
            full = f"{path}/{entry.path}"
            entry_parent, entry_name = _split(full)
            rows.append(
                {
                    "project_id": project.id,
                    "path": full,
                    "parent": entry_parent,
                    "name": entry_name,
                    "is_dir": entry.is_dir,
                    "size": 0 if entry.is_dir else entry.size,
                    "modified_at": now,
                }
            )
        if rows:
            db.session.execute(sa.insert(ProjectFile), rows)
        project.updated_at = now
        db.session.flush()
        final = inside(files_dir(project), path)
        if existing is not None:
            trash = staging_dir(project) / (uuid.uuid4().hex + ".old")
            os.replace(final, trash)
            os.replace(out, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(out, final)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        shutil.rmtree(out, ignore_errors=True)
        raise
    files = sum(not e.is_dir for e in result.entries)
    dropped = (
        f"; {result.dropped} macOS metadata entries dropped" if result.dropped else ""
    )
    status = "replaced" if existing is not None else "extracted"
    return UploadResult(
        status,
        path,
        f"Extracted {files:,} files ({human_size(result.total_bytes)}) into "
        f"{path}/{dropped}.",
    )


def existing_paths(
    project: Project,
    folder: ProjectFile | None,
    paths: Iterable[str],
    extract_archives: bool = False,
) -> list[str]:
    """Which of ``paths`` (relative to ``folder``) already exist: for the clash
    question before an upload starts. Unsafe names are left out (the upload itself
    reports them)."""
    wanted = {}
    for raw in paths:
        try:
            rel = clean_relpath(raw)
        except UnsafeName:
            continue
        parent, name = _split(rel)
        if extract_archives and archive_kind(name):
            name = archive_stem(name)
            rel = f"{parent}/{name}" if parent else name
        wanted[f"{folder.path}/{rel}" if folder else rel] = raw
    if not wanted:
        return []
    found = db.session.scalars(
        sa.select(ProjectFile.path).where(
            ProjectFile.project_id == project.id, ProjectFile.path.in_(list(wanted))
        )
    )
    return sorted(wanted[path] for path in found)


def _delete_rows(project: Project, entry: ProjectFile) -> None:
    if entry.is_dir:
        db.session.execute(
            sa.delete(ProjectFile).where(
                ProjectFile.project_id == project.id,
                ProjectFile.path.startswith(entry.path + "/", autoescape=True),
            )
        )
    db.session.delete(entry)


def delete_entry(project: Project, entry: ProjectFile) -> None:
    """Delete a file, or a folder with everything in it."""
    target = disk_path(entry)
    _delete_rows(project, entry)
    project.updated_at = utcnow()
    db.session.commit()
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


def rename_entry(project: Project, entry: ProjectFile, new_name: str) -> None:
    """Rename a file or folder in place (the folder's contents follow)."""
    new_name = clean_name(new_name)
    if new_name == entry.name:
        return
    new_path = f"{entry.parent}/{new_name}" if entry.parent else new_name
    if entry_at(project, new_path) is not None:
        raise NameClash(f"“{new_name}” already exists here.")
    old_path, source = entry.path, disk_path(entry)
    if entry.is_dir:
        prefix = old_path + "/"
        children = db.session.scalars(
            sa.select(ProjectFile).where(
                ProjectFile.project_id == project.id,
                ProjectFile.path.startswith(prefix, autoescape=True),
            )
        )
        for child in children:
            child.path = new_path + "/" + child.path[len(prefix) :]
            child.parent = _split(child.path)[0]
    entry.path, entry.name = new_path, new_name
    entry.modified_at = project.updated_at = utcnow()
    db.session.flush()
    os.replace(source, inside(files_dir(project), new_path))
    try:
        db.session.commit()
    except BaseException:
        os.replace(inside(files_dir(project), new_path), source)
        raise


def files_under(project: Project, folder: ProjectFile | None) -> list[ProjectFile]:
    """Every entry of ``project`` inside ``folder`` (the whole project for None)."""
    stmt = sa.select(ProjectFile).where(ProjectFile.project_id == project.id)
    if folder is not None:
        stmt = stmt.where(
            ProjectFile.path.startswith(folder.path + "/", autoescape=True)
        )
    return list(db.session.scalars(stmt.order_by(ProjectFile.path)))


def zip_of(project: Project, folder: ProjectFile | None) -> ZipStream:
    """A zip of ``folder`` (or the whole project), produced while it is sent.

    Entries are stored uncompressed, so the size is known before the first byte
    and the browser can show a progress bar.
    """
    stream = ZipStream(sized=True)
    base = folder.path + "/" if folder else ""
    for entry in files_under(project, folder):
        arcname = entry.path[len(base) :]
        if entry.is_dir:
            stream.mkdir(arcname)
        else:
            stream.add_path(str(disk_path(entry)), arcname, recurse=False)
    return stream
