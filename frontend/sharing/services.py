"""Who may do what with a project, and the groups, shares and links that decide it.

A project's owner may do everything with it. A project shared with a user (by
their address) or with a group they belong to can be read by them (files,
analyses, results, downloads), and changed (uploads, folders, runs) when the share
is read-write. Deleting, renaming and sharing the project stay its owner's. An
analysis is seen by whoever may read its project; it is cancelled, deleted or
shared by link by who ran it or the project's owner. A share link shows one
analysis, read-only, to anyone who has it until it is revoked or expires.

Every rule is a query: access is looked up at each request, so a member removed
or a link revoked loses access at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import abort, current_app
from flask_security import current_user

from ..core import audit, outbox
from ..core.access import (
    Access,
    access_to,
    address_of,
    projects_where,
    shares_reaching,
)
from ..core.extensions import db
from ..core.links import external_url
from ..core.models import (
    Analysis,
    Group,
    GroupMember,
    Project,
    ProjectShare,
    ShareLink,
    User,
    utcnow,
)
from ..core.security import security

LINK_PREFIX = "lqs_"  # a share link's secret starts so, to tell it from a token


class SharingError(Exception):
    """A request we refuse, with a message for the user."""


# --- Groups ---------------------------------------------------------------------


def _check_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise SharingError("Give the group a name.")
    if len(name) > 120:
        raise SharingError("A group's name is at most 120 characters.")
    return name


def normal_email(address: str) -> str:
    """An address as accounts keep it, in lower case; SharingError if it is not
    one."""
    try:
        return security._mail_util.validate(address.strip()).lower()
    except ValueError as exc:
        raise SharingError(f"“{address}” is not an email address: {exc}") from None


def create_group(owner: User, name: str, description: str = "") -> Group:
    """A new group with its owner as its first member."""
    group = Group(owner=owner, name=_check_name(name), description=description or "")
    stamp = utcnow()
    group.members.append(
        GroupMember(
            email=address_of(owner), invited_by=owner, invited_at=stamp, joined_at=stamp
        )
    )
    db.session.add(group)
    db.session.flush()
    audit.record("group.created", f"group {group.id}", group.name)
    db.session.commit()
    return group


def get_group_or_404(group_id: int, manage: bool = False) -> Group:
    """A group the signed-in user belongs to or is invited to (with ``manage``:
    one they own), or 404."""
    stmt = sa.select(Group).where(Group.id == group_id)
    if manage:
        stmt = stmt.where(Group.owner_id == current_user.id)
    else:
        stmt = stmt.where(
            Group.id.in_(
                sa.select(GroupMember.group_id).where(
                    GroupMember.email == address_of(current_user)
                )
            )
        )
    return db.first_or_404(stmt)


def groups_of(user: User) -> list[tuple[Group, GroupMember]]:
    """The groups ``user`` belongs to or is invited to, with their membership,
    invitations first."""
    rows = db.session.execute(
        sa.select(Group, GroupMember)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.email == address_of(user))
        .options(sa.orm.joinedload(Group.owner))
        .order_by(GroupMember.joined_at.is_not(None), Group.name)
    ).all()
    return [(group, member) for group, member in rows]


def owned_groups(user: User) -> list[Group]:
    return list(
        db.session.scalars(
            sa.select(Group).where(Group.owner_id == user.id).order_by(Group.name)
        )
    )


def invite(group: Group, inviter: User, address: str) -> GroupMember:
    """Invite an address to ``group`` and mail it; the same answer whether or not
    it has an account yet (its owner joins once they sign in with it)."""
    email = normal_email(address)
    if any(member.email == email for member in group.members):
        raise SharingError(f"{email} is already invited to {group.name}.")
    member = GroupMember(email=email, invited_by=inviter)
    group.members.append(member)
    audit.record("group.invited", f"group {group.id}", email)
    mail = outbox.queue_mail(
        email,
        f"{inviter.full_name} invites you to the group {group.name} on "
        f"{current_app.config['APP_NAME']}",
        f"{inviter.full_name} ({inviter.email}) invites you to the group "
        f"“{group.name}” on {current_app.config['APP_NAME']}, where its members "
        "share projects and results.\n\n"
        f"Sign in (or register with this address) and accept at:\n"
        f"{external_url('sharing.groups')}\n",
    )
    outbox.commit_and_send([mail])
    return member


def get_member_or_404(group: Group, member_id: int) -> GroupMember:
    """A member or invitation of ``group`` (already checked), or 404."""
    return db.first_or_404(
        sa.select(GroupMember).where(
            GroupMember.id == member_id, GroupMember.group_id == group.id
        )
    )


def projects_shared_with_group(group: Group) -> list[ProjectShare]:
    """The shares of projects with ``group``, their projects and owners loaded."""
    return list(
        db.session.scalars(
            sa.select(ProjectShare)
            .where(ProjectShare.group_id == group.id)
            .options(sa.orm.joinedload(ProjectShare.project).joinedload(Project.owner))
            .order_by(ProjectShare.created_at)
        )
    )


def get_invitation_or_404(group_id: int) -> GroupMember:
    """The signed-in user's membership or invitation to a group, or 404."""
    return db.first_or_404(
        sa.select(GroupMember).where(
            GroupMember.group_id == group_id,
            GroupMember.email == address_of(current_user),
        )
    )


def accept(member: GroupMember) -> None:
    if member.joined_at is None:
        member.joined_at = utcnow()
        audit.record("group.joined", f"group {member.group_id}", member.email)
        db.session.commit()


def remove_member(group: Group, member: GroupMember) -> None:
    """Take a member (or invitation) out of a group: they lose what the group
    shares with them at once. The owner stays."""
    if member.email == address_of(group.owner):
        raise SharingError("The group's owner stays in it; delete the group instead.")
    db.session.delete(member)
    audit.record("group.member_removed", f"group {group.id}", member.email)
    db.session.commit()


def delete_group(group: Group) -> None:
    """Delete a group: its members lose what it shared with them at once."""
    audit.record("group.deleted", f"group {group.id}", group.name)
    db.session.delete(group)
    db.session.commit()


# --- Project shares ---------------------------------------------------------------


def shares_of(project: Project) -> list[ProjectShare]:
    return list(
        db.session.scalars(
            sa.select(ProjectShare)
            .where(ProjectShare.project_id == project.id)
            .options(sa.orm.joinedload(ProjectShare.group))
            .order_by(ProjectShare.created_at)
        )
    )


def get_share_or_404(project: Project, share_id: int) -> ProjectShare:
    return db.first_or_404(
        sa.select(ProjectShare).where(
            ProjectShare.id == share_id, ProjectShare.project_id == project.id
        )
    )


def share_project(
    project: Project,
    by: User,
    *,
    group: Group | None = None,
    address: str = "",
    can_write: bool = False,
) -> ProjectShare:
    """Share ``project`` with one of ``by``'s groups or with an address (mailed,
    whether or not it has an account yet); sharing again with the same changes
    the access."""
    if group is not None:
        existing = db.session.scalar(
            sa.select(ProjectShare).where(
                ProjectShare.project_id == project.id, ProjectShare.group_id == group.id
            )
        )
        whom, email = f"the group {group.name}", None
    else:
        email = normal_email(address)
        if email == address_of(project.owner):
            raise SharingError("The project is yours already.")
        existing = db.session.scalar(
            sa.select(ProjectShare).where(
                ProjectShare.project_id == project.id, ProjectShare.email == email
            )
        )
        whom = email
    share = existing or ProjectShare(
        project=project, group=group, email=email, created_by_id=by.id
    )
    share.can_write = can_write
    db.session.add(share)
    audit.record("project.shared", f"project {project.id}", f"{whom}, {share.access}")
    mails = []
    if existing is None and email is not None:
        mails.append(
            outbox.queue_mail(
                email,
                f"{by.full_name} shared the project {project.name} with you",
                f"{by.full_name} ({by.email}) shared the project “{project.name}” "
                f"with you on {current_app.config['APP_NAME']} ({share.access}).\n\n"
                "Sign in (or register with this address) to see it under "
                f"“Shared with me”:\n{external_url('sharing.shared_with_me')}\n",
            )
        )
    outbox.commit_and_send(mails)
    return share


def unshare(share: ProjectShare) -> None:
    """Stop sharing: who it reached loses access at once."""
    audit.record(
        "project.unshared",
        f"project {share.project_id}",
        share.email or f"group {share.group_id}",
    )
    db.session.delete(share)
    db.session.commit()


@dataclass
class SharedProject:
    project: Project
    access: Access
    via: list[str]  # "you" and/or the groups it came through


def shared_with(user: User) -> list[SharedProject]:
    """Other users' projects that reach ``user``, with the access they give and
    how they came."""
    rows = db.session.execute(
        shares_reaching(user)
        .add_columns(Project)
        .join(Project, Project.id == ProjectShare.project_id)
        .where(Project.owner_id != user.id)
        .options(sa.orm.joinedload(ProjectShare.group))
        .order_by(Project.name)
    ).all()
    found: dict[int, SharedProject] = {}
    for share, project in rows:
        entry = found.setdefault(project.id, SharedProject(project, Access.READ, []))
        if share.can_write:
            entry.access = Access.WRITE
        entry.via.append(f"the group {share.group.name}" if share.group else "you")
    return list(found.values())


def shared_by(user: User) -> list[ProjectShare]:
    """Every share of ``user``'s projects."""
    return list(
        db.session.scalars(
            sa.select(ProjectShare)
            .join(Project, Project.id == ProjectShare.project_id)
            .where(Project.owner_id == user.id)
            .options(
                sa.orm.joinedload(ProjectShare.group),
                sa.orm.joinedload(ProjectShare.project),
            )
            .order_by(Project.name, ProjectShare.created_at)
        )
    )


# --- Share links ------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_link(analysis: Analysis, by: User, days: int | None) -> tuple[ShareLink, str]:
    """A new link to ``analysis``; returns it and its secret (shown once: only its
    digest is kept)."""
    limit = current_app.config["SHARE_LINK_MAX_DAYS"]
    if days is not None and not 1 <= days <= limit:
        raise SharingError(f"A link lasts from 1 to {limit} days, or until revoked.")
    secret = LINK_PREFIX + secrets.token_urlsafe(32)
    link = ShareLink(
        analysis=analysis,
        digest=_digest(secret),
        prefix=secret[:10],
        created_by=by,
        expires_at=utcnow() + timedelta(days=days) if days else None,
    )
    db.session.add(link)
    audit.record(
        "analysis.link_made",
        f"analysis {analysis.id}",
        f"{link.prefix}…, " + (f"{days} days" if days else "until revoked"),
    )
    db.session.commit()
    return link, secret


def links_of(analysis: Analysis) -> list[ShareLink]:
    return list(
        db.session.scalars(
            sa.select(ShareLink)
            .where(ShareLink.analysis_id == analysis.id)
            .order_by(ShareLink.created_at.desc())
        )
    )


def _links_for(user: User):
    """SQL condition on ShareLink (joined with its analysis and project): the
    links ``user`` sees and may revoke: every link to an analysis of their
    projects, whoever made it, and the links they made to analyses they may
    still read."""
    readable = sa.select(Project.id).where(projects_where(user, Access.READ))
    return sa.or_(
        Project.owner_id == user.id,
        sa.and_(
            ShareLink.created_by_id == user.id,
            Analysis.project_id.in_(readable),
        ),
    )


def links_for(user: User) -> list[ShareLink]:
    """The links ``user`` sees under "What I share", newest first."""
    return list(
        db.session.scalars(
            sa.select(ShareLink)
            .join(Analysis, Analysis.id == ShareLink.analysis_id)
            .join(Project, Project.id == Analysis.project_id)
            .where(_links_for(user))
            .options(
                sa.orm.contains_eager(ShareLink.analysis),
                sa.orm.joinedload(ShareLink.created_by),
            )
            .order_by(ShareLink.created_at.desc())
        )
    )


def get_own_link_or_404(link_id: int) -> ShareLink:
    """A link the signed-in user may revoke: to an analysis of their project, or
    theirs to an analysis they may still read."""
    return db.first_or_404(
        sa.select(ShareLink)
        .join(Analysis, Analysis.id == ShareLink.analysis_id)
        .join(Project, Project.id == Analysis.project_id)
        .where(ShareLink.id == link_id, _links_for(current_user))
    )


def maker_may_read(link: ShareLink) -> bool:
    """Whether the link's maker may still read its analysis: a link opens no more
    than its maker could (a member whose share was removed, or whose account was
    switched off, leaves links that open nothing)."""
    maker = link.created_by
    if maker is None or not maker.active:
        return False
    if maker.has_role("admin"):
        return True
    return access_to(maker, link.analysis.project) >= Access.READ


def link_works(link: ShareLink, now) -> str:
    """What the "Works" column says of a link."""
    if link.revoked_at:
        return "revoked"
    if link.expires_at and link.expires_at <= now:
        return "expired"
    if not maker_may_read(link):
        return f"no longer: {link.created_by.email} can no longer read this analysis"
    if link.expires_at:
        return f"until {link.expires_at:%d %b %Y}"
    return "until revoked"


def revoke_link(link: ShareLink) -> None:
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        audit.record(
            "analysis.link_revoked", f"analysis {link.analysis_id}", link.prefix
        )
        db.session.commit()


def analysis_by_link_or_404(secret: str) -> Analysis:
    """The analysis a usable link opens, or 404 (unknown, revoked or expired)."""
    stamp = utcnow()
    link = db.first_or_404(
        sa.select(ShareLink).where(
            ShareLink.digest == _digest(secret),
            ShareLink.revoked_at.is_(None),
            sa.or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > stamp),
        )
    )
    if not maker_may_read(link):
        abort(404)
    # Written at most once a minute: opening a page makes several requests.
    if link.last_used_at is None or stamp - link.last_used_at > timedelta(minutes=1):
        link.last_used_at = stamp
        db.session.commit()
    return link.analysis
