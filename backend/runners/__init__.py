"""Runners: launch a pipeline run and let a watcher follow it.

Every runner offers ``launch(spec) -> Handle`` (returns at once; launching the same
run twice finds the first), ``find(spec)``, ``poll(handle)`` and ``poll_many``,
``read_log(handle, offset)``, ``cancel(handle)``, ``usage(handle)``,
``unlinked_output_bytes(handle)``, ``cleanup(handle)`` and ``image_problem(image)``.
Docker runs sandboxed containers; the local runner, for development, plain
processes.
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
    "RunSpec",
    "Status",
    "Usage",
    "docker_client",
    "format_duration",
    "mib",
    "now",
    "parse_progress",
]
