"""Projects and analyses as admins see them: totals, and cancel, queue again or
remove any run."""

from __future__ import annotations

from flask import flash, g
from flask_admin.actions import action

from ..analyses.services import AnalysisError, cancel, requeue
from ..analyses.services import delete as delete_analysis
from ..core.extensions import db
from ..core.formatting import human_size
from ..core.models import (
    Analysis,
    Project,
)
from ..projects.services import delete_project, project_totals
from .base import SecureModelView


class ProjectView(SecureModelView):
    """Every user's projects, with their size; deleting one removes its files."""

    column_list = ("name", "owner", "files", "size", "created_at", "updated_at")
    column_searchable_list = ("name", "owner.email")
    column_filters = ("owner.email", "created_at", "updated_at")
    column_default_sort = ("updated_at", True)
    column_labels = {"owner.email": "Owner"}
    can_create = False
    can_edit = False
    can_view_details = True
    column_formatters = {
        "files": lambda view, context, model, name: f"{view.totals(model)[0]:,}",
        "size": lambda view, context, model, name: human_size(view.totals(model)[1]),
    }

    def totals(self, project: Project) -> tuple[int, int]:
        cache = g.setdefault("project_totals", {})
        if project.id not in cache:
            cache[project.id] = project_totals(project)
        return cache[project.id]

    def delete_model(self, model: Project) -> bool:
        delete_project(model)
        return True


class AnalysisView(SecureModelView):
    """Every analysis: filter, cancel, queue again, delete; failures readable."""

    column_list = (
        "id",
        "pipeline",
        "owner",
        "project",
        "state",
        "submitted_at",
        "finished_at",
        "attempt",
        "runner",
        "worker",
        "job",
        "peak_memory_bytes",
        "cpu_seconds",
        "output_bytes",
        "error_summary",
    )
    column_filters = (
        "state",
        "pipeline",
        "owner.email",
        "submitted_at",
        "runner",
        "worker",
    )
    column_searchable_list = ("pipeline", "owner.email")
    column_default_sort = ("submitted_at", True)
    column_labels = {
        "owner.email": "User",
        "error_summary": "Failure",
        "peak_memory_bytes": "Peak memory",
        "cpu_seconds": "CPU time",
        "output_bytes": "Outputs and log",
        "retry_of": "Queued again from",
        "worker": "Host",
        "job": "Job id",
    }
    column_formatters = {
        "peak_memory_bytes": lambda v, c, model, n: (
            human_size(model.peak_memory_bytes)
            if model.peak_memory_bytes is not None
            else ""
        ),
        "cpu_seconds": lambda v, c, model, n: (
            f"{model.cpu_seconds:,.1f} s" if model.cpu_seconds is not None else ""
        ),
        "output_bytes": lambda v, c, model, n: human_size(model.output_bytes or 0),
        # The container's id, or the cluster's job id.
        "job": lambda v, c, model, n: (model.handle or {}).get("job_id", "")[:12],
    }
    column_details_list = (
        "id",
        "pipeline",
        "pipeline_version",
        "image",
        "image_id",
        "owner",
        "project",
        "state",
        "params",
        "submitted_at",
        "started_at",
        "finished_at",
        "exit_code",
        "attempt",
        "retry_of",
        "worker",
        "runner",
        "handle",
        "limits",
        "peak_memory_bytes",
        "cpu_seconds",
        "output_bytes",
        "progress_percent",
        "progress_message",
        "error_summary",
    )
    can_create = False
    can_edit = False
    can_view_details = True
    action_disallowed_list = ("delete",)  # our own delete also removes the files

    def delete_model(self, model: Analysis) -> bool:
        delete_analysis(model)
        return True

    def _each(self, ids, apply) -> int:
        done = 0
        for analysis in db.session.scalars(
            db.select(Analysis).where(Analysis.id.in_(ids))
        ):
            try:
                apply(analysis)
                done += 1
            except AnalysisError as exc:
                flash(f"#{analysis.id}: {exc}", "error")
        return done

    @action("cancel", "Cancel", "Cancel the selected analyses?")
    def action_cancel(self, ids: list[str]) -> None:
        """Cancel queued analyses and stop running ones."""
        flash(
            f"{self._each(ids, cancel)} analysis(es) cancelled or stopping.", "success"
        )

    @action("requeue", "Queue again", "Run the selected analyses again?")
    def action_requeue(self, ids: list[str]) -> None:
        """Queue finished analyses again, each as a new analysis; the earlier
        ones keep their logs and outcomes."""
        flash(
            f"{self._each(ids, requeue)} analysis(es) queued again as new ones.",
            "success",
        )

    @action("remove", "Delete with outputs", "Delete the analyses and their outputs?")
    def action_remove(self, ids: list[str]) -> None:
        """Delete analyses with their folders."""
        flash(f"{self._each(ids, delete_analysis)} analysis(es) deleted.", "success")
