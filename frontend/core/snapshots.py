"""A failed run's state, kept in FAILED_ANALYSES_DIR/<analysis id>/: its
parameters, its log, an error record (reason, exit code, exception, traceback,
timings, image, where it ran, its limits and usage) and a manifest of its inputs
with their digests. Written once its failure is recorded; retention removes old
ones."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import sqlalchemy as sa

from backend import safe_open

from .extensions import db
from .layout import analysis_dir, files_dir, snapshot_dir
from .models import Analysis, ProjectFile


def keep(
    analysis: Analysis,
    reason: str | None,
    exit_code: int | None = None,
    detail: str | None = None,
    failure: Exception | None = None,
) -> Path:
    """Keep what is needed to understand a failed run in FAILED_ANALYSES_DIR/<id>/:
    its parameters, its log, an error record and a manifest of its inputs."""
    target = snapshot_dir(analysis.id)
    target.mkdir(parents=True, exist_ok=True)
    (target / "params.json").write_text(json.dumps(analysis.params, indent=2))
    safe_open.copy_to(analysis_dir(analysis), "log.txt", target / "log.txt")
    started, finished = analysis.started_at, analysis.finished_at
    error = {
        "analysis": analysis.id,
        "pipeline": f"{analysis.pipeline} {analysis.pipeline_version}",
        "reason": reason,
        "detail": detail,
        "exit_code": exit_code,
        "exception": repr(failure) if failure else None,
        "traceback": "".join(traceback.format_exception(failure)) if failure else None,
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "duration_s": (finished - started).total_seconds()
        if started and finished
        else None,
        "image": analysis.image,
        "image_id": analysis.image_id,
        "worker": analysis.worker,
        "attempt": analysis.attempt,
        "runner": analysis.runner,
        "handle": analysis.handle,
        "limits": analysis.limits,
        "peak_memory_bytes": analysis.peak_memory_bytes,
        "cpu_seconds": analysis.cpu_seconds,
    }
    (target / "error.json").write_text(json.dumps(error, indent=2))
    files = files_dir(analysis.project)
    inputs = []
    for path, size in db.session.execute(
        sa.select(ProjectFile.path, ProjectFile.size)
        .where(ProjectFile.project_id == analysis.project_id, ~ProjectFile.is_dir)
        .order_by(ProjectFile.path)
    ):
        digest = safe_open.sha256(files, path)
        if digest is not None:
            inputs.append({"path": path, "size": size, "sha256": digest})
    (target / "inputs.json").write_text(json.dumps(inputs, indent=2))
    return target
