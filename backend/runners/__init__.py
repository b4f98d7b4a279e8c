"""Runners: launch a pipeline run and let a watcher follow it.

Every runner implements the ``Runner`` protocol (``base.py``) and is found here by
name: Docker runs sandboxed containers, Slurm hands each run to the lab's cluster
as a batch job running the site's container command, and the local runner, for
development only, runs plain processes.
"""

from .base import (
    COULD_NOT_START,
    EngineUnavailable,
    Handle,
    ImageMissing,
    LaunchFailed,
    LogChunk,
    Mount,
    Outcome,
    Runner,
    RunSpec,
    Status,
    Usage,
    format_duration,
    mib,
    now,
    parse_progress,
)
from .docker import DockerRunner, docker_client
from .local import LocalRunner
from .slurm import SlurmRunner

RUNNERS: dict[str, type[Runner]] = {
    runner.name: runner for runner in (DockerRunner, SlurmRunner, LocalRunner)
}


def runner_class(name: str) -> type[Runner]:
    """The runner called ``name``; ValueError for a name no runner has."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise ValueError(
            f"no runner is called {name!r} (there are: {', '.join(RUNNERS)})"
        ) from None


__all__ = [
    "COULD_NOT_START",
    "DockerRunner",
    "EngineUnavailable",
    "Handle",
    "ImageMissing",
    "LaunchFailed",
    "LocalRunner",
    "LogChunk",
    "Mount",
    "Outcome",
    "RUNNERS",
    "Runner",
    "RunSpec",
    "SlurmRunner",
    "Status",
    "Usage",
    "docker_client",
    "format_duration",
    "mib",
    "now",
    "parse_progress",
    "runner_class",
]
