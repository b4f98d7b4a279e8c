"""Run kinds: what sort of run an analysis is, and what that decides. The worker
asks the analysis' kind, never its pipeline's name:

- ``plan(analysis, runner, config)``: what to start: argv, limits, the project's
  files or the binds; raises ``CannotRun`` with a line for the run's log when it
  cannot start here (a GA4GH TES task on a runner without containers, a task's
  input deleted since it was created);
- ``missing_image(analysis, problem)``: the ``Stop`` of a run whose image is not
  on the runner (a pipeline's is recorded for the admins and the run forms; a TES
  task's image is the task's own, and its log says so);
- ``deliver(analysis)``: the last step of a run whose program succeeded (a TES
  task's outputs added to the projects its ``labqueue://`` URLs name); why it
  could not be done, which fails the run, or None;
- ``end_mail(analysis)``: its owner's mail about how it ended, in the outbox
  with the ending's own transaction, or None (a workflow engine follows its
  hundreds of TES tasks itself);
- ``requeue_refusal``: why admins may not queue it again, or None.

The kinds are the app's, in the order they are asked (``create_app`` puts them in
``app.extensions``): a GA4GH TES task (``tes/kind.py``), then an ordinary pipeline
run (``analyses/kind.py``), which takes any analysis.

``build_spec`` turns a kind's plan into the runner's ``RunSpec`` (its output cap
lowered to what the owner's quota leaves); ``spec_for`` makes one from the row
alone, for whoever follows a launched run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flask import current_app

from backend.runners import Mount, Runner, RunSpec

from .layout import log_path, output_dir, work_dir
from .models import Analysis, OutgoingMail
from .runners import cluster_account_for
from .storage import output_room

EXTENSION = "labqueue.run_kinds"


@dataclass(frozen=True)
class Plan:
    """What to start for one run. ``limits`` are the run's own (cpus, memory_mb,
    pids, timeout_s) and ``max_output_bytes``, the site's cap before the owner's
    quota lowers it."""

    argv: list[str]
    limits: dict
    input_dir: Path | None = None  # the project's files, bound at /data/input
    mounts: tuple[Mount, ...] = ()


class CannotRun(Exception):
    """A line for the run's log: why it ends before it starts (the server's
    doing, not the run's: TES calls it a SYSTEM_ERROR)."""


@dataclass
class Stop:
    """Why a claimed run ends before it runs: its ``reason`` (a researcher's
    words) and, for admins, the ``detail`` and ``failure``; with ``log_line``,
    the server could not run it (a TES SYSTEM_ERROR), said first in its log; with
    ``missing_image``, its pipeline's image is not here, as the engine says."""

    reason: str | None = None
    detail: str | None = None
    failure: Exception | None = None
    log_line: str | None = None
    missing_image: str | None = None


class RunKind(Protocol):
    name: str
    noun: str  # what its log calls it ("run", "task")
    requeue_refusal: str | None

    def claims(self, analysis: Analysis) -> bool:
        """Whether ``analysis`` is of this kind."""

    def plan(self, analysis: Analysis, runner: Runner, config) -> Plan:
        """What to start on ``runner``; raises CannotRun."""

    def missing_image(self, analysis: Analysis, problem: str) -> Stop:
        """How a run ends whose image the runner lacks (``problem``, the
        runner's words)."""

    def deliver(self, analysis: Analysis) -> str | None:
        """Finish a run whose program succeeded; why that failed, or None."""

    def end_mail(self, analysis: Analysis) -> OutgoingMail | None:
        """The owner's mail about how ``analysis`` ended, added to the session,
        or None."""


def kind_of(analysis: Analysis) -> RunKind:
    """The kind of ``analysis``: the first of the app's kinds that claims it."""
    for kind in current_app.extensions[EXTENSION]:
        if kind.claims(analysis):
            return kind
    raise LookupError(f"no run kind takes analysis {analysis.id}")


# --- From a plan to the runner's RunSpec ------------------------------------------


def build_spec(
    analysis: Analysis, runner: Runner, plan: Plan, room: int | None = None
) -> RunSpec:
    """The run to launch: its kind's plan, with limits capped by what the owner's
    quota leaves (``room``, when the caller has just measured it)."""
    config = current_app.config
    limits = dict(plan.limits)
    room = output_room(analysis) if room is None else room
    site_cap = limits.pop("max_output_bytes")
    limits.update(
        max_output_bytes=max(min(site_cap, room), 0),
        output_limit_note="" if site_cap <= room else " (what your quota had left)",
        max_log_bytes=config["MAX_LOG_BYTES"],
    )
    return spec_for(
        analysis,
        argv=plan.argv,
        limits=limits,
        mounts=plan.mounts,
        input_dir=plan.input_dir,
        cluster_account=cluster_account_for(analysis.owner, runner.name),
    )


def spec_for(
    analysis: Analysis,
    argv=(),
    limits: dict | None = None,
    mounts: tuple = (),
    input_dir: Path | None = None,
    cluster_account: str | None = None,
) -> RunSpec:
    """The run's description from its row (the watcher needs no argv)."""
    return RunSpec(
        analysis_id=analysis.id,
        argv=list(argv),
        image=analysis.image,
        input_dir=input_dir,
        output_dir=output_dir(analysis),
        log_path=log_path(analysis),
        work_dir=work_dir(analysis),
        attempt=analysis.attempt,
        user=current_app.config["PIPELINE_USER"],
        mounts=mounts,
        cluster_account=cluster_account,
        **(limits if limits is not None else analysis.limits or {}),
    )


def limits_of(spec: RunSpec) -> dict:
    return {
        "cpus": spec.cpus,
        "memory_mb": spec.memory_mb,
        "pids": spec.pids,
        "timeout_s": spec.timeout_s,
        "max_output_bytes": spec.max_output_bytes,
        "output_limit_note": spec.output_limit_note,
        "max_log_bytes": spec.max_log_bytes,
    }
