from flask import (
    Blueprint,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_security import auth_required, current_user
from flask_wtf import FlaskForm

from ..analyses import pages
from ..analyses.services import get_analysis_or_404
from ..core.access import Access, get_project_or_404
from ..core.models import utcnow
from . import services as svc
from .forms import GroupForm, InviteForm, LinkForm, ShareForm
from .services import SharingError

bp = Blueprint("sharing", __name__)


def _posted() -> bool:
    """A POST with a good CSRF token (buttons that carry nothing else)."""
    return FlaskForm().validate_on_submit()


# --- Groups ----------------------------------------------------------------------


@bp.route("/groups/")
@auth_required()
def groups():
    """The user's groups and invitations, and a form for a new group."""
    return render_template(
        "sharing/groups.html",
        memberships=svc.groups_of(current_user),
        form=GroupForm(),
        button_form=FlaskForm(),
    )


@bp.route("/groups/new", methods=["POST"])
@auth_required()
def new_group():
    """Create a group, with the user as its owner and first member."""
    form = GroupForm()
    if form.validate_on_submit():
        try:
            group = svc.create_group(
                current_user, form.name.data, form.description.data or ""
            )
        except SharingError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Group “{group.name}” created. Invite its members.", "success")
            return redirect(url_for("sharing.group", group_id=group.id))
    else:
        flash("Give the group a name (120 characters at most).", "error")
    return redirect(url_for("sharing.groups"))


@bp.route("/groups/<int:group_id>")
@auth_required()
def group(group_id: int):
    """A group: its members and invitations, and the projects shared with it."""
    found = svc.get_group_or_404(group_id)
    member = svc.get_invitation_or_404(group_id)
    return render_template(
        "sharing/group.html",
        group=found,
        me=member,
        manages=found.owner_id == current_user.id,
        projects=svc.projects_shared_with_group(found) if member.joined_at else [],
        invite_form=InviteForm(),
        button_form=FlaskForm(),
    )


@bp.route("/groups/<int:group_id>/invite", methods=["POST"])
@auth_required()
def invite(group_id: int):
    """Invite an address to a group (its owner only); the address gets a mail."""
    found = svc.get_group_or_404(group_id, manage=True)
    form = InviteForm()
    if form.validate_on_submit():
        try:
            member = svc.invite(found, current_user, form.email.data)
        except SharingError as exc:
            flash(f"Nobody was invited: {exc}", "error")
        else:
            flash(
                f"{member.email} is invited. They join once they accept, signed in "
                "with that address (they got a mail).",
                "success",
            )
    else:
        flash("Give the address to invite.", "error")
    return redirect(url_for("sharing.group", group_id=found.id))


@bp.route("/groups/<int:group_id>/members/<int:member_id>/remove", methods=["POST"])
@auth_required()
def remove_member(group_id: int, member_id: int):
    """Take a member or invitation out of a group (its owner only)."""
    found = svc.get_group_or_404(group_id, manage=True)
    member = svc.get_member_or_404(found, member_id)
    if _posted():
        try:
            svc.remove_member(found, member)
        except SharingError as exc:
            flash(str(exc), "error")
        else:
            flash(f"{member.email} is no longer in {found.name}.", "success")
    return redirect(url_for("sharing.group", group_id=found.id))


@bp.route("/groups/<int:group_id>/accept", methods=["POST"])
@auth_required()
def accept(group_id: int):
    """Accept an invitation to a group."""
    member = svc.get_invitation_or_404(group_id)
    if _posted():
        svc.accept(member)
        flash(f"You joined {member.group.name}.", "success")
    return redirect(url_for("sharing.group", group_id=group_id))


@bp.route("/groups/<int:group_id>/leave", methods=["POST"])
@auth_required()
def leave(group_id: int):
    """Leave a group, or decline an invitation to it."""
    member = svc.get_invitation_or_404(group_id)
    if _posted():
        name = member.group.name
        try:
            svc.remove_member(member.group, member)
        except SharingError as exc:
            flash(str(exc), "error")
            return redirect(url_for("sharing.group", group_id=group_id))
        flash(f"You are no longer in {name}.", "success")
    return redirect(url_for("sharing.groups"))


@bp.route("/groups/<int:group_id>/delete", methods=["POST"])
@auth_required()
def delete_group(group_id: int):
    """Delete a group (its owner only): its members lose what it shared."""
    found = svc.get_group_or_404(group_id, manage=True)
    if _posted():
        svc.delete_group(found)
        flash(f"Group “{found.name}” deleted.", "success")
    return redirect(url_for("sharing.groups"))


# --- A project's shares --------------------------------------------------------------


def _share_form() -> ShareForm:
    form = ShareForm()
    form.group.choices = [("", "(no group)")] + [
        (str(group.id), group.name)
        for group, member in svc.groups_of(current_user)
        if member.joined_at is not None
    ]
    return form


@bp.route("/projects/<int:project_id>/sharing")
@auth_required()
def project_sharing(project_id: int):
    """Who a project is shared with, and a form to share it (its owner only)."""
    project = get_project_or_404(project_id, Access.OWNER)
    return render_template(
        "sharing/project.html",
        project=project,
        shares=svc.shares_of(project),
        form=_share_form(),
        button_form=FlaskForm(),
    )


@bp.route("/projects/<int:project_id>/sharing", methods=["POST"])
@auth_required()
def share(project_id: int):
    """Share a project with a group or a person, read-only or read-write."""
    project = get_project_or_404(project_id, Access.OWNER)
    form = _share_form()
    if not form.validate_on_submit():
        flash("Choose a group or give an address, and the access.", "error")
    elif bool(form.group.data) == bool((form.email.data or "").strip()):
        flash("Choose a group or give an address (one of the two).", "error")
    else:
        try:
            group = None
            if form.group.data:
                group = svc.get_group_or_404(int(form.group.data))
                if svc.get_invitation_or_404(group.id).joined_at is None:
                    raise SharingError("Join the group before sharing with it.")
            shared = svc.share_project(
                project,
                current_user,
                group=group,
                address=form.email.data or "",
                can_write=form.access.data == "write",
            )
        except SharingError as exc:
            flash(f"Nothing was shared: {exc}", "error")
        else:
            whom = f"the group {group.name}" if group else shared.email
            flash(
                f"“{project.name}” is shared with {whom}, {shared.access}.", "success"
            )
    return redirect(url_for("sharing.project_sharing", project_id=project.id))


@bp.route("/projects/<int:project_id>/sharing/<int:share_id>/remove", methods=["POST"])
@auth_required()
def unshare(project_id: int, share_id: int):
    """Stop sharing a project with a group or a person."""
    project = get_project_or_404(project_id, Access.OWNER)
    found = svc.get_share_or_404(project, share_id)
    if _posted():
        whom = f"the group {found.group.name}" if found.group else found.email
        svc.unshare(found)
        flash(f"“{project.name}” is no longer shared with {whom}.", "success")
    if request.form.get("next") == "mine":
        return redirect(url_for("sharing.what_i_share"))
    return redirect(url_for("sharing.project_sharing", project_id=project.id))


# --- What is shared, both ways ---------------------------------------------------


@bp.route("/shared/")
@auth_required()
def shared_with_me():
    """Projects other users share with the user, and invitations waiting."""
    return render_template(
        "sharing/shared_with_me.html",
        shared=svc.shared_with(current_user),
        invitations=[
            (group, member)
            for group, member in svc.groups_of(current_user)
            if member.joined_at is None
        ],
        button_form=FlaskForm(),
    )


@bp.route("/sharing/")
@auth_required()
def what_i_share():
    """Everything the user shares: their projects' shares, their links, the groups
    they own."""
    return render_template(
        "sharing/mine.html",
        shares=svc.shared_by(current_user),
        links=svc.links_for(current_user),
        link_works=svc.link_works,
        groups=svc.owned_groups(current_user),
        now=utcnow(),
        button_form=FlaskForm(),
    )


# --- Links to one analysis ---------------------------------------------------------


@bp.route("/analyses/<int:analysis_id>/links", methods=["POST"])
@auth_required()
def make_link(analysis_id: int):
    """Make a read-only link to an analysis; its address is shown once."""
    analysis = get_analysis_or_404(analysis_id, control=True)
    form = LinkForm()
    if not form.validate_on_submit():
        flash("Choose how long the link works.", "error")
        return redirect(url_for("analyses.detail", analysis_id=analysis.id))
    try:
        link, secret = svc.make_link(
            analysis, current_user, int(form.days.data) if form.days.data else None
        )
    except SharingError as exc:
        flash(f"No link was made: {exc}", "error")
        return redirect(url_for("analyses.detail", analysis_id=analysis.id))
    response = make_response(
        render_template(
            "sharing/link_created.html",
            analysis=analysis,
            link=link,
            address=url_for("sharing.link_detail", secret=secret, _external=True),
        )
    )
    response.headers["Cache-Control"] = "no-store"  # the secret is in it
    return response


@bp.route("/links/<int:link_id>/revoke", methods=["POST"])
@auth_required()
def revoke_link(link_id: int):
    """Revoke a link: it opens nothing from now on."""
    link = svc.get_own_link_or_404(link_id)
    if _posted():
        svc.revoke_link(link)
        flash(
            f"The link {link.prefix}… to analysis #{link.analysis_id} is revoked.",
            "success",
        )
    if request.form.get("next") == "mine":
        return redirect(url_for("sharing.what_i_share"))
    return redirect(url_for("analyses.detail", analysis_id=link.analysis_id))


def _by_link(response):
    """A page or file opened through a share link: never indexed, and the secret
    in its address never sent on as a referrer."""
    response = make_response(response)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/s/<secret>")
def link_detail(secret: str):
    """An analysis opened through a share link: its page, read-only."""
    analysis = svc.analysis_by_link_or_404(secret)
    return _by_link(
        render_template(
            "analyses/detail.html",
            **pages.detail_context(analysis),
            aurl=pages.addresses(analysis, secret),
            via_link=True,
            attempts=[],
            can_run=False,
            can_control=False,
            links=[],
        )
    )


@bp.route("/s/<secret>/status")
def link_status(secret: str):
    """The live page's state and log, through a share link."""
    return _by_link(pages.status_response(svc.analysis_by_link_or_404(secret)))


@bp.route("/s/<secret>/outputs/<path:relpath>")
def link_output(secret: str, relpath: str):
    """One output file, through a share link."""
    return _by_link(pages.output_response(svc.analysis_by_link_or_404(secret), relpath))


@bp.route("/s/<secret>/outputs.zip")
def link_outputs_zip(secret: str):
    """All outputs as a zip, through a share link."""
    return _by_link(pages.outputs_zip_response(svc.analysis_by_link_or_404(secret)))


@bp.route("/s/<secret>/log")
def link_log(secret: str):
    """The full log, through a share link."""
    return _by_link(pages.log_response(svc.analysis_by_link_or_404(secret)))
