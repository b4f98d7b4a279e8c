"""The REST API for working together: groups and their invitations, a project's
shares, and read-only links to one analysis. Each call goes through the web's
own services (``sharing/services.py``), so the rules are the web's: a group is
seen by its members and invitees and managed by its owner, a project is shared
by its owner, a link is made by who ran the analysis or owns its project; for
anyone else the object answers 404 (403 where they may see but not do).
"""

from __future__ import annotations

from flask import url_for
from flask_login import current_user
from flask_smorest import abort

from ..analyses.services import get_analysis_or_404
from ..core.access import Access, get_project_or_404
from ..core.links import external_url
from ..core.models import Group, GroupMember, ProjectShare, ShareLink, utcnow
from ..sharing import services as sharing
from ..sharing.services import SharingError
from .auth import token_required
from .schemas import (
    GroupSchema,
    InviteSchema,
    LinkSchema,
    MemberSchema,
    NewGroupSchema,
    NewLinkSchema,
    NewShareSchema,
    ShareSchema,
)
from .views import blp


def _refuse(exc: SharingError):
    abort(422, message=str(exc))


# --- Groups --------------------------------------------------------------------------


def _group_dict(group: Group, mine: GroupMember) -> dict:
    if group.owner_id == current_user.id:
        role = "owner"
    else:
        role = "member" if mine.joined_at else "invited"
    members = [
        {"id": m.id, "email": m.email, "joined": m.joined_at is not None}
        for m in sorted(group.members, key=lambda m: m.email)
    ]
    return {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "owner": group.owner.email,
        "role": role,
        "members": members if mine.joined_at else [],
    }


def _owned_group(group_id: int, doing: str) -> Group:
    """A group of the caller's own: 404 for one they are not in, 403 for one
    they are in but do not own."""
    group = sharing.get_group_or_404(group_id)
    if group.owner_id != current_user.id:
        abort(403, message=f"Only the group's owner may {doing}.")
    return group


@blp.route("/groups", methods=["GET"])
@token_required()
@blp.response(200, GroupSchema(many=True))
def list_groups():
    """The groups you belong to or are invited to (invitations first), each with
    your role; members are listed once you have joined."""
    return [_group_dict(g, m) for g, m in sharing.groups_of(current_user)]


@blp.route("/groups", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewGroupSchema)
@blp.response(201, GroupSchema)
def create_group(data):
    """Create a group, with you as its owner and first member."""
    try:
        group = sharing.create_group(current_user, data["name"], data["description"])
    except SharingError as exc:
        _refuse(exc)
    location = url_for("api_v1.get_group", group_id=group.id)
    return _group_dict(group, group.members[0]), 201, {"Location": location}


@blp.route("/groups/<int:group_id>", methods=["GET"])
@token_required()
@blp.response(200, GroupSchema)
def get_group(group_id: int):
    """A group you belong to or are invited to."""
    group = sharing.get_group_or_404(group_id)
    return _group_dict(group, sharing.get_invitation_or_404(group_id))


@blp.route("/groups/<int:group_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def delete_group(group_id: int):
    """Delete a group you own: its members lose what it shared with them."""
    sharing.delete_group(_owned_group(group_id, "delete it"))


@blp.route("/groups/<int:group_id>/members", methods=["POST"])
@token_required(write=True)
@blp.arguments(InviteSchema)
@blp.response(201, MemberSchema)
def invite(data, group_id: int):
    """Invite an address to a group you own; it gets a mail, and joins once it
    accepts (signed in with that address)."""
    group = _owned_group(group_id, "invite")
    try:
        member = sharing.invite(group, current_user, data["email"])
    except SharingError as exc:
        _refuse(exc)
    return {"id": member.id, "email": member.email, "joined": False}


@blp.route("/groups/<int:group_id>/members/<int:member_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def remove_member(group_id: int, member_id: int):
    """Take a member or an invitation out of a group you own."""
    group = _owned_group(group_id, "remove members")
    try:
        sharing.remove_member(group, sharing.get_member_or_404(group, member_id))
    except SharingError as exc:
        _refuse(exc)


@blp.route("/groups/<int:group_id>/accept", methods=["POST"])
@token_required(write=True)
@blp.response(200, GroupSchema)
def accept(group_id: int):
    """Accept an invitation to a group (again: nothing changes)."""
    member = sharing.get_invitation_or_404(group_id)
    sharing.accept(member)
    return _group_dict(member.group, member)


@blp.route("/groups/<int:group_id>/leave", methods=["POST"])
@token_required(write=True)
@blp.response(204)
def leave(group_id: int):
    """Leave a group, or decline an invitation to it."""
    member = sharing.get_invitation_or_404(group_id)
    try:
        sharing.remove_member(member.group, member)
    except SharingError as exc:
        _refuse(exc)


# --- A project's shares ---------------------------------------------------------------


def _share_dict(share: ProjectShare) -> dict:
    return {
        "id": share.id,
        "project_id": share.project_id,
        "email": share.email,
        "group_id": share.group_id,
        "group": share.group.name if share.group else None,
        "access": share.access,
        "created_at": share.created_at,
    }


@blp.route("/projects/<int:project_id>/shares", methods=["GET"])
@token_required()
@blp.response(200, ShareSchema(many=True))
def list_shares(project_id: int):
    """Who one of your projects is shared with."""
    project = get_project_or_404(project_id, Access.OWNER)
    return [_share_dict(share) for share in sharing.shares_of(project)]


@blp.route("/projects/<int:project_id>/shares", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewShareSchema)
@blp.response(201, ShareSchema)
def share(data, project_id: int):
    """Share one of your projects with a person (by address: mailed, whether or
    not they have an account yet) or with a group you belong to; sharing again
    with the same changes the access."""
    project = get_project_or_404(project_id, Access.OWNER)
    email = (data.get("email") or "").strip()
    if bool(email) == ("group_id" in data):
        abort(422, message="Give an email or a group_id (one of the two).")
    group = None
    if "group_id" in data:
        group = sharing.get_group_or_404(data["group_id"])
        if sharing.get_invitation_or_404(group.id).joined_at is None:
            abort(422, message="Join the group before sharing with it.")
    try:
        made = sharing.share_project(
            project,
            current_user,
            group=group,
            address=email,
            can_write=data["access"] == "read-write",
        )
    except SharingError as exc:
        _refuse(exc)
    return _share_dict(made)


@blp.route("/projects/<int:project_id>/shares/<int:share_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def unshare(project_id: int, share_id: int):
    """Stop sharing: who it reached loses access at once."""
    project = get_project_or_404(project_id, Access.OWNER)
    sharing.unshare(sharing.get_share_or_404(project, share_id))


# --- Links to one analysis ------------------------------------------------------------


def _link_dict(link: ShareLink, secret: str | None = None) -> dict:
    found = {
        "id": link.id,
        "analysis_id": link.analysis_id,
        "prefix": link.prefix,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "works": sharing.link_works(link, utcnow()),
    }
    if secret is not None:
        found["url"] = external_url("sharing.link_detail", secret=secret)
    return found


@blp.route("/analyses/<int:analysis_id>/links", methods=["GET"])
@token_required()
@blp.response(200, LinkSchema(many=True))
def list_links(analysis_id: int):
    """The read-only links to an analysis you ran or whose project you own
    (their secrets are not kept: only their first characters)."""
    analysis = get_analysis_or_404(analysis_id, control=True)
    return [_link_dict(link) for link in sharing.links_of(analysis)]


@blp.route("/analyses/<int:analysis_id>/links", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewLinkSchema)
@blp.response(201, LinkSchema)
def make_link(data, analysis_id: int):
    """A read-only link to an analysis' page and outputs, for anyone who has it,
    for ``days`` or until revoked. Its ``url`` is in this answer only."""
    analysis = get_analysis_or_404(analysis_id, control=True)
    try:
        link, secret = sharing.make_link(analysis, current_user, data["days"])
    except SharingError as exc:
        _refuse(exc)
    return _link_dict(link, secret), 201, {"Cache-Control": "no-store"}


@blp.route("/links/<int:link_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def revoke_link(link_id: int):
    """Revoke a link: it opens nothing from now on."""
    sharing.revoke_link(sharing.get_own_link_or_404(link_id))
