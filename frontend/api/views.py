"""The REST API, version 1: projects, files, pipelines and analyses, as JSON.

Every view goes through the same services as the web pages, so ownership,
quotas, name checks and parameter checks are the web's own: another user's
object answers 404, a value the pipeline's schema refuses answers 422 with the
run form's message on its field.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

from flask import request, url_for
from flask_login import current_user
from flask_smorest import Blueprint, abort

from backend.files import UnsafeName
from backend.params import ParamsInvalid

from ..analyses import services as analyses
from ..core.access import Access, get_project_or_404, roles_of
from ..core.downloads import send_user_file, zip_response
from ..core.http import streams_upload
from ..core.pipelines import availability, enabled_pipelines
from ..core.runners import NoClusterAccount
from ..core.storage import StorageError, quota_for, storage_by_kind
from ..projects import services as projects
from .auth import token_required
from .schemas import (
    AddedOutputsSchema,
    AddOutputsSchema,
    AnalysisListArgs,
    AnalysisPageSchema,
    AnalysisSchema,
    CancelSchema,
    ChecksumSchema,
    FileSchema,
    LogArgs,
    LogSchema,
    NewAnalysisSchema,
    NewProjectSchema,
    OutputSchema,
    PipelineSchema,
    ProjectChangeSchema,
    ProjectListArgs,
    ProjectSchema,
    StorageSchema,
    UploadArgs,
    UploadSchema,
)

blp = Blueprint(
    "api_v1",
    __name__,
    url_prefix="/api/v1",
    description="Projects, files, pipelines and analyses. Authenticate with "
    "'Authorization: Bearer TOKEN', with a personal token from your profile page.",
)


ROLES = {Access.OWNER: "owner", Access.WRITE: "read-write", Access.READ: "read-only"}


def _project_dict(summary: projects.ProjectSummary, role: Access) -> dict:
    project = summary.project
    return {
        "id": project.id,
        "name": project.name,
        "role": ROLES[role],
        "description": project.description,
        "created_at": project.created_at,
        "updated_at": project.updated_at,
        "file_count": summary.file_count,
        "total_bytes": summary.total_bytes,
        "analyses": summary.analyses,
    }


def _summary(project_id: int) -> dict:
    """A project the user may read, with its totals; 404 for anyone else's."""
    found = projects.list_projects(current_user, only=project_id, need=Access.READ)
    if not found:
        abort(404)
    return _project_dicts(found)[0]


def _project_dicts(found: list[projects.ProjectSummary]) -> list[dict]:
    roles = roles_of(current_user, [summary.project for summary in found])
    return [_project_dict(s, roles[s.project.id]) for s in found]


def _refuse(exc: StorageError):
    abort(exc.status, message=str(exc))


# --- Projects ------------------------------------------------------------------------


@blp.route("/projects", methods=["GET"])
@token_required()
@blp.arguments(ProjectListArgs, location="query")
@blp.response(200, ProjectSchema(many=True))
def list_projects(args):
    """Your projects and those shared with you, most recently changed first, each
    with your role; ``owned=true`` or ``shared=true`` keeps only those."""
    found = _project_dicts(projects.list_projects(current_user, need=Access.READ))
    if args.get("owned"):
        found = [p for p in found if p["role"] == "owner"]
    if args.get("shared"):
        found = [p for p in found if p["role"] != "owner"]
    return found


@blp.route("/projects", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewProjectSchema)
@blp.response(201, ProjectSchema)
def create_project(data):
    """Create a project."""
    try:
        project = projects.create_project(
            current_user, data["name"], data["description"]
        )
    except StorageError as exc:
        _refuse(exc)
    return _summary(project.id)


@blp.route("/projects/<int:project_id>", methods=["GET"])
@token_required()
@blp.response(200, ProjectSchema)
def get_project(project_id: int):
    """One project, with its size and number of analyses."""
    return _summary(project_id)


@blp.route("/projects/<int:project_id>", methods=["PATCH"])
@token_required(write=True)
@blp.arguments(ProjectChangeSchema)
@blp.response(200, ProjectSchema)
def change_project(data, project_id: int):
    """Rename a project or change its description."""
    project = get_project_or_404(project_id, Access.OWNER)
    try:
        projects.update_project(
            project,
            data.get("name", project.name),
            data.get("description", project.description),
        )
    except StorageError as exc:
        _refuse(exc)
    return _summary(project_id)


@blp.route("/projects/<int:project_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def delete_project(project_id: int):
    """Delete a project with all its files and analyses."""
    projects.delete_project(get_project_or_404(project_id, Access.OWNER))


@blp.route("/storage", methods=["GET"])
@token_required()
@blp.response(200, StorageSchema)
def storage():
    """Your storage: the quota, what your projects hold, by kind, and what is left
    (what the profile page shows)."""
    parts = storage_by_kind(current_user)
    used, quota = sum(parts.values()), quota_for(current_user)
    return {
        "quota_bytes": quota,
        "used_bytes": used,
        "free_bytes": max(quota - used, 0),
        **{f"{kind}_bytes": size for kind, size in parts.items()},
    }


# --- Files ---------------------------------------------------------------------------


@blp.route("/projects/<int:project_id>/files", methods=["GET"])
@token_required()
@blp.response(200, FileSchema(many=True))
def list_files(project_id: int):
    """Every file and folder of a project, by path."""
    return projects.all_entries(get_project_or_404(project_id, Access.READ))


@blp.route("/projects/<int:project_id>/files", methods=["PUT"])
@token_required(write=True)
@blp.arguments(UploadArgs, location="query")
@blp.response(201, UploadSchema)
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
)
@streams_upload
def upload(args, project_id: int):
    """Store the request's body as a file (streamed, up to MAX_UPLOAD_BYTES), with
    the web upload's checks: names, quota, file count, archives."""
    project = get_project_or_404(project_id, Access.WRITE)
    try:
        result = projects.upload(
            project,
            None,
            args["path"],
            request.stream,
            request.content_length,
            on_clash=args["on_clash"],
            extract_archive=args["extract"],
        )
    except UnsafeName as exc:
        abort(400, message=f"“{args['path']}” was not stored: {exc}")
    except StorageError as exc:
        _refuse(exc)
    return {"status": result.status, "path": result.path, "message": result.message}


@blp.route("/projects/<int:project_id>/files/<int:entry_id>", methods=["GET"])
@token_required()
@blp.response(200, FileSchema)
def get_file(project_id: int, entry_id: int):
    """One file or folder."""
    project = get_project_or_404(project_id, Access.READ)
    return projects.get_entry_or_404(project, entry_id)


@blp.route("/projects/<int:project_id>/files/<int:entry_id>/content", methods=["GET"])
@token_required()
@blp.response(200, description="the file's bytes, or a folder as a zip")
def download_file(project_id: int, entry_id: int):
    """Download a file, or a folder as a zip."""
    project = get_project_or_404(project_id, Access.READ)
    item = projects.get_entry_or_404(project, entry_id)
    if item.is_dir:
        return zip_response(projects.zip_of(project, item), f"{item.name}.zip")
    return send_user_file(projects.open_entry(item), item.name, {}, inline=False)


@blp.route("/projects/<int:project_id>/files/<int:entry_id>/checksum", methods=["GET"])
@token_required()
@blp.response(200, ChecksumSchema)
def file_checksum(project_id: int, entry_id: int):
    """A file's SHA-256, read from its bytes now (what ``labqueue upload`` compares
    to leave a file that is already there unsent)."""
    project = get_project_or_404(project_id, Access.READ)
    item = projects.get_entry_or_404(project, entry_id)
    if item.is_dir:
        abort(422, message=f"“{item.path}” is a folder: only files have a checksum.")
    with projects.open_entry(item) as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return {"path": item.path, "size": item.size, "sha256": digest}


@blp.route("/projects/<int:project_id>/files/<int:entry_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def delete_file(project_id: int, entry_id: int):
    """Delete a file, or a folder with everything in it."""
    project = get_project_or_404(project_id, Access.WRITE)
    projects.delete_entry(project, projects.get_entry_or_404(project, entry_id))


# --- Pipelines -----------------------------------------------------------------------


def _pipeline_dict(pipeline, state) -> dict:
    return {
        "name": pipeline.name,
        "title": pipeline.title,
        "description": pipeline.description,
        "version": pipeline.version,
        "image": pipeline.image_tag,
        "ready": state.ready,
        "message": "" if state.ready else state.message(pipeline),
        "parameters": pipeline.schema,
    }


@blp.route("/pipelines", methods=["GET"])
@token_required()
@blp.response(200, PipelineSchema(many=True))
def list_pipelines():
    """The pipelines you can run, with their parameters' JSON Schema."""
    pipelines = enabled_pipelines()
    states = availability(pipelines)
    return [_pipeline_dict(p, states[name]) for name, p in sorted(pipelines.items())]


@blp.route("/pipelines/<name>", methods=["GET"])
@token_required()
@blp.response(200, PipelineSchema)
def get_pipeline(name: str):
    """One pipeline."""
    pipeline = analyses.get_pipeline_or_404(name)
    return _pipeline_dict(pipeline, availability({name: pipeline})[name])


# --- Analyses ------------------------------------------------------------------------


@contextmanager
def submission_refusals():
    """A refused submission (of one analysis or a batch) as the API answers it:
    409 without the cluster account it needs, 503 when the pipeline's image is
    missing, 422 with the run form's messages per parameter."""
    try:
        yield
    except NoClusterAccount as exc:
        abort(409, message=f"{exc} Nothing was submitted.")
    except analyses.PipelineUnavailable as exc:
        abort(503, message=f"{exc} Nothing was submitted.")
    except analyses.AnalysisError as exc:
        abort(422, message=str(exc))
    except ParamsInvalid as invalid:
        abort(
            422,
            message="Some parameters are not valid; nothing was submitted.",
            errors={"parameters": invalid.errors},
        )


@blp.route("/analyses", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewAnalysisSchema)
@blp.response(201, AnalysisSchema)
def submit(data):
    """Submit an analysis. Parameters are checked by the pipeline's schema, with
    the run form's messages per field (422); 409 when it would run under the
    user's cluster account and none is set, 503 when its image is missing."""
    project = get_project_or_404(data["project_id"], Access.WRITE)
    pipeline = analyses.get_pipeline_or_404(data["pipeline"])
    with submission_refusals():
        analysis = analyses.submit(current_user, project, pipeline, data["parameters"])
    location = url_for("api_v1.get_analysis", analysis_id=analysis.id)
    return analysis, 201, {"Location": location}


@blp.route("/analyses", methods=["GET"])
@token_required()
@blp.arguments(AnalysisListArgs, location="query")
@blp.response(200, AnalysisPageSchema)
def list_analyses(args):
    """Your analyses, newest first, filtered by state, pipeline and project."""
    page = analyses.history(
        current_user,
        args.get("state"),
        args.get("pipeline"),
        args.get("project_id"),
        args["page"],
        per_page=args["page_size"],
    )
    return {
        "items": page.items,
        "page": page.page,
        "page_size": page.per_page,
        "total": page.total,
        "pages": page.pages,
    }


@blp.route("/analyses/<int:analysis_id>", methods=["GET"])
@token_required()
@blp.response(200, AnalysisSchema)
def get_analysis(analysis_id: int):
    """One analysis: state, progress, parameters, outcome."""
    return analyses.get_analysis_or_404(analysis_id)


@blp.route("/analyses/<int:analysis_id>", methods=["DELETE"])
@token_required(write=True)
@blp.response(204)
def delete_analysis(analysis_id: int):
    """Delete a finished analysis with its outputs (409 while it is not finished)."""
    try:
        analyses.delete(analyses.get_analysis_or_404(analysis_id, control=True))
    except analyses.AnalysisError as exc:
        abort(409, message=str(exc))


@blp.route("/analyses/<int:analysis_id>/cancel", methods=["POST"])
@token_required(write=True)
@blp.response(200, CancelSchema)
def cancel(analysis_id: int):
    """Cancel a queued analysis, or stop a running one (409 once it ended)."""
    analysis = analyses.get_analysis_or_404(analysis_id, control=True)
    try:
        message = analyses.cancel(analysis)
    except analyses.AnalysisError as exc:
        abort(409, message=str(exc))
    return {"message": message, "state": analysis.state.value}


@blp.route("/analyses/<int:analysis_id>/log", methods=["GET"])
@token_required()
@blp.arguments(LogArgs, location="query")
@blp.response(200, LogSchema)
def log(args, analysis_id: int):
    """The log from byte ``offset`` (64 KiB at most); ask again from ``offset``."""
    analysis = analyses.get_analysis_or_404(analysis_id)
    text, offset = analyses.read_log(analysis, args["offset"])
    return {
        "text": text,
        "offset": offset,
        "state": analysis.state.value,
        "finished": analysis.finished,
    }


@blp.route("/analyses/<int:analysis_id>/outputs", methods=["GET"])
@token_required()
@blp.response(200, OutputSchema(many=True))
def outputs(analysis_id: int):
    """The analysis' output files, with their sizes."""
    analysis = analyses.get_analysis_or_404(analysis_id)
    return [{"path": p, "size": s} for p, s in analyses.output_files(analysis)]


@blp.route("/analyses/<int:analysis_id>/outputs/<path:relpath>", methods=["GET"])
@token_required()
@blp.response(200, description="the output file, as an attachment")
def output(analysis_id: int, relpath: str):
    """One output file."""
    analysis = analyses.get_analysis_or_404(analysis_id)
    try:
        handle = analyses.open_output(analysis, relpath)
    except FileNotFoundError:
        abort(404, message="This analysis has no such output.")
    return send_user_file(handle, relpath.rsplit("/", 1)[-1], {}, inline=False)


@blp.route("/analyses/<int:analysis_id>/add-to-project", methods=["POST"])
@token_required(write=True)
@blp.arguments(AddOutputsSchema)
@blp.response(200, AddedOutputsSchema)
def add_to_project(data, analysis_id: int):
    """Put outputs of a finished analysis into a project you may change, as files
    that keep where they came from (the web's "Add to project"): 409 while it
    runs, 422 for an output it does not have."""
    analysis = analyses.get_analysis_or_404(analysis_id)
    project = get_project_or_404(data["project_id"], Access.WRITE)
    try:
        folder, results = analyses.add_outputs_to_project(
            analysis,
            project,
            data["folder"] or analyses.outputs_folder(analysis),
            data["paths"],
            data["on_clash"],
            current_user,
        )
    except UnsafeName as exc:
        abort(400, message=f"“{data['folder']}” cannot be a folder: {exc}")
    except StorageError as exc:
        _refuse(exc)
    except analyses.AnalysisError as exc:
        abort(409 if not analysis.finished else 422, message=str(exc))
    return {
        "project_id": project.id,
        "folder": folder,
        "results": [
            {"path": r.path, "status": r.status, "message": r.message} for r in results
        ],
    }


@blp.route("/analyses/<int:analysis_id>/outputs.zip", methods=["GET"])
@token_required()
@blp.response(200, description="every output, as a zip built while it is sent")
def outputs_zip(analysis_id: int):
    """All outputs as one zip."""
    analysis = analyses.get_analysis_or_404(analysis_id)
    return zip_response(
        analyses.outputs_zip(analysis), analyses.outputs_zip_name(analysis)
    )
