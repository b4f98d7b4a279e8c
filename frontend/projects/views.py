from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_security import auth_required, current_user

from backend.files import UnsafeName

from .. import retention
from ..core.access import Access, access_to, get_project_or_404
from ..core.downloads import INLINE_IMAGES, send_user_file, zip_response
from ..core.http import streams_upload
from ..core.storage import StorageError, quota_for, storage_used
from ..sharing.services import shared_with
from . import services as svc
from .forms import ConfirmForm, NameForm, ProjectForm
from .preview import make_preview

bp = Blueprint("projects", __name__, url_prefix="/projects")


def _folder_arg(project, source=None):
    value = (source or request.args).get("folder", "")
    if not value:
        return None
    if not str(value).isdigit():
        abort(404)
    return svc.get_folder_or_404(project, int(value))


def _back_to(project, folder=None):
    return redirect(
        url_for(
            "projects.browse",
            project_id=project.id,
            folder=folder.id if folder else None,
        )
    )


@bp.route("/")
@auth_required()
def index():
    """The dashboard: the user's projects with their sizes."""
    summaries = svc.list_projects(current_user)
    used, quota = storage_used(current_user), quota_for(current_user)
    return render_template(
        "projects/index.html",
        summaries=summaries,
        used=used,
        quota=quota,
        shared=shared_with(current_user),
    )


@bp.route("/new", methods=["GET", "POST"])
@auth_required()
def new():
    """Create a project."""
    form = ProjectForm()
    if form.validate_on_submit():
        try:
            project = svc.create_project(
                current_user, form.name.data, form.description.data or ""
            )
        except StorageError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(
                f"Project “{project.name}” created. Upload your data next.", "success"
            )
            return redirect(url_for("projects.browse", project_id=project.id))
    return render_template("projects/edit.html", form=form, project=None)


@bp.route("/<int:project_id>")
@auth_required()
def browse(project_id: int):
    """A folder of a project: its files, upload, new folder."""
    project = get_project_or_404(project_id, Access.READ)
    folder = _folder_arg(project)
    sort = request.args.get("sort", "name")
    desc = request.args.get("desc") == "1"
    entries = svc.folder_listing(project, folder, sort, desc)
    count, size = svc.project_totals(project)
    return render_template(
        "projects/browse.html",
        project=project,
        access=access_to(current_user, project),
        notice=retention.notice_of("project", project.id),
        folder=folder,
        entries=entries,
        folder_sizes=svc.folder_sizes(project, entries),
        crumbs=svc.breadcrumbs(project, folder),
        sort=sort,
        desc=desc,
        file_count=count,
        total_bytes=size,
        name_form=NameForm(),
        confirm_form=ConfirmForm(),
        max_upload=current_app.config["MAX_UPLOAD_BYTES"],
        upload_chunk_bytes=current_app.config["WEB_UPLOAD_PIECE_BYTES"],
    )


@bp.route("/<int:project_id>/settings", methods=["GET", "POST"])
@auth_required()
def settings(project_id: int):
    """Rename a project or change its description."""
    project = get_project_or_404(project_id, Access.OWNER)
    form = ProjectForm(obj=project)
    if form.validate_on_submit():
        try:
            svc.update_project(project, form.name.data, form.description.data or "")
        except StorageError as exc:
            form.name.errors.append(str(exc))
        else:
            flash("Project saved.", "success")
            return _back_to(project)
    return render_template("projects/edit.html", form=form, project=project)


@bp.route("/<int:project_id>/keep", methods=["POST"])
@auth_required()
def keep(project_id: int):
    """Count a project as in use: the retention policy's time for it starts again."""
    project = get_project_or_404(project_id, Access.OWNER)
    if ConfirmForm().validate_on_submit():
        svc.keep_project(project)
        flash(f"“{project.name}” is kept: it counts as used today.", "success")
    return _back_to(project)


@bp.route("/<int:project_id>/delete", methods=["GET", "POST"])
@auth_required()
def delete(project_id: int):
    """Confirm, then delete a project with all its files."""
    project = get_project_or_404(project_id, Access.OWNER)
    form = ConfirmForm()
    if form.validate_on_submit():
        name = project.name
        svc.delete_project(project)
        flash(f"Project “{name}” and all its files were deleted.", "success")
        return redirect(url_for("projects.index"))
    count, size = svc.project_totals(project)
    return render_template(
        "projects/delete.html",
        project=project,
        form=form,
        file_count=count,
        total_bytes=size,
    )


@bp.route("/<int:project_id>/folders", methods=["POST"])
@auth_required()
def make_folder(project_id: int):
    """Create a folder in the folder being browsed."""
    project = get_project_or_404(project_id, Access.WRITE)
    form = NameForm()
    folder = _folder_arg(project, request.form)
    if form.validate_on_submit():
        try:
            created = svc.make_folder(project, folder, form.name.data)
            flash(f"Folder “{created.name}” created.", "success")
        except (StorageError, UnsafeName) as exc:
            flash(f"No folder was created: {exc}", "error")
    else:
        flash("Give the new folder a name.", "error")
    return _back_to(project, folder)


def _json_error(exc: Exception, status: int):
    return jsonify(ok=False, message=str(exc)), status


@bp.route("/<int:project_id>/upload", methods=["POST"])
@streams_upload
@auth_required()
def upload(project_id: int):
    """Receive one file as the raw request body (sent by the upload page)."""
    project = get_project_or_404(project_id, Access.WRITE)
    folder = _folder_arg(project)
    path = request.args.get("path", "")
    # Bodies over MAX_UPLOAD_BYTES never get here: the 413 handler answers them.
    try:
        result = svc.upload(
            project,
            folder,
            path,
            request.stream,
            request.content_length,
            on_clash=request.args.get("on_clash", "ask"),
            extract_archive=request.args.get("extract") == "1",
        )
    except UnsafeName as exc:
        return _json_error(f"“{path}” was not stored: {exc}", 400)
    except StorageError as exc:
        return _json_error(exc, exc.status)
    return jsonify(
        ok=True, status=result.status, path=result.path, message=result.message
    )


@bp.route("/<int:project_id>/upload/check", methods=["POST"])
@auth_required()
def upload_check(project_id: int):
    """Which of the paths about to be uploaded exist already."""
    project = get_project_or_404(project_id, Access.WRITE)
    data = request.get_json(silent=True) or {}
    folder = _folder_arg(project, {"folder": str(data.get("folder") or "")})
    paths = [p for p in data.get("paths", []) if isinstance(p, str)][:10_000]
    existing = svc.existing_paths(project, folder, paths, bool(data.get("extract")))
    return jsonify(existing=existing)


@bp.route("/<int:project_id>/entries/<int:entry_id>")
@auth_required()
def entry(project_id: int, entry_id: int):
    """Preview a file (folders open in the browser)."""
    project = get_project_or_404(project_id, Access.READ)
    item = svc.get_entry_or_404(project, entry_id)
    if item.is_dir:
        return redirect(
            url_for("projects.browse", project_id=project.id, folder=item.id)
        )
    with svc.open_entry(item) as handle:
        preview = make_preview(
            handle,
            item.name,
            current_app.config["PREVIEW_MAX_BYTES"],
            current_app.config["PREVIEW_TABLE_ROWS"],
        )
    crumbs = svc.breadcrumbs(project, svc.parent_folder(project, item))
    return render_template(
        "projects/preview.html",
        project=project,
        item=item,
        preview=preview,
        crumbs=crumbs,
        origin_readable=svc.provenance_readable(item),
    )


def _file_response(item, inline: bool):
    return send_user_file(svc.open_entry(item), item.name, INLINE_IMAGES, inline)


@bp.route("/<int:project_id>/entries/<int:entry_id>/raw")
@auth_required()
def raw(project_id: int, entry_id: int):
    """A file's bytes: inline for raster images, as an attachment otherwise."""
    project = get_project_or_404(project_id, Access.READ)
    item = svc.get_entry_or_404(project, entry_id)
    if item.is_dir:
        abort(404)
    return _file_response(item, inline=True)


@bp.route("/<int:project_id>/entries/<int:entry_id>/download")
@auth_required()
def download(project_id: int, entry_id: int):
    """Download a file, or a folder as a zip streamed while it is built."""
    project = get_project_or_404(project_id, Access.READ)
    item = svc.get_entry_or_404(project, entry_id)
    if not item.is_dir:
        return _file_response(item, inline=False)
    return zip_response(svc.zip_of(project, item), f"{item.name}.zip")


@bp.route("/<int:project_id>/download")
@auth_required()
def download_project(project_id: int):
    """Download the whole project as a zip streamed while it is built."""
    project = get_project_or_404(project_id, Access.READ)
    return zip_response(svc.zip_of(project, None), f"{project.name}.zip")


@bp.route("/<int:project_id>/entries/<int:entry_id>/rename", methods=["POST"])
@auth_required()
def rename(project_id: int, entry_id: int):
    """Rename a file or folder."""
    project = get_project_or_404(project_id, Access.WRITE)
    item = svc.get_entry_or_404(project, entry_id)
    form = NameForm()
    old = item.name
    if form.validate_on_submit():
        try:
            svc.rename_entry(project, item, form.name.data)
            flash(f"“{old}” renamed to “{item.name}”.", "success")
        except (StorageError, UnsafeName) as exc:
            flash(f"“{old}” was not renamed: {exc}", "error")
    else:
        problem = next(iter(form.errors.values()), ["give a new name"])[0]
        flash(f"“{old}” was not renamed: {problem}", "error")
    return _back_to(project, svc.parent_folder(project, item))


@bp.route("/<int:project_id>/entries/<int:entry_id>/delete", methods=["POST"])
@auth_required()
def delete_entry(project_id: int, entry_id: int):
    """Delete a file, or a folder and everything in it."""
    project = get_project_or_404(project_id, Access.WRITE)
    item = svc.get_entry_or_404(project, entry_id)
    parent = svc.parent_folder(project, item)
    if ConfirmForm().validate_on_submit():
        svc.delete_entry(project, item)
        flash(f"“{item.name}” deleted.", "success")
    return _back_to(project, parent)
