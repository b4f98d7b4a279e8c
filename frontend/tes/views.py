"""GA4GH TES v1.1 at /ga4gh/tes/v1: service-info, create, list, get, cancel.

Authentication is the API's: a personal token as ``Authorization: Bearer`` or as
the password of HTTP Basic. Tasks are the user's own: another user's task is 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request
from flask_login import current_user

from ..analyses.services import AnalysisError
from ..api.auth import token_required
from . import services

bp = Blueprint("tes", __name__, url_prefix="/ga4gh/tes/v1")


def _view() -> str:
    view = request.args.get("view", "MINIMAL").upper()
    if view not in services.VIEWS:
        abort(400, description="view is one of MINIMAL, BASIC and FULL.")
    return view


def _bad(message: str, errors: dict | None = None):
    body = {"error": 400, "message": message}
    if errors:
        body["errors"] = errors
    return jsonify(body), 400


@bp.get("/service-info")
def service_info():
    """What this TES is; open to anyone, as GA4GH service-info is."""
    return jsonify(services.service_info())


@bp.post("/tasks")
@token_required(write=True)
def create_task():
    config = current_app.config
    limit = 2 * config["TES_MAX_CONTENT_BYTES"] + 512 * 1024
    if request.content_length is None or request.content_length > limit:
        abort(413)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _bad("Send the task as a JSON object (Content-Type: application/json).")
    try:
        task = services.create_task(current_user, body)
    except services.TaskRefused as refused:
        return _bad(refused.message, refused.errors)
    return jsonify({"id": str(task.analysis_id)})


def _page_size() -> int:
    raw = request.args.get("page_size", "")
    if not raw:
        return services.DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= services.MAX_PAGE_SIZE:
        abort(400, description=f"page_size is from 1 to {services.MAX_PAGE_SIZE}.")
    return int(raw)


@bp.get("/tasks")
@token_required()
def list_tasks():
    view = _view()
    state = request.args.get("state") or None
    if state is not None and state not in services.STATE_CONDITIONS:
        abort(400, description=f"There is no TES state {state}.")
    token = request.args.get("page_token") or None
    if token is not None and not token.isdigit():
        abort(400, description="This page_token did not come from this server.")
    tasks, next_token = services.list_tasks(
        current_user,
        name_prefix=request.args.get("name_prefix") or None,
        state=state,
        tag_keys=request.args.getlist("tag_key"),
        tag_values=request.args.getlist("tag_value"),
        page_size=_page_size(),
        page_token=int(token) if token else None,
    )
    body = {"tasks": [services.task_dict(task, view) for task in tasks]}
    if next_token:
        body["next_page_token"] = next_token
    return jsonify(body)


@bp.get("/tasks/<task_id>")
@token_required()
def get_task(task_id: str):
    task = services.get_task_or_404(current_user, task_id)
    return jsonify(services.task_dict(task, _view()))


@bp.post("/tasks/<task_id>:cancel")
@token_required(write=True)
def cancel_task(task_id: str):
    task = services.get_task_or_404(current_user, task_id)
    try:
        services.cancel_task(task)
    except AnalysisError as exc:
        abort(409, description=str(exc))
    return jsonify({})
