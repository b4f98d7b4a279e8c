"""GA4GH TES tasks on the web side: checking and recording a new task, reading
tasks back in the MINIMAL, BASIC and FULL views, listing them with the TES
filters, cancelling.

A task is an analysis (pipeline ``TES_PIPELINE``) with a TesTask row beside it:
the same queue, limits, sandbox, watcher, quota and history as a pipeline's run.
Its inputs are files of projects the user may read
(``labqueue://projects/<id>/<path>``) or inline ``content``; its outputs are
kept under /data/output, and those sent to ``labqueue://`` URLs are added to
those projects when it ends (``kind.py``). Any other URL is accepted, and the
worker ends the task in SYSTEM_ERROR saying so (this server fetches and sends
nothing elsewhere).
"""

from __future__ import annotations

import math
import posixpath
import re
from urllib.parse import urlsplit

import jsonschema
import sqlalchemy as sa
from flask import abort, current_app

from backend import safe_open
from backend.files import UnsafeName, clean_relpath
from backend.runners.base import MIN_MEMORY_MB
from backend.tes import (
    ENV_NAME_RE,
    OUTPUT_DIR,
    Executor,
    container_path_problem,
    executor_logs,
    nested,
    normal_image,
    output_path_problem,
    plain_path_problem,
)

from ..analyses import services as analyses
from ..core import audit
from ..core.access import Access, access_to
from ..core.extensions import db
from ..core.formatting import utc_stamp
from ..core.layout import task_dir, task_inputs_dir
from ..core.links import external_url
from ..core.models import (
    TES_PIPELINE,
    Analysis,
    AnalysisState,
    Project,
    ProjectFile,
    TesImage,
    TesTask,
    User,
)
from ..core.pipelines import all_pipelines
from ..projects import services as projects
from .schema import TASK

VIEWS = ("MINIMAL", "BASIC", "FULL")
DEFAULT_PAGE_SIZE = 256
MAX_PAGE_SIZE = 2048
LABQUEUE_URL = re.compile(r"^labqueue://projects/(\d+)(?:/(.*))?$")
STORAGE = "labqueue://projects/<project id>/<path>"


class TaskRefused(Exception):
    """The request cannot become a task: a 400 with per-field messages."""

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


# --- States -------------------------------------------------------------------------

_running = Analysis.state == AnalysisState.RUNNING
STATE_CONDITIONS = {
    "QUEUED": Analysis.state == AnalysisState.QUEUED,
    "INITIALIZING": sa.and_(
        _running, Analysis.handle.is_(None), ~Analysis.cancel_requested
    ),
    "RUNNING": sa.and_(
        _running, Analysis.handle.is_not(None), ~Analysis.cancel_requested
    ),
    "CANCELING": sa.and_(_running, Analysis.cancel_requested),
    "COMPLETE": Analysis.state == AnalysisState.SUCCEEDED,
    # A failure with an executor's non-zero exit code is the task's own; one
    # without (or after all ended well: its outputs could not be added), the
    # server's.
    "EXECUTOR_ERROR": sa.and_(
        Analysis.state == AnalysisState.FAILED, Analysis.exit_code != 0
    ),
    "SYSTEM_ERROR": sa.and_(
        Analysis.state == AnalysisState.FAILED,
        sa.or_(Analysis.exit_code.is_(None), Analysis.exit_code == 0),
    ),
    "CANCELED": Analysis.state == AnalysisState.CANCELLED,
    "PREEMPTED": sa.false(),
    "UNKNOWN": sa.false(),
}


def tes_state(analysis: Analysis) -> str:
    """The TES state of the analysis running a task."""
    state = analysis.state
    if state == AnalysisState.QUEUED:
        return "QUEUED"
    if state == AnalysisState.RUNNING:
        if analysis.cancel_requested:
            return "CANCELING"
        return "RUNNING" if analysis.handle is not None else "INITIALIZING"
    if state == AnalysisState.SUCCEEDED:
        return "COMPLETE"
    if state == AnalysisState.CANCELLED:
        return "CANCELED"
    if analysis.exit_code not in (None, 0):  # as STATE_CONDITIONS says
        return "EXECUTOR_ERROR"
    return "SYSTEM_ERROR"


# --- Limits -------------------------------------------------------------------------


def resource_limits(resources: dict, config) -> tuple[dict, list[str]]:
    """The container limits a task's ``resources`` ask for, within the site's
    maximum, and a line for each request that was lowered to it."""
    notes = []
    cpus = float(resources.get("cpu_cores") or 1)
    if cpus > config["MAX_CPUS_PER_RUN"]:
        notes.append(
            f"asked for {cpus:g} CPU cores; this server gives a task at most "
            f"{config['MAX_CPUS_PER_RUN']:g}"
        )
        cpus = config["MAX_CPUS_PER_RUN"]
    memory_mb = math.ceil(float(resources.get("ram_gb") or 1) * 1024)
    if memory_mb > config["MAX_MEMORY_MB_PER_RUN"]:
        notes.append(
            f"asked for {resources['ram_gb']:g} GB of memory; this server gives a "
            f"task at most {config['MAX_MEMORY_MB_PER_RUN'] / 1024:g} GB"
        )
        memory_mb = config["MAX_MEMORY_MB_PER_RUN"]
    disk_bytes = config["MAX_OUTPUT_BYTES"]
    if resources.get("disk_gb"):
        asked = math.ceil(float(resources["disk_gb"]) * 1024**3)
        if asked > disk_bytes:
            notes.append(
                f"asked for {resources['disk_gb']:g} GB of disk; this server keeps "
                f"at most {disk_bytes / 1024**3:g} GB of a task's outputs"
            )
        disk_bytes = min(asked, disk_bytes)
    if resources.get("backend_parameters"):
        names = ", ".join(sorted(resources["backend_parameters"]))
        notes.append(f"backend parameters ignored (this server has none): {names}")
    return {
        "cpus": cpus,
        "memory_mb": memory_mb,
        "pids": config["MAX_PIDS_PER_RUN"],
        "timeout_s": 60 * config["MAX_RUN_MINUTES"],
        "max_output_bytes": disk_bytes,
    }, notes


# --- Creation -----------------------------------------------------------------------


def allowed_images() -> set[str]:
    """Images a task may run: the admins' list and the registered pipelines'."""
    images = {normal_image(p.image_tag) for p in all_pipelines().values()}
    images.update(
        normal_image(i) for i in db.session.scalars(sa.select(TesImage.image))
    )
    return images


def allow_image(image: str, note: str = "") -> TesImage:
    """Let TES tasks run ``image`` (as Docker names it: ``alpine:latest``)."""
    name = normal_image(image.strip())
    row = db.session.get(TesImage, name) or TesImage(image=name)
    row.note = note
    db.session.add(row)
    audit.record("tes.image_allowed", name, note)
    db.session.commit()
    return row


def _schema_errors(body) -> dict[str, str]:
    validator = jsonschema.Draft202012Validator(TASK)
    errors = {}
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.path
        ).lstrip(".")
        errors.setdefault(where or "task", error.message)
    return errors


def _project_of(user: User, url: str, need: Access) -> tuple[Project, str] | str:
    """The project a labqueue:// URL names and the path in it (stripped of
    slashes), or why the user cannot use it with ``need``: a project they may
    not see reads as absent, one they may only read says so."""
    match = LABQUEUE_URL.match(url)
    if not match:
        return f"a labqueue URL reads {STORAGE}"
    project = db.session.get(Project, int(match[1]))
    have = Access.NONE if project is None else access_to(user, project)
    if have == Access.NONE:
        return f"you have no project {match[1]}"
    if have < need:
        return f"project {project.id} ({project.name}) is shared with you read-only"
    return project, (match[2] or "").strip("/")


def _readable_entry(user: User, url: str) -> tuple[Project, ProjectFile | None] | str:
    """The project (and entry, None for the whole project) an input's labqueue://
    URL names, or why it names nothing the user may read."""
    found = _project_of(user, url, Access.READ)
    if isinstance(found, str):
        return found
    project, path = found
    if not path:
        return project, None
    entry = db.session.scalar(
        sa.select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.path == path
        )
    )
    if entry is None:
        return f"project {project.id} ({project.name}) has no file or folder {path}"
    return project, entry


class _Checked:
    """What checking a request found: per-field errors, the first line that
    makes the task end in SYSTEM_ERROR, and the project the task belongs to."""

    def __init__(self):
        self.errors: dict[str, str] = {}
        self.system_problem: str | None = None
        self.project: Project | None = None
        self.contents: list[tuple[int, str]] = []

    def refuse_later(self, line: str) -> None:
        self.system_problem = self.system_problem or line

    def bind_target(self, path: str, field: str, taken: set[str]) -> None:
        """Check a path something is bound at, and that nothing else is, at it,
        above it or inside it."""
        problem = container_path_problem(path)
        inside = next((other for other in sorted(taken) if nested(path, other)), None)
        if problem:
            self.errors[field] = problem
        elif path.rstrip("/") in taken:
            self.errors[field] = "something else is bound at this path"
        elif inside is not None:
            self.errors[field] = (
                f"overlaps {inside}, where something else is bound: inputs and "
                "volumes may not lie inside one another"
            )
        taken.add(path.rstrip("/"))


def _check_inputs(user: User, inputs: list[dict], checked: _Checked) -> list[dict]:
    config = current_app.config
    kept, targets, content_bytes = [], set(), 0
    for number, item in enumerate(inputs):
        field = f"inputs[{number}]"
        checked.bind_target(item["path"], f"{field}.path", targets)
        item = dict(item)
        url = item.get("url") or ""
        if "content" in item:
            content_bytes += len(item["content"].encode())
            if item.get("type") == "DIRECTORY":
                checked.errors[f"{field}.type"] = "inline content is a file"
            checked.contents.append((number, item.pop("content")))
            item["content_kept"] = True
        elif url.startswith("labqueue:"):
            found = _readable_entry(user, url)
            if isinstance(found, str):
                checked.errors[f"{field}.url"] = found
            else:
                project, entry = found
                is_dir = entry is None or entry.is_dir
                wanted = item.get("type") or ("DIRECTORY" if is_dir else "FILE")
                if (wanted == "DIRECTORY") != is_dir:
                    checked.errors[f"{field}.type"] = (
                        f"{url} is a {'folder' if is_dir else 'file'}, not a "
                        f"{wanted.lower()}"
                    )
                if access_to(user, project) >= Access.WRITE:  # may run there
                    checked.project = checked.project or project
        elif url:
            scheme = url.split(":", 1)[0] if ":" in url else url
            checked.refuse_later(
                f"input {number + 1} ({url}): this server fetches nothing from "
                f"elsewhere ({scheme} URLs included); give a file of yours as "
                f"{STORAGE}, or the text as inline content"
            )
        else:
            checked.errors[f"{field}.url"] = "give a url or inline content"
        kept.append(item)
    if content_bytes > config["TES_MAX_CONTENT_BYTES"]:
        checked.errors["inputs"] = (
            f"inline content may total {config['TES_MAX_CONTENT_BYTES']} bytes; "
            "upload larger inputs to a project"
        )
    return kept


def _check_outputs(user: User, outputs: list[dict], checked: _Checked) -> None:
    """An output is kept with the task (listed in its log, with its download
    URL); ``file://`` URLs under /data/output are where workflow engines that
    share a folder with their tasks say they are, and a ``labqueue://`` URL is a
    project the caller may write to, where the output is added when the task
    ends."""
    for number, item in enumerate(outputs):
        url = item["url"]
        field = f"outputs[{number}]"
        if url.startswith("file://"):
            where = posixpath.normpath(urlsplit(url).path)
            if where != OUTPUT_DIR and not where.startswith(OUTPUT_DIR + "/"):
                checked.errors[f"{field}.url"] = (
                    f"a file:// output stays where the task wrote it, under "
                    f"{OUTPUT_DIR}/: this server writes no file anywhere else"
                )
                continue
        elif url.startswith("labqueue:"):
            problem = _destination_problem(user, url)
            if problem:
                checked.errors[f"{field}.url"] = problem
                continue
        else:
            checked.refuse_later(
                f"output {number + 1} ({item['url']}): this server sends outputs "
                "nowhere; write them under /data/output, where the task keeps them "
                "(the task log lists them, with their download URLs), or name a "
                f"project of yours as {STORAGE}"
            )
            continue
        problem = output_path_problem(item["path"])
        if problem:
            checked.errors[f"{field}.path"] = problem


def _destination_problem(user: User, url: str) -> str | None:
    """Why an output cannot be added to the project its URL names, or None."""
    found = _project_of(user, url, Access.WRITE)
    if isinstance(found, str):
        return found
    _project, path = found
    if not path:
        return f"name the file or folder to make in the project: {STORAGE}"
    try:
        clean_relpath(path)
    except UnsafeName as exc:
        return str(exc)
    return None


def _check_executors(executors: list[dict], checked: _Checked) -> str:
    allowed = allowed_images()
    image = normal_image(executors[0]["image"])
    for number, executor in enumerate(executors):
        field = f"executors[{number}]"
        if normal_image(executor["image"]) != image:
            checked.errors[f"{field}.image"] = (
                "a task's executors run one after the other in one sandbox here, "
                "so they must all use the same image"
            )
        elif image not in allowed:
            checked.errors[f"{field}.image"] = (
                f"{executor['image']} is not among the images this server runs; "
                "an administrator can allow it (Admin → TES images)"
            )
        for key in ("workdir", "stdin", "stdout", "stderr"):
            problem = executor.get(key) and plain_path_problem(executor[key])
            if problem:
                checked.errors[f"{field}.{key}"] = problem
        for name in executor.get("env") or {}:
            if not ENV_NAME_RE.match(name):
                checked.errors[f"{field}.env"] = (
                    f"{name!r} is not a variable name (letters, digits and _)"
                )
    return image


def _check_volumes(volumes: list[str], inputs: list[dict], checked: _Checked) -> None:
    taken = {item["path"].rstrip("/") for item in inputs}
    for number, volume in enumerate(volumes):
        checked.bind_target(volume, f"volumes[{number}]", taken)


def _check_resources(resources: dict, checked: _Checked) -> None:
    memory_mb = math.ceil(float(resources.get("ram_gb") or 1) * 1024)
    if memory_mb < MIN_MEMORY_MB:
        checked.errors["resources.ram_gb"] = (
            f"{resources['ram_gb']:g} GB is less than the {MIN_MEMORY_MB} MiB a "
            "container needs to start; ask for more"
        )
    if resources.get("backend_parameters_strict") and resources.get(
        "backend_parameters"
    ):
        names = ", ".join(sorted(resources["backend_parameters"]))
        checked.errors["resources.backend_parameters"] = (
            f"this server supports no backend parameters, and strict was asked: {names}"
        )


def tes_project(user: User) -> Project:
    """Where a task with no project inputs keeps its outputs: the user's project
    called TES_PROJECT_NAME, made on first use."""
    name = current_app.config["TES_PROJECT_NAME"]
    project = db.session.scalar(
        sa.select(Project).where(Project.owner_id == user.id, Project.name == name)
    )
    if project is None:
        project = projects.create_project(
            user, name, "Outputs of GA4GH TES tasks that read no project's files."
        )
    return project


def create_task(user: User, body) -> TesTask:
    """Check a TES task and queue it. Raises TaskRefused with per-field
    messages."""
    errors = _schema_errors(body)
    if errors:
        raise TaskRefused("The task does not follow the TES schema.", errors)
    checked = _Checked()
    inputs = _check_inputs(user, body.get("inputs") or [], checked)
    _check_outputs(user, body.get("outputs") or [], checked)
    image = _check_executors(body["executors"], checked)
    _check_volumes(body.get("volumes") or [], inputs, checked)
    resources = body.get("resources") or {}
    _check_resources(resources, checked)
    if checked.errors:
        raise TaskRefused("The task cannot run here.", checked.errors)
    project = checked.project or tes_project(user)
    request = {
        "inputs": inputs,
        "outputs": body.get("outputs") or [],
        "resources": resources,
        "executors": body["executors"],
        "volumes": body.get("volumes") or [],
    }
    task = TesTask(
        owner_id=user.id,
        name=body.get("name") or "",
        description=body.get("description") or "",
        tags=body.get("tags") or {},
        request=request,
        system_problem=checked.system_problem,
    )
    analysis = Analysis(
        owner=user,
        project=project,
        pipeline=TES_PIPELINE,
        pipeline_version="1.1",
        image=image,
        params={"name": task.name},
        state=AnalysisState.QUEUED,
    )

    def keep(analysis: Analysis) -> None:
        task.analysis = analysis
        db.session.add(task)
        folder = task_inputs_dir(analysis)
        folder.mkdir(parents=True, exist_ok=True)
        for number, text in checked.contents:
            safe_open.write_file(folder, str(number), text.encode())

    analyses.enqueue(analysis, before_commit=keep)
    return task


# --- Reading back -------------------------------------------------------------------


def _outputs_log(analysis: Analysis) -> list[dict]:
    return [
        {
            "url": external_url("api_v1.output", analysis_id=analysis.id, relpath=path),
            "path": f"/data/output/{path}",
            "size_bytes": str(size),
        }
        for path, size in analyses.output_files(analysis)
    ]


def _task_log(task: TesTask, full: bool) -> dict:
    analysis = task.analysis
    logs = executor_logs(task_dir(analysis), len(task.request["executors"]))
    if not full:
        for entry in logs:
            entry.pop("stdout"), entry.pop("stderr")
    log = {
        "logs": logs,
        "metadata": {
            "labqueue_analysis": external_url(
                "analyses.detail", analysis_id=analysis.id
            ),
            "labqueue_project": str(analysis.project_id),
        },
        "start_time": utc_stamp(analysis.started_at),
        "end_time": utc_stamp(analysis.finished_at),
        "outputs": _outputs_log(analysis) if analysis.finished else [],
    }
    if full:
        _limits, notes = resource_limits(
            task.request.get("resources") or {}, current_app.config
        )
        lines = list(notes)
        if task.system_problem:
            lines.append(task.system_problem)
        if analysis.error_summary:
            lines.append(analysis.error_summary)
        log["system_logs"] = lines
    return log


def _inputs(task: TesTask, full: bool) -> list[dict]:
    inputs = []
    for number, item in enumerate(task.request.get("inputs") or []):
        item = dict(item)
        if item.pop("content_kept", False) and full:
            try:
                item["content"] = safe_open.read_bytes(
                    task_inputs_dir(task.analysis), str(number)
                ).decode("utf-8", "replace")
            except FileNotFoundError:
                item["content"] = ""
        inputs.append(item)
    return inputs


def task_dict(task: TesTask, view: str) -> dict:
    """The task as TES shows it in ``view``."""
    analysis = task.analysis
    shown = {"id": str(analysis.id), "state": tes_state(analysis)}
    if view == "MINIMAL":
        return shown
    full = view == "FULL"
    request = task.request
    shown.update(
        name=task.name,
        description=task.description,
        inputs=_inputs(task, full),
        outputs=request.get("outputs") or [],
        resources=request.get("resources") or {},
        executors=request["executors"],
        volumes=request.get("volumes") or [],
        tags=task.tags or {},
        logs=[_task_log(task, full)],
        creation_time=utc_stamp(analysis.submitted_at),
    )
    return shown


def get_task_or_404(user: User, task_id: str) -> TesTask:
    """The user's task ``task_id``: anyone else's, or none, is a 404."""
    if not task_id.isdigit():
        abort(404, description="There is no such task among yours.")
    return db.first_or_404(
        sa.select(TesTask).where(
            TesTask.analysis_id == int(task_id), TesTask.owner_id == user.id
        ),
        description="There is no such task among yours.",
    )


def list_tasks(
    user: User,
    *,
    name_prefix: str | None = None,
    state: str | None = None,
    tag_keys: list[str] = (),
    tag_values: list[str] = (),
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: int | None = None,
) -> tuple[list[TesTask], str | None]:
    """The user's tasks, newest first, filtered as TES says: a ``tag_key`` with
    no ``tag_value`` at its position (or an empty one) asks only that the tag is
    there. Returns the page and the next page's token (None at the end)."""
    stmt = (
        sa.select(TesTask)
        .join(TesTask.analysis)
        .options(sa.orm.contains_eager(TesTask.analysis))
        .where(TesTask.owner_id == user.id)
        .order_by(TesTask.analysis_id.desc())
        .limit(page_size + 1)
    )
    if name_prefix:
        stmt = stmt.where(TesTask.name.startswith(name_prefix, autoescape=True))
    if state:
        stmt = stmt.where(STATE_CONDITIONS[state])
    for number, key in enumerate(tag_keys):
        value = tag_values[number] if number < len(tag_values) else ""
        tag = TesTask.tags[key].as_string()
        stmt = stmt.where(tag == value if value else tag.is_not(None))
    if page_token is not None:
        stmt = stmt.where(TesTask.analysis_id < page_token)
    tasks = list(db.session.scalars(stmt))
    more = len(tasks) > page_size
    tasks = tasks[:page_size]
    return tasks, str(tasks[-1].analysis_id) if more else None


def cancel_task(task: TesTask) -> None:
    """Cancel the task (a task already cancelled stays so). Raises
    analyses.services.AnalysisError when it has ended otherwise."""
    if task.analysis.state == AnalysisState.CANCELLED:
        return
    analyses.cancel(task.analysis)


def service_info() -> dict:
    config = current_app.config
    site = external_url("main.index")
    host = re.sub(r"[^a-z0-9.]+", "-", site.split("//", 1)[-1].split("/")[0].lower())
    return {
        "id": "org.labqueue." + ".".join(reversed(host.split("."))),
        "name": f"{config['APP_NAME']} TES",
        "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
        "description": (
            "GA4GH Task Execution Service of a Labqueue site: each task runs in the "
            "site's sandbox (no network, read-only root, limits), its executors one "
            "after the other, with project files as inputs."
        ),
        "organization": {"name": config["APP_NAME"], "url": site},
        "documentationUrl": external_url("api_docs"),
        "version": "1.1.0",
        "storage": [STORAGE],
        "tesResources_backend_parameters": [],
    }


def executors_of(task: TesTask) -> list[Executor]:
    return [Executor.from_tes(item) for item in task.request["executors"]]
