"""Batches: one analysis per file, submitted together from one run form, followed
and cancelled together, their outputs downloaded as one zip."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

import sqlalchemy as sa
from flask import current_app
from zipstream import ZipStream

from backend.manifest import Pipeline
from backend.params import matches_glob

from ..core.access import get_readable_or_404
from ..core.downloads import add_open_files
from ..core.extensions import db
from ..core.layout import output_dir
from ..core.models import Analysis, AnalysisState, Batch, Project, User, utcnow
from ..core.queue import fair_order, request_dispatch
from . import services as svc


def batch_field(pipeline: Pipeline) -> str | None:
    """The parameter a batch varies: the pipeline's first file parameter."""
    return next(iter(pipeline.file_fields()), None)


def matching_files(pipeline: Pipeline, files: list[str], pattern: str) -> list[str]:
    """The project's ``files`` that match ``pattern`` (shell-style, against the
    whole path: ``*.csv``, ``reads/*_R1.fq.gz``) and that the batch's parameter
    accepts."""
    prop = pipeline.file_fields()[batch_field(pipeline)]
    return [
        path for path in files if fnmatch(path, pattern) and matches_glob(path, prop)
    ]


def submit_batch(
    user: User,
    project: Project,
    pipeline: Pipeline,
    values: dict,
    chosen: list[str],
    files: list[str],
) -> Batch:
    """Queue one analysis per file of ``chosen``, each with ``values`` and that
    file as the batch's parameter. Every run is checked before any is queued;
    raises AnalysisError, PipelineUnavailable or ParamsInvalid."""
    field = batch_field(pipeline)
    limit = current_app.config["BATCH_MAX_RUNS"]
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise svc.AnalysisError("No file was chosen: nothing was submitted.")
    if len(chosen) > limit:
        raise svc.AnalysisError(
            f"A batch runs at most {limit:,} analyses and {len(chosen):,} files were "
            "chosen; nothing was submitted."
        )
    runner = svc.ready_to_submit(user, pipeline)
    many = pipeline.schema["properties"][field].get("type") == "array"
    params = [
        svc.checked_params(pipeline, {**values, field: [path] if many else path}, files)
        for path in chosen
    ]
    batch = Batch(owner=user, project=project, pipeline=pipeline.name, field=field)
    for one in params:
        batch.analyses.append(
            Analysis(
                owner=user,
                project=project,
                pipeline=pipeline.name,
                pipeline_version=pipeline.version,
                image=pipeline.image_tag,
                params=one,
                state=AnalysisState.QUEUED,
                runner=runner,
            )
        )
    db.session.add(batch)
    db.session.flush()  # their ids name their folders
    for analysis in batch.analyses:
        svc.write_params(analysis)
    db.session.commit()
    # The dispatcher sends as many as the per-user and site limits allow.
    request_dispatch()
    return batch


def get_batch_or_404(batch_id: int, control: bool = False) -> Batch:
    """A batch of a project the signed-in user may read (any, for admins), or
    404; with ``control``, 403 unless they submitted it or own its project."""
    return get_readable_or_404(Batch, batch_id, control)


def input_of(batch: Batch, analysis: Analysis) -> str:
    value = analysis.params.get(batch.field, "")
    return ", ".join(value) if isinstance(value, list) else str(value)


@dataclass
class BatchRow:
    analysis: Analysis
    input: str
    position: int | None
    elapsed: str

    def as_dict(self) -> dict:
        analysis = self.analysis
        return {
            "id": analysis.id,
            "state": analysis.state.value,
            "progress": analysis.progress_percent,
            "message": analysis.progress_message,
            "position": self.position,
            "elapsed": self.elapsed,
            "error": analysis.error_summary or "",
        }


def rows_of(batch: Batch) -> list[BatchRow]:
    """Each analysis of ``batch`` with its input, place in the queue and time so
    far (three queries, however many analyses)."""
    analyses = db.session.scalars(
        sa.select(Analysis)
        .where(Analysis.batch_id == batch.id)
        .order_by(Analysis.id)
        .execution_options(populate_existing=True)
    ).all()
    ranked = fair_order()
    positions = dict(
        db.session.execute(
            sa.select(ranked.c.id, ranked.c.position).where(
                ranked.c.id.in_([a.id for a in analyses])
            )
        ).all()
    )
    return [
        BatchRow(a, input_of(batch, a), positions.get(a.id), svc.elapsed(a))
        for a in analyses
    ]


def counts(rows: list[BatchRow]) -> dict[str, int]:
    found = {state.value: 0 for state in AnalysisState}
    for row in rows:
        found[row.analysis.state.value] += 1
    return found


def batches_of(user: User, project_id: int | None, limit: int) -> list[Batch]:
    """The last ``limit`` batches ``user`` submitted (of one project, if given),
    newest first."""
    stmt = sa.select(Batch).where(Batch.owner_id == user.id)
    if project_id is not None:
        stmt = stmt.where(Batch.project_id == project_id)
    return list(db.session.scalars(stmt.order_by(Batch.id.desc()).limit(limit)))


def counts_of(batch_ids: list[int]) -> dict[int, dict[str, int]]:
    """How many analyses of each batch are in each state, in one query."""
    found = {
        batch_id: {state.value: 0 for state in AnalysisState} for batch_id in batch_ids
    }
    rows = db.session.execute(
        sa.select(Analysis.batch_id, Analysis.state, sa.func.count())
        .where(Analysis.batch_id.in_(batch_ids))
        .group_by(Analysis.batch_id, Analysis.state)
    )
    for batch_id, state, count in rows:
        found[batch_id][state.value] = count
    return found


def cancel_batch(batch: Batch) -> str:
    """Cancel every analysis of ``batch`` not finished: queued ones at once,
    running ones stopped by their watcher."""
    queued = db.session.execute(
        sa.update(Analysis)
        .where(Analysis.batch_id == batch.id, Analysis.state == AnalysisState.QUEUED)
        .values(state=AnalysisState.CANCELLED, finished_at=utcnow())
    ).rowcount
    running = db.session.execute(
        sa.update(Analysis)
        .where(Analysis.batch_id == batch.id, Analysis.state == AnalysisState.RUNNING)
        .values(cancel_requested=True)
    ).rowcount
    db.session.commit()
    if not queued and not running:
        raise svc.AnalysisError("Every analysis of the batch has already ended.")
    return f"{queued} queued analysis(es) cancelled, {running} running being stopped."


def outputs_zip(batch: Batch) -> ZipStream:
    """Every output of every analysis of ``batch``, each in a folder named after
    the analysis and its input, built while it is sent."""
    stream = ZipStream(sized=True)
    for analysis in batch.analyses:
        name = input_of(batch, analysis).rsplit("/", 1)[-1] or "input"
        folder = f"{analysis.id}-{name}"
        root = output_dir(analysis)
        add_open_files(stream, root, svc.output_files(analysis), f"{folder}/")
    return stream
