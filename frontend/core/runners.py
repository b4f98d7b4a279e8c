"""Which runner a run goes to, which Celery queue carries its start, and the
runner itself, made from the site's settings (``backend.runners`` holds the
runners and their registry).

A run's runner is chosen when it is submitted: its pipeline's, set under
Admin -> Pipelines, else the site's RUNNER; the row keeps it (``runner_of``), so
a run keeps its runner when an admin moves its pipeline.
"""

from __future__ import annotations

import hashlib
import socket

import sqlalchemy as sa
from flask import current_app

from backend.runners import Runner, runner_class

from .extensions import db
from .models import Analysis, PipelineSetting, User


def host_id() -> str:
    """This worker host's name on its runs: WORKER_HOST, or the hostname."""
    return current_app.config.get("WORKER_HOST") or socket.gethostname()


def site_id() -> str:
    """This deployment's name on a shared Docker engine or cluster: SITE_ID, or a
    digest of the database URL, which every worker of one deployment shares."""
    configured = current_app.config.get("SITE_ID")
    if configured:
        return configured
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def site_runner() -> str:
    """The runner runs go to unless their pipeline has its own: RUNNER."""
    return current_app.config["RUNNER"]


def runner_for(pipeline: str) -> str:
    """The runner new runs of ``pipeline`` go to: the one Admin -> Pipelines gives
    it, else the site's."""
    chosen = db.session.scalar(
        sa.select(PipelineSetting.runner).where(PipelineSetting.name == pipeline)
    )
    return chosen or site_runner()


def runner_of(analysis: Analysis) -> str:
    """The runner ``analysis`` runs on (rows from before runs kept theirs: the
    site's)."""
    return analysis.runner or site_runner()


def served_runners(config) -> list[str]:
    """The runners this process's worker takes runs for: WORKER_RUNNERS, or the
    site's RUNNER."""
    return list(config.get("WORKER_RUNNERS") or [config["RUNNER"]])


def runner_queue(config, runner: str) -> str:
    """The Celery queue of one runner's starts, e.g. ``labqueue.slurm``."""
    return f"{config['CELERY_QUEUE']}.{runner}"


def make_runner(name: str | None = None) -> Runner:
    """The runner called ``name`` (default: RUNNER) for this site and host.
    Docker raises EngineUnavailable when no engine answers: never a silent
    fallback."""
    cls = runner_class(name or site_runner())
    return cls.from_settings(current_app.config, site_id(), host_id())


def runs_unsandboxed(name: str | None = None) -> bool:
    """Whether runs on ``name`` (default: RUNNER) run without a sandbox."""
    return not runner_class(name or site_runner()).sandboxed


class NoClusterAccount(Exception):
    """The run would be submitted as the user's cluster account, which is not set."""


NO_CLUSTER_ACCOUNT = (
    "This pipeline runs on the lab's cluster under your own cluster account, and "
    "none is set for you yet: ask the administrators to add it to your account."
)


def cluster_account_for(user: User, runner: str) -> str | None:
    """The cluster account a run of ``user`` on ``runner`` is submitted as: the
    user's when SLURM_SUBMIT_AS is "user", else None (the worker's own). Raises
    NoClusterAccount when the user's is needed and not set."""
    if (
        not runner_class(runner).cluster_accounts
        or current_app.config["SLURM_SUBMIT_AS"] != "user"
    ):
        return None
    if not user.cluster_account:
        raise NoClusterAccount(NO_CLUSTER_ACCOUNT)
    return user.cluster_account
