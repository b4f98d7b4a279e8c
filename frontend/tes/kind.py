"""A GA4GH TES task as a run kind (``core/kinds.py``): what stops a task from
starting, and the run (container command, binds, limits) that carries it out."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from backend import safe_open
from backend.runners import Mount, Runner
from backend.runners.base import owner_of
from backend.tes import TASK_DIR, driver_script

from ..core.extensions import db
from ..core.kinds import CannotRun, Plan, Stop
from ..core.layout import disk_path, files_dir, task_dir
from ..core.layout import task_inputs_dir as inputs_dir
from ..core.models import TES_PIPELINE, Analysis, Project, ProjectFile, TesTask
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
    if project is None or project.owner_id != task.owner_id:
        raise CannotRun(f"input {number + 1} ({item['url']}): the project is gone")
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
