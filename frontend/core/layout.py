"""Where everything lives on disk: every path under USER_DATA_DIR and
FAILED_ANALYSES_DIR, for the web app and the worker alike.

    USER_DATA_DIR/<owner id>/<project id>/
        files/<path>                 the project's files (real names)
        .staging/                    uploads and extractions in progress
            tus-<upload id>          a resumable upload's bytes so far
        analyses/<analysis id>/
            params.json, log.txt     what it was asked, what it printed
            output/                  its outputs (bound at /data/output)
            run/                     the runner's own files (Slurm, local)
            tes/                     a TES task's folder (bound at /labqueue-tes)
            tes-inputs/<n>           a TES task's inline inputs
    FAILED_ANALYSES_DIR/<analysis id>/  a failed run's snapshot

Paths are built from database ids, never from request text; a project file's
path passed ``clean_relpath`` when it was stored. What a run can write (its
``output/``, ``run/`` and ``tes/``) is read only through ``backend.safe_open``.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app

from backend.files import inside

from .models import Analysis, Project, ProjectFile, ResumableUpload


def user_dir(user_id: int) -> Path:
    """Every project of one user."""
    return Path(current_app.config["USER_DATA_DIR"]) / str(user_id)


def project_dir(project: Project) -> Path:
    return user_dir(project.owner_id) / str(project.id)


def files_dir(project: Project) -> Path:
    return project_dir(project) / "files"


def disk_path(entry: ProjectFile) -> Path:
    """A project file's or folder's path, checked to stay inside its project."""
    return inside(files_dir(entry.project), entry.path)


def staging_dir(project: Project) -> Path:
    """Where uploads and extractions of ``project`` are put together (made on first
    use; on the files' filesystem, so that finished work moves with a rename)."""
    staging = project_dir(project) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def upload_path(upload: ResumableUpload) -> Path:
    """The bytes a resumable upload has received so far."""
    return staging_dir(upload.project) / f"tus-{upload.id}"


def analysis_dir(analysis: Analysis) -> Path:
    return project_dir(analysis.project) / "analyses" / str(analysis.id)


def output_dir(analysis: Analysis) -> Path:
    return analysis_dir(analysis) / "output"


def log_path(analysis: Analysis) -> Path:
    return analysis_dir(analysis) / "log.txt"


def work_dir(analysis: Analysis) -> Path:
    """The runner's own files for this run (a Slurm job's script and spool)."""
    return analysis_dir(analysis) / "run"


def task_dir(analysis: Analysis) -> Path:
    """A TES task's own folder, bound at backend.tes.TASK_DIR while it runs."""
    return analysis_dir(analysis) / "tes"


def task_inputs_dir(analysis: Analysis) -> Path:
    """A TES task's inline inputs, one file per input, by number."""
    return analysis_dir(analysis) / "tes-inputs"


def snapshots_dir() -> Path:
    return Path(current_app.config["FAILED_ANALYSES_DIR"])


def snapshot_dir(analysis_id: int) -> Path:
    """Where a failed run's state is kept."""
    return snapshots_dir() / str(analysis_id)
