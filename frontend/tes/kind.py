"""A GA4GH TES task as a run kind (``core/kinds.py``): what stops a task from
starting, and the run (container command, binds, limits) that carries it out."""

from __future__ import annotations

import posixpath
from pathlib import Path

import sqlalchemy as sa

from backend import safe_open
from backend.files import UnsafeName
from backend.runners import Mount, Runner
from backend.runners.base import owner_of
from backend.tes import OUTPUT_DIR, TASK_DIR, driver_script

from ..analyses import services as analyses
from ..core.access import Access, access_to
from ..core.endings import still_running
from ..core.extensions import db
from ..core.kinds import CannotRun, Plan, Stop
from ..core.layout import disk_path, files_dir, task_dir
from ..core.layout import task_inputs_dir as inputs_dir
from ..core.models import TES_PIPELINE, Analysis, Project, ProjectFile, TesTask
from ..core.storage import StorageError
from ..projects import services as projects
from .services import LABQUEUE_URL, executors_of, resource_limits

NEEDS_CONTAINERS = (
    "GA4GH TES tasks run only in containers, and this server runs pipelines "
    "without them (RUNNER = 'local'); an administrator can switch to Docker"
)


def _source(task: TesTask, number: int, item: dict) -> Path:
    """The host file or folder bound for input ``number``."""
    if item.get("content_kept"):
        return inputs_dir(task.analysis) / str(number)
    match = LABQUEUE_URL.match(item["url"])
    project = db.session.get(Project, int(match[1]))
    if project is None or access_to(task.analysis.owner, project) < Access.READ:
        raise CannotRun(
            f"input {number + 1} ({item['url']}): the project is gone, or no "
            "longer shared with you"
        )
    path = (match[2] or "").strip("/")
    if not path:
        return files_dir(project)
    entry = db.session.scalar(
        sa.select(ProjectFile).where(
            ProjectFile.project_id == project.id, ProjectFile.path == path
        )
    )
    if entry is None or not disk_path(entry).exists():
        raise CannotRun(
            f"input {number + 1} ({item['url']}): the file was deleted before the "
            "task started"
        )
    return disk_path(entry)


class TesTaskRun:
    """An analysis that runs a GA4GH TES task: its executors one after the other
    in one container of the task's image, with its inputs bound one by one. Its
    client follows it by id: no mail, and it is sent again by its client, not
    queued again by admins."""

    name = "tes"
    noun = "task"  # as its log words it: "The task cannot run on this server"
    requeue_refusal = (
        "A GA4GH TES task is sent again by its client, which follows it by its id."
    )

    def claims(self, analysis: Analysis) -> bool:
        return analysis.pipeline == TES_PIPELINE

    def missing_image(self, analysis: Analysis, problem: str) -> Stop:
        """The task's image is its own, not a pipeline's: its log says so (a
        SYSTEM_ERROR), and no pipeline is marked missing."""
        return Stop(
            log_line=f"its image {analysis.image} is not on the server ({problem})"
        )

    def end_mail(self, analysis: Analysis) -> None:
        """None: the task's client follows it (a workflow sends hundreds)."""
        return None

    def plan(self, analysis: Analysis, runner: Runner, config) -> Plan:
        """The container's argv, its limits (before the quota's cap) and its
        binds. Raises CannotRun."""
        task = analysis.tes_task
        if task.system_problem:
            raise CannotRun(task.system_problem)
        if not runner.containers:
            raise CannotRun(NEEDS_CONTAINERS)
        mounts = [
            Mount(_source(task, number, item), item["path"].rstrip("/"))
            for number, item in enumerate(task.request.get("inputs") or [])
        ]
        # The task's folder is bound read-write: an earlier attempt may have left
        # anything in it (links included). It is emptied, and its folders made, by
        # handles (backend.safe_open), never through a path the task could replace.
        own = task_dir(analysis)
        user = owner_of(config["PIPELINE_USER"])
        safe_open.ensure_folder(own, user)
        safe_open.clear_folder(own)
        mounts.append(Mount(own, TASK_DIR, read_only=False))
        for number, volume in enumerate(task.request.get("volumes") or []):
            safe_open.make_folder(own, f"volumes/{number}", user)
            target = volume.rstrip("/")
            mounts.append(Mount(own / "volumes" / str(number), target, False))
        limits, _notes = resource_limits(task.request.get("resources") or {}, config)
        argv = ["/bin/sh", "-c", driver_script(executors_of(task))]
        return Plan(argv, limits, input_dir=None, mounts=tuple(mounts))

    def deliver(self, analysis: Analysis) -> str | None:
        """Add the task's outputs sent to ``labqueue://`` URLs to their projects
        (a file under its new name, a folder with what it holds), as "Add to
        project" does: names, quota and where each came from. A name already
        there is replaced, as a workflow engine that runs a step again expects.
        Why one could not be added, or None."""
        task = analysis.tes_task
        sent = [
            (number, item)
            for number, item in enumerate(task.request.get("outputs") or [])
            if item["url"].startswith("labqueue:")
        ]
        if not sent or not still_running(analysis):  # nothing, or done already
            return None
        listed = dict(analyses.output_files(analysis))
        provenance = analyses.provenance(analysis, analysis.owner)
        for number, item in sent:
            url = item["url"]
            source = posixpath.relpath(posixpath.normpath(item["path"]), OUTPUT_DIR)
            try:
                _deliver_one(analysis, task, url, source, listed, provenance)
            except (CannotRun, StorageError, UnsafeName, FileNotFoundError) as exc:
                why = str(exc).rstrip(".")
                return f"output {number + 1} ({url}) could not be added: {why}"
        return None


def _deliver_one(
    analysis: Analysis,
    task: TesTask,
    url: str,
    source: str,
    listed: dict[str, int],
    provenance: dict,
) -> None:
    """Put the output at ``source`` (under /data/output) where ``url`` says.
    Raises CannotRun, StorageError or UnsafeName."""
    match = LABQUEUE_URL.match(url)
    project = db.session.get(Project, int(match[1]))
    if project is None or access_to(task.analysis.owner, project) < Access.WRITE:
        raise CannotRun("you may no longer write to that project")
    target = match[2].strip("/")
    if source in listed:  # a file, under the name the URL gives
        folder, _, name = target.rpartition("/")
        files = [(name, listed[source])]

        def origin(_name: str) -> str:
            return source
    else:  # a folder: everything the task wrote in it
        inside = f"{source}/" if source != "." else ""
        files = [
            (path[len(inside) :], size)
            for path, size in listed.items()
            if path.startswith(inside)
        ]
        if not files:
            raise CannotRun(f"the task wrote nothing at {OUTPUT_DIR}/{source}")
        folder = target

        def origin(relpath: str) -> str:
            return inside + relpath

    projects.add_files(
        project,
        folder,
        files,
        lambda relpath: analyses.open_output(analysis, origin(relpath)),
        "replace",
        provenance,
        origin=origin,
    )
