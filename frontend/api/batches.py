"""The REST API for batches: one analysis per file, submitted together (the
files named, or a pattern over the project's paths), followed, cancelled and
downloaded together, through the run form's own services
(``analyses/batches.py``)."""

from __future__ import annotations

from flask import url_for
from flask_login import current_user
from flask_smorest import abort

from ..analyses import batches
from ..analyses import services as analyses
from ..core.access import Access, get_project_or_404
from ..core.downloads import zip_response
from ..core.models import Batch
from .auth import token_required
from .schemas import (
    BatchListArgs,
    BatchSchema,
    BatchSummarySchema,
    CancelSchema,
    NewBatchSchema,
)
from .views import blp, submission_refusals


def _summary(batch: Batch, counts: dict[str, int]) -> dict:
    return {
        "id": batch.id,
        "project_id": batch.project_id,
        "pipeline": batch.pipeline,
        "field": batch.field,
        "created_at": batch.created_at,
        "counts": counts,
    }


def _batch_dict(batch: Batch) -> dict:
    rows = batches.rows_of(batch)
    return {
        **_summary(batch, batches.counts(rows)),
        "analyses": [
            {
                "id": row.analysis.id,
                "input": row.input,
                "state": row.analysis.state.value,
                "progress_percent": row.analysis.progress_percent,
                "queue_position": row.position,
                "error_summary": row.analysis.error_summary,
            }
            for row in rows
        ],
    }


def _chosen(data, pipeline, files: list[str]) -> list[str]:
    """The files the batch runs on, from ``files`` or ``pattern`` (one of the
    two); 422 saying what is wrong."""
    if ("files" in data) == ("pattern" in data):
        abort(422, message="Give the files, or a pattern (one of the two).")
    if batches.batch_field(pipeline) is None:
        abort(
            422,
            message=f"{pipeline.name} takes no file parameter, so it has no batches.",
        )
    if "files" in data:
        return data["files"]
    chosen = batches.matching_files(pipeline, files, data["pattern"])
    if not chosen:
        abort(
            422,
            message=f"No file of the project matches “{data['pattern']}” (and suits "
            f"{pipeline.name}): nothing was submitted.",
        )
    return chosen


@blp.route("/batches", methods=["POST"])
@token_required(write=True)
@blp.arguments(NewBatchSchema)
@blp.response(201, BatchSchema)
def submit_batch(data):
    """Submit one analysis per file, every other parameter shared. Every run is
    checked before any is queued: 422 with the run form's messages, 409 without
    the cluster account a run needs, 503 when the pipeline's image is missing."""
    project = get_project_or_404(data["project_id"], Access.WRITE)
    pipeline = analyses.get_pipeline_or_404(data["pipeline"])
    files = analyses.project_file_paths(project)
    chosen = _chosen(data, pipeline, files)
    with submission_refusals():
        batch = batches.submit_batch(
            current_user, project, pipeline, data["parameters"], chosen, files
        )
    location = url_for("api_v1.get_batch", batch_id=batch.id)
    return _batch_dict(batch), 201, {"Location": location}


@blp.route("/batches", methods=["GET"])
@token_required()
@blp.arguments(BatchListArgs, location="query")
@blp.response(200, BatchSummarySchema(many=True))
def list_batches(args):
    """The batches you submitted, newest first (the last 100), each with how
    many of its analyses are in each state."""
    found = batches.batches_of(current_user, args.get("project_id"), limit=100)
    counts = batches.counts_of([batch.id for batch in found])
    return [_summary(batch, counts[batch.id]) for batch in found]


@blp.route("/batches/<int:batch_id>", methods=["GET"])
@token_required()
@blp.response(200, BatchSchema)
def get_batch(batch_id: int):
    """A batch: how many analyses are in each state, and each one with its
    input, state, progress and place in the queue."""
    return _batch_dict(batches.get_batch_or_404(batch_id))


@blp.route("/batches/<int:batch_id>/cancel", methods=["POST"])
@token_required(write=True)
@blp.response(200, CancelSchema)
def cancel_batch(batch_id: int):
    """Cancel every analysis of the batch that has not ended (409 when none)."""
    batch = batches.get_batch_or_404(batch_id, control=True)
    try:
        said = batches.cancel_batch(batch)
    except analyses.AnalysisError as exc:
        abort(409, message=str(exc))
    return {"message": said}


@blp.route("/batches/<int:batch_id>/outputs.zip", methods=["GET"])
@token_required()
@blp.response(200, description="a zip: one folder per analysis")
def batch_outputs_zip(batch_id: int):
    """Every output of every analysis of the batch, one folder each."""
    batch = batches.get_batch_or_404(batch_id)
    name = f"batch-{batch.id}-{batch.pipeline}.zip"
    return zip_response(batches.outputs_zip(batch), name)
