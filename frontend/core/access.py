"""Who may do what with a project, and with what is in it: the one place access is
decided, for the pages, the API, TES and sharing alike.

A project's owner may do everything with it. A project shared with a user (by
their address) or with a group they belong to can be read by them (files,
analyses, results, downloads), and changed (uploads, folders, runs) when the share
is read-write. Deleting, renaming and sharing the project stay its owner's. An
analysis (or a batch) is seen by whoever may read its project, and by admins; it
is cancelled, deleted or shared by link by who ran it or the project's owner.

Every rule is a query, looked up at each request: a member removed loses access at
once. No access is a 404 (nothing is revealed); too little, a 403 saying what the
user may not do.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa
from flask import abort
from flask_security import current_user

from .extensions import db
from .models import Analysis, GroupMember, Project, ProjectShare, User


class Access(enum.IntEnum):
    """What a user may do with a project, each level including those below."""

    NONE = 0
    READ = 1
    WRITE = 2
    OWNER = 3


REFUSED = {
    Access.WRITE: "This project is shared with you read-only: you can look at it and "
    "download from it, but not change it or run analyses on it.",
    Access.OWNER: "Only the project's owner can do this.",
}


def address_of(user: User) -> str:
    """A user's address as shares and invitations keep it (lower case)."""
    return user.email.lower()


def joined_groups(user: User):
    """SQL: ids of the groups ``user`` has joined."""
    return sa.select(GroupMember.group_id).where(
        GroupMember.email == address_of(user), GroupMember.joined_at.is_not(None)
    )


def shares_reaching(user: User):
    """SQL: the shares that reach ``user``, by address or through a group."""
    return sa.select(ProjectShare).where(
        sa.or_(
            ProjectShare.email == address_of(user),
            ProjectShare.group_id.in_(joined_groups(user)),
        )
    )


def projects_where(user: User, need: Access = Access.READ):
    """SQL condition on Project: the projects ``user`` has at least ``need`` on."""
    mine = Project.owner_id == user.id
    if need >= Access.OWNER:
        return mine
    shares = shares_reaching(user)
    if need >= Access.WRITE:
        shares = shares.where(ProjectShare.can_write)
    reached = shares.with_only_columns(ProjectShare.project_id)
    return sa.or_(mine, Project.id.in_(reached))


def access_to(user: User, project: Project) -> Access:
    """What ``user`` may do with ``project``."""
    return roles_of(user, [project])[project.id]


def roles_of(user: User, projects: list[Project]) -> dict[int, Access]:
    """What ``user`` may do with each of ``projects`` (by id), in one query."""
    roles = {p.id: Access.OWNER for p in projects if p.owner_id == user.id}
    others = [p.id for p in projects if p.id not in roles]
    if others:
        reached = db.session.execute(
            shares_reaching(user)
            .where(ProjectShare.project_id.in_(others))
            .with_only_columns(ProjectShare.project_id, ProjectShare.can_write)
        )
        for project_id, can_write in reached:
            role = Access.WRITE if can_write else Access.READ
            roles[project_id] = max(role, roles.get(project_id, Access.NONE))
    return {p.id: roles.get(p.id, Access.NONE) for p in projects}


def require(project: Project, need: Access) -> Access:
    """The signed-in user's access to ``project``, which they may see; 403 with
    what they may not do when it is less than ``need``."""
    have = access_to(current_user, project)
    if have < need:
        abort(403, description=REFUSED[need])
    return have


def controls(user: User, analysis: Analysis) -> bool:
    """Whether ``user`` may cancel, delete or share ``analysis`` (or a batch): they
    submitted it, or the project is theirs."""
    return analysis.owner_id == user.id or analysis.project.owner_id == user.id


def get_readable_or_404(model, object_id: int, control: bool = False):
    """An object of ``model`` (an analysis or a batch: anything of a project) in
    a project the signed-in user may read (any, for admins), or 404; with
    ``control``, 403 unless they submitted it or own its project."""
    stmt = sa.select(model).where(model.id == object_id)
    if not current_user.has_role("admin"):
        stmt = stmt.join(Project, Project.id == model.project_id).where(
            projects_where(current_user, Access.READ)
        )
    found = db.first_or_404(stmt)
    if control:
        require_control(found)
    return found


def require_control(analysis: Analysis) -> None:
    if not (controls(current_user, analysis) or current_user.has_role("admin")):
        abort(
            403,
            description="Only who ran this analysis, or the project's owner, can "
            "do this.",
        )


def get_project_or_404(project_id: int, need: Access = Access.OWNER) -> Project:
    """A project the signed-in user may see (their own, or one shared with them),
    or 404; 403 when they see it but may not do what ``need`` says."""
    project = db.first_or_404(
        sa.select(Project).where(
            Project.id == project_id, projects_where(current_user, Access.READ)
        )
    )
    if need > Access.READ:
        require(project, need)
    return project


def projects_for(user: User, need: Access) -> list[Project]:
    """The projects ``user`` has ``need`` on, most recently changed first, without
    the totals ``list_projects`` adds up (for pickers)."""
    return list(
        db.session.scalars(
            sa.select(Project)
            .where(projects_where(user, need))
            .order_by(Project.updated_at.desc())
        )
    )
