"""Run kinds: what sort of run an analysis is, and what that decides. The worker
asks the analysis' kind, never its pipeline's name:

- ``plan(analysis, runner, config)``: what to start: argv, limits, the project's
  files or the binds; raises ``CannotRun`` with a line for the run's log when it
  cannot start here (a GA4GH TES task on a runner without containers, a task's
  input deleted since it was created);
- ``pipeline_image``: whether its image is a pipeline's, whose absence is recorded
  for the admins and the run forms (a TES task's image is the task's own);
- ``mails``: whether its owner gets a mail when it ends (a workflow engine
  follows its hundreds of TES tasks itself);
- ``requeue_refusal``: why admins may not queue it again, or None.

The kinds are the app's, in the order they are asked (``create_app`` puts them in
``app.extensions``): a GA4GH TES task (``tes/kind.py``), then an ordinary pipeline
run (``analyses/kind.py``), which takes any analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flask import current_app

from backend.runners import Mount, Runner

from .models import Analysis

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


class RunKind(Protocol):
    name: str
    noun: str  # what its log calls it ("run", "task")
    pipeline_image: bool
    mails: bool
    requeue_refusal: str | None

    def claims(self, analysis: Analysis) -> bool:
        """Whether ``analysis`` is of this kind."""

    def plan(self, analysis: Analysis, runner: Runner, config) -> Plan:
        """What to start on ``runner``; raises CannotRun."""


def kind_of(analysis: Analysis) -> RunKind:
    """The kind of ``analysis``: the first of the app's kinds that claims it."""
    for kind in current_app.extensions[EXTENSION]:
        if kind.claims(analysis):
            return kind
    raise LookupError(f"no run kind takes analysis {analysis.id}")
