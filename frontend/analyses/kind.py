"""An ordinary pipeline run as a run kind (``core/kinds.py``): the pipeline's
manifest gives the argv (from the run's checked parameters) and its limits,
within the site's caps; the project's files are its input."""

from __future__ import annotations

from pathlib import Path

from flask import render_template

from backend.manifest import load_pipeline
from backend.params import build_argv
from backend.runners import Runner, format_duration

from ..core.kinds import Plan, Stop
from ..core.layout import files_dir, output_dir
from ..core.links import external_url
from ..core.models import Analysis, AnalysisState, OutgoingMail
from ..core.outbox import queue_mail

# What a researcher reads when the pipeline's image is not on the runner; the
# runner's words go to the failure snapshot and to the admins.
NOT_INSTALLED = (
    "this pipeline is not installed on the server at the moment, so the run could "
    "not start; the administrators have been told"
)


class PipelineRun:
    """A run of one of the site's pipelines (any analysis no other kind claims).
    Its owner gets a mail when it ends (unless they turned these off); admins may
    queue it again."""

    name = "pipeline"
    noun = "run"  # as its log words it: "The run cannot run on this server"
    requeue_refusal = None

    def claims(self, analysis: Analysis) -> bool:
        return True

    def deliver(self, analysis: Analysis) -> str | None:
        """None: a pipeline's outputs stay with its run until someone adds them
        to a project."""
        return None

    def plan(self, analysis: Analysis, runner: Runner, config) -> Plan:
        """The pipeline's argv and its manifest's limits within the site's caps.
        Without containers the pipeline runs from its folder, with host paths."""
        pipeline = load_pipeline(Path(config["PIPELINES_DIR"]) / analysis.pipeline)
        inputs = files_dir(analysis.project)
        if runner.containers:
            argv = build_argv(pipeline, analysis.params)
        else:
            argv = build_argv(
                pipeline,
                analysis.params,
                str(inputs),
                str(output_dir(analysis)),
                str(pipeline.folder),
            )
        resources = pipeline.resources
        limits = {
            "cpus": min(resources.cpus, config["MAX_CPUS_PER_RUN"]),
            "memory_mb": min(resources.memory_mb, config["MAX_MEMORY_MB_PER_RUN"]),
            "pids": min(resources.pids, config["MAX_PIDS_PER_RUN"]),
            "timeout_s": 60 * min(resources.timeout_minutes, config["MAX_RUN_MINUTES"]),
            "max_output_bytes": config["MAX_OUTPUT_BYTES"],
        }
        return Plan(argv, limits, input_dir=inputs)

    def missing_image(self, analysis: Analysis, problem: str) -> Stop:
        """Not installed: said to its owner, recorded for the admins and the run
        forms (the pipeline's image is marked missing)."""
        return Stop(NOT_INSTALLED, detail=problem, missing_image=problem)

    def end_mail(self, analysis: Analysis) -> OutgoingMail | None:
        """The owner's mail about how the run ended (in the outbox, sent once the
        ending is committed), unless they turned these mails off."""
        owner = analysis.owner
        if not owner.notify_by_email:
            return None
        duration = None
        if analysis.started_at and analysis.finished_at:
            seconds = (analysis.finished_at - analysis.started_at).total_seconds()
            duration = format_duration(seconds)
        link = external_url("analyses.detail", analysis_id=analysis.id)
        verb = "finished" if analysis.state == AnalysisState.SUCCEEDED else "failed"
        body = render_template(
            "analyses/email/finished.txt",
            analysis=analysis,
            duration=duration,
            link=link,
        )
        project = analysis.project.name
        subject = f"#{analysis.id} {analysis.pipeline} on {project} {verb}"
        return queue_mail(owner.email, subject, body)
