"""Analyses on the web side: pipelines on offer, submission, queue, cancellation.

The worker side (starting, watching, finishing, recovering) is in ``frontend/worker/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatch
from typing import BinaryIO

import sqlalchemy as sa
from flask import abort, current_app
from zipstream import ZipStream

from backend import safe_open
from backend.files import UnsafeName, clean_relpath
from backend.manifest import Pipeline
from backend.params import validate_params
from backend.runners import format_duration, mib
from backend.runners.base import parse_progress

from ..core import audit
from ..core.access import Access, get_readable_or_404, projects_where
from ..core.downloads import INLINE_IMAGES, add_open_files, suffix_of
from ..core.extensions import db
from ..core.kinds import kind_of
from ..core.layout import analysis_dir, output_dir
from ..core.models import (
    FINISHED_STATES,
    Analysis,
    AnalysisState,
    Project,
    ProjectFile,
    RetentionNotice,
    User,
    WatcherLease,
    utcnow,
)
from ..core.pipelines import all_pipelines, availability, enabled_pipelines
from ..core.queue import fair_order, may_go_at_once, request_dispatch, send_at_once
from ..core.runners import NoClusterAccount, cluster_account_for, runner_for
from ..projects.preview import TABLES, make_preview
from ..projects.services import UploadResult, add_files


class AnalysisError(Exception):
    """A request about an analysis that cannot be honoured, with the reason."""


class PipelineUnavailable(AnalysisError):
    """The pipeline cannot run at the moment (its image is missing)."""


def missing_cluster_account(user: User, pipeline: str) -> str | None:
    """What keeps ``user`` from running ``pipeline`` for want of a cluster
    account, or None."""
    try:
        cluster_account_for(user, runner_for(pipeline))
    except NoClusterAccount as exc:
        return str(exc)
    return None


# --- Pipelines ----------------------------------------------------------------------


def get_pipeline_or_404(name: str) -> Pipeline:
    pipeline = enabled_pipelines().get(name)
    if pipeline is None:
        abort(404, f"There is no pipeline called “{name}” here.")
    return pipeline


# --- Lookups ------------------------------------------------------------------------


def get_analysis_or_404(analysis_id: int, control: bool = False) -> Analysis:
    """An analysis of a project the signed-in user may read (any analysis for
    admins), or 404; with ``control`` (cancel, delete, share), 403 unless they ran
    it or own its project."""
    return get_readable_or_404(Analysis, analysis_id, control)


def project_file_paths(project: Project) -> list[str]:
    return list(
        db.session.scalars(
            sa.select(ProjectFile.path)
            .where(ProjectFile.project_id == project.id, ~ProjectFile.is_dir)
            .order_by(ProjectFile.path)
        )
    )


# --- Submission ---------------------------------------------------------------------


def ready_to_submit(user: User, pipeline: Pipeline) -> str:
    """The runner ``user``'s runs of ``pipeline`` go to now; raises
    PipelineUnavailable (or NoClusterAccount) when they cannot submit them."""
    state = availability({pipeline.name: pipeline})[pipeline.name]
    if not state.ready:
        raise PipelineUnavailable(state.message(pipeline))
    runner = runner_for(pipeline.name)
    cluster_account_for(user, runner)
    return runner


def checked_params(pipeline: Pipeline, values: dict, files: list[str]) -> dict:
    """``values`` checked against the pipeline's schema and the site's caps (the
    project holding ``files``); raises ParamsInvalid with per-field messages."""
    config = current_app.config
    return validate_params(
        pipeline,
        values,
        files,
        max_chars=config["MAX_PARAM_CHARS"],
        max_argv_bytes=config["MAX_ARGV_BYTES"],
    )


def submit(
    user: User,
    project: Project,
    pipeline: Pipeline,
    values: dict,
    files: list[str] | None = None,
) -> Analysis:
    """Check the values, record a queued analysis and send it to the workers.

    ``files`` are the project's file paths when the caller has them already.
    Raises PipelineUnavailable when its image is missing, and
    backend.params.ParamsInvalid with per-field messages.
    """
    runner = ready_to_submit(user, pipeline)
    if files is None:
        files = project_file_paths(project)
    params = checked_params(pipeline, values, files)
    analysis = Analysis(
        owner=user,
        project=project,
        pipeline=pipeline.name,
        pipeline_version=pipeline.version,
        image=pipeline.image_tag,
        params=params,
        state=AnalysisState.QUEUED,
        runner=runner,
    )
    return enqueue(analysis)


def enqueue(analysis: Analysis, before_commit=None) -> Analysis:
    """Record a new queued analysis and send it to the workers. ``before_commit``
    (given the analysis, its id known) adds what belongs with it."""
    # The runner is chosen now: a run keeps it when an admin moves its pipeline.
    with db.session.no_autoflush:
        analysis.runner = analysis.runner or runner_for(analysis.pipeline)
    db.session.add(analysis)
    db.session.flush()  # its id names its folder
    write_params(analysis)
    if before_commit is not None:
        before_commit(analysis)
    # The row is the queue: if the broker is away, the dispatcher sends it later.
    at_once = may_go_at_once(analysis)
    if at_once:
        analysis.dispatched_at = utcnow()
    db.session.commit()
    if at_once:
        send_at_once(analysis.id, analysis.runner)
    else:
        request_dispatch()
    return analysis


def write_params(analysis: Analysis) -> None:
    folder = analysis_dir(analysis)
    folder.mkdir(parents=True, exist_ok=True)
    safe_open.write_file(
        folder, "params.json", json.dumps(analysis.params, indent=2).encode()
    )


def cancel(analysis: Analysis) -> str:
    """Cancel a queued analysis at once, or ask the worker to stop a running one."""
    if analysis.state == AnalysisState.QUEUED:
        updated = db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis.id, Analysis.state == AnalysisState.QUEUED)
            .values(state=AnalysisState.CANCELLED, finished_at=utcnow())
        ).rowcount
        db.session.commit()
        if updated:
            return "The analysis was cancelled before it started."
        db.session.refresh(analysis)
    if analysis.state == AnalysisState.RUNNING:
        analysis.cancel_requested = True
        db.session.commit()
        return "The analysis is being stopped."
    raise AnalysisError(f"The analysis has already {analysis.state.value}.")


def set_keep(analysis: Analysis, keep: bool) -> str:
    """Pin an analysis (the retention policy never removes its outputs, nor its
    project), or unpin it; a warning standing about it is withdrawn."""
    analysis.keep = keep
    if keep:
        db.session.execute(
            sa.delete(RetentionNotice).where(
                RetentionNotice.about("outputs", analysis.id)
            )
        )
    audit.record(
        "analysis.kept" if keep else "analysis.unkept", f"analysis {analysis.id}"
    )
    db.session.commit()
    if keep:
        return f"Analysis #{analysis.id} is kept: the retention policy leaves it alone."
    return f"Analysis #{analysis.id} is no longer kept."


def requeue(analysis: Analysis) -> Analysis:
    """Run a finished analysis again (admins): a new analysis with the same
    pipeline, image and parameters, and a folder of its own; the earlier one, its
    log, outputs and outcome stay as they were."""
    if not analysis.finished:
        raise AnalysisError("Only a finished analysis can be queued again.")
    refusal = kind_of(analysis).requeue_refusal
    if refusal:
        raise AnalysisError(refusal)
    again = Analysis(
        owner_id=analysis.owner_id,
        project_id=analysis.project_id,
        pipeline=analysis.pipeline,
        pipeline_version=analysis.pipeline_version,
        image=analysis.image,
        params=analysis.params,
        state=AnalysisState.QUEUED,
        retry_of_id=analysis.id,
    )

    def record(again: Analysis) -> None:
        audit.record(
            "analysis.requeued",
            f"analysis {analysis.id} of {analysis.owner.email}",
            f"queued again as analysis {again.id}",
        )

    # As any new run: its runner chosen now, its parameters written before the
    # commit, sent at once or dispatched in turn.
    return enqueue(again, before_commit=record)


def attempts(analysis: Analysis) -> list[Analysis]:
    """The runs of this analysis' chain ("queue again" makes a new one), oldest
    first: this one, the ones it repeats and the ones that repeat it."""
    first = analysis
    while first.retry_of is not None:
        first = first.retry_of
    chain, ids = [first], {first.id}
    while True:
        following = db.session.scalar(
            sa.select(Analysis).where(
                Analysis.retry_of_id == chain[-1].id, Analysis.id.not_in(ids)
            )
        )
        if following is None:
            return chain
        chain.append(following)
        ids.add(following.id)


# --- History ------------------------------------------------------------------------

HISTORY_PAGE_SIZE = 50


def runs_of(user: User):
    """SQL condition on Analysis: the runs ``user`` submitted in projects they may
    still read (a run in a project no longer shared with them is the project's)."""
    readable = sa.select(Project.id).where(projects_where(user, Access.READ))
    return sa.and_(Analysis.owner_id == user.id, Analysis.project_id.in_(readable))


def history(
    user: User,
    state: str | None = None,
    pipeline: str | None = None,
    project_id: int | None = None,
    page: int = 1,
    per_page: int = HISTORY_PAGE_SIZE,
):
    """The user's analyses, or with ``project_id`` every analysis of that project
    if they may read it (whoever ran it), newest first, filtered and paginated
    (one query for the page, one for the count; projects and who ran them are
    loaded with the rows)."""
    stmt = (
        sa.select(Analysis)
        .options(sa.orm.joinedload(Analysis.project), sa.orm.joinedload(Analysis.owner))
        .order_by(Analysis.submitted_at.desc(), Analysis.id.desc())
    )
    if project_id:
        stmt = stmt.where(
            Analysis.project_id == project_id,
            Analysis.project_id.in_(
                sa.select(Project.id).where(projects_where(user, Access.READ))
            ),
        )
    else:
        stmt = stmt.where(runs_of(user))
    if state in {s.value for s in AnalysisState}:
        stmt = stmt.where(Analysis.state == state)
    if pipeline:
        stmt = stmt.where(Analysis.pipeline == pipeline)
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def delete(analysis: Analysis) -> None:
    """Delete a finished analysis with its outputs."""
    if not analysis.finished:
        raise AnalysisError("Cancel the analysis before deleting it.")
    delete_analysis(analysis)


def delete_analysis(analysis: Analysis) -> None:
    """Delete an analysis row and its folder (outputs, log, parameters)."""
    folder = analysis_dir(analysis)
    audit.record(
        "analysis.deleted",
        f"analysis {analysis.id} ({analysis.pipeline}) of {analysis.owner.email}",
    )
    db.session.delete(analysis)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)


# --- Queue --------------------------------------------------------------------------


@dataclass
class QueueView:
    queued: list[tuple[Analysis, int]]  # with the position in the global queue
    running: list[Analysis]
    finished: list[Analysis]


def queue_for(user: User, everyone: bool = False, recent: int = 20) -> QueueView:
    """Queued analyses with their place in the global queue, running ones, and the
    most recent finished ones, for ``user`` (or everyone, for admins)."""

    def mine(stmt):
        return stmt if everyone else stmt.where(runs_of(user))

    ranked = fair_order()
    queued = db.session.execute(
        mine(
            sa.select(Analysis, ranked.c.position)
            .join(ranked, ranked.c.id == Analysis.id)
            .order_by(ranked.c.position)
        )
    ).all()
    running = db.session.scalars(
        mine(
            sa.select(Analysis)
            .where(Analysis.state == AnalysisState.RUNNING)
            .order_by(Analysis.started_at)
        )
    ).all()
    finished = db.session.scalars(
        mine(
            sa.select(Analysis)
            .where(Analysis.state.in_(FINISHED_STATES))
            .order_by(Analysis.finished_at.desc())
            .limit(recent)
        )
    ).all()
    return QueueView([(a, p) for a, p in queued], list(running), list(finished))


def queue_position(analysis: Analysis) -> int | None:
    """1 for the next analysis to start, in the dispatcher's fair order; None
    unless queued."""
    if analysis.state != AnalysisState.QUEUED:
        return None
    order = fair_order()
    return db.session.scalar(
        sa.select(order.c.position).where(order.c.id == analysis.id)
    )


def waiting_for_worker(analysis: Analysis) -> str | None:
    """What a queued analysis waits for when no live worker serves its runner (a
    Slurm pipeline while the login node's worker is down), else None."""
    if analysis.state != AnalysisState.QUEUED or not analysis.runner:
        return None
    since = utcnow() - timedelta(
        seconds=current_app.config["HEARTBEAT_TIMEOUT_SECONDS"]
    )
    served = db.session.scalars(
        sa.select(WatcherLease.runners).where(WatcherLease.renewed_at >= since)
    ).all()
    if any(analysis.runner in (runners or []) for runners in served):
        return None
    return (
        f"No worker for the {analysis.runner} runner is running at the moment: the "
        "run waits until one starts (the administrators can see the workers)."
    )


LOG_CHUNK = 64 * 1024


def open_log(analysis: Analysis) -> BinaryIO:
    """The analysis' log, open for reading (FileNotFoundError before it has one)."""
    return safe_open.open_file(analysis_dir(analysis), "log.txt")


def read_log(analysis: Analysis, offset: int) -> tuple[str, int]:
    """The log text from byte ``offset`` (at most LOG_CHUNK bytes) and the offset
    to ask for next; the file is never read whole."""
    try:
        with open_log(analysis) as handle:
            size = handle.seek(0, 2)
            offset = min(max(offset, 0), size)
            handle.seek(offset)
            data = handle.read(LOG_CHUNK)
    except FileNotFoundError:
        return "", 0
    # Whole lines only while it runs (a progress line is known once it ends, and
    # no character is cut in two); a line longer than a chunk goes as it is.
    if b"\n" in data and (len(data) == LOG_CHUNK or not analysis.finished):
        data = data[: data.rindex(b"\n") + 1]
    elif len(data) < LOG_CHUNK and not analysis.finished:
        data = b""  # an unfinished line: with the rest of it, next time
    return readable(data), offset + len(data)


def readable(data: bytes) -> str:
    """Log text as people read it: the ##progress lines the pipeline prints for
    the progress bar left out (the full log download keeps them)."""
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(line for line in lines if parse_progress(line) is None)


def inputs_of(analysis: Analysis, shown: int = 3) -> str:
    """The project files a run read (its pipeline's file parameters), for lists:
    "a.csv, b.csv and 4 more"."""
    pipeline = all_pipelines().get(analysis.pipeline)
    keys = pipeline.file_fields() if pipeline else {}
    files: list[str] = []
    for key in keys:
        value = analysis.params.get(key)
        files += value if isinstance(value, list) else [value] if value else []
    if len(files) <= shown:
        return ", ".join(files)
    return ", ".join(files[:shown]) + f" and {len(files) - shown} more"


def started_line(analysis: Analysis) -> str | None:
    """The timeline's "Started" line, once it has started."""
    if analysis.started_at is None:
        return None
    waited = (analysis.started_at - analysis.submitted_at).total_seconds()
    attempt = f" (attempt {analysis.attempt})" if analysis.attempt > 1 else ""
    return (
        f"Started {analysis.started_at:%H:%M:%S} UTC, after "
        f"{format_duration(max(waited, 0))} in the queue{attempt}"
    )


def elapsed(analysis: Analysis) -> str:
    """How long the analysis has been running (or ran), e.g. "2 min 5 s"."""
    if analysis.started_at is None:
        return "—"
    end = analysis.finished_at or utcnow()
    return format_duration((end - analysis.started_at).total_seconds())


@dataclass
class FeaturedOutput:
    path: str
    size: int
    kind: str  # image, svg, table, json, text, html, other
    preview: object = None


_KINDS = {
    **dict.fromkeys(INLINE_IMAGES, "image"),
    **dict.fromkeys(TABLES, "table"),
    ".svg": "svg",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".log": "text",
    ".md": "text",
}


def featured_outputs(
    analysis: Analysis, files: list[tuple[str, int]]
) -> list[FeaturedOutput]:
    """Those of ``files`` (the analysis' output_files) the pipeline's manifest
    features, in the manifest's order, with previews."""
    pipeline = all_pipelines().get(analysis.pipeline)
    if pipeline is None:
        return []
    featured, seen = [], set()
    for pattern in pipeline.outputs:
        for path, size in files:
            if path in seen or not fnmatch(path, pattern):
                continue
            seen.add(path)
            item = FeaturedOutput(path, size, _KINDS.get(suffix_of(path), "other"))
            if item.kind in ("table", "json", "text"):
                try:
                    with open_output(analysis, path) as handle:
                        item.preview = make_preview(
                            handle,
                            path,
                            current_app.config["PREVIEW_MAX_BYTES"] * 4,
                            current_app.config["RESULT_TABLE_ROWS"],
                        )
                except FileNotFoundError:
                    continue  # gone, or no longer a regular file, since listed
            featured.append(item)
    return featured


TAIL_BYTES = 20_000


def log_tail(analysis: Analysis) -> str:
    """The last TAIL_BYTES of the log, read from the end, not the whole file."""
    try:
        with open_log(analysis) as handle:
            return readable(safe_open.tail(handle, TAIL_BYTES))
    except FileNotFoundError:
        return ""


def output_files(analysis: Analysis) -> list[tuple[str, int]]:
    """(relative path, size) of every regular output file; links, special files
    and what they point to are left out (``backend.safe_open``)."""
    return safe_open.list_files(output_dir(analysis))


def open_output(analysis: Analysis, relpath: str) -> BinaryIO:
    """The output file ``relpath``, open for reading: reached without following a
    link, and a regular file (else FileNotFoundError). Send or copy this handle,
    never the path."""
    return safe_open.open_file(output_dir(analysis), relpath)


def outputs_folder(analysis: Analysis) -> str:
    """The folder "Add to project" offers for ``analysis``' outputs."""
    return f"from-analysis-{analysis.id}-{analysis.pipeline}"


def add_outputs_to_project(
    analysis: Analysis,
    project: Project,
    folder: str,
    paths: list[str] | None,
    on_clash: str,
    by: User,
) -> tuple[str, list[UploadResult]]:
    """Put outputs of a finished ``analysis`` (``paths``, or all with None) into
    ``project``'s ``folder``, each with where it came from, so that runs can use
    them like any file; returns the folder's path as stored, and what became of
    each. Raises AnalysisError, StorageError or UnsafeName."""
    if not analysis.finished:
        raise AnalysisError("Its outputs can be added once the analysis has ended.")
    listed = dict(output_files(analysis))
    unnamable: list[UploadResult] = []
    if paths is None:  # all of them: those whose names a project cannot hold
        chosen = []  # are left out, and said so
        for path in listed:
            try:
                clean_relpath(path)
                chosen.append(path)
            except UnsafeName as exc:
                unnamable.append(UploadResult("refused", path, str(exc)))
    else:
        chosen = list(dict.fromkeys(paths))
    unknown = [path for path in chosen if path not in listed]
    if unknown:
        raise AnalysisError(f"“{unknown[0]}” is not an output of #{analysis.id}.")
    if not chosen:
        raise AnalysisError("Choose the outputs to add (or add them all).")
    folder = clean_relpath(folder)
    sources = [(path, listed[path]) for path in chosen]
    results = add_files(
        project,
        folder,
        sources,
        lambda path: open_output(analysis, path),
        on_clash,
        provenance(analysis, by),
    )
    return folder, unnamable + results


def provenance(analysis: Analysis, by: User) -> dict:
    """Where a project file added from ``analysis``' outputs came from, kept
    with it (each file adds its own ``output`` path)."""
    return {
        "analysis": analysis.id,
        "pipeline": analysis.pipeline,
        "version": analysis.pipeline_version,
        "params": analysis.params,
        "added_by": by.email,
        "added_at": utcnow().isoformat(timespec="seconds"),
    }


def outputs_zip(analysis: Analysis) -> ZipStream:
    """Every output of ``analysis`` as a zip, built while it is sent (each file
    opened safely when the zip reaches it)."""
    stream = ZipStream(sized=True)
    add_open_files(stream, output_dir(analysis), output_files(analysis))
    return stream


def outputs_zip_name(analysis: Analysis) -> str:
    return f"analysis-{analysis.id}-{analysis.pipeline}.zip"


@dataclass
class ResourceLine:
    label: str
    used: str
    limit: str


def resources(analysis: Analysis) -> list[ResourceLine]:
    """What the run used next to the limits it ran under, for its page."""
    limits = analysis.limits or {}
    lines = []
    if analysis.peak_memory_bytes is not None or limits.get("memory_mb"):
        used = (
            mib(analysis.peak_memory_bytes)
            if analysis.peak_memory_bytes is not None
            else "—"
        )
        limit = f"{limits['memory_mb']:,} MiB" if limits.get("memory_mb") else "—"
        lines.append(ResourceLine("Peak memory", used, limit))
    if analysis.cpu_seconds is not None or limits.get("cpus"):
        used = (
            f"{analysis.cpu_seconds:,.1f} s of CPU time"
            if analysis.cpu_seconds is not None
            else "—"
        )
        lines.append(
            ResourceLine("CPU", used, f"{limits['cpus']:g} CPU" if limits else "—")
        )
    if analysis.started_at is not None:
        lines.append(
            ResourceLine(
                "Wall time",
                elapsed(analysis),
                format_duration(limits["timeout_s"]) if limits else "—",
            )
        )
    lines.append(
        ResourceLine(
            "Outputs and log",
            mib(analysis.output_bytes or 0),
            f"{mib(limits['max_output_bytes'])}{limits.get('output_limit_note', '')}"
            if limits
            else "—",
        )
    )
    return lines
